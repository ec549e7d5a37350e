"""A restart from a snapshot and one from the journal alone give the same book and the same login
per open order (wire orders, FIX orders, orders of a version 1 journal, orders sent again), and
after a kill -9 the answers of open orders reach their login's next session."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import shutil
import signal
import struct
import subprocess
import zlib
from pathlib import Path
from typing import Any

import pytest
from fix_support import connect, fix_config, fix_port, fix_stack
from gateway_support import (
    RULES,
    SMALL,
    Client,
    Stack,
    held_order,
    run_async,
    snapshot_now,
    spawn,
    start_stack,
    until,
)
from test_gateway_snapshot import MANUAL, copy_journal, state_of

from riskgw.doe.isa import Event
from riskgw.exchange.sim import Behaviour, start_exchange
from riskgw.gateway.config import GatewayConfig, User
from riskgw.gateway.journal import encode_entry, encode_header, scan
from riskgw.gateway.protocol import MsgType, encode
from riskgw.gateway.serve import start_gateway

pytestmark = pytest.mark.timeout(120)

KEEP = Behaviour(fill=0.0, partial=0.0, reject=0.0, cancel_on_disconnect=False)
KEEPER = User("keeper", "pw-k", frozenset({5}), cancel_on_disconnect=False)
OPS = User("ops", "pw-o", None, cancel_on_disconnect=False)  # a second login that may trade account 5
ALICE = User("alice", "pw-a", frozenset({1, 2}), cancel_on_disconnect=False)
USERS = {"keeper": KEEPER, "ops": OPS, "alice": ALICE}


def fix_keeping() -> Any:
    """fix_config() with BROKER1's orders left open when it disconnects."""
    fix = fix_config()
    fix.sessions[0] = dataclasses.replace(fix.sessions[0], cancel_on_disconnect=False)
    return fix


def copy_all(config: GatewayConfig, target: Path) -> GatewayConfig:
    """copy_journal, plus the FIX store (its order map) when FIX is configured."""
    other = copy_journal(config, target)
    if config.fix is not None:
        src = config.fix.store_path(config.journal)
        if src.exists():
            shutil.copytree(src, config.fix.store_path(other.journal))
    return other


async def both_restarts(stack: Stack, tmp_path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The state right after a restart from the newest snapshot, and after one from the journal alone."""
    await stack.running.stop()
    full_config = copy_all(stack.config, tmp_path / "full")
    await stack.restart()
    assert stack.running.snapshot is not None
    from_snapshot = state_of(stack.gateway)
    full = await start_gateway(full_config, lambda text: None)
    assert full.snapshot is None
    from_journal = state_of(full.gateway)
    await full.stop()
    return from_snapshot, from_journal


async def gone(stack: Stack, name: str) -> None:
    await until(
        lambda: not any(s.user and s.user.name == name for s in stack.gateway.sessions), f"{name} gone"
    )


def test_an_order_sent_again_by_another_login_follows_the_same_login_after_either_restart(
    tmp_path: Path,
) -> None:
    """keeper's order, its session gone, sent again by ops: ops's session has it while it is on, and
    the order keeps the login the journal has for it, so a FILL after either restart waits for
    keeper."""
    order = held_order(1, account=5)
    fill = encode(MsgType.FILL, 10_000, **order, exec_price=order["price"], exec_quantity=40)

    async def waiting_after_fill(gw: Any) -> dict[str, int]:
        gw.exchange.data_received(fill)
        await until(lambda: gw.open[(5, 1)].remaining == 60, "the fill")
        return dict(gw.follow.waiting())

    async def script() -> tuple[Any, Any, Any, Any]:
        stack = await start_stack(tmp_path, KEEP, users=dict(USERS), snapshots=MANUAL)
        keeper = await stack.broker("keeper")
        keeper.send(MsgType.NEW_ORDER, **order)
        await keeper.recv_type(MsgType.ACCEPTED)
        await keeper.close()
        await gone(stack, "keeper")
        ops = await stack.broker("ops")
        ops.send(MsgType.NEW_ORDER, **order)  # sent again: the recorded ACCEPTED, the order now ops's
        await ops.recv_type(MsgType.ACCEPTED)
        taken = stack.gateway.open[(5, 1)].session
        assert taken is not None and taken.user is not None and taken.user.name == "ops"
        await ops.close()
        await gone(stack, "ops")
        await snapshot_now(stack.gateway)
        await stack.running.stop()
        full_config = copy_all(stack.config, tmp_path / "full")
        await stack.restart()
        assert stack.running.snapshot is not None
        from_snapshot = state_of(stack.gateway)
        kept_snapshot = await waiting_after_fill(stack.gateway)
        await stack.running.stop()
        full = await start_gateway(full_config, lambda text: None)
        assert full.snapshot is None
        from_journal = state_of(full.gateway)
        kept_journal = await waiting_after_fill(full.gateway)
        await full.stop()
        stack.exchange_server.close()
        return from_snapshot, from_journal, kept_snapshot, kept_journal

    from_snapshot, from_journal, kept_snapshot, kept_journal = run_async(script(), 60)
    assert kept_snapshot == kept_journal == {"keeper": 1}
    assert from_snapshot == from_journal and from_snapshot["open"][(5, 1)][2] == "keeper"


def test_a_snapshot_of_wire_and_fix_orders_restarts_as_the_journal_does(tmp_path: Path) -> None:
    async def script() -> tuple[dict[str, Any], dict[str, Any]]:
        async with fix_stack(tmp_path, KEEP, users=dict(USERS), snapshots=MANUAL, fix=fix_keeping()) as stack:
            keeper, alice = await stack.broker("keeper"), await stack.broker("alice")
            keeper.send(MsgType.NEW_ORDER, **held_order(1, account=5))
            await keeper.recv_type(MsgType.ACCEPTED)
            alice.send(MsgType.NEW_ORDER, **held_order(2, account=1))
            await alice.recv_type(MsgType.ACCEPTED)
            broker = await connect(tmp_path, fix_port(stack))
            broker.held("f1", account=3)
            await broker.report("0", T11="f1")
            await snapshot_now(stack.gateway)
            # after the snapshot: more of each, replayed from the journal's tail
            keeper.send(MsgType.NEW_ORDER, **held_order(3, account=5, k=1))
            await keeper.recv_type(MsgType.ACCEPTED)
            broker.held("f2", account=3, k=1)
            await broker.report("0", T11="f2")
            await broker.logout()
            await keeper.close()
            await alice.close()
            states = await both_restarts(stack, tmp_path)
        return states

    from_snapshot, from_journal = run_async(script(), 90)
    logins = {k: v[2] for k, v in from_snapshot["open"].items()}
    assert logins[(5, 1)] == logins[(5, 3)] == "keeper" and logins[(1, 2)] == "alice"
    assert sorted(v for k, v in logins.items() if k[0] == 3) == ["BROKER1", "BROKER1"]  # the FIX orders
    assert from_snapshot == from_journal


def _as_version_1(journal: Path) -> None:
    """Rewrite a journal as a version 1 one with the same events (no logins)."""
    found = scan(journal)
    assert found.header is not None and found.problem is None and not found.marks
    payloads = [encode_header(found.header, 1)]
    payloads += [encode_entry(e.event, e.inputs, e.decision) for e in found.entries]
    journal.write_bytes(b"".join(struct.pack("<II", len(p), zlib.crc32(p)) + p for p in payloads))


def test_a_version_1_journal_appended_to_restarts_from_a_snapshot_as_from_the_journal(
    tmp_path: Path,
) -> None:
    """An order restored from a v1 journal (no login), a FIX order, and a wire order sent after the
    upgrade (journaled without its login, since the journal stays version 1, and so kept in no
    snapshot of it either)."""

    async def script() -> tuple[dict[str, Any], dict[str, Any]]:
        async with fix_stack(tmp_path, KEEP, users=dict(USERS), snapshots=MANUAL, fix=fix_keeping()) as stack:
            keeper = await stack.broker("keeper")
            keeper.send(MsgType.NEW_ORDER, **held_order(1, account=5))
            await keeper.recv_type(MsgType.ACCEPTED)
            await keeper.close()
            await stack.running.stop()
            _as_version_1(stack.config.journal)
            logged = await stack.restart()
            assert any("is version 1 (written before logins were recorded)" in line for line in logged)
            assert stack.gateway.journal.version == 1
            assert stack.gateway.open[(5, 1)].user is None
            keeper = await stack.broker("keeper")
            assert stack.gateway.open[(5, 1)].user is None  # v1: no login to adopt it by
            keeper.send(MsgType.NEW_ORDER, **held_order(2, account=5, k=1))
            await keeper.recv_type(MsgType.ACCEPTED)
            broker = await connect(tmp_path, fix_port(stack))
            broker.held("f1", account=3)
            await broker.report("0", T11="f1")
            await snapshot_now(stack.gateway)
            await broker.logout()
            await keeper.close()
            assert scan(stack.config.journal).version == 1
            states = await both_restarts(stack, tmp_path)
        return states

    from_snapshot, from_journal = run_async(script(), 90)
    logins = {k: v[2] for k, v in from_snapshot["open"].items()}
    assert logins[(5, 1)] is None and logins[(5, 2)] is None
    assert [v for k, v in logins.items() if k[0] == 3] == ["BROKER1"]
    assert from_snapshot == from_journal


@pytest.mark.parametrize("into_login", [1, 3])  # bytes of the last NEW's login trailer left
def test_a_tear_in_a_login_after_a_snapshot_is_cut_on_either_restart(tmp_path: Path, into_login: int) -> None:
    async def script() -> tuple[dict[str, Any], dict[str, Any], list[str]]:
        stack = await start_stack(tmp_path, KEEP, users=dict(USERS), snapshots=MANUAL)
        keeper = await stack.broker("keeper")
        for i in (1, 2, 3):
            keeper.send(MsgType.NEW_ORDER, **held_order(i, account=5, k=i))
            await keeper.recv_type(MsgType.ACCEPTED)
            if i == 1:
                await snapshot_now(stack.gateway)
        await keeper.close()
        await stack.running.stop()
        journal = stack.config.journal
        size = journal.stat().st_size
        last = len(b"keeper") + 1  # the trailer ends the file: u8 length, "keeper"
        with journal.open("r+b") as f:
            f.truncate(size - last + into_login)
        full_config = copy_all(stack.config, tmp_path / "full")
        logged = await stack.restart()
        assert stack.running.snapshot is not None and stack.running.replayed == 1
        from_snapshot = state_of(stack.gateway)
        await stack.running.stop()
        full = await start_gateway(full_config, lambda text: None)
        from_journal = state_of(full.gateway)
        await full.stop()
        stack.exchange_server.close()
        return from_snapshot, from_journal, logged

    from_snapshot, from_journal, logged = run_async(script(), 60)
    assert any("cut" in line and "after 2 events" in line for line in logged), logged
    assert {k: v[2] for k, v in from_snapshot["open"].items()} == {(5, 1): "keeper", (5, 2): "keeper"}
    assert from_snapshot == from_journal


async def serve(argv: list[str]) -> tuple[subprocess.Popen[str], int]:
    """`riskgw serve` in its own process, and its broker port (the exchange runs on this loop)."""
    proc, line = await asyncio.to_thread(spawn, *argv)
    found = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
    assert found, line
    return proc, int(found.group(1))


async def logon(port: int) -> Client:
    c = await Client.connect(port)
    c.send(MsgType.LOGON, username="keeper", password="pw-k")
    await c.recv_type(MsgType.LOGON_ACK)
    return c


def test_after_kill_9_open_orders_answers_reach_the_logins_next_session(tmp_path: Path) -> None:
    data = SMALL.write(tmp_path / "data")
    journal = tmp_path / "gw.journal"

    async def script() -> list[tuple[int, int]]:
        # the exchange drops a closed connection's orders: the restarted gateway learns they are gone
        server, _ = await start_exchange("127.0.0.1", 0, Behaviour(fill=0.0, partial=0.0, reject=0.0))
        exch = server.sockets[0].getsockname()[1]
        argv = ["serve", "--rules", *map(str, RULES), "--data", str(data), "--journal", str(journal)]
        argv += ["--listen", "127.0.0.1:0", "--exchange", f"127.0.0.1:{exch}", "--user", "keeper:pw-k:5"]
        procs = []
        try:
            proc, port = await serve(argv)
            procs.append(proc)
            keeper = await logon(port)
            for i in (1, 2, 3):
                keeper.send(MsgType.NEW_ORDER, **held_order(i, account=5, k=i))
            assert [(await keeper.recv_type(MsgType.ACCEPTED))["order_id"] for _ in range(3)] == [1, 2, 3]
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            await keeper.close()
            assert [e.sender for e in scan(journal).entries if e.event is Event.NEW] == ["keeper"] * 3
            proc, port = await serve(argv)
            procs.append(proc)
            again = await logon(port)
            got = [await again.recv_type(MsgType.CANCELLED) for _ in range(3)]
            await again.close()
            return sorted((f["account_id"], f["order_id"]) for f in got)
        finally:
            for p in procs:
                p.kill()
                p.wait()
            server.close()

    assert run_async(script(), 60) == [(5, 1), (5, 2), (5, 3)]
