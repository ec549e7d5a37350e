"""A full journal disk: `riskgw serve` under a file-size limit (RLIMIT_FSIZE, as a full disk would
refuse the write) stops accepting orders, tells brokers and the operator why, and loses nothing
whose reply left."""

from __future__ import annotations

import asyncio
import os
import re
import resource
import subprocess
import sys
from pathlib import Path

import pytest
from gateway_support import RULES, SMALL, Client, held_order, run_async

from riskgw.doe.isa import Event
from riskgw.exchange.sim import Behaviour, start_exchange
from riskgw.gateway.journal import scan
from riskgw.gateway.protocol import MsgType, Reason

pytestmark = pytest.mark.timeout(90)
LIMIT = 16 * 1024  # bytes the journal may grow to: room for a few dozen events


def _limit_file_size() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, LIMIT))


def test_a_full_journal_disk_stops_orders_and_says_why(tmp_path: Path) -> None:
    data = SMALL.write(tmp_path / "data")
    journal = tmp_path / "gw.journal"

    async def script() -> tuple[list[int], subprocess.Popen[str]]:
        server, exchange = await start_exchange("127.0.0.1", 0, Behaviour(fill=0.0, partial=0.0, reject=0.0))
        exch_port = server.sockets[0].getsockname()[1]
        argv = ["serve", "--rules", *map(str, RULES), "--data", str(data), "--journal", str(journal)]
        argv += ["--listen", "127.0.0.1:0", "--exchange", f"127.0.0.1:{exch_port}", "--user", "bob:pw-b:*"]
        proc = subprocess.Popen(
            [sys.executable, "-m", "riskgw.cli", *argv],
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            preexec_fn=_limit_file_size,
        )
        assert proc.stderr is not None
        line = await asyncio.to_thread(proc.stderr.readline)
        found = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
        assert found, line
        broker = await Client.connect(int(found.group(1)))
        broker.send(MsgType.LOGON, username="bob", password="pw-b")
        await broker.recv_type(MsgType.LOGON_ACK)
        accepted: list[int] = []
        for i in range(1_000):
            # resting orders spread over accounts and securities, so every one passes the rules
            broker.send(MsgType.NEW_ORDER, **held_order(1_000 + i, account=i % 19, k=i // 19 % 16))
            frame = await broker.recv()
            if frame.type is MsgType.LOGOUT:
                assert frame["reason"] == Reason.JOURNAL_FAILED
                break
            assert frame.type is MsgType.ACCEPTED, frame
            accepted.append(frame["order_id"])
        else:
            raise AssertionError("the journal never filled up")
        with pytest.raises(ConnectionError):
            await broker.recv()
        await broker.close()
        assert exchange.orders_seen == len(accepted)  # the order that hit the full disk never left
        server.close()
        return accepted, proc

    accepted, proc = run_async(script(), timeout=60)
    assert proc.wait(timeout=30) == 1
    assert proc.stderr is not None
    err = proc.stderr.read().strip().splitlines()
    assert any("cannot write the journal" in line and "File too large" in line for line in err)
    why = "[Errno 27] File too large"
    assert err[-1] == f"riskgw: error: stopped because the journal could not be written: {why}"
    assert 0 < len(accepted) < 1_000
    # every order whose ACCEPTED left is in the journal (the valid prefix a restart replays)
    found = scan(journal)
    journaled = [e.inputs[0] for e in found.entries if e.event is Event.NEW]
    assert journaled[: len(accepted)] == accepted
    assert os.path.getsize(journal) <= LIMIT
