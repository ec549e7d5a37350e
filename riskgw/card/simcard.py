"""`SimCard`: the Verilator model of `hdl/rgw_card.sv` behind the CardDriver interface.

Events travel as wire-protocol frames through the card's TOE streams, exactly as a TCP offload
engine would hand them over: a NEW as NEW_ORDER on a broker session, FILL / REJECT / CANCEL as
FILL / EXCH_REJECT / CANCELLED on the exchange session. The card's answers (ACCEPTED and the
forwarded NEW_ORDER, REJECTED with its failed-rule mask, or the exchange frame echoed once
applied) are decoded back into Decisions and checked frame by frame: a frame that is not the
answer the contract (riskgw/card/regmap.py) promises is a card fault. Tables are loaded and read
back through the registers (riskgw/card/regs.py), never taken from the software engine.

A frame has no NULL and fixed field widths (`direction` 0..255, `account_id` 32-bit), and the card
runs a NEW with NULL `exec_*`. An event whose fields a frame cannot hold is still sent when the
program never reads those fields for that event (they go as 0); otherwise `event_frame` says why
it cannot go.
"""

from __future__ import annotations

import collections
import contextlib
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from riskgw.card.driver import CardDriver, CardError
from riskgw.card.regmap import CONTROL_BLOCK, Status
from riskgw.card.regs import CardRegs
from riskgw.card.simlink import SimBus, SimLink, SimProcess, sim_card_argv
from riskgw.card.simserver import CardParams
from riskgw.doe.image import Image
from riskgw.doe.isa import INT32_MAX, INT32_MIN, INT64_MAX, INT64_MIN, N_EVENT_REGS, Event, EventField
from riskgw.engine.engine import ACCEPTED, Decision
from riskgw.engine.state import Snapshot
from riskgw.engine.table import Value
from riskgw.gateway.protocol import HEADER, MsgType, ProtocolError, Reason, decode, encode

BROKER_SESSION = 1
EXCH_SESSION = 2
BATCH = 256  # events per round trip
STATUS_ADDR = CONTROL_BLOCK.addr("STATUS")
CYCLES_PER_EVENT = 10_000  # generous: a SCAN holds the table unit for a whole table's rows
PER_EVENT_S = 0.25  # wall time an event may add to a call's deadline (a loaded machine is slow)

FRAME_TYPE = {
    Event.NEW: MsgType.NEW_ORDER,
    Event.FILL: MsgType.FILL,
    Event.REJECT: MsgType.EXCH_REJECT,
    Event.CANCEL: MsgType.CANCELLED,
}
_ORDER_FIELDS = (
    ("order_id", EventField.ORDER_ID, INT64_MIN, INT64_MAX),
    ("account_id", EventField.ACCOUNT_ID, INT32_MIN, INT32_MAX),
    ("direction", EventField.DIRECTION, 0, 255),
    ("price", EventField.PRICE, INT64_MIN, INT64_MAX),
    ("quantity", EventField.QUANTITY, INT64_MIN, INT64_MAX),
    ("ts", EventField.TS, INT64_MIN, INT64_MAX),
)
_EXEC_FIELDS = (
    ("exec_price", EventField.EXEC_PRICE, INT64_MIN, INT64_MAX),
    ("exec_quantity", EventField.EXEC_QUANTITY, INT64_MIN, INT64_MAX),
)


def section_reads(image: Image) -> dict[Event, frozenset[int]]:
    """The input registers each event's sections may read (for NEW, the ACCEPT section's too)."""
    out: dict[Event, frozenset[int]] = {}
    for event in FRAME_TYPE:
        sections = [event, Event.ACCEPT] if event is Event.NEW else [event]
        regs: set[int] = set()
        for section in sections:
            for bundle in image.code.get((section, 0), []):
                for insn in bundle:
                    regs.update(insn.srcs)
                    regs.add(insn.pred)
        out[event] = frozenset(r for r in regs if r < N_EVENT_REGS)
    return out


ALL_INPUTS = frozenset(range(N_EVENT_REGS))


def event_frame(event: Event, inputs: Sequence[Value], seq: int, reads: frozenset[int] = ALL_INPUTS) -> bytes:
    """The frame that carries `event` to the card; ValueError (one line) when no frame can.

    A field the frame cannot hold as it is (NULL, out of its range, or an exec field on a NEW,
    which the card runs as NULL) goes as 0 when the program never reads it for this event
    (`reads`, from section_reads): the card then computes what the event would.
    """
    msg_type = FRAME_TYPE.get(event)
    if msg_type is None:
        raise ValueError(f"{event.name} is not an event the card takes")
    values: dict[str, int | bytes] = {}
    fields = _ORDER_FIELDS + (_EXEC_FIELDS if event is not Event.NEW else ())
    for name, reg, lo, hi in fields:
        v = inputs[reg]
        if v is None or not lo <= v <= hi:
            if reg in reads:
                why = "is empty" if v is None else f"{v} is out of the frame field's range"
                raise ValueError(
                    f"{name} {why}, and the rules read it: a {msg_type.name} frame cannot carry it"
                )
            v = 0
        values[name] = v
    if event is Event.NEW:
        for name, reg, _lo, _hi in _EXEC_FIELDS:
            if inputs[reg] is not None and reg in reads:
                raise ValueError(f"a NEW with {name}, which the rules read: a NEW_ORDER frame has none")
    words = inputs[EventField.TICKET_ID_W0 : EventField.TICKET_ID_W1 + 1]
    if any(w is None for w in words):
        if reads & {EventField.TICKET_ID_W0, EventField.TICKET_ID_W1}:
            raise ValueError(
                f"ticket_id is empty, and the rules read it: a {msg_type.name} frame cannot carry it"
            )
        words = [0, 0]
    values["ticket_id"] = b"".join(int(w or 0).to_bytes(8, "little", signed=True) for w in words)
    return encode(msg_type, seq, **values)


class SimCard(CardDriver):
    """A simulated card reached over ZeroMQ: `SimCard.start()` runs one, `SimCard.connect()` uses one."""

    def __init__(self, link: SimLink, process: SimProcess | None = None) -> None:
        self.link = link
        self.server = process
        try:
            hello = link.hello()
            self.params = CardParams.from_hdl(hello["params"])
            self.regs = CardRegs(SimBus(link), self.params.doe)
            self.ident = self.regs.attach()
        except (CardError, KeyError, TypeError, ValueError) as exc:
            self._shutdown()
            raise CardError(f"cannot use the simulated card: {exc}") from None
        self._image: Image | None = None
        self._reads: dict[Event, frozenset[int]] = {}
        self._seq = 0
        self._closed = False
        # the digest of the program loaded while no row or event has reached the card since: a
        # load of the same program would give the same card (a pool loads its spares ahead)
        self._pristine: str | None = None

    @classmethod
    def start(
        cls,
        params: CardParams | None = None,
        timeout: float = 30.0,
        start_timeout: float = 900.0,
        log: Path | None = None,
        on_process: Callable[[SimProcess], None] | None = None,
    ) -> SimCard:
        """Start `riskgw sim-card` as a child process (building the model if it is not cached).
        `on_process` hears of the process as soon as it runs, so that another thread can stop a start
        nobody wants any more (a pool being closed): the start then fails with CardError."""
        p = params or CardParams()
        extra = ["--data-w", str(p.data_w), "--rows", str(p.doe.rows), "--ways", str(p.doe.ways)]
        process = SimProcess(sim_card_argv("tcp://127.0.0.1:0", extra), log=log)
        try:
            if on_process is not None:
                on_process(process)
            address = process.wait_ready(start_timeout)
        except CardError:
            process.stop()
            raise
        return cls(SimLink(address, timeout, process), process)

    @classmethod
    def connect(cls, address: str, timeout: float = 30.0) -> SimCard:
        """Use a server that is already running (`riskgw sim-card --listen ADDRESS`)."""
        return cls(SimLink(address, timeout))

    def rest(self) -> None:
        """Stop the card's clock until the next request: a spare that waits costs no CPU (its
        heartbeat stands still meanwhile, so nothing should watch it)."""
        if self._closed:
            raise CardError("the card is closed")
        self.link.call({"op": "rest"})

    # ------------------------------------------------------------------ CardDriver

    def _live(self) -> Image:
        if self._closed:
            raise CardError("the card is closed")
        if self._image is None:
            raise CardError("no program image is loaded")
        return self._image

    @property
    def image(self) -> Image:
        return self._live()

    def load_image(self, image: Image) -> None:
        if self._closed:
            raise CardError("the card is closed")
        digest = image.digest()
        if self._pristine == digest and self._image is not None:
            self._image = image  # loaded already, and nothing has run since: the reset would redo it
            return
        self._image = None
        self._pristine = None
        self.regs.load_image(image)
        self.regs.enable(EXCH_SESSION)
        self._reads = section_reads(image)
        self._image = image
        self._pristine = digest

    def load_rows(self, table_id: int, rows: Iterable[Sequence[Value]]) -> int:
        image = self._live()
        self._pristine = None
        for config in image.tables:
            if config.id == table_id:
                return self.regs.load_rows(config, rows)
        raise CardError(f"the program has no table {table_id}")

    def process(self, event: Event, inputs: Sequence[Value]) -> Decision:
        return self.process_many([(event, inputs)])[0]

    def process_many(self, items: Sequence[tuple[Event, Sequence[Value]]]) -> list[Decision]:
        image = self._live()
        self._pristine = None
        out: list[Decision] = []
        status = Status(0)
        for start in range(0, len(items), BATCH):
            decisions, status = self._batch(image, items[start : start + BATCH])
            out += decisions
        if items:
            self.regs.forget_keys()
            self.regs.check_faults(status)
        return out

    def state_hash(self) -> str:
        return self.snapshot().hash

    def snapshot(self) -> Snapshot:
        return self.regs.snapshot(self._live())

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._image = None
        self._shutdown()

    def _shutdown(self) -> None:
        if self.server is not None and self.link.broken is None:
            with contextlib.suppress(CardError):
                self.link.call({"op": "shutdown"}, timeout=5.0)
        self.link.close()
        if self.server is not None:
            self.server.stop()

    # ------------------------------------------------------------------ frames

    def _batch(
        self, image: Image, items: Sequence[tuple[Event, Sequence[Value]]]
    ) -> tuple[list[Decision], Status]:
        """The decisions, and STATUS read after the last answer (in the same round trip)."""
        sessions: list[int] = []
        packets: list[bytearray] = []
        sent: list[tuple[Event, int, bytes]] = []  # event, seq, frame
        for event, inputs in items:
            self._seq = self._seq % 0xFFFFFFFF + 1
            try:
                frame = event_frame(event, inputs, self._seq, self._reads.get(event, ALL_INPUTS))
            except ValueError as exc:
                raise CardError(f"cannot send the event to the card: {exc}") from None
            session = BROKER_SESSION if event is Event.NEW else EXCH_SESSION
            if sessions and sessions[-1] == session:
                packets[-1] += frame  # consecutive frames of one session share a packet
            else:
                sessions.append(session)
                packets.append(bytearray(frame))
            sent.append((event, self._seq, frame))
        answers = _Answers(image, sent)
        blobs: list[bytes] = [bytes(p) for p in packets]
        while not answers.complete():
            need = answers.at_least()
            reply, tx = self.link.call(
                {
                    "op": "stream",
                    "sessions": sessions,
                    "min_tx": need,
                    "max_cycles": CYCLES_PER_EVENT * max(need, len(blobs)) + 10_000,
                    "reads": [STATUS_ADDR],
                },
                blobs,
                timeout=self.link.timeout + PER_EVENT_S * len(items),
            )
            tx_sessions = reply.get("sessions", [])
            if len(tx_sessions) != len(tx):
                raise CardError(
                    f"the simulated card sent {len(tx)} tx packets for {len(tx_sessions)} sessions"
                )
            for session, data in zip(tx_sessions, tx, strict=True):
                answers.take(int(session), data)
            sessions, blobs = [], []
            values = reply.get("values")
            if not isinstance(values, list) or len(values) != 1:
                raise CardError("the simulated card did not read STATUS after the stream")
            status = Status(int(values[0]))
        return answers.decisions, status


class _Answers:
    """Matches tx frames to the events sent, in order, and turns them into Decisions."""

    def __init__(self, image: Image, sent: list[tuple[Event, int, bytes]]) -> None:
        self.rule_ids = [r.id for r in image.rules]
        self.pending = collections.deque(sent)
        self.decisions: list[Decision] = []
        self.forward: tuple[int, bytes] | None = None  # an ACCEPTED order whose NEW_ORDER is due

    def complete(self) -> bool:
        return not self.pending and self.forward is None

    def at_least(self) -> int:
        return len(self.pending) + (self.forward is not None)

    def take(self, session: int, data: bytes) -> None:
        try:
            frame = decode(data)
        except ProtocolError as exc:
            raise CardError(
                f"card fault: a tx frame the protocol cannot read ({exc}): {data.hex()}"
            ) from None
        body = data[HEADER.size :]
        if self.forward is not None:
            seq, order = self.forward
            if frame.type is not MsgType.NEW_ORDER or session != EXCH_SESSION or frame.seq != seq:
                raise self._unexpected(
                    frame.type, session, frame.seq, f"NEW_ORDER seq {seq} on {EXCH_SESSION}"
                )
            if body != order:
                raise CardError(f"card fault: the forwarded order seq {seq} differs from the one sent")
            self.forward = None
            self.decisions.append(ACCEPTED)
            return
        if not self.pending:
            raise CardError(
                f"card fault: an extra tx frame {frame.type.name} seq {frame.seq} on session {session}"
            )
        event, seq, sent = self.pending[0]
        rx_session = BROKER_SESSION if event is Event.NEW else EXCH_SESSION
        if session != rx_session or frame.seq != seq:
            raise self._unexpected(frame.type, session, frame.seq, f"the answer to seq {seq} on {rx_session}")
        self.pending.popleft()
        sent_body = sent[HEADER.size :]
        if event is not Event.NEW:
            if frame.type is not FRAME_TYPE[event] or body != sent_body:
                raise self._unexpected(frame.type, session, frame.seq, f"{FRAME_TYPE[event].name} echoed")
            self.decisions.append(ACCEPTED)
        elif frame.type is MsgType.ACCEPTED:
            if body != sent_body:
                raise CardError(f"card fault: ACCEPTED seq {seq} does not repeat the order's fields")
            self.forward = (seq, sent_body)
        elif frame.type is MsgType.REJECTED:
            reason = frame["reason"]
            if reason != Reason.RULE:
                name = Reason(reason).name if reason in Reason._value2member_map_ else str(reason)
                raise CardError(f"card fault: the card rejected NEW seq {seq} with reason {name}")
            mask = int.from_bytes(frame["failed_mask"], "little")
            failed = tuple(r for r in self.rule_ids if mask >> r & 1)
            if not failed or len(failed) != frame["n_failed"] or mask >> max(self.rule_ids, default=0) + 1:
                raise CardError(
                    f"card fault: REJECTED seq {seq} has failed mask {mask:#x}"
                    f" and n_failed {frame['n_failed']}"
                )
            self.decisions.append(Decision(False, failed))
        else:
            raise self._unexpected(frame.type, session, frame.seq, "ACCEPTED or REJECTED")

    @staticmethod
    def _unexpected(msg_type: MsgType, session: int, seq: int, expected: str) -> CardError:
        return CardError(
            f"card fault: tx frame {msg_type.name} seq {seq} on session {session}, expected {expected}"
        )
