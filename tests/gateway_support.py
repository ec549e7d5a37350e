"""Test helpers for the gateway and the exchange simulator: a wire-protocol client over real TCP."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from riskgw.exchange.sim import Behaviour, Exchange, start_exchange
from riskgw.gateway.config import GatewayConfig, User
from riskgw.gateway.protocol import Frame, FrameReader, MsgType, ProtocolError, encode
from riskgw.gateway.serve import Running, start_gateway
from riskgw.gateway.server import Gateway
from riskgw.scenario import DataSet, ref_price, ticket

T = TypeVar("T")
STEP = 5.0  # seconds any single wait may take before the test fails


class Client:
    """A scripted peer: `send` numbers frames from 1, `recv` returns the next frame or fails in STEP s."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.seq = 0
        self._frames = FrameReader()
        self._ready: list[Frame] = []

    @classmethod
    async def connect(cls, port: int) -> Client:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), STEP)
        return cls(reader, writer)

    def send(self, msg_type: MsgType, **values: Any) -> None:
        self.seq += 1
        self.writer.write(encode(msg_type, self.seq, **values))

    def raw(self, data: bytes) -> None:
        self.writer.write(data)

    async def recv(self, timeout: float = STEP) -> Frame:
        while not self._ready:
            data = await asyncio.wait_for(self.reader.read(65536), timeout)
            if not data:
                raise ConnectionError("the peer closed the connection")
            for item in self._frames.feed(data):
                if isinstance(item, ProtocolError):
                    raise AssertionError(f"the peer sent garbage: {item}")
                self._ready.append(item)
        return self._ready.pop(0)

    async def recv_type(self, msg_type: MsgType) -> Frame:
        frame = await self.recv()
        assert frame.type is msg_type, f"expected {msg_type.name}, got {frame.type.name} {frame.values}"
        return frame

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


def order(
    order_id: int, account_id: int = 1, direction: int = 0, ticket: str = "600001", **kw: Any
) -> dict[str, Any]:
    values: dict[str, Any] = dict(
        order_id=order_id,
        account_id=account_id,
        direction=direction,
        ticket_id=ticket,
        price=1000,
        quantity=100,
        ts=1,
    )
    values.update(kw)
    return values


# ---------------------------------------------------------------------------- a whole stack

RULES = sorted((Path(__file__).resolve().parent.parent / "rules").glob("*.sql"))
SMALL = DataSet(n_accounts=20, n_securities=64, holdings_per_account=16)
USERS = {
    "alice": User("alice", "pw-a", frozenset({1, 2})),
    "bob": User("bob", "pw-b", None),
}


def held_order(order_id: int, account: int, k: int = 0, **kw: Any) -> dict[str, Any]:
    """A buy of 100 at the reference price of the k-th security the account holds: passes every rule."""
    sec = SMALL.held(account, k)
    values = order(
        order_id,
        account_id=account,
        ticket=ticket(sec),
        price=ref_price(sec),
        ts=34_200 * 10**9 + order_id * 10**8,
    )
    values.update(kw)
    return values


@dataclass
class Stack:
    exchange_server: asyncio.Server
    exchange: Exchange
    running: Running
    config: GatewayConfig

    @property
    def gateway(self) -> Gateway:
        return self.running.gateway

    async def broker(self, user: str | None = "alice", password: str | None = None) -> Client:
        c = await Client.connect(self.running.port)
        if user is not None:
            c.send(MsgType.LOGON, username=user, password=password or self.config.users[user].password)
            await c.recv_type(MsgType.LOGON_ACK)
        return c

    async def restart(self, **changes: Any) -> list[str]:
        """Stop the gateway and start it again on the same journal; returns what it logged."""
        await self.running.stop()
        for name, value in changes.items():
            setattr(self.config, name, value)
        logged: list[str] = []
        self.running = await start_gateway(self.config, logged.append)
        return logged

    async def close(self) -> None:
        await self.running.stop()
        self.exchange_server.close()
        await self.exchange_server.wait_closed()


async def start_stack(
    tmp_path: Path, behaviour: Behaviour, journal: str = "gw.journal", **settings: Any
) -> Stack:
    data = tmp_path / "data"
    if not data.exists():
        SMALL.write(data)
    server, exchange = await start_exchange("127.0.0.1", 0, behaviour)
    settings.setdefault("users", dict(USERS))
    config = GatewayConfig(
        rules=list(RULES),
        listen=("127.0.0.1", 0),
        exchange=("127.0.0.1", server.sockets[0].getsockname()[1]),
        data=data,
        journal=tmp_path / journal,
        **settings,
    )
    running = await start_gateway(config, lambda text: None)
    return Stack(server, exchange, running, config)


def run_async(coro: Coroutine[Any, Any, T], timeout: float = 25.0) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())
