"""Test helpers for the gateway and the exchange simulator: a wire-protocol client over real TCP."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Coroutine
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
        """The next frame, which must be of `msg_type`. A HEARTBEAT before it is skipped: the gateway
        sends one to a session it has sent nothing for a heartbeat interval (1 s by default), which
        a step slowed by a loaded machine can reach; tests of heartbeats read with `recv`."""
        frame = await self.recv()
        while frame.type is MsgType.HEARTBEAT and msg_type is not MsgType.HEARTBEAT:
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


_PROBE_LOCK = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
try:
    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    print("free")
except OSError:
    print("held")
"""


def probe_lock(lock: Path) -> str:
    """ "held" or "free": whether another process holds a POSIX lock on the file (POSIX locks are a
    process's own, so only another process can tell); what went wrong otherwise."""
    answer = subprocess.run([sys.executable, "-c", _PROBE_LOCK, str(lock)], capture_output=True, text=True)
    return answer.stdout.strip() or answer.stderr


async def until(condition: Callable[[], bool], what: str, tries: int = 200) -> None:
    """Wait (up to tries x 25 ms) for a condition the gateway reaches on its own loop."""
    for _ in range(tries):
        if condition():
            return
        await asyncio.sleep(0.025)
    raise AssertionError(f"never happened: {what}")


def run_async(coro: Coroutine[Any, Any, T], timeout: float = 25.0) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


class StalledExchange:
    """An exchange that reads nothing until told to: the gateway's forwards back up, past the
    kernel's socket buffers (kept small here) into the gateway's own memory."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # accepted sockets inherit it
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]
        self.orders: Counter[tuple[int, int]] = Counter()  # NEW_ORDERs received, on any connection
        self.cancels: Counter[tuple[int, int]] = Counter()  # CANCEL_REQUESTs received
        self.sent = 0  # frames sent on the connection `answer` writes to

    async def accept(self) -> socket.socket:
        conn, _ = await asyncio.wait_for(asyncio.get_running_loop().sock_accept(self.sock), 60)
        return conn

    async def serve(self, conn: socket.socket, holding: set[tuple[int, int]] | None = None) -> None:
        """Read the connection to its end, counting NEW_ORDERs; answer STATUS_REQUESTs: an order
        received and in `holding` rests in full, any other is not held."""
        loop = asyncio.get_running_loop()
        reader = FrameReader()
        try:
            while data := await loop.sock_recv(conn, 1 << 16):
                for frame in reader.feed(data):
                    assert isinstance(frame, Frame), frame
                    key = (frame["account_id"], frame["order_id"])
                    if frame.type is MsgType.NEW_ORDER:
                        self.orders[key] += 1
                    elif frame.type is MsgType.CANCEL_REQUEST:
                        self.cancels[key] += 1
                    elif frame.type is MsgType.STATUS_REQUEST and holding is not None:
                        self.sent += 1
                        seq = self.sent
                        left = 100 if key in holding and self.orders[key] else 0
                        status = dict(order_id=key[1], account_id=key[0], exec_quantity=left)
                        await loop.sock_sendall(conn, encode(MsgType.ORDER_STATUS, seq, **status))
        except ConnectionError:
            pass
        finally:
            conn.close()

    async def answer(self, conn: socket.socket, msg_type: MsgType, **values: Any) -> None:
        """Send the gateway a frame (a FILL, a CANCELLED) on `conn`, read or not."""
        self.sent += 1
        await asyncio.get_running_loop().sock_sendall(conn, encode(msg_type, self.sent, **values))


async def snapshot_now(gw: Gateway) -> dict[str, Any]:
    """`riskgw ctl snapshot` in process: the snapshotter's answer, which must say it was written."""
    assert gw.snapshots is not None, "the gateway takes no snapshots"
    answer = await gw.snapshots.take_now()
    assert answer["ok"], answer
    return answer


def spawn(*argv: str) -> tuple[subprocess.Popen[str], str]:
    """Start a riskgw command; returns it and the first stderr line that says where it listens."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "riskgw.cli", *argv],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stderr is not None
    seen: list[str] = []
    while True:
        line = proc.stderr.readline()
        if "listening on" in line:
            return proc, line
        if not line:
            proc.wait()
            raise AssertionError(f"riskgw {argv[0]} exited: {''.join(seen)}")
        seen.append(line)


def trade_one_order(port: int, username: str = "alice", password: str = "pw-a", account: int = 1) -> None:
    """Log on to a gateway on `port`, send one order and see it accepted and filled for 100."""

    async def broker() -> None:
        c = await Client.connect(port)
        c.send(MsgType.LOGON, username=username, password=password)
        await c.recv_type(MsgType.LOGON_ACK)
        c.send(MsgType.NEW_ORDER, **held_order(1, account=account))
        await c.recv_type(MsgType.ACCEPTED)
        assert (await c.recv_type(MsgType.FILL))["exec_quantity"] == 100
        await c.close()

    asyncio.run(asyncio.wait_for(broker(), 20))
