"""The gateway's record of decided orders is bounded: every open order and the last
`decided_window` done ones; a repeat of a recent order is answered from the record, a repeat of an
older one is refused and never runs again, before and after a restart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from gateway_support import Client, Stack, held_order, run_async, start_stack

from riskgw.exchange.sim import Behaviour
from riskgw.gateway import server
from riskgw.gateway.protocol import MsgType, Reason

pytestmark = pytest.mark.timeout(60)

WINDOW = 10


async def answer(broker: Client, order_id: int) -> list[MsgType]:
    """The verdict on an order and, when accepted, everything until its FILL."""
    got: list[MsgType] = []
    while True:
        f = await broker.recv()
        if f["order_id"] != order_id or f.type is MsgType.HEARTBEAT:
            continue
        got.append(f.type)
        if f.type in (MsgType.REJECTED, MsgType.FILL):
            return got


def check_bounded(stack: Stack) -> None:
    gw = stack.gateway
    assert len(gw.decided) <= WINDOW + len(gw.open)
    assert set(gw.history) <= set(gw.decided)


def test_decided_orders_are_bounded_and_repeats_stay_right(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setattr(server, "DECIDED_WINDOW", WINDOW)

    async def script() -> None:
        stack = await start_stack(tmp_path, Behaviour(fill=1.0, partial=0.0, reject=0.0, seed=3))
        broker = await stack.broker("alice")
        sent: dict[int, dict[str, Any]] = {}
        first: dict[int, list[MsgType]] = {}
        for order_id in range(100, 160):
            extra = {"price": 0} if order_id % 6 == 0 else {}  # rejected by a rule: done at once
            sent[order_id] = held_order(order_id, 1 + order_id % 2, k=order_id % 16, **extra)
            broker.send(MsgType.NEW_ORDER, **sent[order_id])
            first[order_id] = await answer(broker, order_id)
        assert {tuple(a) for a in first.values()} == {
            (MsgType.REJECTED,),
            (MsgType.ACCEPTED, MsgType.FILL),
        }
        check_bounded(stack)
        assert len(stack.gateway.decided) == WINDOW  # every order is done
        forgotten = dict(stack.gateway.forgotten)
        assert forgotten == {1: 148, 2: 149}

        for restarted in (False, True):
            if restarted:
                await broker.close()
                await stack.restart()
                check_bounded(stack)
                assert stack.gateway.forgotten == forgotten
                broker = await stack.broker("alice")
            seen = stack.exchange.orders_seen
            # a repeat of a recent order, on another connection: its answers again, not run again
            again = await stack.broker("alice")
            for order_id in (159, 156, 150):
                again.send(MsgType.NEW_ORDER, **sent[order_id])
                assert await answer(again, order_id) == first[order_id], order_id
            # a repeat of an order whose record was dropped: refused, not run again
            for order_id in (100, 149):
                again.send(MsgType.NEW_ORDER, **sent[order_id])
                f = await again.recv()
                assert (f.type, f["order_id"], f["reason"]) == (MsgType.REJECTED, order_id, Reason.PROTOCOL)
            assert stack.exchange.orders_seen == seen
            await again.close()
        # new orders with new ids go on as before
        broker.send(MsgType.NEW_ORDER, **held_order(200, 1, k=3))
        assert await answer(broker, 200) == [MsgType.ACCEPTED, MsgType.FILL]
        check_bounded(stack)
        await broker.close()
        await stack.close()

    run_async(script(), timeout=50)
