"""What rgw_card must send back for a sequence of rx packets (riskgw/card/regmap.py), computed
with the software engine: the reference the card's cocotb suite compares every tx frame with."""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass, field

from riskgw.doe.image import Image
from riskgw.doe.isa import Event
from riskgw.engine.csvdata import table_formats
from riskgw.engine.engine import Engine, event_inputs
from riskgw.gateway import protocol
from riskgw.gateway.link import order_values
from riskgw.gateway.protocol import HEADER, LAYOUTS, MsgType, Reason
from riskgw.scenario import DataSet, Session

Value = int | None

RUNS = {
    MsgType.NEW_ORDER: Event.NEW,
    MsgType.FILL: Event.FILL,
    MsgType.EXCH_REJECT: Event.REJECT,
    MsgType.CANCELLED: Event.CANCEL,
}
HAS_IDS = {*RUNS, MsgType.CANCEL_REQUEST, MsgType.ACCEPTED, MsgType.REJECTED}
TS_OFF = 56  # REJECTED.ts: the rx cycle stamp, which only the card knows


def _i64(b: bytes) -> int:
    return int.from_bytes(b, "little", signed=True)


def frame_inputs(frame: bytes) -> list[Value]:
    """The DOE input words the card makes of a whole NEW_ORDER / FILL / EXCH_REJECT / CANCELLED
    frame: fixed offsets, raw bytes (rgw_card.sv)."""
    t = MsgType(frame[0])
    words: list[Value] = [
        _i64(frame[8:16]),
        _i64(frame[16:20]),
        _i64(frame[24:32]),
        _i64(frame[32:40]),
        frame[20],
        _i64(frame[40:48]),
        _i64(frame[48:56]),
        None,
        None,
        _i64(frame[56:64]),
    ]
    if t is not MsgType.NEW_ORDER:
        words[7] = _i64(frame[64:72])
        words[8] = _i64(frame[72:80])
    return words


def gateway_inputs(frame: bytes) -> list[Value]:
    """The input words the software gateway makes of the same frame (decode, order fields)."""
    f = protocol.decode(frame)
    values = order_values(f)
    if f.type is not MsgType.NEW_ORDER:
        values |= {"exec_price": f["exec_price"], "exec_quantity": f["exec_quantity"]}
    return list(event_inputs(values))


@dataclass
class Record:
    kind: str  # "frame", "garbage", "trunc"
    data: bytes = b""
    seq: int = 0


def split_packet(data: bytes) -> list[Record]:
    """The records the card makes of one rx packet: FrameReader's resynchronisation, with the
    packet's end cutting a frame short and ending a garbage run."""
    out: list[Record] = []
    pos, skipped, n = 0, False, len(data)
    while pos < n:
        if n - pos >= HEADER.size and protocol.plausible_header(data, pos):
            length = HEADER.unpack_from(data, pos)[2]
            if skipped:
                out.append(Record("garbage"))
                skipped = False
            if n - pos >= length:
                out.append(Record("frame", data[pos : pos + length]))
                pos += length
            else:
                out.append(Record("trunc", seq=HEADER.unpack_from(data, pos)[3]))
                pos = n
        else:
            skipped = True
            pos = pos + 1 if n - pos >= HEADER.size else n
    if skipped:
        out.append(Record("garbage"))
    return out


def rejected(seq: int, order_id: int, account_id: int, reason: Reason, failed: tuple[int, ...]) -> bytes:
    mask = sum(1 << i for i in failed).to_bytes(protocol.FAILED_MASK_BYTES, "little")
    return protocol.encode(
        MsgType.REJECTED,
        seq,
        order_id=order_id,
        account_id=account_id,
        reason=int(reason),
        n_failed=len(failed),
        failed_mask=mask,
        ts=0,
    )


@dataclass
class Expected:
    """Tx frames in order as (session, bytes), with REJECTED.ts zeroed, and what was counted."""

    frames: list[tuple[int, bytes]] = field(default_factory=list)
    rx_frames: int = 0
    events: dict[Event, int] = field(default_factory=dict)
    accepted: int = 0
    rejected: int = 0
    protocol_errors: int = 0
    rule_failures: dict[int, int] = field(default_factory=dict)
    new_orders: list[tuple[int, int]] = field(default_factory=list)  # (seq, session) of each NEW


class CardModel:
    """Feeds rx packets to the software engine the way the card does and lists the tx frames."""

    def __init__(self, engine: Engine, exch_session: int) -> None:
        self.engine = engine
        self.exch = exch_session
        self.out = Expected()

    def packet(self, session: int, data: bytes) -> None:
        for rec in split_packet(data):
            self._record(session, rec)

    def _record(self, session: int, rec: Record) -> None:
        out = self.out
        if rec.kind != "frame":
            out.protocol_errors += 1
            out.frames.append((session, rejected(rec.seq, 0, 0, Reason.PROTOCOL, ())))
            return
        out.rx_frames += 1
        frame = rec.data
        t = MsgType(frame[0])
        seq = HEADER.unpack_from(frame)[3]
        if t not in RUNS:
            ids = (_i64(frame[8:16]), _i64(frame[16:20])) if t in HAS_IDS else (0, 0)
            out.protocol_errors += 1
            out.frames.append((session, rejected(seq, *ids, Reason.PROTOCOL, ())))
            return
        event = RUNS[t]
        inputs = frame_inputs(frame)
        d = self.engine.process(event, inputs)
        out.events[event] = out.events.get(event, 0) + 1
        for r in d.failed:
            out.rule_failures[r] = out.rule_failures.get(r, 0) + 1
        if event is not Event.NEW:
            out.frames.append((session, frame))
            return
        out.new_orders.append((seq, session))
        if d.accepted:
            out.accepted += 1
            out.frames.append((session, bytes([int(MsgType.ACCEPTED)]) + frame[1:]))
            out.frames.append((self.exch, frame))
        else:
            out.rejected += 1
            ids = (_i64(frame[8:16]), _i64(frame[16:20]))
            out.frames.append((session, rejected(seq, *ids, Reason.RULE, tuple(sorted(d.failed)))))


def without_ts(frame: bytes) -> bytes:
    """A tx frame with REJECTED.ts zeroed (the card stamps it with its rx cycle)."""
    if frame and frame[0] == MsgType.REJECTED and len(frame) == LAYOUTS[MsgType.REJECTED].size:
        return frame[:TS_OFF] + bytes(8) + frame[TS_OFF + 8 :]
    return frame


def order_frame(kind: Event, seq: int, f: dict[str, int | str | None]) -> bytes:
    """The wire frame of an event from `random_events`-style fields (NULL fields become 0)."""
    t = {Event.NEW: MsgType.NEW_ORDER, Event.FILL: MsgType.FILL, Event.REJECT: MsgType.EXCH_REJECT}.get(
        kind, MsgType.CANCELLED
    )
    names = {fl.name for fl in LAYOUTS[t].fields}
    return protocol.encode(t, seq, **{k: v for k, v in f.items() if k in names and v is not None})


def garble(rng: random.Random, frames: list[bytes], share: float) -> bytes:
    """Frames joined into one packet, random bytes put between some of them and inside some."""
    out = bytearray()
    for fr in frames:
        if rng.random() < share:
            out += rng.randbytes(rng.randint(1, 20))
        if rng.random() < share / 2:
            cut = rng.randint(1, len(fr) - 1)
            fr = fr[:cut] + rng.randbytes(rng.randint(1, 12)) + fr[cut:]
        out += fr
    return bytes(out)


def stray_frames(rng: random.Random, seq: int) -> list[bytes]:
    """Whole frames the card does not run, and frames with a bad version or length."""
    bad_version = bytearray(protocol.encode(MsgType.HEARTBEAT, seq))
    bad_version[1] = 2
    bad_length = bytearray(protocol.encode(MsgType.CANCEL_REQUEST, seq, order_id=5, account_id=1))
    struct.pack_into("<H", bad_length, 2, 32)
    unknown = bytearray(protocol.encode(MsgType.HEARTBEAT, seq))
    unknown[0] = 0x7F
    return [
        protocol.encode(MsgType.HEARTBEAT, seq),
        protocol.encode(MsgType.LOGON, seq, username="u", password="p"),
        protocol.encode(MsgType.CANCEL_REQUEST, seq, order_id=rng.randint(1, 99), account_id=3),
        bytes(bad_version),
        bytes(bad_length),
        bytes(unknown),
    ]


def scenario_flow(
    image: Image, n_orders: int, seed: int
) -> tuple[list[tuple[int, list[Value]]], list[tuple[Event, bytes]]]:
    """Rows and event frames of riskgw.scenario on a small data set: the reference session for
    the example rules, where every rule rejects some orders and the rest pass.

    The session asks for each NEW's verdict as it goes; a scratch engine gives it, from the same
    words the card makes of the frames (an exchange reject carries 0 for exec_price, not NULL).
    """
    data = DataSet(n_accounts=20, n_securities=8, holdings_per_account=2)
    tables = {t.name: t for t in image.tables}
    rows: list[tuple[int, list[Value]]] = []
    for name, (header, values) in data.tables().items():
        config = tables[name]
        formats = {f.name: f for f in table_formats(config)}
        for row in values:
            words: list[Value] = [None] * len(config.columns)
            for col, v in zip(header, row, strict=True):
                fmt = formats[col]
                words[fmt.first_word : fmt.first_word + fmt.n_words] = fmt.parse(
                    "" if v is None else str(v), name, 0
                )
            rows.append((config.id, words))
    scratch = Engine(image, backend="interp")
    for tid, words in rows:
        scratch.load_row(tid, words)
    frames: list[tuple[Event, bytes]] = []

    def decide(row: list[int | str | None]) -> bool:
        event = _SCENARIO_EVENTS[str(row[0])]
        fields = dict(zip(_SCENARIO_FIELDS, row[1:], strict=True))
        frame = order_frame(event, len(frames) + 1, fields)
        frames.append((event, frame))
        return scratch.process(event, frame_inputs(frame)).accepted

    Session(data=data, n_orders=n_orders, seed=seed).run(decide)
    return rows, frames


_SCENARIO_EVENTS = {"NEW": Event.NEW, "FILL": Event.FILL, "REJECT": Event.REJECT, "CANCEL": Event.CANCEL}
_SCENARIO_FIELDS = (
    "order_id",
    "account_id",
    "ticket_id",
    "direction",
    "price",
    "quantity",
    "exec_price",
    "exec_quantity",
    "ts",
)
