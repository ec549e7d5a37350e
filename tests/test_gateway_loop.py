"""The event loop setting: `riskgw serve` and `riskgw exchange-sim` run on the loop they are told
to (each says which one is running, read from the running loop itself), and on asyncio's own when
uvloop cannot be imported."""

from __future__ import annotations

import argparse
import asyncio
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from gateway_support import RULES, SMALL, Client, held_order, run_async, spawn, start_stack, trade_one_order
from test_gateway_backlog import test_a_stalled_exchange_bounds_memory_and_recovers as stalled_exchange_test

from riskgw.errors import UserError
from riskgw.exchange.sim import Behaviour
from riskgw.gateway.config import build_config
from riskgw.gateway.control import request
from riskgw.gateway.link import MemoryTransport
from riskgw.gateway.loops import loop_name, run
from riskgw.gateway.protocol import Frame, FrameReader, MsgType, encode
from riskgw.gateway.server import BrokerSession, Gateway

TOKEN = "loop-test-token"


def port_in(line: str) -> int:
    found = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
    assert found is not None, line
    return int(found.group(1))


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_serve_and_exchange_sim_run_on_the_configured_loop(tmp_path: Path, loop: str) -> None:
    data = SMALL.write(tmp_path / "data")
    procs: list[subprocess.Popen[str]] = []
    try:
        exch, line = spawn(
            "exchange-sim",
            "--listen",
            "127.0.0.1:0",
            "--fill",
            "1",
            "--partial",
            "0",
            "--reject",
            "0",
            "--event-loop",
            loop,
        )
        procs.append(exch)
        assert f"event loop {loop})" in line, line
        config = tmp_path / "gateway.toml"
        rules = ", ".join(f'"{p}"' for p in RULES)
        config.write_text(
            f'rules = [{rules}]\ndata = "{data}"\njournal = "{tmp_path / "j"}"\n'
            f'listen = "127.0.0.1:0"\nexchange = "127.0.0.1:{port_in(line)}"\n'
            f'event_loop = "{loop}"\n'
            '[users.alice]\npassword = "pw-a"\naccounts = [1]\n'
        )
        gw, line = spawn("serve", "--config", str(config))
        procs.append(gw)
        assert f", event loop {loop}, " in line, line
        trade_one_order(port_in(line))
        for proc in (gw, exch):
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=15) == 0
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_status_names_the_loop_running(tmp_path: Path) -> None:
    async def script() -> str:
        stack = await start_stack(tmp_path, Behaviour(), control=("127.0.0.1", 0), control_token=TOKEN)
        try:
            answer = await request("127.0.0.1", stack.running.control_port, {"token": TOKEN, "cmd": "status"})
            assert answer["event_loop"] == loop_name(asyncio.get_running_loop())
            return str(answer["event_loop"])
        finally:
            await stack.close()

    logged: list[str] = []
    assert run(script(), "uvloop", logged.append) == "uvloop"
    assert run(script(), "asyncio", logged.append) == "asyncio"
    assert logged == []


def test_without_uvloop_the_gateway_runs_on_asyncio(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # `import uvloop` raises ImportError

    async def script() -> str:
        stack = await start_stack(tmp_path, Behaviour())
        try:
            c = await stack.broker()
            c.send(MsgType.NEW_ORDER, **held_order(1, account=1))
            await c.recv_type(MsgType.ACCEPTED)
            await c.close()
            return str(stack.gateway.status()["event_loop"])
        finally:
            await stack.close()

    logged: list[str] = []
    assert run(script(), "uvloop", logged.append) == "asyncio"
    assert len(logged) == 1 and logged[0].startswith("event loop asyncio: uvloop cannot be imported"), logged


def serve_args(**given: object) -> argparse.Namespace:
    names = ["config", "rules", "listen", "exchange", "card", "data", "journal", "heartbeat_ms", "user"]
    names += ["control", "metrics", "audit", "kill_file", "journal_sync", "event_loop"]
    base: dict[str, object] = dict.fromkeys(names)
    base.update(rules=[str(RULES[0])], user=["a:b:*"], no_fsync=False)
    base.update(given)
    return argparse.Namespace(**base)


def test_the_event_loop_setting(tmp_path: Path) -> None:
    assert build_config(serve_args()).event_loop == "asyncio"  # the default
    config = tmp_path / "gateway.toml"
    config.write_text(f'rules = ["{RULES[0]}"]\nevent_loop = "uvloop"\n')
    assert build_config(serve_args(config=str(config), rules=None)).event_loop == "uvloop"
    # the flag overrides the file
    assert (
        build_config(serve_args(config=str(config), rules=None, event_loop="asyncio")).event_loop == "asyncio"
    )
    config.write_text(f'rules = ["{RULES[0]}"]\nevent_loop = "tokio"\n')
    with pytest.raises(UserError, match=r"^event_loop must be one of uvloop, asyncio, not 'tokio'$"):
        build_config(serve_args(config=str(config), rules=None))


def memory_session(gw: Gateway) -> tuple[BrokerSession, MemoryTransport]:
    """A broker session of `gw` on a transport that keeps what is written to it."""
    session = BrokerSession(gw)
    transport = MemoryTransport()
    session.connection_made(transport)
    return session, transport


def test_a_session_is_read_once_between_two_flushes(tmp_path: Path) -> None:
    """asyncio reads each connection at most once a turn; uvloop reads one again in the same turn
    while its reads fill the buffer. The gateway evens that out: a session read a second time
    before a flush is not read again until the flush, whatever the loop."""

    async def script() -> None:
        stack = await start_stack(tmp_path, Behaviour(fill=1.0, partial=0.0, reject=0.0))
        try:
            session, transport = memory_session(stack.gateway)
            session.data_received(encode(MsgType.LOGON, 1, username="alice", password="pw-a"))
            assert transport.reading
            session.data_received(encode(MsgType.NEW_ORDER, 2, **held_order(1, 1)))
            assert not transport.reading and session.paused_at is not None
            assert session.last_seq == 2  # what the second read brought is decided all the same
            await asyncio.sleep(0)  # the flush
            assert transport.reading and session.paused_at is None
            frames = [f for f in FrameReader().feed(b"".join(transport.out)) if isinstance(f, Frame)]
            assert [f.type for f in frames] == [MsgType.LOGON_ACK, MsgType.ACCEPTED]
            session.data_received(encode(MsgType.HEARTBEAT, 3))
            assert transport.reading  # the first read since the flush
            session.connection_lost(None)
        finally:
            await stack.close()

    run_async(script())


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_a_session_read_twice_with_nothing_queued_is_read_again_at_the_next_turn(
    tmp_path: Path, loop: str
) -> None:
    """Two reads that each bring part of a frame queue no reply, so no flush would come to end the
    hold of the second read: the hold schedules one itself. Without it the session would never be
    read again, and its LOGON would never be answered."""

    async def script() -> None:
        stack = await start_stack(tmp_path, Behaviour(fill=1.0, partial=0.0, reject=0.0))
        try:
            session, transport = memory_session(stack.gateway)
            logon = encode(MsgType.LOGON, 1, username="alice", password="pw-a")
            session.data_received(logon[:3])
            session.data_received(logon[3:6])
            assert not transport.reading and transport.out == []  # held, with nothing to send
            await asyncio.sleep(0)  # the flush its hold scheduled
            assert transport.reading and session.paused_at is None
            session.data_received(logon[6:])
            await asyncio.sleep(0)
            frames = [f for f in FrameReader().feed(b"".join(transport.out)) if isinstance(f, Frame)]
            assert [f.type for f in frames] == [MsgType.LOGON_ACK]
            assert transport.reading
            session.connection_lost(None)
        finally:
            await stack.close()

    run(script(), loop)


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_a_logon_sent_a_byte_at_a_time_is_answered(tmp_path: Path, loop: str) -> None:
    """A broker whose LOGON comes one byte per segment, right after it connects to a gateway just
    started: on a real socket the session is held and read again every second read (uvloop's
    transport and asyncio's), and the LOGON, then an order sent whole, are answered."""

    async def script() -> None:
        stack = await start_stack(tmp_path, Behaviour(fill=1.0, partial=0.0, reject=0.0))
        try:
            c = await Client.connect(stack.running.port)
            sock = c.writer.get_extra_info("socket")
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            c.seq = 1
            for byte in encode(MsgType.LOGON, 1, username="alice", password="pw-a"):
                c.raw(bytes([byte]))
                await c.writer.drain()
                await asyncio.sleep(0.002)
            await c.recv_type(MsgType.LOGON_ACK)
            c.send(MsgType.NEW_ORDER, **held_order(1, account=1))
            await c.recv_type(MsgType.ACCEPTED)
            assert all(not s._holds for s in stack.gateway.sessions)  # each hold ended at a flush
            await c.close()
        finally:
            await stack.close()

    run(script(), loop)


def test_a_stalled_exchange_bounds_memory_on_uvloop_too(tmp_path: Path) -> None:
    """The bounds of held replies and of the exchange's backlog hold on uvloop as on asyncio (its
    test runs on asyncio, the loop pytest's asyncio.run makes): here on uvloop's."""
    import uvloop

    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    try:
        stalled_exchange_test(tmp_path)
    finally:
        asyncio.set_event_loop_policy(None)
