"""`riskgw replay --diff OLD NEW`: the what-if of a rule change on recorded events.

DIFF.csv's format is checked outside this repository, so expected files are written out in full.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from riskgw.cli import main
from riskgw.doe.compiler import compile_files
from riskgw.engine.csvdata import read_events
from riskgw.engine.engine import Engine
from riskgw.gateway.journal import JournalHeader, open_journal

EVENT_HEADER = "event,order_id,account_id,ticket_id,direction,price,quantity,exec_price,exec_quantity,ts"

OLD = """
create table acct
(
    account_id  INT   not null ,
    balance     INT8  null     ,
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
"""

# NEW: a per-order cap read from a new column, and Positive renamed.
NEW = """
create table acct
(
    account_id  INT   not null ,
    balance     INT8  null     ,
    max_qty     INT8  null     ,
)

Rule Funds (
    trade_order.price * trade_order.quantity <=
    (select balance from acct where account_id = trade_order.account_id)
    where trade_order.direction = 0
)

Rule QuantityPositive ( trade_order.quantity > 0 )

Rule MaxQty (
    trade_order.quantity <= coalesce((select max_qty from acct where account_id = trade_order.account_id), 0)
)

create trigger on_accept after accept on trade_order when trade_order.direction = 0
begin
    update acct set balance = balance - trade_order.price * trade_order.quantity
     where account_id = trade_order.account_id;
end;
"""

ACCT = "account_id,balance,max_qty\n1,1000,60\n2,100,\n"
# Order 3 is accepted by OLD only, which leaves account 1 less cash under OLD than under NEW: so
# order 4 is rejected by OLD (funds) and accepted by NEW, though both versions agree on its rules.
EVENTS = f"""{EVENT_HEADER}
NEW,1,1,AAA,0,10,50,,,1
NEW,2,1,AAA,0,1,0,,,2
NEW,3,1,AAA,0,5,80,,,3
NEW,4,1,AAA,0,10,40,,,4
FILL,1,1,AAA,0,10,50,10,50,5
NEW,5,2,AAA,1,1,1,,,6
NEW,6,2,AAA,0,1,1,,,7
"""
EXPECTED_DIFF = """order_id,old_verdict,new_verdict,old_rules,new_rules
2,REJECT,REJECT,Positive,QuantityPositive
3,ACCEPT,REJECT,,MaxQty
4,REJECT,ACCEPT,Funds,
5,ACCEPT,REJECT,,MaxQty
6,ACCEPT,REJECT,,MaxQty
"""
EXPECTED_SUMMARY = """rule              old  new  newly failing  no longer failing
Funds               1    0              0                  1
Positive            1    -              0                  1
QuantityPositive    -    1              1                  0
MaxQty              -    3              3                  0
6 new orders, 5 decided differently: 3 now rejected, 1 now accepted, 1 rejected by other rules
"""


@pytest.fixture
def case(tmp_path: Path) -> Path:
    (tmp_path / "old.sql").write_text(OLD, encoding="utf-8")
    (tmp_path / "new.sql").write_text(NEW, encoding="utf-8")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "acct.csv").write_text(ACCT, encoding="utf-8")
    (tmp_path / "events.csv").write_text(EVENTS, encoding="utf-8")
    return tmp_path


def diff(d: Path, old: str = "old.sql", new: str = "new.sql", *source: str) -> int:
    src = list(source) or ["--events", str(d / "events.csv")]
    return main(
        [
            "replay",
            "--diff",
            str(d / old),
            str(d / new),
            "--data",
            str(d / "data"),
            *src,
            "--out",
            str(d / "diff.csv"),
        ]
    )


def test_diff_writes_the_orders_decided_differently(case: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert diff(case) == 0
    assert (case / "diff.csv").read_text(encoding="utf-8") == EXPECTED_DIFF
    out = capsys.readouterr()
    assert out.out == EXPECTED_SUMMARY
    assert out.err.splitlines()[-1].startswith("replayed 7 events twice in ")


def test_diff_of_a_version_with_itself_is_empty(case: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert diff(case, "new.sql", "new.sql") == 0
    assert (case / "diff.csv").read_text(
        encoding="utf-8"
    ) == "order_id,old_verdict,new_verdict,old_rules,new_rules\n"
    assert "6 new orders, 0 decided differently" in capsys.readouterr().out


def test_diff_reads_rule_directories_in_name_order(case: Path) -> None:
    # The tables in one file, the rules and trigger in another: only name order compiles them in
    # the same rule order as the single file.
    for name, text in (("old", OLD), ("new", NEW)):
        d = case / f"{name}_rules"
        d.mkdir()
        table_end = text.index("Rule ")
        (d / "00_tables.sql").write_text(text[:table_end], encoding="utf-8")
        (d / "10_rules.sql").write_text(text[table_end:], encoding="utf-8")
        (d / "notes.txt").write_text("not a rule file", encoding="utf-8")
    assert diff(case, "old_rules", "new_rules") == 0
    assert (case / "diff.csv").read_text(encoding="utf-8") == EXPECTED_DIFF
    # a quoted glob picks files the same way
    assert diff(case, "old_rules/*.sql", "new_rules/[01]*.sql") == 0
    assert (case / "diff.csv").read_text(encoding="utf-8") == EXPECTED_DIFF
    assert diff(case, "old_rules/*.sql", "nothing/*.sql") == 1


def test_diff_reads_a_gateway_journal(case: Path) -> None:
    """The same events from a journal (as `riskgw serve` writes it) give the same diff."""
    image = compile_files([case / "old.sql"]).image
    engine = Engine(image)
    opened = open_journal(
        case / "gw.journal", JournalHeader(image.digest(), engine.state_hash()), fsync=False
    )
    for ev in read_events(case / "events.csv"):
        opened.journal.append(ev.event, ev.inputs, engine.process(ev.event, ev.inputs))
    opened.journal.close()
    assert diff(case, "old.sql", "new.sql", "--journal", str(case / "gw.journal")) == 0
    assert (case / "diff.csv").read_text(encoding="utf-8") == EXPECTED_DIFF
    # a directory: its *.journal files
    (case / "journals").mkdir()
    (case / "gw.journal").rename(case / "journals" / "day1.journal")
    assert diff(case, "old.sql", "new.sql", "--journal", str(case / "journals")) == 0
    assert (case / "diff.csv").read_text(encoding="utf-8") == EXPECTED_DIFF


def test_plain_replay_reads_a_journal_too(case: Path) -> None:
    image = compile_files([case / "new.sql"]).image
    engine = Engine(image)
    opened = open_journal(
        case / "gw.journal", JournalHeader(image.digest(), engine.state_hash()), fsync=False
    )
    for ev in read_events(case / "events.csv"):
        opened.journal.append(ev.event, ev.inputs, engine.process(ev.event, ev.inputs))
    opened.journal.close()
    base = ["replay", str(case / "new.sql"), "--data", str(case / "data")]
    assert main([*base, "--events", str(case / "events.csv"), "--out", str(case / "a.csv")]) == 0
    assert main([*base, "--journal", str(case / "gw.journal"), "--out", str(case / "b.csv")]) == 0
    assert (case / "a.csv").read_text() == (case / "b.csv").read_text()


def test_a_data_column_unknown_to_both_versions_is_still_an_error(
    case: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (case / "data" / "acct.csv").write_text("account_id,bogus\n1,2\n", encoding="utf-8")
    assert diff(case) == 1
    assert "acct.csv:1: error: table acct has no column 'bogus'" in capsys.readouterr().err
    assert not (case / "diff.csv").exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["x.sql", "--diff", "a", "b"], "give either RULES... or --diff OLD NEW, not both"),
        (["--diff", "a", "b", "--dump-state", "s"], "--dump-state is not available with --diff"),
        ([], "no rules"),
    ],
)
def test_diff_usage_errors(
    case: Path, argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["replay", *argv, "--events", str(case / "events.csv"), "--out", str(case / "o.csv")]) == 1
    err = capsys.readouterr().err
    assert message in err and len(err.splitlines()) == 1


def test_events_and_journal_exclude_each_other(case: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["replay", "--diff", "a", "b", "--events", "e", "--journal", "j", "--out", "o"])
    assert exc.value.code == 2
