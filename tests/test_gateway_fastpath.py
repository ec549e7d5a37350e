"""The order path's fast helpers agree with the general ones; journal_sync modes keep their promise."""

from __future__ import annotations

import asyncio
import os
import random
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from gateway_support import RULES, SMALL, Client, held_order, run_async
from test_gateway_cli import config_of

from riskgw.doe.isa import Event
from riskgw.engine.engine import event_inputs
from riskgw.errors import UserError
from riskgw.exchange.sim import Behaviour, start_exchange
from riskgw.gateway.fastpath import EXEC_FIELDS, clean_body, order_inputs
from riskgw.gateway.journal import scan
from riskgw.gateway.link import order_values
from riskgw.gateway.protocol import FrameReader, MsgType, decode, encode

pytestmark = pytest.mark.timeout(90)


def random_order(rnd: random.Random) -> dict[str, int | str]:
    return dict(
        order_id=rnd.randrange(-(2**63), 2**63),
        account_id=rnd.randrange(-(2**31), 2**31),
        direction=rnd.randrange(256),
        ticket_id=rnd.choice(["600001", "", "x" * 16, "é", "6000\u00e9\u00e9", "ABC DEF"]),
        price=rnd.randrange(-(2**63), 2**63),
        quantity=rnd.randrange(-(2**63), 2**63),
        ts=rnd.randrange(0, 2**63),
    )


def test_order_inputs_is_event_inputs() -> None:
    rnd = random.Random(7)
    for _ in range(2_000):
        values = random_order(rnd)
        if rnd.random() < 0.5:
            values.update(exec_price=rnd.randrange(-(2**63), 2**63), exec_quantity=rnd.randrange(10**6))
        if rnd.random() < 0.2:
            del values[rnd.choice(sorted(values))]
        assert order_inputs(values) == event_inputs(values)
    with pytest.raises(ValueError):
        order_inputs({"ticket_id": "a\0b"})
    with pytest.raises(TypeError):
        order_inputs({"price": "12"})


def test_frames_built_from_the_arriving_bytes_equal_encoded_ones() -> None:
    rnd = random.Random(8)
    for _ in range(500):
        values = random_order(rnd)
        frame = decode(encode(MsgType.NEW_ORDER, 5, **values))
        body = clean_body(frame, order_values(frame))
        assert body is not None
        assert encode(MsgType.ACCEPTED, 9, **order_values(frame))[8:] == body
        exec_body = EXEC_FIELDS.pack(11, 22)
        filled = encode(MsgType.FILL, 3, **order_values(frame), exec_price=11, exec_quantity=22)
        assert filled[8:] == body + exec_body
    # padding that is not zero, or a ticket that is not text up to its zeros: encoded afresh
    raw = bytearray(encode(MsgType.NEW_ORDER, 1, **held_order(1, account=1)))
    raw[8 + 13] = 7
    frame = decode(bytes(raw))
    assert clean_body(frame, order_values(frame)) is None
    raw = bytearray(encode(MsgType.NEW_ORDER, 1, **held_order(1, account=1)))
    raw[8 + 16 + 2] = 0xFF
    [read] = FrameReader().feed(bytes(raw))
    assert not isinstance(read, Exception)
    assert clean_body(read, order_values(read)) is None


def test_journal_sync_setting(tmp_path: Path) -> None:
    base = ("--rules", "x.sql", "--user", "a:b:1")
    assert config_of(*base).journal_sync == "commit"
    c = config_of(*base, "--journal-sync", "interval")
    assert c.journal_sync == "interval" and c.fsync
    c = config_of(*base, "--journal-sync", "none")
    assert c.journal_sync == "none" and not c.fsync
    assert config_of(*base, "--no-fsync").journal_sync == "none"
    toml = tmp_path / "g.toml"
    toml.write_text('journal_sync = "sometimes"\n')
    with pytest.raises(UserError, match="journal_sync must be one of commit, interval, none"):
        config_of("--config", str(toml), *base)
    toml.write_text('journal_sync = "interval"\njournal_sync_ms = 0\n')
    with pytest.raises(UserError, match="journal_sync_ms"):
        config_of("--config", str(toml), *base)


def test_interval_sync_loses_nothing_whose_reply_left_when_killed(tmp_path: Path) -> None:
    """kill -9 right after the replies: every ACCEPTED order is in the journal on restart."""
    data = SMALL.write(tmp_path / "data")
    journal = tmp_path / "gw.journal"

    async def script() -> list[int]:
        server, _ = await start_exchange("127.0.0.1", 0, Behaviour(fill=0.0, partial=0.0, reject=0.0))
        exch_port = server.sockets[0].getsockname()[1]
        argv = ["serve", "--rules", *map(str, RULES), "--data", str(data), "--journal", str(journal)]
        argv += ["--listen", "127.0.0.1:0", "--exchange", f"127.0.0.1:{exch_port}", "--user", "bob:pw-b:*"]
        argv += ["--journal-sync", "interval"]
        proc = subprocess.Popen(
            [sys.executable, "-m", "riskgw.cli", *argv],
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            assert proc.stderr is not None
            line = await asyncio.to_thread(proc.stderr.readline)
            found = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
            assert found, line
            broker = await Client.connect(int(found.group(1)))
            broker.send(MsgType.LOGON, username="bob", password="pw-b")
            await broker.recv_type(MsgType.LOGON_ACK)
            for i in range(40):
                broker.send(MsgType.NEW_ORDER, **held_order(500 + i, account=i % 19, k=i // 19))
            accepted = [(await broker.recv_type(MsgType.ACCEPTED))["order_id"] for _ in range(40)]
            proc.send_signal(signal.SIGKILL)
            await broker.close()
        finally:
            proc.kill()
            proc.wait()
            server.close()
        return accepted

    accepted = run_async(script())
    journaled = [e.inputs[0] for e in scan(journal).entries if e.event is Event.NEW]
    assert journaled == accepted
