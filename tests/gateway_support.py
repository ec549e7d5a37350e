"""Test helpers for the gateway and the exchange simulator: a wire-protocol client over real TCP."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from riskgw.gateway.protocol import Frame, FrameReader, MsgType, ProtocolError, encode

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
