"""`riskgw replay` against the SQLite oracle: the same rules, data and events must give the same OUT
rows and the same final state of every table.

SQLite is the definition (docs/semantics.md), so a difference here is a bug in riskgw.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from oracle import gen
from oracle.data import TICKETS, reference_data, session, write_session
from oracle.replay import ReplayResult, Value, engine_replay, replay, write_events, write_table_csv

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "rules"
FIXTURE = Path("/work/shared/fixtures/seed_rules.sql")


def rules(*names: str) -> list[Path]:
    return [RULES / n for n in names]


ALL_RULES = sorted(RULES.glob("*.sql"))
SUBSETS: dict[str, list[Path]] = {
    "all": ALL_RULES,
    "funds_and_flows": rules("00_schema.sql", "10_funds.sql", "90_flows.sql"),
    "holdings_and_flows": rules("00_schema.sql", "20_holdings.sql", "90_flows.sql"),
    "self_trade_and_flows": rules("00_schema.sql", "30_self_trade.sql", "90_flows.sql"),
    "price_band": rules("00_schema.sql", "40_price_band.sql"),
    "limits_and_flows": rules("00_schema.sql", "50_limits.sql", "90_flows.sql"),
    "rate": rules("00_schema.sql", "60_rate.sql"),
    "checks_without_flows": rules(
        "00_schema.sql",
        "10_funds.sql",
        "20_holdings.sql",
        "30_self_trade.sql",
        "40_price_band.sql",
        "50_limits.sql",
        "60_rate.sql",
    ),
}


def first_difference(engine: Sequence[list[str]], oracle: Sequence[list[str]]) -> str:
    for i, (a, b) in enumerate(zip(engine, oracle, strict=False)):
        if a != b:
            return f"row {i}: riskgw {a} != sqlite {b}"
    return f"riskgw has {len(engine)} rows, sqlite {len(oracle)}"


def assert_same(rule_files: Sequence[Path], data: Path | None, events: Path, workdir: Path) -> ReplayResult:
    expected = replay(rule_files, data, events)
    actual = engine_replay(rule_files, data, events, workdir)
    if actual.out != expected.out:
        raise AssertionError("OUT differs from SQLite: " + first_difference(actual.out, expected.out))
    assert sorted(actual.state) == sorted(expected.state), "the dumped tables differ"
    for table, rows in expected.state.items():
        if actual.state[table] != rows:
            diff = first_difference(actual.state[table], rows)
            raise AssertionError(f"final state of {table} differs from SQLite: {diff}")
    return expected


# ----------------------------------------------------------------------------- the example rules


@pytest.mark.parametrize("subset", sorted(SUBSETS))
def test_example_rules_match_sqlite(subset: str, tmp_path: Path) -> None:
    data = reference_data().write(tmp_path / "data")
    events = write_session(tmp_path / "events.csv", session(seed=11, n_orders=400))
    result = assert_same(SUBSETS[subset], data, events, tmp_path)
    verdicts = {row[2] for row in result.out}
    # the session is meant to exercise both outcomes; if it stops doing so the test proves little
    assert {"ACCEPT", "REJECT"} <= verdicts


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_all_example_rules_long_sessions_match_sqlite(seed: int, tmp_path: Path) -> None:
    data = reference_data(seed).write(tmp_path / "data")
    events = write_session(tmp_path / "events.csv", session(seed=100 + seed, n_orders=1500))
    assert_same(ALL_RULES, data, events, tmp_path)


def test_fixture_matches_sqlite(tmp_path: Path) -> None:
    ref = reference_data()
    holdings = ref.tables["account_ticket_info"]
    # the fixture has no flows, so give it outstanding buy prices (and NULLs) to compare against
    rows = [[*r[:5], None if i % 3 == 0 else 990 + 10 * (i % 5), r[6]] for i, r in enumerate(holdings[1])]
    data = tmp_path / "data"
    data.mkdir()
    write_table_csv(data / "account_ticket_info.csv", holdings[0], rows)
    write_table_csv(data / "account_info.csv", *ref.tables["account_info"])
    events = write_session(tmp_path / "events.csv", session(seed=5, n_orders=300))
    result = assert_same([FIXTURE], data, events, tmp_path)
    assert {"ACCEPT", "REJECT"} <= {row[2] for row in result.out}


def test_fixture_without_data_rejects_every_sell(tmp_path: Path) -> None:
    events: list[tuple[str, dict[str, Value]]] = [
        (
            "NEW",
            {
                "order_id": 1,
                "account_id": 1,
                "ticket_id": TICKETS[0],
                "direction": 1,
                "price": 5,
                "quantity": 1,
            },
        )
    ]
    write_events(tmp_path / "events.csv", events)
    result = assert_same([FIXTURE], None, tmp_path / "events.csv", tmp_path)
    assert result.out == [["1", "NEW", "REJECT", "T1"]]


# ----------------------------------------------------------------------------- generated programs


def run_case(case: gen.Case) -> None:
    with tempfile.TemporaryDirectory(prefix="rgw-diff-") as tmp:
        root = Path(tmp)
        rule_files = []
        for i, text in enumerate(case.files):
            p = root / f"{i:02d}_gen.sql"
            p.write_text(text, encoding="utf-8")
            rule_files.append(p)
        data = root / "data"
        data.mkdir()
        for t in case.tables:
            write_table_csv(data / f"{t.name}.csv", [c.name for c in t.cols], case.data[t.name])
        events = root / "events.csv"
        write_events(events, case.events)
        try:
            assert_same(rule_files, data, events, root)
        except AssertionError as exc:
            listing = "\n".join(f"-- file {i}\n{text}" for i, text in enumerate(case.files))
            raise AssertionError(f"{exc}\n{listing}\n-- data {case.data}\n-- events {case.events}") from None


# No shrinking: it can take minutes on these programs, and each disagreement found so far has a
# small directed test of its own above.
GEN_SETTINGS = settings(
    max_examples=80,
    derandomize=True,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@GEN_SETTINGS
@given(gen.cases())
def test_generated_programs_match_sqlite(case: gen.Case) -> None:
    run_case(case)


@settings(GEN_SETTINGS, max_examples=10)
@given(gen.many_rules_cases())
def test_generated_hundred_rules_match_sqlite(case: gen.Case) -> None:
    run_case(case)


@settings(GEN_SETTINGS, max_examples=20)
@given(gen.deep_cases())
def test_generated_deep_nesting_matches_sqlite(case: gen.Case) -> None:
    run_case(case)


# ----------------------------------------------------------------------------- semantic corners

# Every listed difference from SQLite and the corners around them, recorded in a log table so that
# each value shows in the final state: ORDER BY ties and NULLs, SUM overflow, AVG truncation, 64-bit
# overflow of each operator, division and modulo by zero and -1, INT range on store, NOT NULL on
# INSERT, UPDATE and upsert.
CORNERS = """
create table v (g INT not null, k INT not null, x INT8 null)
create table s (k INT not null, n INT not null, i INT null, w INT8 null)
create table lg (
    o INT8 null, first_k INT null, last_k INT null, sum_x INT8 null, avg_x INT8 null,
    min_x INT8 null, max_x INT8 null, cnt INT8 null, cnt_x INT8 null,
    q INT8 null, r INT8 null, neg INT8 null, ab INT8 null, prod INT8 null, sm INT8 null, df INT8 null,
    narrow INT null
)
Rule NoZeroQuantity (trade_order.quantity != 0 where trade_order.direction = 1)
Rule KnownGroup ((select count(*) from v where g = trade_order.account_id) > 0 or trade_order.account_id = 9)

create trigger log_accept after accept on trade_order
begin
    insert into lg (o, first_k, last_k, sum_x, avg_x, min_x, max_x, cnt, cnt_x,
                    q, r, neg, ab, prod, sm, df, narrow)
    values (trade_order.order_id,
            (select k from v where g = trade_order.account_id order by x limit 1),
            (select k from v where g = trade_order.account_id order by x desc limit 1),
            (select sum(x) from v where g = trade_order.account_id),
            (select avg(x) from v where g = trade_order.account_id),
            (select min(x) from v where g = trade_order.account_id),
            (select max(x) from v where g = trade_order.account_id),
            (select count(*) from v where g = trade_order.account_id and x is not null),
            (select count(x) from v where g = trade_order.account_id),
            trade_order.price / trade_order.quantity,
            trade_order.price % trade_order.quantity,
            - trade_order.price,
            abs(trade_order.price),
            trade_order.price * trade_order.quantity,
            trade_order.price + trade_order.quantity,
            trade_order.price - trade_order.quantity,
            trade_order.price);
    insert into s (k, n, i, w) values (trade_order.account_id, trade_order.quantity, trade_order.price, 1)
    on conflict (k) do update set n = n + excluded.n, i = excluded.i, w = w + 1;
end;

create trigger fill_update after fill on trade_order
begin
    update s set i = trade_order.exec_price, w = w * trade_order.exec_quantity
     where k = trade_order.account_id;
    update s set n = trade_order.exec_quantity where k = trade_order.account_id;
end;
"""

MIN64 = -(1 << 63)
MAX64 = (1 << 63) - 1
CORNER_DATA = {
    # group 1: ties at 5 and a NULL; group 2: a sum that overflows; group 3: negative average
    # that truncates toward zero; group 4: a sum that overflows midway but fits in the end
    "v": [
        (1, 10, 5),
        (1, 11, None),
        (1, 12, 5),
        (1, 13, -3),
        (1, 14, None),
        (1, 15, -3),
        (2, 20, MAX64),
        (2, 21, MAX64),
        (3, 30, -7),
        (3, 31, 2),
        (4, 40, MAX64),
        (4, 41, 1),
        (4, 42, -2),
    ],
}
# (account, price, quantity)
CORNER_ORDERS = [
    (1, 7, 2),
    (1, -7, 2),
    (2, 7, -2),
    (2, MIN64, -1),
    (3, MIN64, 1),
    (4, MAX64, 2),
    (3, MAX64, 0),
    (4, 5, None),
    (1, None, 3),
    (9, 3_000_000_000, 1),
    (9, 5, 3_000_000_000),
    (3, -2_147_483_648, 2_147_483_647),
]


def corner_case(tmp_path: Path) -> tuple[list[Path], Path, Path]:
    rules_file = tmp_path / "corners.sql"
    rules_file.write_text(CORNERS, encoding="utf-8")
    data = tmp_path / "data"
    data.mkdir()
    write_table_csv(data / "v.csv", ["g", "k", "x"], CORNER_DATA["v"])
    events: list[tuple[str, dict[str, Value]]] = []
    for i, (account, price, qty) in enumerate(CORNER_ORDERS):
        order: dict[str, Value] = {
            "order_id": i + 1,
            "account_id": account,
            "direction": i % 2,
            "price": price,
            "quantity": qty,
        }
        events.append(("NEW", order))
        if i % 3 == 2:
            fill = dict(order, exec_price=price, exec_quantity=qty)
            events.append(("FILL", fill))
    write_events(tmp_path / "events.csv", events)
    return [rules_file], data, tmp_path / "events.csv"


def test_semantic_corners_match_sqlite(tmp_path: Path) -> None:
    rule_files, data, events = corner_case(tmp_path)
    assert_same(rule_files, data, events, tmp_path)


def test_oracle_writes_out_each_difference_from_sqlite(tmp_path: Path) -> None:
    """The oracle itself against docs/semantics.md, value by value (a test of the test)."""
    rule_files, data, events = corner_case(tmp_path)
    state = replay(rule_files, data, events).state
    header, *rows = state["lg"]
    logged = {int(r[0]): dict(zip(header, r, strict=True)) for r in rows}
    one, two, four = logged[1], logged[3], logged[6]
    assert (one["first_k"], one["last_k"]) == ("11", "10")  # ASC: NULL first; DESC: tie to the first row
    assert (one["min_x"], one["max_x"], one["cnt"], one["cnt_x"]) == ("-3", "5", "4", "4")
    assert two["sum_x"] == "" and two["avg_x"] == ""  # SUM overflow is NULL, so is AVG
    assert logged[5]["avg_x"] == "-2"  # (-7 + 2) / 2 truncates toward zero
    assert four["sum_x"] == str(MAX64 - 1)  # overflows midway, fits in the end
    assert (one["q"], one["r"], logged[2]["r"], logged[3]["r"]) == ("3", "1", "-1", "1")
    corner = logged[4]  # MIN64 / -1 and MIN64 % -1
    assert (corner["q"], corner["r"], corner["neg"]) == ("", "0", "")
    assert logged[5]["ab"] == "" and logged[7]["q"] == "" and logged[7]["r"] == ""  # ABS(MIN), x / 0, x % 0
    assert four["prod"] == "" and four["sm"] == ""  # MAX64 * 2, MAX64 + 2
    assert logged[10]["narrow"] == ""  # 3e9 stored into an INT column
    s_header, *s_rows = state["s"]
    s = {r[0]: dict(zip(s_header, r, strict=True)) for r in s_rows}
    # account 9: the first upsert inserted n=1; the second's n = 1 + 3e9 does not fit INT and n is
    # NOT NULL, so that whole update was skipped (w stayed 1, i kept the first price, itself NULL)
    assert (s["9"]["n"], s["9"]["w"], s["9"]["i"]) == ("1", "1", "")


def test_lookup_on_a_narrow_char_key_matches_sqlite(tmp_path: Path) -> None:
    """A CHAR(8) key looked up by trade_order.ticket_id (a CHAR(16)) with a value that fits."""
    rules_file = tmp_path / "narrow.sql"
    rules_file.write_text(
        "create table t (k CHAR(8) not null, v INT not null)\n"
        "Rule R ((select v from t where k = trade_order.ticket_id) is not null)\n",
        encoding="utf-8",
    )
    data = tmp_path / "data"
    data.mkdir()
    write_table_csv(data / "t.csv", ["k", "v"], [["B", 5]])
    events: list[tuple[str, dict[str, Value]]] = [
        ("NEW", {"order_id": 1, "ticket_id": "B"}),
        ("NEW", {"order_id": 2, "ticket_id": "LONGTICKET"}),
    ]
    write_events(tmp_path / "events.csv", events)
    result = assert_same([rules_file], data, tmp_path / "events.csv", tmp_path)
    assert [r[2] for r in result.out] == ["ACCEPT", "REJECT"]


def test_upsert_whose_proposed_row_breaks_not_null_matches_sqlite(tmp_path: Path) -> None:
    """SQLite checks NOT NULL on the proposed row before it looks for a conflict: the statement
    fails, so (OR IGNORE) it does nothing, DO UPDATE included."""
    rules_file = tmp_path / "upsert.sql"
    rules_file.write_text(
        "create table t (k INT not null, n INT not null, v INT null)\n"
        "create trigger up after fill on trade_order\nbegin\n"
        "    insert into t (k) values (trade_order.account_id) on conflict (k) do update set v = 1;\n"
        "    insert into t (k, n) values (trade_order.account_id, 2)\n"
        "    on conflict (k) do update set n = n + 1;\n"
        "end;\n",
        encoding="utf-8",
    )
    data = tmp_path / "data"
    data.mkdir()
    write_table_csv(data / "t.csv", ["k", "n", "v"], [[1, 5, None]])
    fill: dict[str, Value] = {"order_id": 1, "account_id": 1}
    write_events(tmp_path / "events.csv", [("FILL", fill)])
    result = assert_same([rules_file], data, tmp_path / "events.csv", tmp_path)
    assert result.state["t"] == [["k", "n", "v"], ["1", "6", ""]]
