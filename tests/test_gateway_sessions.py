"""Sessions over real TCP: heartbeat timeouts, cancel-on-disconnect, many connections at once."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from gateway_support import USERS, Client, held_order, run_async, start_stack, until

from riskgw.doe.isa import Event
from riskgw.exchange.sim import Behaviour
from riskgw.gateway.config import User
from riskgw.gateway.journal import scan
from riskgw.gateway.protocol import MsgType, Reason

pytestmark = pytest.mark.timeout(90)

FILL_ALL = Behaviour(fill=1.0, partial=0.0, reject=0.0)
REST_ALL = Behaviour(fill=0.0, partial=0.0, reject=0.0)


def test_a_silent_session_gets_heartbeats_then_a_heartbeat_timeout_logout(tmp_path: Path) -> None:
    async def script() -> None:
        # 2 s of silence before a logout: the talker, which speaks every 50 ms from this same
        # process, must not be timed out when a loaded machine leaves the process unscheduled for a
        # few hundred milliseconds (at 3 intervals of 100 ms, a stall of 250 ms did it)
        stack = await start_stack(tmp_path, FILL_ALL, heartbeat_ms=100, heartbeat_timeout=20)
        silent = await stack.broker("alice")
        talker = await stack.broker("bob")
        never_logs_on = await stack.broker(user=None)
        seen: list[MsgType] = []

        async def keep_talking() -> None:
            while True:
                talker.send(MsgType.HEARTBEAT)
                await asyncio.sleep(0.05)

        talking = asyncio.get_running_loop().create_task(keep_talking())
        while True:
            frame = await silent.recv()
            seen.append(frame.type)
            if frame.type is MsgType.LOGOUT:
                assert frame["reason"] == Reason.HEARTBEAT_TIMEOUT
                break
        assert MsgType.HEARTBEAT in seen  # the gateway kept an idle session alive from its side first
        with pytest.raises(ConnectionError):
            await silent.recv()
        logout = await never_logs_on.recv_type(MsgType.LOGOUT)
        assert logout["reason"] == Reason.HEARTBEAT_TIMEOUT
        # the session that spoke is still logged on and trades
        talking.cancel()
        talker.send(MsgType.NEW_ORDER, **held_order(1, account=3))
        while (frame := await talker.recv()).type is MsgType.HEARTBEAT:
            pass
        assert frame.type is MsgType.ACCEPTED
        assert [s.user.name for s in stack.gateway.sessions if s.user] == ["bob"]
        await talker.close()
        await stack.close()

    run_async(script())


def test_cancel_on_disconnect_cancels_that_sessions_open_orders_only(tmp_path: Path) -> None:
    users = dict(USERS)
    users["keeper"] = User("keeper", "pw-k", frozenset({5}), cancel_on_disconnect=False)

    async def script() -> None:
        stack = await start_stack(tmp_path, REST_ALL, users=users)
        alice = await stack.broker("alice")
        bob = await stack.broker("bob")
        keeper = await stack.broker("keeper")
        alice.send(MsgType.NEW_ORDER, **held_order(1, account=1))
        alice.send(MsgType.NEW_ORDER, **held_order(2, account=2))
        bob.send(MsgType.NEW_ORDER, **held_order(3, account=3))
        keeper.send(MsgType.NEW_ORDER, **held_order(4, account=5))
        for client in (alice, alice, bob, keeper):
            await client.recv_type(MsgType.ACCEPTED)
        await until(lambda: stack.exchange.resting() == 4, "four orders resting")
        # alice vanishes in the middle of a frame; keeper leaves with its order kept on purpose
        alice.raw(b"\x10\x01\x40\x00")
        await alice.close()
        await keeper.close()
        await until(lambda: len(stack.gateway.open) == 2, "alice's orders cancelled")
        assert set(stack.gateway.open) == {(3, 3), (5, 4)}
        assert stack.exchange.resting() == 2
        cancels = [e for e in scan(stack.config.journal).entries if e.event is Event.CANCEL]
        assert len(cancels) == 2  # each ran the CANCEL flow on the card
        # bob's session was not touched
        bob.send(MsgType.CANCEL_REQUEST, order_id=3, account_id=3)
        assert (await bob.recv_type(MsgType.CANCELLED))["order_id"] == 3
        await bob.close()
        await stack.close()

    run_async(script())


def test_a_thousand_concurrent_sessions(tmp_path: Path) -> None:
    n = 1000

    async def script() -> None:
        stack = await start_stack(tmp_path, FILL_ALL, heartbeat_ms=60_000)
        clients: list[Client] = []
        for i in range(n):
            client = await Client.connect(stack.running.port)
            user = "alice" if i % 2 else "bob"
            client.send(MsgType.LOGON, username=user, password=USERS[user].password)
            clients.append(client)
        await asyncio.gather(*(c.recv_type(MsgType.LOGON_ACK) for c in clients))
        assert len(stack.gateway.sessions) == n
        # every tenth session (bob's, who trades every account) sends an order, all at once, spread
        # over the accounts with cash so that no limit stops them; each gets its own answers only
        traders = clients[::10]
        for i, client in enumerate(traders):
            client.send(MsgType.NEW_ORDER, **held_order(100 + i, account=i % 19, k=i % 16))
        accepted = await asyncio.gather(*(c.recv_type(MsgType.ACCEPTED) for c in traders))
        assert [a["order_id"] for a in accepted] == [100 + i for i in range(len(traders))]
        fills = await asyncio.gather(*(c.recv_type(MsgType.FILL) for c in traders))
        assert [f["order_id"] for f in fills] == [100 + i for i in range(len(traders))]
        for client in clients:
            client.send(MsgType.HEARTBEAT)
        await asyncio.gather(*(c.recv_type(MsgType.HEARTBEAT) for c in clients))
        await asyncio.gather(*(c.close() for c in clients))
        await until(lambda: not stack.gateway.sessions, "every session gone")
        assert stack.gateway.counters.protocol_errors == 0
        await stack.close()

    run_async(script(), timeout=80)
