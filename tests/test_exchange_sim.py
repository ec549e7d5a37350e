"""The exchange simulator on real TCP (127.0.0.1, ephemeral ports): answers, book, determinism."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from gateway_support import Client, order

from riskgw.exchange.sim import Behaviour, Exchange, start_exchange
from riskgw.gateway.protocol import MsgType

pytestmark = pytest.mark.timeout(30)

FILL_ALL = Behaviour(fill=1.0, partial=0.0, reject=0.0)
REST_ALL = Behaviour(fill=0.0, partial=0.0, reject=0.0)


def run(behaviour: Behaviour, script: Callable[[int, Exchange], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        server, exchange = await start_exchange("127.0.0.1", 0, behaviour)
        port = server.sockets[0].getsockname()[1]
        async with server:
            return await asyncio.wait_for(script(port, exchange), 20)

    return asyncio.run(main())


def test_fill_repeats_the_order_fields() -> None:
    async def script(port: int, exchange: Exchange) -> None:
        c = await Client.connect(port)
        sent = order(7, account_id=3, direction=1, price=1234, quantity=300, ts=55)
        c.send(MsgType.NEW_ORDER, **sent)
        fill = await c.recv_type(MsgType.FILL)
        assert {k: fill[k] for k in sent} == sent
        assert (fill["exec_price"], fill["exec_quantity"]) == (1234, 300)
        assert fill.seq == 1
        assert exchange.resting() == 0
        await c.close()

    run(FILL_ALL, script)


def test_reject_share_one_rejects_everything() -> None:
    async def script(port: int, exchange: Exchange) -> None:
        c = await Client.connect(port)
        c.send(MsgType.NEW_ORDER, **order(1))
        rej = await c.recv_type(MsgType.EXCH_REJECT)
        assert rej["order_id"] == 1 and rej["exec_quantity"] == 0
        await c.close()

    run(Behaviour(fill=0.0, partial=0.0, reject=1.0), script)


def test_partial_fill_then_cancel_returns_the_rest() -> None:
    async def script(port: int, exchange: Exchange) -> None:
        c = await Client.connect(port)
        c.send(MsgType.NEW_ORDER, **order(1, quantity=301))
        fill = await c.recv_type(MsgType.FILL)
        assert fill["exec_quantity"] == 150
        assert exchange.resting() == 1
        c.send(MsgType.CANCEL_REQUEST, order_id=1, account_id=1)
        cancelled = await c.recv_type(MsgType.CANCELLED)
        assert cancelled["exec_quantity"] == 151 and cancelled["quantity"] == 301
        assert exchange.resting() == 0
        await c.close()

    run(Behaviour(fill=0.0, partial=1.0, reject=0.0), script)


def test_cancel_of_an_order_not_resting_is_ignored() -> None:
    async def script(port: int, exchange: Exchange) -> None:
        c = await Client.connect(port)
        c.send(MsgType.CANCEL_REQUEST, order_id=99, account_id=1)
        c.send(MsgType.HEARTBEAT)
        await c.recv_type(MsgType.HEARTBEAT)
        await c.close()

    run(REST_ALL, script)


def test_book_matches_in_price_time_order_across_connections() -> None:
    async def script(port: int, exchange: Exchange) -> None:
        a, b = await Client.connect(port), await Client.connect(port)
        a.send(MsgType.NEW_ORDER, **order(1, account_id=1, direction=1, price=1000, quantity=100))
        a.send(MsgType.NEW_ORDER, **order(2, account_id=1, direction=1, price=1000, quantity=100))
        a.send(MsgType.NEW_ORDER, **order(3, account_id=1, direction=1, price=990, quantity=50))
        a.send(MsgType.NEW_ORDER, **order(4, account_id=1, direction=1, price=1010, quantity=50))
        a.send(MsgType.HEARTBEAT)
        await a.recv_type(MsgType.HEARTBEAT)  # all four rest before the buy arrives
        assert exchange.resting() == 4
        b.send(MsgType.NEW_ORDER, **order(9, account_id=2, direction=0, price=1000, quantity=120))
        fills = [await b.recv_type(MsgType.FILL) for _ in range(2)]
        assert [(f["exec_price"], f["exec_quantity"]) for f in fills] == [(990, 50), (1000, 70)]
        passive = [await a.recv_type(MsgType.FILL) for _ in range(2)]
        assert [(f["order_id"], f["exec_quantity"]) for f in passive] == [(3, 50), (1, 70)]
        # the buy's remaining 0 does not rest; order 1 has 30 left, 2 and 4 untouched
        assert exchange.resting() == 3
        a.send(MsgType.CANCEL_REQUEST, order_id=1, account_id=1)
        assert (await a.recv_type(MsgType.CANCELLED))["exec_quantity"] == 30
        await a.close()
        await b.close()

    run(REST_ALL, script)


def test_same_seed_same_answers_and_garbage_is_skipped() -> None:
    async def script(port: int, exchange: Exchange) -> list[tuple[str, int, int]]:
        c = await Client.connect(port)
        c.raw(b"\xff" * 13)
        for i in range(60):
            c.send(MsgType.NEW_ORDER, **order(i, ticket=f"T{i % 3}", direction=i % 2, price=990 + i % 7))
        c.send(MsgType.HEARTBEAT)
        out = []
        while (f := await c.recv()).type is not MsgType.HEARTBEAT:
            out.append((f.type.name, f["order_id"], f["exec_quantity"]))
        await c.close()
        return out

    first = run(Behaviour(seed=5), script)
    assert first == run(Behaviour(seed=5), script)
    assert first != run(Behaviour(seed=6), script)
    kinds = {k for k, _, _ in first}
    assert {"FILL", "EXCH_REJECT"} <= kinds


def test_behaviour_shares_are_checked() -> None:
    from riskgw.errors import UserError

    with pytest.raises(UserError, match="add up to at most 1"):
        Behaviour(fill=0.8, partial=0.3)


def test_command_exits_cleanly_on_sigterm() -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "riskgw.cli", "exchange-sim", "--listen", "127.0.0.1:0", "--seed", "2"],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert "listening on 127.0.0.1:" in line
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert "stopped after 0 orders" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
