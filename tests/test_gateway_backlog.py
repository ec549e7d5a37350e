"""An exchange that keeps its connection but stops reading: the gateway's memory stays bounded.

Past exchange_backlog_limit bytes the exchange has not read, new orders are refused with
EXCHANGE_BACKLOG; a session whose held replies pass held_replies_limit is not read from; repeated
cancels of one order are not queued twice; the exchange's answers are still processed. When the
exchange reads again everything waiting leaves, new orders are taken again, and every ACCEPTED
order has reached the exchange exactly once.
"""

from __future__ import annotations

import asyncio
import socket
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from gateway_support import RULES, SMALL, STEP, USERS, Client, StalledExchange, held_order, run_async

from riskgw.gateway.config import GatewayConfig
from riskgw.gateway.metrics import render
from riskgw.gateway.protocol import Frame, MsgType, Reason, encode
from riskgw.gateway.serve import Running, start_gateway
from riskgw.gateway.server import BrokerSession, ExchangeUplink, Gateway

pytestmark = pytest.mark.timeout(120)

LIMIT = 4 << 10  # exchange_backlog_limit: 64 forwarded orders
HELD = 5_000  # held_replies_limit: above one read's frames, so the backlog begins before the hold
READ_CHUNK = 256 << 10  # most an asyncio socket transport reads at once
NEW_ORDER_BYTES = len(encode(MsgType.NEW_ORDER, 1, **held_order(1, 1)))
CANCEL_BYTES = len(encode(MsgType.CANCEL_REQUEST, 1, order_id=1, account_id=1))


async def until(check: Callable[[], bool], what: str, gw: Gateway, timeout: float = STEP) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}: {gw.counters}, {gw.backlog_status()}")
        await asyncio.sleep(0.01)


async def answers(client: Client, n: int, timeout: float = STEP) -> list[Frame]:
    """The next n ACCEPTED / REJECTED frames (others are skipped)."""
    out: list[Frame] = []
    while len(out) < n:
        frame = await client.recv(timeout)
        if frame.type in (MsgType.ACCEPTED, MsgType.REJECTED):
            out.append(frame)
    return out


async def logon(port: int, user: str) -> Client:
    client = await Client.connect(port)
    client.send(MsgType.LOGON, username=user, password=USERS[user].password)
    await client.recv_type(MsgType.LOGON_ACK)
    return client


async def stalled_gateway(
    tmp_path: Path, logged: list[str], **settings: Any
) -> tuple[StalledExchange, socket.socket, Running]:
    """The gateway in front of an exchange that does not read, with small kernel buffers between."""
    SMALL.write(tmp_path / "data")
    exchange = StalledExchange()
    settings.setdefault("users", dict(USERS))
    settings.setdefault("exchange_backlog_limit", LIMIT)
    config = GatewayConfig(
        rules=list(RULES),
        listen=("127.0.0.1", 0),
        exchange=("127.0.0.1", exchange.port),
        data=tmp_path / "data",
        journal=tmp_path / "gw.journal",
        fsync=False,
        journal_sync="none",
        heartbeat_ms=60_000,  # the brokers here send no heartbeats
        **settings,
    )
    running = await start_gateway(config, logged.append)
    conn = await exchange.accept()
    uplink = running.gateway.exchange
    assert uplink is not None and uplink.transport is not None
    uplink.transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    return exchange, conn, running


def test_a_stalled_exchange_bounds_memory_and_recovers(tmp_path: Path) -> None:
    async def script() -> None:
        logged: list[str] = []
        exchange, conn, running = await stalled_gateway(tmp_path, logged, held_replies_limit=HELD)
        gw = running.gateway
        bob = await logon(running.port, "bob")
        alice = await logon(running.port, "alice")
        try:
            # bob: orders whose forwards pass the limit, then many more: refused, and held behind
            # his ACCEPTEDs, until he is no longer read from
            sent: dict[int, dict[str, Any]] = {}
            for order_id in range(1, 32_001):
                values = held_order(order_id, order_id % SMALL.n_accounts, k=order_id % 16)
                sent[order_id] = values
                bob.send(MsgType.NEW_ORDER, **values)
            await until(lambda: gw.backlog_since is not None, "the backlog to begin", gw)
            await until(lambda: bob_session(gw) in gw._held_back, "bob to be held back", gw)
            # bob is not read from: the gateway stops well short of his 32,000 orders
            await asyncio.sleep(0.3)
            status = gw.status()["exchange_backlog"]
            session = bob_session(gw)
            assert session.last_seq < bob.seq
            decided_before = session.last_seq - 1  # bob's orders are numbered from 1, after his LOGON
            assert status["refusing"] and status["sessions_not_read"] == 1
            # bounded: past the cap, what the reads of his since the last flush add (two at most:
            # one before it, one already due when it paused him); past the limit, the forwards of
            # the orders decided before the flush that found the backlog (one read's)
            reads = READ_CHUNK // NEW_ORDER_BYTES
            assert HELD < status["held_replies"] <= HELD + 2 * reads
            backlog = status["bytes"]
            assert LIMIT < backlog <= LIMIT + READ_CHUNK
            assert sum("the exchange is not reading" in line for line in logged) == 1

            # another broker's new order is refused at once, and says why; not run, not forwarded
            accepted_before = gw.counters.accepted
            refused_before = gw.rejects_by_reason["EXCHANGE_BACKLOG"]  # bob's
            alice.send(MsgType.NEW_ORDER, **held_order(900_001, 1))
            (refused,) = await answers(alice, 1)
            assert refused.type is MsgType.REJECTED and refused["reason"] == Reason.EXCHANGE_BACKLOG
            assert refused["order_id"] == 900_001
            assert gw.counters.accepted == accepted_before
            assert gw.rejects_by_reason["EXCHANGE_BACKLOG"] == refused_before + 1
            page = render(gw)
            assert "riskgw_exchange_backlog_refusing 1.0\n" in page
            assert f'riskgw_rejects_total{{reason="EXCHANGE_BACKLOG"}} {refused_before + 1}.0\n' in page
            assert "riskgw_sessions_not_read 1.0\n" in page

            # a cancel of an open order still goes out, once however often it is asked for
            open_key = max(k for k in gw.open if k[0] in (1, 2))  # alice's accounts
            for _ in range(500):
                alice.send(MsgType.CANCEL_REQUEST, order_id=open_key[1], account_id=open_key[0])
            await until(lambda: gw.counters.cancels_merged == 499, "the cancels to be merged", gw)
            assert uplink(gw).buffered == backlog + CANCEL_BYTES

            # the exchange's answers are still processed: it cancels an order it did receive
            # (the first forwards are in the kernel's buffers, in order)
            key = min(k for k in gw.open if k != open_key)
            order = gw.open[key]
            events = gw.counters.exchange_events
            await exchange.answer(
                conn, MsgType.CANCELLED, **order.values, exec_price=0, exec_quantity=order.remaining
            )
            await until(lambda: gw.counters.exchange_events == events + 1, "the exchange's cancel", gw)
            assert key not in gw.open
            assert uplink(gw).buffered == backlog + CANCEL_BYTES  # nothing new to forward

            # the exchange reads again: the backlog clears by itself, bob's replies leave and he
            # is read again; the rest of his orders are decided (the backlog may come and go while
            # they arrive 4,096 at a time at an exchange behind 8 KB of buffers)
            serving = asyncio.get_running_loop().create_task(exchange.serve(conn))
            got = await answers(bob, len(sent), timeout=60)
            await until(lambda: gw.backlog_since is None, "the backlog to clear", gw)
            assert "riskgw_exchange_backlog_refusing 0.0\n" in render(gw)
            assert not gw._held and not gw._held_back
            began = sum("the exchange is not reading" in line for line in logged)
            assert sum("has read its backlog" in line for line in logged) == began == gw.counters.backlogs
            by_id = Counter(f["order_id"] for f in got)
            assert sorted(by_id) == sorted(sent) and set(by_id.values()) == {1}, "an answer lost or repeated"
            accepted = {
                (sent[f["order_id"]]["account_id"], f["order_id"]) for f in got if f.type is MsgType.ACCEPTED
            }
            assert any(o > decided_before for _, o in accepted), "no order was taken after the backlog"
            refused_ids = [
                f["order_id"]
                for f in got
                if f.type is MsgType.REJECTED and f["reason"] == Reason.EXCHANGE_BACKLOG
            ]
            assert 0 < len(refused_ids) < decided_before
            # another broker's new order is taken again
            alice.send(MsgType.NEW_ORDER, **held_order(900_002, 2, k=1))
            (taken,) = await answers(alice, 1)
            assert taken.type is MsgType.ACCEPTED or taken["reason"] == Reason.RULE
            if taken.type is MsgType.ACCEPTED:
                accepted.add((2, 900_002))
            await until(lambda: all(exchange.orders[k] for k in accepted), "every forward to arrive", gw)
        finally:
            await bob.close()
            await alice.close()
            await running.stop()
        await asyncio.wait_for(serving, STEP)
        # every ACCEPTED order reached the exchange exactly once, and nothing else did
        assert set(exchange.orders) == accepted
        assert set(exchange.orders.values()) == {1}

    run_async(script(), timeout=110)


def bob_session(gw: Gateway) -> BrokerSession:
    (session,) = [s for s in gw.sessions if s.user is not None and s.user.name == "bob"]
    return session


def uplink(gw: Gateway) -> ExchangeUplink:
    """The gateway's connection to the exchange, which these tests open before any order."""
    if gw.exchange is None:
        raise AssertionError("the gateway has no exchange connection")
    return gw.exchange


def test_backlog_settings_are_checked(tmp_path: Path) -> None:
    import argparse

    from riskgw.errors import UserError
    from riskgw.gateway.config import build_config

    rules = tmp_path / "r.sql"
    rules.write_text("")
    for text, error in (
        ("exchange_backlog_limit = 0", "exchange_backlog_limit must be a positive whole number"),
        ("held_replies_limit = 1.5", "held_replies_limit must be a positive whole number"),
        ("exchange_backlog_limit = 65536\nheld_replies_limit = 50", None),
    ):
        path = tmp_path / "gw.toml"
        path.write_text(f'rules = ["r.sql"]\n{text}\n[users.a]\npassword = "p"\naccounts = "*"\n')
        args = argparse.Namespace(**{k: None for k in ARGS}, config=str(path), no_fsync=False)
        if error is None:
            config = build_config(args)
            assert (config.exchange_backlog_limit, config.held_replies_limit) == (65536, 50)
        else:
            with pytest.raises(UserError, match=error):
                build_config(args)


ARGS = (
    "rules", "listen", "exchange", "card", "data", "journal", "heartbeat_ms", "heartbeat_timeout",
    "journal_sync", "user", "control", "metrics", "audit", "kill_file",
)  # fmt: skip


def test_a_fix_session_not_read_is_refused_at_once_and_recovers(tmp_path: Path) -> None:
    """A FIX session past held_replies_limit: QuickFIX answers its new orders at once with a
    BusinessMessageReject (Application not available), and nothing for them is kept; once the
    exchange reads, every order that reached the gateway is answered once, and new ones are taken."""
    from fix_support import _LIVE, connect, fix_config

    async def script() -> None:
        logged: list[str] = []
        exchange, conn, running = await stalled_gateway(
            tmp_path, logged, held_replies_limit=50, fix=fix_config(), exchange_backlog_limit=1 << 20
        )
        gw = running.gateway
        serving: asyncio.Task[None] | None = None
        bob = await logon(running.port, "bob")
        try:
            assert running.fix is not None
            broker = await connect(tmp_path, running.fix.port)
            session = running.fix.sessions[("BROKER1", "RISKGW")]
            # a binary broker's orders until the exchange link is backed up (the kernel's buffers
            # full): from then on, the answers to orders accepted wait for the exchange to read
            bob_sent: dict[int, int] = {}  # order id -> account
            while not (gw.exchange is not None and gw.exchange.backed_up):
                for order_id in range(len(bob_sent) + 1, len(bob_sent) + 201):
                    bob_sent[order_id] = order_id % SMALL.n_accounts
                    bob.send(MsgType.NEW_ORDER, **held_order(order_id, bob_sent[order_id], k=order_id % 16))
                await until(lambda: gw.counters.orders == len(bob_sent), "bob's orders", gw)
            base = gw.counters.orders
            # orders until the session is held back (the forwards fill the kernel's buffers, its
            # answers wait and pass the cap), then more: each refused at once by QuickFIX's thread
            first = 600
            for i in range(first):
                broker.held(f"c{i}", i % SMALL.n_accounts, k=i // SMALL.n_accounts % 16)
            await until(lambda: gw.counters.orders == base + first, "the first orders to be decided", gw)
            await until(lambda: session in gw._held_back, "the session to be held back", gw)
            assert not session.readable.is_set()
            held = gw.backlog_status()["held_replies"]
            assert held > 50
            more = 200
            for i in range(first, first + more):
                broker.held(f"c{i}", i % SMALL.n_accounts, k=i // SMALL.n_accounts % 16)
            refused: set[str] = set()
            while len(refused) < more:
                _, fields = await broker.next()
                assert fields[35] == "j", f"an answer left while the session was held: {fields}"
                assert fields[380] == "4" and fields[372] == "D" and "exchange backlog" in fields[58]
                refused.add(fields[379])
            assert refused == {f"c{i}" for i in range(first, first + more)}
            assert gw.counters.orders == base + first and gw.backlog_status()["held_replies"] == held

            # the exchange reads: the held answers leave, one per order that reached the gateway
            serving = asyncio.get_running_loop().create_task(exchange.serve(conn))
            reports: dict[str, dict[int, str]] = {}
            while len(reports) < first:
                _, fields = await broker.next()
                assert fields[35] == "8" and fields[150] in ("0", "8"), fields
                assert fields[11] not in reports and fields[11] not in refused, fields
                reports[fields[11]] = fields
            assert session.readable.is_set() and not gw._held_back
            accepted = {(int(f[1]), int(f[37])) for f in reports.values() if f[150] == "0"}
            assert accepted, "no order was accepted: the test shows nothing"
            got = await answers(bob, len(bob_sent))
            assert sorted(f["order_id"] for f in got) == sorted(bob_sent)
            accepted |= {(bob_sent[f["order_id"]], f["order_id"]) for f in got if f.type is MsgType.ACCEPTED}
            # a refused order sent again (same ClOrdID: it never reached the gateway) is taken
            again = min(refused)
            i = int(again[1:])
            broker.held(again, i % SMALL.n_accounts, k=i // SMALL.n_accounts % 16, seconds=40_000)
            report = await broker.recv("8", T11=again)
            assert report[150] in ("0", "8") and report.get(103) != "6", report  # not a duplicate ClOrdID
            if report[150] == "0":
                accepted.add((int(report[1]), int(report[37])))
            await until(lambda: all(exchange.orders[k] for k in accepted), "every forward to arrive", gw)
        finally:
            while _LIVE:
                await _LIVE.pop().stop()
            await bob.close()
            await running.stop()
        assert serving is not None
        await asyncio.wait_for(serving, STEP)
        assert set(exchange.orders) == accepted and set(exchange.orders.values()) == {1}

    run_async(script(), timeout=110)
