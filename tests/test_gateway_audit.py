"""The SQLite audit store and `riskgw log query`."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from gateway_support import held_order, run_async, start_stack

from riskgw.cli import main as cli_main
from riskgw.exchange.sim import Behaviour
from riskgw.gateway.journal import scan
from riskgw.gateway.protocol import MsgType

pytestmark = pytest.mark.timeout(60)


def trade(tmp_path: Path) -> Path:
    db = tmp_path / "audit.sqlite"

    async def script() -> None:
        stack = await start_stack(tmp_path, Behaviour(fill=1.0, partial=0.0, reject=0.0), audit=db)
        broker = await stack.broker("alice")
        broker.send(MsgType.NEW_ORDER, **held_order(1, account=1))
        await broker.recv_type(MsgType.ACCEPTED)
        await broker.recv_type(MsgType.FILL)
        broker.send(MsgType.NEW_ORDER, **held_order(2, account=2, price=0))
        await broker.recv_type(MsgType.REJECTED)
        broker.send(MsgType.NEW_ORDER, **held_order(3, account=5))
        await broker.recv_type(MsgType.REJECTED)
        broker.raw(b"\x02" * 9)
        broker.send(MsgType.CANCEL_REQUEST, order_id=77, account_id=1)
        await broker.recv_type(MsgType.REJECTED)
        await broker.recv_type(MsgType.REJECTED)
        await broker.close()
        await stack.close()

    run_async(script())
    return db


def test_every_decision_lands_in_the_audit_store(tmp_path: Path) -> None:
    db = trade(tmp_path)
    columns = "source, event, order_id, account_id, verdict, reason, rules, exec_quantity"
    with closing(sqlite3.connect(db)) as conn:
        rows = conn.execute(f"SELECT {columns} FROM decisions ORDER BY seq").fetchall()
    assert rows[0] == ("alice", "NEW", 1, 1, "ACCEPT", "", "", None)
    assert rows[1] == ("exchange", "FILL", 1, 1, "APPLIED", "", "", 100)
    assert rows[2][:6] == ("alice", "NEW", 2, 2, "REJECT", "RULE") and "PricePositive" in rows[2][6].split(
        ";"
    )
    assert rows[3] == ("alice", "NEW", 3, 5, "REJECT", "NOT_PERMITTED", "", None)
    assert rows[4] == ("alice", "GARBAGE", None, None, "REJECT", "PROTOCOL", "", None)
    assert rows[5] == ("alice", "CANCEL_REQUEST", 77, 1, "REJECT", "UNKNOWN_ORDER", "", None)
    assert len(rows) == 6
    card_rows = [r for r in rows if r[5] in ("", "RULE")]  # the decisions the card made
    assert len(card_rows) == len(scan(tmp_path / "gw.journal").entries)


def test_log_query_prints_csv_and_refuses_writes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = trade(tmp_path)
    sql = (
        "SELECT reason, count(*) AS n FROM decisions WHERE verdict = 'REJECT' GROUP BY reason ORDER BY reason"
    )
    assert cli_main(["log", "query", sql, "--db", str(db)]) == 0
    assert capsys.readouterr().out == "reason,n\nNOT_PERMITTED,1\nPROTOCOL,1\nRULE,1\nUNKNOWN_ORDER,1\n"
    assert cli_main(["log", "query", "DELETE FROM decisions", "--db", str(db)]) == 1
    assert "readonly" in capsys.readouterr().err
    assert cli_main(["log", "query", "SELEKT 1", "--db", str(db)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("riskgw: error: query failed:") and "\n" not in err
    assert cli_main(["log", "query", "SELECT 1", "--db", str(tmp_path / "none.sqlite")]) == 1
    assert "no audit store" in capsys.readouterr().err
