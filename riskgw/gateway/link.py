"""A TCP connection that speaks the wire protocol: frames in, numbered frames out."""

from __future__ import annotations

import abc
import asyncio
import os
import socket
from typing import Any, cast

from riskgw.gateway.protocol import HEADER, VERSION, Frame, FrameReader, MsgType, ProtocolError, encode

# The fields every order-carrying frame repeats (NEW_ORDER, ACCEPTED, FILL, EXCH_REJECT, CANCELLED).
ORDER_FIELDS = ("order_id", "account_id", "direction", "ticket_id", "price", "quantity", "ts")


def order_values(frame: Frame) -> dict[str, Any]:
    return {name: frame[name] for name in ORDER_FIELDS}


def parse_host_port(text: str) -> tuple[str, int]:
    """`HOST:PORT` as (host, port); ValueError with a one-line message otherwise."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"{text!r} is not HOST:PORT")
    return host, int(port)


def os_error_text(exc: OSError) -> str:
    """Why a connect or a bind failed, in a few words: "Connection refused", "Name or service not
    known". asyncio's own strerror repeats the address; a name lookup's error codes are negative,
    which os.strerror calls "Unknown error"."""
    if isinstance(exc, socket.gaierror) or not exc.errno or exc.errno < 0:
        return exc.strerror or str(exc)
    return os.strerror(exc.errno)


class MemoryTransport(asyncio.Transport):
    """A transport that keeps what is written to it, so the order path runs in process without
    sockets (the in-process benchmark, tests). It takes every write at once, as an empty socket
    buffer would."""

    def __init__(self) -> None:
        super().__init__()
        self.out: list[bytes] = []
        self.reading = True

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.out.append(bytes(data))

    def is_closing(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass  # nothing is ever buffered

    # The caller feeds the protocol; these only record whether the protocol wants to be read.
    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def is_reading(self) -> bool:
        return self.reading


class FrameLink(asyncio.Protocol, abc.ABC):
    """Splits the byte stream into frames for `frames_received`; `frame()` numbers outbound frames.

    Outbound `seq` counts frames per direction and connection, from 1, in the order they are
    encoded; callers that delay writes keep that order.
    """

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._reader = FrameReader()
        self._out_seq = 0
        self.peer = "?"
        self.last_tx = 0.0  # loop time of the last write (the gateway's heartbeats read it)
        self.leaving = False  # its close is queued (Gateway.queue_close): it is as good as gone

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport; uvloop's are not subclasses of asyncio.Transport, so no isinstance check.
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        if peer:
            self.peer = f"{peer[0]}:{peer[1]}"

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.frames_received(self._reader.feed(data))

    @abc.abstractmethod
    def frames_received(self, items: list[Frame | ProtocolError]) -> None:
        """Frames (and skipped garbage, as ProtocolError) that arrived together, in order."""

    @property
    def is_open(self) -> bool:
        return self.transport is not None and not self.transport.is_closing()

    def frame(self, msg_type: MsgType, **values: Any) -> bytes:
        self._out_seq += 1
        return encode(msg_type, self._out_seq, **values)

    def frame_body(self, msg_type: MsgType, body: bytes) -> bytes:
        """A numbered frame around a body that is already encoded (fields after the header)."""
        self._out_seq += 1
        return HEADER.pack(msg_type, VERSION, HEADER.size + len(body), self._out_seq) + body

    def send(self, msg_type: MsgType, **values: Any) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(self.frame(msg_type, **values))

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
