"""The compiler back end: keys, diagnostics it owns, the image format and the listing."""

from __future__ import annotations

import glob
from pathlib import Path

import pytest

from riskgw.cli import main
from riskgw.doe.asm import assemble, disassemble
from riskgw.doe.compiler import CompileResult, compile_files
from riskgw.doe.image import Image, ImageError
from riskgw.doe.isa import REG_TRUE, Event, Insn, Op
from riskgw.lang.ast import CompileError

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT.parent / "shared" / "fixtures" / "seed_rules.sql"
RULE_SETS = [[SEED], sorted(Path(p) for p in glob.glob(str(ROOT / "rules" / "*.sql")))]

SCHEMA = """
create table acct (id INT not null, region CHAR(8), bal INT8, cap INT)
create table orders (order_id INT8 not null, account_id INT not null, price INT8, qty INT8)
"""


def compile_text(tmp_path: Path, text: str) -> CompileResult:
    path = tmp_path / "r.sql"
    path.write_text(SCHEMA + text, encoding="utf-8")
    return compile_files([path])


def error_of(tmp_path: Path, text: str) -> str:
    with pytest.raises(CompileError) as exc:
        compile_text(tmp_path, text)
    return str(exc.value)


def test_seed_key_is_derived_from_the_rule() -> None:
    image = compile_files([SEED]).image
    holdings = image.table("account_ticket_info")
    assert [holdings.columns[k].name for k in holdings.key] == ["account_id", "ticket_id", "ticket_id.w1"]
    assert image.table("account_info").key == ()


def test_inconsistent_keys_are_an_error(tmp_path: Path) -> None:
    msg = error_of(
        tmp_path,
        """
        Rule A ((select bal from acct where id = trade_order.account_id) > 0)
        Rule B ((select bal from acct where region = 'EU') > 0)
        """,
    )
    assert "inconsistent keys for table acct" in msg
    assert "r.sql:" in msg


def test_lookup_without_key_equality_is_an_error(tmp_path: Path) -> None:
    msg = error_of(tmp_path, "Rule A ((select bal from acct where bal > trade_order.price) > 0)")
    assert "does not pin a key" in msg


def test_extra_equalities_filter_the_row(tmp_path: Path) -> None:
    result = compile_text(
        tmp_path,
        """
        Rule A ((select bal from acct where id = trade_order.account_id) > 0)
        Rule B ((select bal from acct where id = trade_order.account_id and region = 'EU') > 0)
        """,
    )
    acct = result.image.table("acct")
    assert [acct.columns[k].name for k in acct.key] == ["id"]


def test_setting_a_key_column_is_an_error(tmp_path: Path) -> None:
    msg = error_of(
        tmp_path,
        """
        create trigger t after FILL on trade_order begin
          update acct set id = 5 where id = trade_order.account_id;
        end;
        """,
    )
    assert "part of the table's key and cannot be SET" in msg


def test_aggregate_filter_that_reads_the_order_is_an_error(tmp_path: Path) -> None:
    msg = error_of(
        tmp_path,
        "Rule A ((select count(*) from orders where account_id = trade_order.account_id"
        " and price > trade_order.price) < 5)",
    )
    assert "reads the order" in msg


def test_min_over_updated_column_warns_and_scans(tmp_path: Path) -> None:
    result = compile_text(
        tmp_path,
        """
        Rule low ((select min(price) from orders where account_id = trade_order.account_id) > 0)
        create trigger a after ACCEPT on trade_order begin
          insert into orders (order_id, account_id, price)
          values (trade_order.order_id, trade_order.account_id, trade_order.price);
        end;
        create trigger f after FILL on trade_order begin
          update orders set price = trade_order.exec_price where order_id = trade_order.order_id;
        end;
        """,
    )
    warnings = [w.message for w in result.warnings]
    assert any("rule low" in w and "O(rows)" in w and "trigger f" in w for w in warnings)
    ops = {i.op for b in result.image.section(Event.NEW) for i in b}
    assert Op.SCAN in ops


def test_sum_over_updated_column_stays_incremental(tmp_path: Path) -> None:
    result = compile_text(
        tmp_path,
        """
        Rule exp ((select sum(qty) from orders where account_id = trade_order.account_id) < 100)
        create trigger a after ACCEPT on trade_order begin
          insert into orders (order_id, account_id, qty)
          values (trade_order.order_id, trade_order.account_id, trade_order.quantity);
        end;
        create trigger f after FILL on trade_order begin
          update orders set qty = qty - trade_order.exec_quantity where order_id = trade_order.order_id;
        end;
        """,
    )
    assert result.warnings == []
    image = result.image
    assert any(t.hidden for t in image.tables)
    assert all(i.op is not Op.SCAN for s in image.code.values() for b in s for i in b)


def test_char_value_longer_than_its_column_is_stored_as_null(tmp_path: Path) -> None:
    """A CHAR(16) value into a CHAR(8) column: kept when it fits the column's words, else NULL."""
    from riskgw.engine.engine import Engine, event_inputs
    from riskgw.engine.state import table_rows

    image = compile_text(
        tmp_path,
        """
        create trigger t after ACCEPT on trade_order begin
          insert into acct (id, region) values (trade_order.account_id, trade_order.ticket_id);
        end;
        """,
    ).image
    engine = Engine(image)
    engine.process(Event.NEW, event_inputs({"order_id": 1, "account_id": 1, "ticket_id": "SHORT"}))
    engine.process(Event.NEW, event_inputs({"order_id": 2, "account_id": 2, "ticket_id": "LONGTICKET"}))
    rows = table_rows(engine.state.table(image.table("acct").id))
    assert sorted(rows, key=lambda r: int(r[0] or 0)) == [(1, "SHORT", None, None), (2, None, None, None)]


def test_same_lookup_in_many_rules_is_one_lookup(tmp_path: Path) -> None:
    rules = "\n".join(
        f"Rule R{i} ((select bal from acct where id = trade_order.account_id) > {i})" for i in range(128)
    )
    image = compile_text(tmp_path, rules).image
    new = [i for b in image.section(Event.NEW) for i in b]
    assert sum(i.op is Op.LOOKUP for i in new) == 1
    assert sum(i.op is Op.READ for i in new) == 1
    assert sum(i.op is Op.RULE for i in new) == 128
    # Lookup and read once, then 128 compares and 128 RULEs packed onto 8 lanes with no idle lane.
    assert len(image.section(Event.NEW)) == 2 + (2 * 128) // 8


@pytest.mark.parametrize("files", RULE_SETS, ids=["seed", "rules"])
def test_listing_round_trips(files: list[Path]) -> None:
    image = compile_files(files).image
    blob = image.encode()
    assert Image.decode(blob).encode() == blob
    assert assemble(disassemble(image)).encode() == blob


@pytest.mark.parametrize("files", RULE_SETS, ids=["seed", "rules"])
def test_bundles_respect_lanes_and_read_before_write(files: list[Path]) -> None:
    image = compile_files(files, lanes=4).image
    for bundles in image.code.values():
        for bundle in bundles:
            assert 1 <= len(bundle) <= 4
            dsts = [i.dst for i in bundle if i.op not in (Op.WRITE, Op.RULE)]
            assert len(dsts) == len(set(dsts)), "two results into one register in one bundle"


def test_image_decode_rejects_garbage() -> None:
    blob = compile_files([SEED]).image.encode()
    with pytest.raises(ImageError, match="bad magic"):
        Image.decode(b"XXXX" + blob[4:])
    with pytest.raises(ImageError, match="truncated"):
        Image.decode(blob[:-8])
    with pytest.raises(ImageError, match="ABI"):
        Image.decode(blob[:4] + b"\x63\x00" + blob[6:])
    with pytest.raises(ImageError, match="too short"):
        Image.decode(b"RG")


def test_instruction_encoding_round_trips() -> None:
    insn = Insn(Op.LOOKUP, 4095, (1, 2, 3, 4, 5, 6), pred=REG_TRUE, table=255, imm=4095, end=True)
    assert Insn.decode(insn.encode()) == insn
    with pytest.raises(ValueError, match="does not fit"):
        Insn(Op.ADD, 4096, (1, 2)).encode()


def test_cli_check_and_compile(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(SEED)]) == 0
    assert "ok: 1 file(s), 2 table(s), 1 rule(s)" in capsys.readouterr().out
    out = tmp_path / "prog.bin"
    assert main(["compile", str(SEED), "-o", str(out), "--asm"]) == 0
    assert ".section NEW" in capsys.readouterr().out
    assert Image.decode(out.read_bytes()).rules[0].name == "T1"


def test_cli_reports_errors_without_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.sql"
    bad.write_text(SCHEMA + "Rule A ((select bal from acct where bal > 1) > 0)\n", encoding="utf-8")
    assert main(["check", str(bad)]) == 1
    err = capsys.readouterr().err
    assert f"{bad}:" in err and "error:" in err and "Traceback" not in err


def test_expression_over_a_missing_row_is_null(tmp_path: Path) -> None:
    """`(SELECT COALESCE(x, 0) ...)` with no row is NULL (the rule fails), not 0."""
    from riskgw.engine.engine import Engine, event_inputs

    image = compile_text(
        tmp_path,
        """
        Rule has_row ((select coalesce(bal, 0) from acct where id = trade_order.account_id) >= 0)
        Rule last ((select coalesce(qty, 0) from orders where account_id = trade_order.account_id
                    order by order_id desc limit 1) >= 0)
        """,
    ).image
    engine = Engine(image)
    decision = engine.process(Event.NEW, event_inputs({"order_id": 1, "account_id": 9, "price": 1}))
    assert decision.failed == (0, 1)
    engine.load_row(image.table("acct").id, (9, None, None, None))
    decision = engine.process(Event.NEW, event_inputs({"order_id": 2, "account_id": 9, "price": 1}))
    assert decision.failed == (1,)


def test_order_by_limit_1_select_may_hold_a_sub_query(tmp_path: Path) -> None:
    """The SELECT of ORDER BY ... LIMIT 1 is read from the chosen row, so it can look up other tables."""
    from riskgw.engine.engine import Engine, event_inputs

    image = compile_text(
        tmp_path,
        """
        Rule R ((select (select bal from acct where id = orders.account_id) from orders
                 where account_id = trade_order.account_id order by price desc limit 1) > 100)
        create trigger a after ACCEPT on trade_order begin
          insert into orders (order_id, account_id, price)
          values (trade_order.order_id, 7, trade_order.price);
        end;
        """,
    ).image
    engine = Engine(image)
    engine.load_row(image.table("acct").id, (3, None, 500, None))
    engine.load_row(image.table("acct").id, (4, None, 50, None))
    engine.load_row(image.table("orders").id, (1, 3, 10, None))
    engine.load_row(image.table("orders").id, (2, 4, 10, None))
    # Account 3's best order leads to account 3's balance, 500: it passes; account 4's is 50.
    assert engine.process(Event.NEW, event_inputs({"order_id": 8, "account_id": 3})).failed == ()
    assert engine.process(Event.NEW, event_inputs({"order_id": 9, "account_id": 4})).failed == (0,)
    # Account 5 has no orders: NULL, and the rule fails closed.
    assert engine.process(Event.NEW, event_inputs({"order_id": 3, "account_id": 5})).failed == (0,)


def test_cli_output_into_a_closed_pipe_is_not_a_traceback() -> None:
    """`riskgw compile --asm | head -1`: the reader leaves early, riskgw stops quietly."""
    import fcntl
    import subprocess
    import sys

    rules = sorted(str(p) for p in (ROOT / "rules").glob("*.sql"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "riskgw.cli", "compile", *rules, "--asm"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    # A pipe of one page: the listing, ~26 kB, waits in riskgw's write for the
    # reader, so that write fails when the reader leaves, however fast riskgw writes.
    fcntl.fcntl(proc.stdout.fileno(), fcntl.F_SETPIPE_SZ, 4096)
    assert proc.stdout.readline().startswith(b".image ")
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(60) == 141 and err == "", err


def test_a_broken_pipe_that_is_not_stdout_is_not_taken_for_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only stdout's reader leaving ends riskgw quietly: a broken pipe elsewhere (a socket) goes on."""
    from riskgw import cli

    def broken(args: object) -> int:
        raise BrokenPipeError("a peer's socket")

    monkeypatch.setattr(cli, "cmd_compile", broken)
    with pytest.raises(BrokenPipeError, match="a peer's socket"):
        cli.main(["compile", str(SEED), "--asm"])
