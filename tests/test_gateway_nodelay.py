"""Every socket on the order path sends at once (TCP_NODELAY): the broker's, the gateway's exchange
link, and the exchange simulator's end of it, on either event loop. With Nagle's algorithm a small
reply waits for the peer's ACK of the previous one (up to its delayed-ACK timer, 40 ms on Linux),
and the order path writes nothing but small frames."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import pytest
from gateway_support import held_order, start_stack

from riskgw.exchange.sim import Behaviour, ExchangeLink
from riskgw.gateway.loops import run
from riskgw.gateway.protocol import MsgType


def nodelay(transport: Any) -> int:
    sock = transport.get_extra_info("socket")
    return int(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_order_path_sockets_have_tcp_nodelay(
    tmp_path: Path, loop: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    exchange_ends: list[Any] = []
    made = ExchangeLink.connection_made

    def record(self: ExchangeLink, transport: asyncio.BaseTransport) -> None:
        exchange_ends.append(transport)
        made(self, transport)

    monkeypatch.setattr(ExchangeLink, "connection_made", record)

    async def script() -> dict[str, list[int]]:
        stack = await start_stack(tmp_path, Behaviour(fill=1.0, partial=0.0, reject=0.0))
        try:
            broker = await stack.broker()
            broker.send(MsgType.NEW_ORDER, **held_order(1, account=1))
            await broker.recv_type(MsgType.ACCEPTED)
            gw = stack.gateway
            assert gw.exchange is not None
            found = {
                "broker sessions": [nodelay(s.transport) for s in gw.sessions],
                "exchange link": [nodelay(gw.exchange.transport)],
                "exchange-sim": [nodelay(t) for t in exchange_ends],
            }
            await broker.close()
            return found
        finally:
            await stack.close()

    found = run(asyncio.wait_for(script(), 30), loop)
    assert found == {"broker sessions": [1], "exchange link": [1], "exchange-sim": [1]}
