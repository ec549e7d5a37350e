"""A Python model of the ring DMA (riskgw/card/rings.py; the RTL, hdl/rgw_ring_dma.sv, runs in
sim/ring_dma) and of pynq's pieces, so that PynqCard runs here without Verilator: `FakeMmio` is a
pynq register window (`read(offset)`, `write(offset, value)`) over any Bus, `DeviceMemory` is a
buffer whose host and device copies differ until synced, and `RingDma` moves rx slots to a TOE
peer and the peer's tx packets into tx slots.

Two peers: `EnginePeer`, the card's TOE behaviour acted out on the software engine (the register
side is then tests/test_card_regs.py's CardModel), and `SimPeer`, the simulated card's streams.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence

import numpy as np

from riskgw.card.bus import Bus
from riskgw.card.driver import CardError
from riskgw.card.rings import (
    MAX_PACKET,
    RINGS_TYPE,
    RINGS_VERSION,
    SLOT_BYTES,
    SLOT_HEADER,
    RingControl,
    RingStatus,
    ring_addr,
)
from riskgw.card.simcard import EXCH_SESSION
from riskgw.card.simlink import SimLink
from riskgw.doe.isa import N_EVENT_REGS, Event, EventField
from riskgw.engine.engine import Engine
from riskgw.engine.table import Value
from riskgw.gateway.protocol import FAILED_MASK_BYTES, HEADER, MsgType, Reason, decode, encode

M32 = 0xFFFFFFFF
Packets = list[tuple[int, bytes]]


class FakeMmio:
    """pynq.DefaultIP's register calls over a Bus, counting accesses."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.reads = 0
        self.writes = 0

    def read(self, offset: int = 0) -> int:
        self.reads += 1
        return self.bus.read32(offset)

    def write(self, offset: int, value: int) -> None:
        assert 0 <= value <= M32, "pynq's MMIO takes 32-bit values"
        self.writes += 1
        self.bus.write32(offset, value)


class DeviceMemory:
    """A ring buffer with separate host and device copies (RingMemory); syncs are counted."""

    def __init__(self, slots: int, address: int) -> None:
        self.array = np.zeros(slots * SLOT_BYTES, np.uint8)
        self.device = np.zeros(slots * SLOT_BYTES, np.uint8)
        self.device_address = address
        self.to_syncs: list[tuple[int, int]] = []
        self.from_syncs: list[tuple[int, int]] = []

    def to_device(self, start: int, stop: int) -> None:
        self.to_syncs.append((start, stop))
        self.device[start:stop] = self.array[start:stop]

    def from_device(self, start: int, stop: int) -> None:
        self.from_syncs.append((start, stop))
        self.array[start:stop] = self.device[start:stop]


class RingDma:
    """The RINGS register block and the data movement, acted out when the host touches a register.

    `peer(packets)` takes rx packets (possibly none) and returns the tx packets the card has sent
    since; the DMA writes them into tx slots while there is room and keeps the rest.
    """

    def __init__(self, memory: dict[int, DeviceMemory], peer: Callable[[Packets], Packets]) -> None:
        self.memory = memory  # device address -> buffer
        self.peer = peer
        self.regs: dict[int, int] = {
            ring_addr("TYPE_VERSION"): RINGS_TYPE << 16 | RINGS_VERSION,
            ring_addr("SLOT_BYTES"): SLOT_BYTES,
        }
        self.rx_tail = 0
        self.tx_head = 0
        self.waiting: Packets = []
        self.sent: Packets = []  # every rx packet handed to the peer, in order
        self.enabled = False

    def _ring(self, name: str) -> tuple[np.ndarray, int]:
        base = self.regs.get(ring_addr(f"{name}_BASE", 1), 0) << 32 | self.regs.get(
            ring_addr(f"{name}_BASE"), 0
        )
        return self.memory[base].device, self.regs[ring_addr(f"{name}_SLOTS")]

    def _flag(self, bit: RingStatus) -> None:
        self.regs[ring_addr("STATUS")] = self.regs.get(ring_addr("STATUS"), 0) | bit

    def _drain_tx(self) -> None:
        self.waiting += self.peer([])
        buf, slots = self._ring("TX")
        tail = self.regs.get(ring_addr("TX_TAIL"), 0)
        while self.waiting and (self.tx_head - tail) & M32 < slots:
            session, data = self.waiting.pop(0)
            if len(data) > MAX_PACKET:
                self.regs[ring_addr("STATUS")] = (
                    self.regs.get(ring_addr("STATUS"), 0) | RingStatus.TX_TOO_LONG
                )
                data = data[:MAX_PACKET]
            at = (self.tx_head % slots) * SLOT_BYTES
            slot = SLOT_HEADER.pack(session, len(data), self.tx_head) + data
            buf[at : at + SLOT_BYTES] = 0
            buf[at : at + len(slot)] = np.frombuffer(slot, np.uint8)
            self.tx_head = (self.tx_head + 1) & M32

    def _take_rx(self, head: int) -> None:
        buf, slots = self._ring("RX")
        packets: Packets = []
        while self.rx_tail != head:
            at = (self.rx_tail % slots) * SLOT_BYTES
            session, length, record = SLOT_HEADER.unpack_from(buf[at : at + SLOT_HEADER.size].tobytes())
            if record != self.rx_tail or not 0 < length <= MAX_PACKET:
                self.regs[ring_addr("STATUS")] = (
                    self.regs.get(ring_addr("STATUS"), 0) | RingStatus.RX_BAD_RECORD
                )
                self.enabled = False
                return
            body = at + SLOT_HEADER.size
            packets.append((session, buf[body : body + length].tobytes()))
            self.rx_tail = (self.rx_tail + 1) & M32
        self.sent += packets
        self.waiting += self.peer(packets)

    def read32(self, addr: int) -> int:
        if addr == ring_addr("RX_TAIL"):
            return self.rx_tail
        if addr == ring_addr("TX_HEAD"):
            if self.enabled:
                self._drain_tx()
            return self.tx_head
        return self.regs.get(addr, 0)

    def write32(self, addr: int, value: int) -> None:
        if addr == ring_addr("CONTROL"):
            if value & RingControl.RESET:
                self.rx_tail = self.tx_head = 0
                self.regs[ring_addr("STATUS")] = 0
                self.regs[ring_addr("RX_HEAD")] = self.regs[ring_addr("TX_TAIL")] = 0
            self.enabled = bool(value & RingControl.ENABLE)
        elif addr == ring_addr("STATUS"):
            self.regs[addr] = self.regs.get(addr, 0) & ~value
        else:
            self.regs[addr] = value
            if addr == ring_addr("RX_HEAD") and self.enabled:
                self._take_rx(value)

    def write_many(self, writes: Sequence[tuple[int, int]]) -> None:
        for a, v in writes:
            self.write32(a, v)

    def read_many(self, addrs: Sequence[int]) -> list[int]:
        return [self.read32(a) for a in addrs]


_I64 = struct.Struct("<q")
_I32 = struct.Struct("<i")


def frame_inputs(frame: bytes) -> tuple[Event, list[Value]]:
    """The event words the card parses from a frame (the offsets drawn in hdl/rgw_card.sv)."""
    msg = MsgType(frame[0])
    events = {MsgType.NEW_ORDER: Event.NEW, MsgType.FILL: Event.FILL}
    event = {**events, MsgType.EXCH_REJECT: Event.REJECT, MsgType.CANCELLED: Event.CANCEL}[msg]
    regs: list[Value] = [None] * N_EVENT_REGS
    regs[EventField.ORDER_ID] = _I64.unpack_from(frame, 8)[0]
    regs[EventField.ACCOUNT_ID] = _I32.unpack_from(frame, 16)[0]
    regs[EventField.DIRECTION] = frame[20]
    regs[EventField.TICKET_ID_W0] = _I64.unpack_from(frame, 24)[0]
    regs[EventField.TICKET_ID_W1] = _I64.unpack_from(frame, 32)[0]
    regs[EventField.PRICE] = _I64.unpack_from(frame, 40)[0]
    regs[EventField.QUANTITY] = _I64.unpack_from(frame, 48)[0]
    regs[EventField.TS] = _I64.unpack_from(frame, 56)[0]
    if event is not Event.NEW:
        regs[EventField.EXEC_PRICE] = _I64.unpack_from(frame, 64)[0]
        regs[EventField.EXEC_QUANTITY] = _I64.unpack_from(frame, 72)[0]
    return event, regs


class EnginePeer:
    """The card's TOE side (riskgw/card/regmap.py, "TOE streams") acted out on an engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def __call__(self, packets: Packets) -> Packets:
        out: Packets = []
        for session, data in packets:
            event, inputs = frame_inputs(data)
            seq = decode(data).seq
            decision = self.engine.process(event, inputs)
            body = data[HEADER.size :]
            if event is not Event.NEW:
                out.append((session, data))
            elif decision.accepted:
                out.append((session, HEADER.pack(int(MsgType.ACCEPTED), 1, len(data), seq) + body))
                out.append((EXCH_SESSION, data))
            else:
                mask = sum(1 << r for r in decision.failed).to_bytes(FAILED_MASK_BYTES, "little")
                order_id, account_id = inputs[EventField.ORDER_ID], inputs[EventField.ACCOUNT_ID]
                rejected = encode(
                    MsgType.REJECTED,
                    seq,
                    order_id=order_id,
                    account_id=account_id,
                    reason=int(Reason.RULE),
                    n_failed=len(decision.failed),
                    failed_mask=mask,
                    ts=0,
                )
                out.append((session, rejected))
        return out


class SimPeer:
    """The simulated card's TOE streams through its ZeroMQ link (`stream`, riskgw/card/simproto.py)."""

    POLL_CYCLES = 2_000  # simulated cycles one poll for tx packets may take

    def __init__(self, link: SimLink) -> None:
        self.link = link

    def __call__(self, packets: Packets) -> Packets:
        header = {
            "op": "stream",
            "sessions": [s for s, _ in packets],
            "min_tx": 0 if packets else 1,
            "max_cycles": 20_000 * len(packets) if packets else self.POLL_CYCLES,
        }
        try:
            reply, tx = self.link.call(header, [d for _, d in packets])
        except CardError as exc:
            if not packets and "tx packets" in str(exc):
                return []  # nothing came out within the poll: the host polls again
            raise
        return list(zip((int(s) for s in reply["sessions"]), tx, strict=True))
