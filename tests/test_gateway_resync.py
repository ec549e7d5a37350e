"""After the exchange link drops, or the gateway restarts, it asks the exchange which of its open
orders are still open (STATUS_REQUEST / ORDER_STATUS) and settles the rest."""

from __future__ import annotations

from pathlib import Path

import pytest
from gateway_support import held_order, run_async, start_stack, until

from riskgw.doe.isa import Event
from riskgw.exchange.sim import Behaviour, start_exchange
from riskgw.gateway.journal import scan
from riskgw.gateway.protocol import MsgType

pytestmark = pytest.mark.timeout(60)

REST_ALL = Behaviour(fill=0.0, partial=0.0, reject=0.0)
REST_AND_KEEP = Behaviour(fill=0.0, partial=0.0, reject=0.0, cancel_on_disconnect=False)


def test_orders_the_exchange_lost_are_cancelled_after_a_reconnect(tmp_path: Path) -> None:
    async def script() -> None:
        stack = await start_stack(tmp_path, REST_ALL)
        broker = await stack.broker("alice")
        broker.send(MsgType.NEW_ORDER, **held_order(1, account=1))
        broker.send(MsgType.NEW_ORDER, **held_order(2, account=2))
        for _ in range(2):
            await broker.recv_type(MsgType.ACCEPTED)
        await until(lambda: stack.exchange.resting() == 2, "both orders resting")
        # the exchange goes away with its book, and comes back empty on the same port
        port = stack.config.exchange[1]
        stack.exchange_server.close()
        await stack.exchange_server.wait_closed()
        assert stack.gateway.exchange is not None
        stack.gateway.exchange.close()
        stack.exchange_server, stack.exchange = await start_exchange("127.0.0.1", port, REST_ALL)
        cancelled = {(await broker.recv_type(MsgType.CANCELLED))["order_id"] for _ in range(2)}
        assert cancelled == {1, 2}
        assert stack.gateway.open == {} and stack.gateway.counters.resync_cancels == 2
        events = [e.event for e in scan(stack.config.journal).entries]
        assert events == [Event.NEW, Event.NEW, Event.CANCEL, Event.CANCEL]
        await broker.close()
        await stack.close()

    run_async(script())


def test_orders_still_open_at_the_exchange_stay_open_and_can_be_cancelled(tmp_path: Path) -> None:
    async def script() -> None:
        stack = await start_stack(tmp_path, REST_AND_KEEP)
        broker = await stack.broker("alice")
        broker.send(MsgType.NEW_ORDER, **held_order(1, account=1))
        await broker.recv_type(MsgType.ACCEPTED)
        await until(lambda: stack.exchange.resting() == 1, "the order resting")
        old = stack.gateway.exchange
        assert old is not None
        old.close()  # the link drops; the exchange keeps the order
        await until(lambda: stack.gateway.exchange not in (None, old), "a new exchange link")
        await until(lambda: not stack.gateway.resyncing, "the exchange's ORDER_STATUS")
        assert set(stack.gateway.open) == {(1, 1)} and stack.gateway.counters.resync_cancels == 0
        broker.send(MsgType.CANCEL_REQUEST, order_id=1, account_id=1)
        c = await broker.recv_type(MsgType.CANCELLED)  # through the new link
        assert (c["order_id"], c["exec_quantity"]) == (1, 100)
        assert stack.gateway.open == {}
        await broker.close()
        await stack.close()

    run_async(script())


def test_a_restart_settles_orders_the_exchange_dropped_with_the_old_connection(tmp_path: Path) -> None:
    async def script() -> None:
        stack = await start_stack(tmp_path, REST_ALL)
        broker = await stack.broker("alice")
        broker.send(MsgType.NEW_ORDER, **held_order(1, account=1))
        await broker.recv_type(MsgType.ACCEPTED)
        await until(lambda: stack.exchange.resting() == 1, "the order resting")
        await broker.close()
        await stack.restart()  # the old exchange connection closes: the simulator drops the order
        await until(lambda: not stack.gateway.open, "the order settled")
        assert stack.gateway.counters.resync_cancels == 1
        await stack.close()  # commits what is buffered
        assert [e.event for e in scan(stack.config.journal).entries] == [Event.NEW, Event.CANCEL]

    run_async(script())
