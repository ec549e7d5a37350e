"""Carrying live tables to a new program: what is migrated, what is refused, and that the hidden
aggregate tables come back from the user rows exactly as the running program kept them."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from riskgw.card.driver import CardError
from riskgw.card.soft import SoftCard
from riskgw.card.tables import load_data_dir
from riskgw.doe.compiler import compile_files
from riskgw.doe.image import Image
from riskgw.engine.cbuild import compiler
from riskgw.engine.csvdata import read_events
from riskgw.engine.engine import Engine
from riskgw.engine.state import table_rows
from riskgw.gateway.deploy import swap, warm_native
from riskgw.gateway.migrate import MigrationError, plan
from riskgw.scenario import DataSet, Session, write_events

RULES = sorted((Path(__file__).resolve().parent.parent / "rules").glob("*.sql"))

BASE = """
create table acct (
    account_id  INT       not null ,
    name        char(8)   null     ,
    balance     INT       null     ,
)
Rule Funds ( trade_order.price <= (select balance from acct where account_id = trade_order.account_id) )
"""


def image(tmp_path: Path, text: str, name: str = "r.sql") -> Image:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return compile_files([path]).image


def card_with(img: Image, rows: list[tuple[int | None, ...]]) -> SoftCard:
    card = SoftCard()
    card.load_image(img)
    card.load_rows(img.table("acct").id, rows)
    return card


def acct_rows(card: SoftCard) -> list[tuple[int | str | None, ...]]:
    engine = card._live()
    return table_rows(engine.state.by_name("acct"))


def test_a_new_nullable_column_is_null_and_a_default_fills_it(tmp_path: Path) -> None:
    old = image(tmp_path, BASE)
    new_text = BASE.replace(
        "balance     INT       null     ,", "balance INT null, credit INT8 null, tier INT null,"
    )
    new = image(tmp_path, new_text, "n.sql")
    card = card_with(old, [(1, 0x41, 100), (2, None, None)])  # name "A" is one word: 0x41
    _, _, carried = swap(card, new, {"acct.tier": "3"}, False, {})
    assert carried == 2
    assert acct_rows(card) == [(1, "A", 100, None, 3), (2, None, None, None, 3)]
    assert plan(old, new, {"acct.tier": "3"}, False).changes == [
        "new column acct.credit (NULL in existing rows)",
        "new column acct.tier = 3",
    ]


def test_a_new_not_null_column_needs_a_default(tmp_path: Path) -> None:
    old = image(tmp_path, BASE)
    new = image(
        tmp_path,
        BASE.replace("balance     INT       null     ,", "balance INT null, tier INT not null,"),
        "n.sql",
    )
    with pytest.raises(
        MigrationError, match=r"new column acct\.tier is NOT NULL .* give --default acct\.tier=VALUE"
    ):
        plan(old, new, {}, False)
    with pytest.raises(MigrationError, match=r"--default acct\.tier=x: column tier: 'x' is not an integer"):
        plan(old, new, {"acct.tier": "x"}, False)
    with pytest.raises(MigrationError, match=r"--default acct\.nope: no new column of that name"):
        plan(old, new, {"acct.tier": "1", "acct.nope": "1"}, False)


def test_dropping_needs_allow_drop(tmp_path: Path) -> None:
    old = image(tmp_path, BASE + "create table extra ( k INT not null, v INT null )\n")
    new = image(tmp_path, BASE.replace("    name        char(8)   null     ,\n", ""), "n.sql")
    with pytest.raises(
        MigrationError, match=r"column acct\.name, table extra would be dropped .* --allow-drop"
    ):
        plan(old, new, {}, False)
    card = card_with(old, [(1, 0x41, 100)])
    swap(card, new, {}, True, {})
    assert acct_rows(card) == [(1, 100)]


def test_type_changes(tmp_path: Path) -> None:
    old = image(tmp_path, BASE)
    wide = image(
        tmp_path, BASE.replace("balance     INT ", "balance     INT8").replace("char(8)", "char(20)"), "w.sql"
    )
    card = card_with(old, [(1, 0x41, 2**31 - 1), (2, None, -5)])
    swap(card, wide, {}, False, {})
    assert acct_rows(card) == [(1, "A", 2**31 - 1), (2, None, -5)]
    card.load_rows(wide.table("acct").id, [(3, None, None, None, 2**40)])  # now holds 64 bits
    with pytest.raises(MigrationError, match=r"column acct\.balance: 1099511627776 does not fit INT"):
        swap(card, old, {}, False, {})
    assert acct_rows(card)[-1] == (3, None, 2**40)  # refused: nothing changed
    as_char = image(
        tmp_path, "create table acct ( account_id INT not null, name INT null, balance INT null )", "c.sql"
    )
    with pytest.raises(MigrationError, match=r"column acct\.name changes from CHAR\(8\) to INT"):
        plan(old, as_char, {}, False)


def test_a_char_that_no_longer_fits_is_refused(tmp_path: Path) -> None:
    old = image(tmp_path, BASE.replace("char(8)", "char(16)"))
    narrow = image(tmp_path, BASE.replace("char(8)", "char(4)"), "n.sql")
    card = SoftCard()
    card.load_image(old)
    from riskgw.doe.values import encode_char

    card.load_rows(old.table("acct").id, [(1, *encode_char("ABCDEFGHIJ", 16), 5)])
    with pytest.raises(MigrationError, match=r"'ABCDEFGHIJ' does not fit CHAR\(4\)"):
        swap(card, narrow, {}, False, {})


def test_a_new_key_that_two_rows_share_is_refused(tmp_path: Path) -> None:
    nokey = image(tmp_path, "create table acct ( account_id INT not null, balance INT null )\n")
    keyed = image(tmp_path, BASE, "k.sql")  # Funds looks rows up by account_id: that is now the key
    assert keyed.table("acct").key and not nokey.table("acct").key
    card = card_with(nokey, [(1, 5), (1, 6)])
    with pytest.raises(MigrationError, match=r"table acct: two rows share the key \(account_id=1\)"):
        swap(card, keyed, {}, False, {})
    assert acct_rows(card) == [(1, 5), (1, 6)]


def test_a_new_table_starts_from_its_data(tmp_path: Path) -> None:
    old = image(tmp_path, BASE)
    new = image(
        tmp_path,
        BASE + "create table lim ( account_id INT not null, cap INT8 null )\n"
        "Rule Cap ( trade_order.quantity <=\n"
        "    (select cap from lim where account_id = trade_order.account_id) )\n",
        "n.sql",
    )
    card = card_with(old, [(1, None, 100)])
    swap(card, new, {}, False, {"lim": [(1, 10), (2, 20)]})
    lim = card._live().state.by_name("lim")
    assert table_rows(lim) == [(1, 10), (2, 20)]
    assert plan(old, new, {}, False).changes == ["new table lim"]


def hidden_rows(engine: Engine) -> dict[str, list[tuple[int | None, ...]]]:
    """Hidden tables as sorted rows: their row order depends on the history, their contents not."""
    out = {}
    for cfg in engine.image.tables:
        if cfg.hidden:
            rows = engine.state.table(cfg.id).rows()
            out[cfg.name] = sorted(rows, key=lambda r: tuple((v is None, v or 0) for v in r))
    return out


def test_loading_the_user_rows_rebuilds_the_aggregate_tables(tmp_path: Path) -> None:
    """After a trading session, the same program loaded with the carried user rows holds the same
    hidden aggregate tables as the one that kept them event by event, and decides the same."""
    img = compile_files(RULES).image
    assert any(t.hidden for t in img.tables)  # the example rules count open orders (MaxOpenOrders)
    data = DataSet(n_accounts=20, n_securities=64, holdings_per_account=16)
    data.write(tmp_path / "data")
    live, ref = SoftCard(), SoftCard()
    for card in (live, ref):
        card.load_image(img)
        load_data_dir(card, tmp_path / "data")
    events = read_events(
        write_events(tmp_path / "ev.csv", Session(data, n_orders=600, seed=4).run(lambda r: True))
    )
    half = len(events) // 2
    for ev in events[:half]:
        assert live.process(ev.event, ev.inputs) == ref.process(ev.event, ev.inputs)
    before = hidden_rows(ref._live())
    assert any(before.values())

    swap(live, img, {}, False, {})  # a new engine, given only the user rows
    assert hidden_rows(live._live()) == before
    for ev in events[half:]:
        assert live.process(ev.event, ev.inputs) == ref.process(ev.event, ev.inputs)
    assert hidden_rows(live._live()) == hidden_rows(ref._live())


def test_a_swap_reaches_the_card_and_its_standby(tmp_path: Path) -> None:
    """Through LockstepCard, the card and the software standby both get the new program and the
    carried tables, and go on deciding every event alike (a difference would be a mismatch)."""
    from riskgw.card.lockstep import LockstepCard

    img = compile_files(RULES).image
    cap = tmp_path / "cap.sql"
    cap.write_text("Rule OrderCap ( trade_order.quantity <= 300 )\n", encoding="utf-8")
    new = compile_files([*RULES, cap]).image
    data = DataSet(n_accounts=20, n_securities=64, holdings_per_account=16)
    data.write(tmp_path / "data")
    card, standby = SoftCard(), SoftCard()
    pair = LockstepCard(card, standby)
    pair.load_image(img)
    load_data_dir(pair, tmp_path / "data")
    events = read_events(
        write_events(tmp_path / "ev.csv", Session(data, n_orders=300, seed=5).run(lambda r: True))
    )
    half = len(events) // 2
    for ev in events[:half]:
        pair.process(ev.event, ev.inputs)
    swap(pair, new, {}, False, {})
    assert card.image is new and standby.image is new
    assert card.state_hash() == standby.state_hash()
    capped = 0
    for ev in events[half:]:
        decision = pair.process(ev.event, ev.inputs)
        capped += new.rules[-1].id in decision.failed
    assert capped > 0
    assert pair.card is card and (pair.counters.mismatches, pair.counters.hash_mismatches) == (0, 0)
    assert card.state_hash() == standby.state_hash()


class _BreaksOnLoad(SoftCard):
    """A card whose driver fails while the new program's rows are loaded (once)."""

    def __init__(self) -> None:
        super().__init__()
        self.fail_next = False

    def load_rows(self, table_id: int, rows: Any) -> int:
        if self.fail_next:
            self.fail_next = False
            raise CardError("DMA timeout")
        return super().load_rows(table_id, rows)


def test_a_card_that_fails_during_the_swap_gets_its_program_back(tmp_path: Path) -> None:
    old = image(tmp_path, BASE)
    new = image(
        tmp_path,
        BASE.replace("balance     INT       null     ,", "balance INT null, tier INT null,"),
        "n.sql",
    )
    card = _BreaksOnLoad()
    card.load_image(old)
    card.load_rows(old.table("acct").id, [(1, 0x41, 100), (2, None, 7)])
    before = card.state_hash()
    card.fail_next = True
    with pytest.raises(CardError, match="DMA timeout"):
        swap(card, new, {}, False, {})
    assert card.image is old and card.state_hash() == before


def test_a_new_aggregate_is_built_from_the_rows_already_there(tmp_path: Path) -> None:
    """A deployment whose new rule sums a live table gets a new hidden table, filled from the rows
    carried over: it equals the one a card running the new program all day kept event by event,
    and the sums computed directly from the rows."""
    img = compile_files(RULES).image
    extra = tmp_path / "open_buys.sql"
    extra.write_text(
        "Rule OpenBuys ( coalesce((select sum(open_quantity) from order_info\n"
        "    where account_id = trade_order.account_id and direction = 0), 0) < 5000 )\n",
        encoding="utf-8",
    )
    new = compile_files([*RULES, extra]).image
    added = [t for t in new.tables if t.hidden and t.name not in {h.name for h in img.tables if h.hidden}]
    assert len(added) == 1
    data = DataSet(n_accounts=20, n_securities=64, holdings_per_account=16)
    data.write(tmp_path / "data")
    card, all_day = SoftCard(), SoftCard()
    card.load_image(img)
    all_day.load_image(new)
    for c in (card, all_day):
        load_data_dir(c, tmp_path / "data")
    events = read_events(
        write_events(tmp_path / "ev.csv", Session(data, n_orders=400, seed=6).run(lambda r: True))
    )
    for ev in events[: len(events) * 2 // 3]:  # mid-session: orders still open
        card.process(ev.event, ev.inputs)
        all_day.process(ev.event, ev.inputs)
    swap(card, new, {}, False, {})
    assert hidden_rows(card._live()) == hidden_rows(all_day._live())

    engine = card._live()
    want: dict[tuple[int, int], tuple[int, int, int]] = {}
    for _, account, _, direction, _, open_qty in table_rows(engine.state.by_name("order_info")):
        assert isinstance(account, int) and isinstance(direction, int) and isinstance(open_qty, int)
        rows, count, total = want.get((account, direction), (0, 0, 0))
        want[account, direction] = (rows + 1, count + 1, total + open_qty)
    assert len(want) > 20 and any(total for _, _, total in want.values())
    cols = [c.name for c in added[0].columns]
    got = {}
    for row in engine.state.table(added[0].id).rows():
        cell = dict(zip(cols, row, strict=True))
        hi, lo = int(cell["sum_hi0"] or 0), int(cell["sum_lo0"] or 0)
        key = (int(cell["g_account_id"] or 0), int(cell["g_direction"] or 0))
        got[key] = (cell["rows"], cell["count0"], hi * 2**64 + lo)
    assert got == want


@pytest.mark.skipif(compiler() is None, reason="the native backend needs a C compiler")
def test_a_warmed_native_card_swaps_without_the_c_compiler(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    old = image(tmp_path, BASE)
    new = image(
        tmp_path,
        BASE.replace("balance     INT       null     ,", "balance INT null, tier INT null,"),
        "n.sql",
    )
    card = SoftCard("native")
    card.load_image(old)
    card.load_rows(old.table("acct").id, [(1, 0x41, 100)])
    warm_native(new)

    def no_compiler(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the C compiler ran during the swap")

    monkeypatch.setattr(subprocess, "run", no_compiler)  # what cbuild runs the compiler with
    swap(card, new, {}, False, {})
    assert acct_rows(card) == [(1, "A", 100, None)]
