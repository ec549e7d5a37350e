"""The riskgw wire protocol: fixed-size little-endian binary frames.

One protocol for brokers, the card and the exchange simulator. Every frame is a multiple of
8 bytes, starts with the same 8-byte header, and has a fixed size per type, so hardware can parse
it in one pass: the header's type gives the length, and every field sits at a fixed offset.
This module is the single source of the layouts; `docs/protocol.md` and the SystemVerilog package
are generated from it.

Header (8 bytes)::

     0      1      2             4                            8
    +------+------+-------------+----------------------------+
    | type | ver  |  length     |  seq                       |
    +------+------+-------------+----------------------------+

`length` is the whole frame in bytes (header included) and must equal the size of `type`;
`seq` counts frames per direction and session, from 1.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, field
from typing import Any

VERSION = 1
HEADER = struct.Struct("<BBHI")
_Struct = struct.Struct  # for annotations inside Layout, whose field `struct` hides the module
TICKET_BYTES = 16
CRED_BYTES = 16
FAILED_MASK_BYTES = 32  # up to 256 rules
TEXT_FIELDS = frozenset({"ticket_id", "username", "password"})  # bytes fields decoded as UTF-8 text


class MsgType(enum.IntEnum):
    LOGON = 0x01  # broker -> gateway: credentials
    LOGON_ACK = 0x02  # gateway -> broker
    LOGOUT = 0x03  # either way, with a reason
    HEARTBEAT = 0x04  # either way
    NEW_ORDER = 0x10  # broker -> gateway, and gateway -> exchange once accepted
    CANCEL_REQUEST = 0x11  # broker -> gateway -> exchange
    STATUS_REQUEST = 0x12  # gateway -> exchange: is this order still open? (after a reconnect)
    ACCEPTED = 0x20  # gateway -> broker: the order was forwarded
    REJECTED = 0x21  # gateway -> broker: failed rules, or a protocol / permission reject
    FILL = 0x30  # exchange -> gateway -> broker
    EXCH_REJECT = 0x31  # exchange -> gateway -> broker
    CANCELLED = 0x32  # exchange -> gateway -> broker: exec_quantity is the quantity cancelled
    ORDER_STATUS = 0x33  # exchange -> gateway: exec_quantity is the quantity still open (0: none)


class Reason(enum.IntEnum):
    NONE = 0
    RULE = 1  # one or more risk rules failed: see the failed-rule mask
    PROTOCOL = 2  # malformed frame: bad length, unknown type, bad version
    NOT_PERMITTED = 3  # the session may not trade this account, or is not logged on
    KILL_SWITCH = 4  # a kill switch is on for the account, the session or the gateway
    UNKNOWN_ORDER = 5  # a cancel for an order that is not open
    BAD_CREDENTIALS = 6
    SHUTDOWN = 7
    HEARTBEAT_TIMEOUT = 8  # nothing from the session for heartbeat_timeout heartbeat intervals
    JOURNAL_FAILED = 9  # the gateway cannot write its journal (a full disk, say): it stops
    EXCHANGE_BACKLOG = 10  # the exchange reads too little of what it is sent: new orders are refused


@dataclass(frozen=True)
class Field:
    name: str
    fmt: str  # struct format of one field: q (i64), i (i32), H (u16), B (u8), Ns (bytes)
    doc: str

    @property
    def size(self) -> int:
        return struct.calcsize("<" + self.fmt)


@dataclass(frozen=True)
class Layout:
    type: MsgType
    fields: tuple[Field, ...]
    doc: str
    struct: struct.Struct = field(init=False, compare=False, repr=False)
    # Per-field work decided once, so encoding and decoding a frame only loop over the fields.
    frame_struct: _Struct = field(init=False, compare=False, repr=False)  # header + body
    names: frozenset[str] = field(init=False, compare=False, repr=False)
    packing: tuple[tuple[str, int], ...] = field(init=False, compare=False, repr=False)  # size; -1: int
    unpacking: tuple[tuple[int, str, bool], ...] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        fmt = "<" + "".join(f.fmt for f in self.fields)
        object.__setattr__(self, "struct", struct.Struct(fmt))
        object.__setattr__(self, "frame_struct", struct.Struct(HEADER.format + fmt[1:]))
        object.__setattr__(self, "names", frozenset(f.name for f in self.fields))
        object.__setattr__(
            self, "packing", tuple((f.name, f.size if f.fmt.endswith("s") else -1) for f in self.fields)
        )
        object.__setattr__(
            self,
            "unpacking",
            tuple(
                (i + 4, f.name, f.name in TEXT_FIELDS)  # index into frame_struct's tuple
                for i, f in enumerate(self.fields)
                if not f.name.startswith("pad")
            ),
        )
        if (HEADER.size + self.struct.size) % 8:
            raise ValueError(
                f"{self.type.name}: {HEADER.size + self.struct.size} bytes is not a multiple of 8"
            )

    @property
    def size(self) -> int:
        return HEADER.size + self.struct.size

    def offsets(self) -> list[tuple[Field, int]]:
        out, pos = [], HEADER.size
        for f in self.fields:
            out.append((f, pos))
            pos += f.size
        return out


def _order_fields() -> tuple[Field, ...]:
    return (
        Field("order_id", "q", "the broker's order id, unique per day"),
        Field("account_id", "i", "account"),
        Field("direction", "B", "0 buy, 1 sell"),
        Field("pad0", "3s", "zero"),
        Field("ticket_id", f"{TICKET_BYTES}s", "security code, UTF-8, zero-padded"),
        Field("price", "q", "limit price in the instrument's smallest unit"),
        Field("quantity", "q", "quantity"),
        Field("ts", "q", "sender's time, ns"),
    )


def _exec_fields() -> tuple[Field, ...]:
    return (
        *_order_fields(),
        Field("exec_price", "q", "executed price (FILL)"),
        Field("exec_quantity", "q", "executed quantity (FILL), cancelled quantity (CANCELLED)"),
    )


LAYOUTS: dict[MsgType, Layout] = {
    layout.type: layout
    for layout in (
        Layout(
            MsgType.LOGON,
            (
                Field("username", f"{CRED_BYTES}s", "user, UTF-8, zero-padded"),
                Field("password", f"{CRED_BYTES}s", "password, UTF-8, zero-padded"),
            ),
            "Opens a session; the gateway answers LOGON_ACK or LOGOUT with a reason.",
        ),
        Layout(
            MsgType.LOGON_ACK,
            (Field("heartbeat_ms", "i", "interval the gateway expects"), Field("pad0", "4s", "zero")),
            "The session is open.",
        ),
        Layout(
            MsgType.LOGOUT,
            (Field("reason", "H", "Reason"), Field("pad0", "6s", "zero")),
            "Closes the session.",
        ),
        Layout(MsgType.HEARTBEAT, (), "Keeps an idle session alive."),
        Layout(MsgType.NEW_ORDER, _order_fields(), "A new limit order (64 bytes: one 512-bit beat)."),
        Layout(
            MsgType.CANCEL_REQUEST,
            (
                Field("order_id", "q", "the order to cancel"),
                Field("account_id", "i", "its account"),
                Field("pad0", "4s", "zero"),
            ),
            "Asks the exchange to cancel the rest of an open order.",
        ),
        Layout(
            MsgType.STATUS_REQUEST,
            (
                Field("order_id", "q", "the order"),
                Field("account_id", "i", "its account"),
                Field("pad0", "4s", "zero"),
            ),
            "Asks the exchange whether an order is still open (the gateway, after it reconnects).",
        ),
        Layout(MsgType.ACCEPTED, _order_fields(), "The order passed every rule and went to the exchange."),
        Layout(
            MsgType.REJECTED,
            (
                Field("order_id", "q", "the order"),
                Field("account_id", "i", "its account"),
                Field("reason", "H", "Reason"),
                Field("n_failed", "H", "number of failed rules"),
                Field("failed_mask", f"{FAILED_MASK_BYTES}s", "bit i set: rule id i failed"),
                Field("ts", "q", "gateway time, ns"),
            ),
            "The order did not go to the exchange.",
        ),
        Layout(
            MsgType.FILL, _exec_fields(), "An execution: the order's fields, exec_price and exec_quantity."
        ),
        Layout(MsgType.EXCH_REJECT, _exec_fields(), "The exchange refused the order."),
        Layout(MsgType.CANCELLED, _exec_fields(), "The exchange cancelled exec_quantity of the order."),
        Layout(
            MsgType.ORDER_STATUS,
            _exec_fields(),
            "Answers STATUS_REQUEST: exec_quantity is the quantity the exchange still holds open, 0 when "
            "it holds none of the order (then only order_id and account_id are set).",
        ),
    )
}
MAX_FRAME = max(layout.size for layout in LAYOUTS.values())
_TYPES = {int(t): t for t in MsgType}
_LAYOUT_OF = {int(t): layout for t, layout in LAYOUTS.items()}


class ProtocolError(ValueError):
    """A frame that cannot be parsed; the gateway answers it with a PROTOCOL reject."""


@dataclass(slots=True)
class Frame:
    type: MsgType
    seq: int
    values: dict[str, Any]
    body: bytes = b""  # the bytes after the header, as received (empty for a frame built here)

    def __getitem__(self, name: str) -> Any:
        return self.values[name]


def encode(msg_type: MsgType, seq: int, **values: Any) -> bytes:
    layout = LAYOUTS[msg_type]
    if not layout.names.issuperset(values):
        unknown = set(values) - layout.names
        raise ProtocolError(f"{msg_type.name} has no field {sorted(unknown)[0]}")
    args: list[Any] = [msg_type, VERSION, layout.frame_struct.size, seq]
    get = values.get
    for name, size in layout.packing:
        value = get(name)
        if size < 0:
            value = 0 if value is None else value if value.__class__ is int else int(value)
        else:
            if value.__class__ is str:
                value = value.encode("utf-8")
            elif not value:
                value = b""
            if len(value) > size:
                raise ProtocolError(f"{name}: {len(value)} bytes, at most {size}")
        args.append(value)
    return layout.frame_struct.pack(*args)


def decode(data: bytes | memoryview) -> Frame:
    """One whole frame (exactly its length)."""
    if len(data) < HEADER.size:
        raise ProtocolError(f"{len(data)} bytes is shorter than a header")
    raw_type, version, length, _seq = HEADER.unpack_from(data)
    msg_type = _TYPES.get(raw_type)
    if msg_type is None:
        raise ProtocolError(f"unknown frame type {raw_type:#04x}")
    if version != VERSION:
        raise ProtocolError(f"protocol version {version}, this gateway speaks {VERSION}")
    layout = LAYOUTS[msg_type]
    if length != layout.size or len(data) != layout.size:
        raise ProtocolError(f"{msg_type.name} is {layout.size} bytes, the header says {length}")
    return _decode_at(layout, data, 0)


def _decode_at(layout: Layout, data: bytes | bytearray | memoryview, pos: int) -> Frame:
    """The frame at `pos`, whose header is known to be `layout`'s."""
    raw = layout.frame_struct.unpack_from(data, pos)
    values: dict[str, Any] = {}
    for i, name, text in layout.unpacking:
        v = raw[i]
        values[name] = v.rstrip(b"\0").decode("utf-8", errors="replace") if text else v
    return Frame(layout.type, raw[3], values, bytes(data[pos + HEADER.size : pos + layout.frame_struct.size]))


def plausible_header(data: bytes | bytearray | memoryview, pos: int = 0) -> bool:
    """Whether a frame can start at `pos`: known type, our version, and that type's exact length."""
    raw_type, version, length, _seq = HEADER.unpack_from(data, pos)
    layout = LAYOUTS.get(raw_type)
    return layout is not None and version == VERSION and length == layout.size


class FrameReader:
    """Splits a byte stream into frames, and skips garbage between them.

    After bytes that cannot start a frame, the reader moves one byte at a time until a plausible
    header, and reports the skipped run once as a ProtocolError, so one bad frame costs only
    itself: valid frames after it are read as usual. Hardware resynchronises the same way.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._skipped = 0

    def feed(self, data: bytes) -> list[Frame | ProtocolError]:
        buf = self._buf
        buf += data
        out: list[Frame | ProtocolError] = []
        pos = 0
        end = len(buf)
        unpack = HEADER.unpack_from
        while end - pos >= HEADER.size:
            raw_type, version, length, _seq = unpack(buf, pos)
            layout = _LAYOUT_OF.get(raw_type)
            if layout is None or version != VERSION or length != layout.frame_struct.size:
                self._skipped += 1  # not a plausible header here
                pos += 1
                continue
            if end - pos < length:
                break
            if self._skipped:
                out.append(ProtocolError(f"skipped {self._skipped} bytes that are not a frame"))
                self._skipped = 0
            out.append(_decode_at(layout, buf, pos))
            pos += length
        del buf[:pos]
        return out

    @property
    def pending(self) -> int:
        return len(self._buf)
