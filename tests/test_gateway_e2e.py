"""The gateway end to end on real TCP (127.0.0.1, ephemeral ports): broker -> gateway -> exchange-sim."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest
from gateway_support import RULES, Client, held_order, run_async, start_stack

from riskgw.doe.compiler import compile_files
from riskgw.doe.isa import Event
from riskgw.engine.engine import Engine, event_inputs
from riskgw.engine.replay import load_data
from riskgw.exchange.sim import Behaviour, start_exchange
from riskgw.gateway.journal import scan
from riskgw.gateway.protocol import MsgType, Reason, encode

pytestmark = pytest.mark.timeout(60)

FILL_ALL = Behaviour(fill=1.0, partial=0.0, reject=0.0)
REST_ALL = Behaviour(fill=0.0, partial=0.0, reject=0.0)


def reference_engine(tmp_path: Path) -> Engine:
    engine = Engine(compile_files(RULES).image)
    load_data(engine, tmp_path / "data")
    return engine


def test_accepted_order_reaches_the_exchange_once_and_its_fill_updates_state(tmp_path: Path) -> None:
    async def script() -> tuple[str, str]:
        stack = await start_stack(tmp_path, FILL_ALL)
        before = stack.gateway.card.state_hash()
        broker = await stack.broker()
        sent = held_order(1001, account=1)
        broker.send(MsgType.NEW_ORDER, **sent)
        accepted = await broker.recv_type(MsgType.ACCEPTED)
        assert {k: accepted[k] for k in sent} == sent
        assert [e.event for e in scan(stack.config.journal).entries][:1] == [Event.NEW]  # on disk already
        fill = await broker.recv_type(MsgType.FILL)
        assert (fill["order_id"], fill["exec_price"], fill["exec_quantity"]) == (1001, sent["price"], 100)
        assert stack.exchange.orders_seen == 1
        assert stack.gateway.open == {}  # filled in full
        after = stack.gateway.card.state_hash()
        await broker.close()
        await stack.close()
        assert after != before
        return after, str(sent["price"])

    after, _ = run_async(script())
    engine = reference_engine(tmp_path)
    sent = held_order(1001, account=1)
    assert engine.process(Event.NEW, event_inputs(sent)).accepted
    only_new = engine.state_hash()
    engine.process(Event.FILL, event_inputs({**sent, "exec_price": sent["price"], "exec_quantity": 100}))
    assert engine.state_hash() == after != only_new


def test_rejected_order_never_reaches_the_exchange(tmp_path: Path) -> None:
    async def script() -> None:
        stack = await start_stack(tmp_path, FILL_ALL)
        broker = await stack.broker()
        broker.send(MsgType.NEW_ORDER, **held_order(1, account=1, price=0))
        rejected = await broker.recv_type(MsgType.REJECTED)
        mask = int.from_bytes(rejected["failed_mask"], "little")
        names = [r.name for r in stack.gateway.card.image.rules]
        failed = {names[i] for i in range(len(names)) if mask >> i & 1}
        assert rejected["reason"] == Reason.RULE and "PricePositive" in failed
        assert rejected["n_failed"] == len(failed)
        # The exchange answers orders in arrival order, so once a later order's fill is back,
        # it has seen everything the gateway sent before it.
        broker.send(MsgType.NEW_ORDER, **held_order(2, account=1))
        await broker.recv_type(MsgType.ACCEPTED)
        assert (await broker.recv_type(MsgType.FILL))["order_id"] == 2
        assert stack.exchange.orders_seen == 1
        await broker.close()
        await stack.close()

    run_async(script())


def test_permissions_and_logon(tmp_path: Path) -> None:
    async def script() -> None:
        stack = await start_stack(tmp_path, FILL_ALL)
        anon = await stack.broker(user=None)
        anon.send(MsgType.NEW_ORDER, **held_order(1, account=1))
        r = await anon.recv_type(MsgType.REJECTED)
        assert (r["order_id"], r["reason"]) == (1, Reason.NOT_PERMITTED)
        anon.send(MsgType.LOGON, username="alice", password="wrong")
        assert (await anon.recv_type(MsgType.LOGOUT))["reason"] == Reason.BAD_CREDENTIALS
        with pytest.raises(ConnectionError):
            await anon.recv()

        alice = await stack.broker("alice")
        alice.send(MsgType.NEW_ORDER, **held_order(2, account=3))  # alice trades 1 and 2 only
        r = await alice.recv_type(MsgType.REJECTED)
        assert (r["order_id"], r["reason"]) == (2, Reason.NOT_PERMITTED)
        alice.send(MsgType.CANCEL_REQUEST, order_id=2, account_id=3)
        assert (await alice.recv_type(MsgType.REJECTED))["reason"] == Reason.NOT_PERMITTED
        bob = await stack.broker("bob")  # every account
        bob.send(MsgType.NEW_ORDER, **held_order(3, account=3))
        await bob.recv_type(MsgType.ACCEPTED)
        await bob.recv_type(MsgType.FILL)
        bob.send(MsgType.HEARTBEAT)
        await bob.recv_type(MsgType.HEARTBEAT)
        bob.send(MsgType.LOGOUT, reason=0)
        assert (await bob.recv_type(MsgType.LOGOUT))["reason"] == Reason.NONE
        assert stack.exchange.orders_seen == 1
        assert len(scan(stack.config.journal).entries) == 2  # NEW and FILL of order 3 only
        for c in (alice, bob):
            await c.close()
        await stack.close()

    run_async(script())


def test_garbage_gets_a_protocol_reject_and_the_session_goes_on(tmp_path: Path) -> None:
    async def script() -> None:
        stack = await start_stack(tmp_path, FILL_ALL)
        broker = await stack.broker()
        broker.raw(b"\x00garbage!" * 3)
        broker.send(MsgType.NEW_ORDER, **held_order(1, account=1))
        r = await broker.recv_type(MsgType.REJECTED)
        assert (r["order_id"], r["reason"]) == (0, Reason.PROTOCOL)
        await broker.recv_type(MsgType.ACCEPTED)
        await broker.recv_type(MsgType.FILL)
        # a frame type a broker may not send, a repeated seq, and a ticket that is not text
        broker.send(MsgType.FILL, order_id=5, account_id=1)
        assert (await broker.recv_type(MsgType.REJECTED))["reason"] == Reason.PROTOCOL
        broker.seq -= 1
        broker.send(MsgType.NEW_ORDER, **held_order(2, account=1))
        r = await broker.recv_type(MsgType.REJECTED)
        assert (r["order_id"], r["reason"]) == (2, Reason.PROTOCOL)
        broker.send(MsgType.NEW_ORDER, **held_order(3, account=1, ticket_id=b"6\x00\xff"))
        assert (await broker.recv_type(MsgType.REJECTED))["reason"] == Reason.PROTOCOL
        # a header that claims a NEW_ORDER, then the client vanishes in the middle of it
        vanishing = await stack.broker("bob")
        vanishing.raw(encode(MsgType.NEW_ORDER, 2, **held_order(9, account=2))[:40])
        await vanishing.writer.drain()
        await vanishing.close()
        broker.send(MsgType.NEW_ORDER, **held_order(4, account=2, k=1))
        assert (await broker.recv_type(MsgType.ACCEPTED))["order_id"] == 4
        assert (await broker.recv_type(MsgType.FILL))["order_id"] == 4
        assert stack.exchange.orders_seen == 2
        assert stack.gateway.counters.protocol_errors == 4
        await broker.close()
        await stack.close()

    run_async(script())


def test_cancel_goes_to_the_exchange_and_releases_the_order(tmp_path: Path) -> None:
    async def script() -> str:
        stack = await start_stack(tmp_path, REST_ALL)
        broker = await stack.broker()
        broker.send(MsgType.CANCEL_REQUEST, order_id=1, account_id=1)
        r = await broker.recv_type(MsgType.REJECTED)
        assert (r["order_id"], r["reason"]) == (1, Reason.UNKNOWN_ORDER)
        broker.send(MsgType.NEW_ORDER, **held_order(1, account=1))
        await broker.recv_type(MsgType.ACCEPTED)
        broker.send(MsgType.HEARTBEAT)
        await broker.recv_type(MsgType.HEARTBEAT)
        assert (1, 1) in stack.gateway.open
        # the same id again while it is open never reaches the card
        broker.send(MsgType.NEW_ORDER, **held_order(1, account=1))
        assert (await broker.recv_type(MsgType.REJECTED))["reason"] == Reason.PROTOCOL
        broker.send(MsgType.CANCEL_REQUEST, order_id=1, account_id=1)
        c = await broker.recv_type(MsgType.CANCELLED)
        assert (c["order_id"], c["exec_quantity"], c["quantity"]) == (1, 100, 100)
        assert stack.gateway.open == {}
        state = stack.gateway.card.state_hash()
        await broker.close()
        await stack.close()
        return state

    state = run_async(script())
    engine = reference_engine(tmp_path)
    sent = held_order(1, account=1)
    before = engine.state_hash()
    engine.process(Event.NEW, event_inputs(sent))
    engine.process(Event.CANCEL, event_inputs({**sent, "exec_price": 0, "exec_quantity": 100}))
    assert engine.state_hash() == state != before
    assert [e.event for e in scan(tmp_path / "gw.journal").entries] == [Event.NEW, Event.CANCEL]


def test_frames_that_arrive_together_share_one_journal_commit(tmp_path: Path) -> None:
    async def script() -> None:
        stack = await start_stack(tmp_path, REST_ALL)
        broker = await stack.broker()
        commits = stack.gateway.journal.commits
        burst = b""
        for i in range(5):
            broker.seq += 1
            burst += encode(MsgType.NEW_ORDER, broker.seq, **held_order(10 + i, account=1, k=i))
        broker.raw(burst)
        for i in range(5):
            assert (await broker.recv_type(MsgType.ACCEPTED))["order_id"] == 10 + i
        assert stack.gateway.journal.records == 5
        assert stack.gateway.journal.commits - commits <= 2  # one, unless TCP split the burst
        await broker.close()
        await stack.close()

    run_async(script())


def test_gateway_reconnects_when_the_exchange_comes_back(tmp_path: Path) -> None:
    async def script() -> None:
        stack = await start_stack(tmp_path, FILL_ALL)
        port = stack.config.exchange[1]
        broker = await stack.broker()
        stack.exchange_server.close()
        await stack.exchange_server.wait_closed()
        assert stack.gateway.exchange is not None
        stack.gateway.exchange.close()  # the link drops; nothing listens any more
        await asyncio.sleep(0.2)
        broker.send(MsgType.NEW_ORDER, **held_order(1, account=1))
        r = await broker.recv_type(MsgType.REJECTED)
        assert (r["order_id"], r["reason"]) == (1, Reason.SHUTDOWN)
        assert scan(stack.config.journal).entries == []  # never reached the card

        stack.exchange_server, stack.exchange = await start_exchange("127.0.0.1", port, FILL_ALL)
        for _ in range(100):
            if stack.gateway.exchange is not None:
                break
            await asyncio.sleep(0.05)
        broker.send(MsgType.NEW_ORDER, **held_order(2, account=1))
        await broker.recv_type(MsgType.ACCEPTED)
        assert (await broker.recv_type(MsgType.FILL))["order_id"] == 2
        assert stack.exchange.orders_seen == 1
        await broker.close()
        await stack.close()

    run_async(script())


def test_a_broker_that_does_not_read_is_held_back_alone(tmp_path: Path) -> None:
    async def script() -> None:
        stack = await start_stack(tmp_path, FILL_ALL)
        stack.gateway.write_buffer_high = 4096
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect, or it does not hold
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", stack.running.port))
        slow = Client(*await asyncio.open_connection(sock=sock, limit=4096))
        slow.send(MsgType.LOGON, username="alice", password="pw-a")
        await slow.recv_type(MsgType.LOGON_ACK)
        session = next(iter(stack.gateway.sessions))
        assert session.transport is not None
        session.transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        n = 50_000  # 400 kB of heartbeat replies that it does not read for now
        burst = b"".join(encode(MsgType.HEARTBEAT, slow.seq + 1 + i) for i in range(n))
        slow.seq += n
        slow.raw(burst)
        for _ in range(100):
            if session.paused:
                break
            await asyncio.sleep(0.05)
        assert session.paused
        fast = await stack.broker("bob")
        fast.send(MsgType.NEW_ORDER, **held_order(1, account=3))
        await fast.recv_type(MsgType.ACCEPTED)
        await fast.recv_type(MsgType.FILL)
        await asyncio.sleep(0.3)
        assert session.last_seq < slow.seq  # the gateway stopped reading it
        # once it reads, it gets every reply, in order
        await slow.writer.drain()
        for i in range(n):
            frame = await slow.recv()
            assert frame.type is MsgType.HEARTBEAT and frame.seq == i + 2  # after its LOGON_ACK
        await slow.close()
        await fast.close()
        await stack.close()

    run_async(script())
