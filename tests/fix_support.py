"""Test helpers for the FIX acceptor: a QuickFIX initiator as the broker, and a raw FIX socket.

The broker is QuickFIX itself (a third-party engine), not our code: its session layer is the one a
real broker runs. Its callbacks run on QuickFIX's thread and hand each message to the test's asyncio
loop as a dict of tag -> value, so tests await messages one by one.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import itertools
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import quickfix
from gateway_support import SMALL, STEP, Stack, start_stack

from riskgw.exchange.sim import Behaviour
from riskgw.gateway.fix import data_dictionary
from riskgw.gateway.fixconfig import FixConfig, FixSessionConfig, Instrument
from riskgw.scenario import ref_price, ticket

SOH = "\x01"
BROKER2_PASSWORD = "pw-2"


def fix_config() -> FixConfig:
    """BROKER1 trades every account; BROKER2 (with a password) trades accounts 1 and 2. Symbols are
    the data set's tickets, plus ACME for the first security account 1 holds."""
    instruments = {ticket(s): Instrument(ticket(s), ticket(s), 2) for s in range(SMALL.n_securities)}
    instruments["ACME"] = Instrument("ACME", ticket(SMALL.held(1, 0)), 2)
    return FixConfig(
        sessions=[
            FixSessionConfig("BROKER1", "RISKGW", None),
            FixSessionConfig("BROKER2", "RISKGW", frozenset({1, 2}), password=BROKER2_PASSWORD),
        ],
        port=0,
        instruments=instruments,
    )


# Brokers still running: QuickFIX threads must be stopped before the objects they use go away, also
# when a test fails half-way, or the process dies at garbage collection.
_LIVE: list[Broker] = []


@contextlib.asynccontextmanager
async def fix_stack(tmp_path: Path, behaviour: Behaviour, **settings: Any) -> AsyncIterator[Stack]:
    """The gateway with fix_config() and the exchange; on the way out, every broker engine of the
    test and then the gateway are stopped, whatever happened."""
    stack = await start_stack(tmp_path, behaviour, fix=settings.pop("fix", None) or fix_config(), **settings)
    try:
        yield stack
    finally:
        while _LIVE:
            await _LIVE.pop().stop()
        await stack.close()


def fix_port(stack: Stack) -> int:
    assert stack.running.fix is not None
    return int(stack.running.fix.port)


def parse(raw: str) -> dict[int, str]:
    out: dict[int, str] = {}
    for part in raw.split(SOH):
        tag, sep, value = part.partition("=")
        if sep and tag.isdigit():
            out[int(tag)] = value
    return out


def utc(seconds: float) -> str:
    """A UTCTimestamp `seconds` after midnight of a fixed day (the rules' rate windows read it)."""
    stamp = dt.datetime(2026, 1, 5, tzinfo=dt.UTC) + dt.timedelta(seconds=seconds)
    return stamp.strftime("%Y%m%d-%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}"


def now_utc() -> str:
    """SendingTime (52) for a raw message: QuickFIX refuses one more than 2 minutes off."""
    now = dt.datetime.now(dt.UTC)
    return now.strftime("%Y%m%d-%H:%M:%S.") + f"{now.microsecond // 1000:03d}"


def price_text(units: int) -> str:
    return f"{units // 100}.{units % 100:02d}"


class Broker(quickfix.Application):  # type: ignore[misc]
    """A QuickFIX initiator session; `messages` gets ("app" | "admin" | "logon" | "logout", fields)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, password: str | None) -> None:
        super().__init__()
        self.loop = loop
        self.password = password
        self.messages: asyncio.Queue[tuple[str, dict[int, str]]] = asyncio.Queue()
        self.sid: Any = None
        self.admin: list[dict[int, str]] = []  # every admin message received, in order
        self.initiator: Any = None
        self.keep: tuple[Any, ...] = ()
        self._ids = itertools.count(1)

    def _put(self, kind: str, fields: dict[int, str]) -> None:
        with contextlib.suppress(RuntimeError):  # the test's loop is gone
            self.loop.call_soon_threadsafe(self.messages.put_nowait, (kind, fields))

    def onCreate(self, sid: Any) -> None:
        self.sid = sid

    def onLogon(self, sid: Any) -> None:
        self._put("logon", {})

    def onLogout(self, sid: Any) -> None:
        self._put("logout", {})

    def toAdmin(self, message: Any, sid: Any) -> None:
        if self.password is not None and message.getHeader().getField(35) == "A":
            message.setField(554, self.password)

    def fromAdmin(self, message: Any, sid: Any) -> None:
        fields = parse(message.toString())
        self.admin.append(fields)
        self._put("admin", fields)

    def toApp(self, message: Any, sid: Any) -> None:
        pass

    def fromApp(self, message: Any, sid: Any) -> None:
        self._put("app", parse(message.toString()))

    # ------------------------------------------------------------------ test side

    async def next(self, kinds: tuple[str, ...] = ("app",)) -> tuple[str, dict[int, str]]:
        """The next event of one of these kinds (others are skipped), or fail after STEP s."""
        while True:
            kind, fields = await asyncio.wait_for(self.messages.get(), STEP)
            if kind in kinds:
                return kind, fields

    async def recv(self, msg_type: str, **expect: str) -> dict[int, str]:
        """The next application message; it must be `msg_type` and have the tags given as T<tag>=."""
        _, fields = await self.next()
        assert fields.get(35) == msg_type, f"expected 35={msg_type}, got {fields}"
        for key, value in expect.items():
            assert fields.get(int(key[1:])) == value, f"tag {key[1:]}: expected {value!r} in {fields}"
        return fields

    async def report(self, exec_type: str, **expect: str) -> dict[int, str]:
        return await self.recv("8", T150=exec_type, **expect)

    def send(self, msg_type: str, *fields: tuple[int, str]) -> None:
        message = quickfix.Message()
        message.getHeader().setField(quickfix.BeginString("FIX.4.4"))
        message.getHeader().setField(quickfix.MsgType(msg_type))
        for tag, value in fields:
            message.setField(tag, value)
        quickfix.Session.sendToTarget(message, self.sid)

    def new_order(
        self,
        cl_ord_id: str,
        symbol: str,
        side: str,
        quantity: int,
        price: str,
        account: int | None,
        seconds: float,
        ord_type: str = "2",
    ) -> None:
        fields = [
            (11, cl_ord_id),
            (55, symbol),
            (54, side),
            (60, utc(seconds)),
            (38, str(quantity)),
            (40, ord_type),
        ]
        if price:
            fields.append((44, price))
        if account is not None:
            fields.insert(0, (1, str(account)))
        self.send("D", *fields)

    def held(self, cl_ord_id: str, account: int, k: int = 0, seconds: float = 0.0, **kw: Any) -> None:
        """A buy of 100 at the reference price of the k-th security the account holds (passes every
        rule), with any of side, quantity, price (units) changed."""
        sec = SMALL.held(account, k)
        self.new_order(
            cl_ord_id,
            kw.get("symbol", ticket(sec)),
            kw.get("side", "1"),
            kw.get("quantity", 100),
            price_text(kw.get("price", ref_price(sec))),
            account,
            seconds or 34_200 + next(self._ids),
        )

    def cancel(self, cl_ord_id: str, orig: str, symbol: str, side: str = "1", quantity: int = 100) -> None:
        self.send(
            "F", (41, orig), (11, cl_ord_id), (55, symbol), (54, side), (60, utc(1)), (38, str(quantity))
        )

    def replace(
        self,
        cl_ord_id: str,
        orig: str,
        symbol: str,
        quantity: int,
        price: str,
        side: str = "1",
        seconds: float = 2,
    ) -> None:
        self.send(
            "G",
            (41, orig),
            (11, cl_ord_id),
            (55, symbol),
            (54, side),
            (60, utc(seconds)),
            (38, str(quantity)),
            (40, "2"),
            (44, price),
        )

    def session(self) -> Any:
        return quickfix.Session.lookupSession(self.sid)

    async def logout(self) -> None:
        """Log out and wait for the gateway's Logout, then stop the engine."""
        session = self.session()
        if session is not None and session.isLoggedOn():
            session.logout()
            await self.next(("logout",))
        await self.stop()

    async def stop(self) -> None:
        """Stop QuickFIX at once (a broker that vanishes: no Logout of its own is waited for)."""
        if self in _LIVE:
            _LIVE.remove(self)
        if self.initiator is not None:
            initiator, self.initiator = self.initiator, None
            await asyncio.get_running_loop().run_in_executor(None, initiator.stop, True)


async def connect(
    tmp_path: Path,
    port: int,
    sender: str = "BROKER1",
    target: str = "RISKGW",
    password: str | None = None,
    store: str = "broker1",
    logon: bool = True,
) -> Broker:
    """A broker engine connected to the gateway's FIX port; logged on unless logon=False."""
    directory = tmp_path / store
    directory.mkdir(exist_ok=True)
    cfg = directory / "initiator.cfg"
    cfg.write_text(
        "\n".join(
            [
                "[DEFAULT]",
                "ConnectionType=initiator",
                "SocketConnectHost=127.0.0.1",
                f"SocketConnectPort={port}",
                "HeartBtInt=30",
                "ReconnectInterval=1",
                f"FileStorePath={directory}",
                "NonStopSession=Y",
                "UseDataDictionary=Y",
                f"DataDictionary={data_dictionary()}",
                "[SESSION]",
                "BeginString=FIX.4.4",
                f"SenderCompID={sender}",
                f"TargetCompID={target}",
            ]
        )
        + "\n",
        encoding="utf-8",
    )
    broker = Broker(asyncio.get_running_loop(), password)
    settings = quickfix.SessionSettings(str(cfg))
    store = quickfix.FileStoreFactory(settings)
    broker.keep = (settings, store)  # QuickFIX holds references to these, not copies
    broker.initiator = quickfix.SocketInitiator(broker, store, settings)
    broker.initiator.start()
    _LIVE.append(broker)
    if logon:
        await broker.next(("logon",))
    return broker


async def wait_until(condition: Callable[[], bool]) -> None:
    """Poll the condition while the loop runs other work; fail after STEP s."""
    async with asyncio.timeout(STEP):
        while not condition():
            await asyncio.sleep(0.01)


# ---------------------------------------------------------------------------- raw FIX over a socket


def raw_message(
    fields: list[tuple[int, str]], body_length: int | None = None, checksum: int | None = None
) -> bytes:
    """One FIX message from header-and-body fields (8 and 9 and 10 added, correct unless given)."""
    body = "".join(f"{tag}={value}{SOH}" for tag, value in fields)
    head = f"8=FIX.4.4{SOH}9={len(body) if body_length is None else body_length}{SOH}"
    text = head + body
    total = sum(text.encode()) % 256 if checksum is None else checksum
    return (text + f"10={total:03d}{SOH}").encode()


class RawFix:
    """A FIX peer that writes what it is told: for bad input the gateway must survive."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, sender: str, target: str
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.sender = sender
        self.target = target
        self.seq = 0
        self._buf = b""

    @classmethod
    async def connect(cls, port: int, sender: str = "BROKER1", target: str = "RISKGW") -> RawFix:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), STEP)
        return cls(reader, writer, sender, target)

    def header(self, msg_type: str, seq: int | None = None) -> list[tuple[int, str]]:
        if seq is None:
            self.seq += 1
            seq = self.seq
        return [(35, msg_type), (49, self.sender), (56, self.target), (34, str(seq)), (52, now_utc())]

    def send(self, msg_type: str, *body: tuple[int, str]) -> None:
        self.writer.write(raw_message(self.header(msg_type) + list(body)))

    def raw(self, data: bytes) -> None:
        self.writer.write(data)

    async def logon(self, password: str | None = None) -> dict[int, str]:
        body = [(98, "0"), (108, "30")]
        if password is not None:
            body.append((554, password))
        self.send("A", *body)
        return await self.recv("A")

    async def next(self) -> dict[int, str] | None:
        """The next message, or None when the gateway closed the connection."""
        while True:
            end = self._buf.find(b"\x0110=")
            if end >= 0 and self._buf.find(b"\x01", end + 1) >= 0:
                stop = self._buf.find(b"\x01", end + 1) + 1
                message, self._buf = self._buf[:stop], self._buf[stop:]
                return parse(message.decode())
            data = await asyncio.wait_for(self.reader.read(65536), STEP)
            if not data:
                return None
            self._buf += data

    async def recv(self, msg_type: str) -> dict[int, str]:
        """The next message that is not a Heartbeat or TestRequest; it must be `msg_type`."""
        while True:
            fields = await self.next()
            assert fields is not None, f"the gateway closed the connection while {msg_type} was expected"
            if fields.get(35) not in ("0", "1") or msg_type in ("0", "1"):
                assert fields.get(35) == msg_type, f"expected 35={msg_type}, got {fields}"
                return fields

    async def closed(self) -> list[dict[int, str]]:
        """Everything the gateway sends until it closes the connection."""
        out = []
        while (fields := await self.next()) is not None:
            out.append(fields)
        return out

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()
