"""`riskgw replay`: exact output formats, state dumps, and every kind of bad input.

The contract (docs/replay.md) is used by tests outside this repository, so the expected files here
are written out in full.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from riskgw.cli import main
from riskgw.engine.state import dump_csv, dump_rows

FIXTURE = Path("/work/shared/fixtures/seed_rules.sql")
EVENT_HEADER = "event,order_id,account_id,ticket_id,direction,price,quantity,exec_price,exec_quantity,ts"

RULES = """
create table acct
(
    account_id  INT       not null ,
    name        char(16)  null     ,
    balance     INT8      null     ,
)

create table notes
(
    k  INT      not null ,
    s  char(8)  null     ,
    v  INT8     null     ,
)

Rule Funds (
    trade_order.price * trade_order.quantity <=
    (select balance from acct where account_id = trade_order.account_id)
    where trade_order.direction = 0
)

Rule Positive ( trade_order.quantity > 0 )

create trigger on_accept after accept on trade_order when trade_order.direction = 0
begin
    update acct set balance = balance - trade_order.price * trade_order.quantity
     where account_id = trade_order.account_id;
end;

create trigger on_fill after fill on trade_order
begin
    insert into acct (account_id, name, balance)
    values (trade_order.account_id + 100, trade_order.ticket_id, trade_order.exec_quantity);
end;
"""

ACCT = "balance,account_id\n1000,1\n,2\n50,3\n"  # a subset of the columns, in another order
NOTES = "k,s,v\n3,b,\n-5,a,1\n3,B,2\n3,,7\n10,é,0\n3,b,-1\n"
EVENTS = f"""{EVENT_HEADER}
NEW,1,1,AAA,0,10,50,,,1
NEW,2,1,AAA,0,10,60,,,2
NEW,3,2,,0,1,0,,,3
NEW,4,3,,1,5,1,,,4
FILL,1,1,AAA,0,10,50,10,50,5
CANCEL,,9,,,,,,,6
"""
EXPECTED_OUT = """order_id,event,verdict,rules
1,NEW,ACCEPT,
2,NEW,REJECT,Funds
3,NEW,REJECT,Funds;Positive
4,NEW,ACCEPT,
1,FILL,APPLIED,
,CANCEL,APPLIED,
"""
EXPECTED_ACCT = "account_id,name,balance\n1,,500\n2,,\n3,,50\n101,AAA,50\n"
EXPECTED_NOTES = "k,s,v\n-5,a,1\n3,,7\n3,B,2\n3,b,\n3,b,-1\n10,é,0\n"
FINAL_LINE = re.compile(r"^replayed (\d+) events in [0-9.]+ s \((\d+|inf) events/s\)$")


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def case(tmp_path: Path) -> Path:
    write(tmp_path / "rules.sql", RULES)
    write(tmp_path / "data" / "acct.csv", ACCT)
    write(tmp_path / "data" / "notes.csv", NOTES)
    write(tmp_path / "events.csv", EVENTS)
    (tmp_path / "out").mkdir()
    return tmp_path


def replay(d: Path, *extra: str, data: bool = True) -> int:
    argv = [
        "replay",
        str(d / "rules.sql"),
        "--events",
        str(d / "events.csv"),
        "--out",
        str(d / "out" / "out.csv"),
    ]
    argv += ["--dump-state", str(d / "out" / "state")]
    if data:
        argv += ["--data", str(d / "data")]
    return main([*argv, *extra])


def test_replay_writes_exact_verdicts_and_sorted_state(
    case: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert replay(case) == 0
    assert (case / "out" / "out.csv").read_text(encoding="utf-8") == EXPECTED_OUT
    state = case / "out" / "state"
    assert sorted(p.name for p in state.iterdir()) == ["acct.csv", "notes.csv"]
    assert (state / "acct.csv").read_text(encoding="utf-8") == EXPECTED_ACCT
    assert (state / "notes.csv").read_text(encoding="utf-8") == EXPECTED_NOTES
    lines = capsys.readouterr().err.splitlines()
    match = FINAL_LINE.match(lines[-1])
    assert match and match.group(1) == "6"


def test_replay_without_data_starts_from_empty_tables(case: Path) -> None:
    assert replay(case, data=False) == 0
    out = (case / "out" / "out.csv").read_text(encoding="utf-8").splitlines()
    assert out[1:4] == ["1,NEW,REJECT,Funds", "2,NEW,REJECT,Funds", "3,NEW,REJECT,Funds;Positive"]
    state = case / "out" / "state"
    assert (state / "acct.csv").read_text(encoding="utf-8") == "account_id,name,balance\n101,AAA,50\n"
    assert (state / "notes.csv").read_text(encoding="utf-8") == "k,s,v\n"


def test_replay_of_the_seed_rules(tmp_path: Path) -> None:
    write(tmp_path / "rules.sql", FIXTURE.read_text(encoding="utf-8"))
    write(
        tmp_path / "data" / "account_ticket_info.csv",
        "account_id,ticket_id,buy_top_price\n1,600000,100\n1,600036,\n2,600000,300\n",
    )
    write(
        tmp_path / "events.csv",
        f"""{EVENT_HEADER}
NEW,10,1,600000,1,101,5,,,1
NEW,11,1,600000,1,100,5,,,2
NEW,12,1,600036,1,100,5,,,3
NEW,13,1,000001,1,100,5,,,4
NEW,14,1,000001,0,100,5,,,5
NEW,15,2,600000,1,301,5,,,6
FILL,10,1,600000,1,101,5,101,5,7
""",
    )
    (tmp_path / "out").mkdir()
    assert replay(tmp_path) == 0
    # T1: a sell must be priced above the account's highest open buy; no row or NULL fails closed
    assert (tmp_path / "out" / "out.csv").read_text(encoding="utf-8") == (
        "order_id,event,verdict,rules\n"
        "10,NEW,ACCEPT,\n11,NEW,REJECT,T1\n12,NEW,REJECT,T1\n13,NEW,REJECT,T1\n"
        "14,NEW,ACCEPT,\n15,NEW,ACCEPT,\n10,FILL,APPLIED,\n"
    )
    state = tmp_path / "out" / "state"
    assert (state / "account_info.csv").read_text(encoding="utf-8") == (
        "account_id,available_balance,total_balance\n"
    )
    assert (state / "account_ticket_info.csv").read_text(encoding="utf-8") == (
        "account_id,ticket_id,avail_quantity,total_quantity,avg_price,buy_top_price,sell_low_price\n"
        "1,600000,,,,100,\n1,600036,,,,,\n2,600000,,,,300,\n"
    )


# ----------------------------------------------------------------------------- bad input

BAD_INPUTS: dict[str, tuple[str, str | bytes, str, str]] = {
    # name: (file to write relative to the case, its text, path:line of the error, message part)
    "unknown table file": ("data/nope.csv", "a\n1\n", "data/nope.csv:0", "no table named 'nope'"),
    "events header": ("events.csv", "event,order_id\nNEW,1\n", "events.csv:1", "the header must be"),
    "unknown column": ("data/acct.csv", "account_id,bogus\n1,2\n", "data/acct.csv:1", "no column 'bogus'"),
    "duplicate column": (
        "data/acct.csv",
        "account_id,balance,balance\n1,2,3\n",
        "data/acct.csv:1",
        "appears twice",
    ),
    "not an integer": (
        "data/acct.csv",
        "account_id,balance\n1,5\n2,12x\n",
        "data/acct.csv:3",
        "'12x' is not an integer",
    ),
    "INT out of range": (
        "data/acct.csv",
        "account_id\n2147483648\n",
        "data/acct.csv:2",
        "2147483648 does not fit INT",
    ),
    "INT8 out of range": (
        "events.csv",
        f"{EVENT_HEADER}\nNEW,1,1,,0,9223372036854775808,1,,,1\n",
        "events.csv:2",
        "does not fit INT8",
    ),
    "CHAR too long": (
        "events.csv",
        f"{EVENT_HEADER}\nNEW,1,1,ABCDEFGHIJKLMNOPQ,0,1,1,,,1\n",
        "events.csv:2",
        "longer than CHAR(16)",
    ),
    "CHAR too long in data": (
        "data/acct.csv",
        "account_id,name\n1,abcdefghijklmnopq\n",
        "data/acct.csv:2",
        "longer than CHAR(16)",
    ),
    "bad event name": (
        "events.csv",
        f"{EVENT_HEADER}\nNEW,1,1,,0,1,1,,,1\nNEWS,1,1,,0,1,1,,,1\n",
        "events.csv:3",
        "unknown event 'NEWS'",
    ),
    "field count": (
        "events.csv",
        f"{EVENT_HEADER}\nNEW,1,1,,0,1,1,,\n",
        "events.csv:2",
        "expected 10 fields, got 9",
    ),
    "duplicate key": (
        "data/acct.csv",
        "account_id,balance\n1,5\n2,6\n1,7\n",
        "data/acct.csv:4",
        "duplicate key account_id=1 in table acct (also on line 2)",
    ),
    "NOT NULL empty": (
        "data/acct.csv",
        "account_id,balance\n,5\n",
        "data/acct.csv:2",
        "account_id is NOT NULL",
    ),
    "not UTF-8": (
        "events.csv",
        f"{EVENT_HEADER}\nNEW,1,1,,0,1,1,,,1\n".encode() + b"NEW,2,1,\xff,0,1,1,,,1\n",
        "events.csv:3",
        "not UTF-8",
    ),
    "empty events file": ("events.csv", "", "events.csv:1", "empty file"),
    "empty data file": ("data/acct.csv", "", "data/acct.csv:1", "empty file"),
    "data field count": (
        "data/acct.csv",
        "account_id,balance\n1,2\n3\n",
        "data/acct.csv:3",
        "expected 2 fields, got 1",
    ),
    "unterminated quote": ("events.csv", f'{EVENT_HEADER}\nNEW,"1,1,,0,1,1,,,1\n', "events.csv:2", "bad CSV"),
}


@pytest.mark.parametrize("name", sorted(BAD_INPUTS))
def test_bad_input_is_one_line_exit_1_and_no_output(
    name: str, case: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rel, text, where, message = BAD_INPUTS[name]
    write(case / rel, text.encode() if isinstance(text, str) else text)
    assert replay(case) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"{case / where}: error: "), err[0]
    assert message in err[0]
    assert list((case / "out").iterdir()) == []  # no output, no temporary files


def test_a_directory_is_not_an_events_file(case: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (case / "events.csv").unlink()
    (case / "events.csv").mkdir()
    assert replay(case) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"{case / 'events.csv'}:0: error: cannot read: Is a directory"]
    assert list((case / "out").iterdir()) == []


@pytest.mark.parametrize("missing", ["events.csv", "data"])
def test_missing_input_is_an_error(missing: str, case: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = case / missing
    if target.is_dir():
        for p in target.iterdir():
            p.unlink()
        target.rmdir()
    else:
        target.unlink()
    assert replay(case) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [err[0]] and err[0].startswith(f"{target}:0: error: ")
    assert list((case / "out").iterdir()) == []


def test_failed_replay_leaves_an_earlier_output_alone(case: Path) -> None:
    assert replay(case) == 0
    write(case / "events.csv", f"{EVENT_HEADER}\nBOGUS,1,1,,0,1,1,,,1\n")
    assert replay(case) == 1
    assert (case / "out" / "out.csv").read_text(encoding="utf-8") == EXPECTED_OUT
    assert sorted(p.name for p in (case / "out").iterdir()) == ["out.csv", "state"]


# ----------------------------------------------------------------------------- dump format


def test_dump_rows_sorts_nulls_first_numbers_numerically_text_by_bytes() -> None:
    rows = [(10, "b"), (None, "z"), (-3, None), (2, "é"), (2, "z"), (2, "Z"), (2, None), (-3, "a")]
    assert dump_rows(rows) == [
        ["", "z"],
        ["-3", ""],
        ["-3", "a"],
        ["2", ""],
        ["2", "Z"],
        ["2", "z"],
        ["2", "é"],
        ["10", "b"],
    ]
    assert dump_csv(["a", "b"], [("x,y", 1), ('q"', None)]) == 'a,b\n"q""",\n"x,y",1\n'
