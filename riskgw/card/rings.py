"""Order and decision rings in card memory: how a host feeds the card's TOE streams over PCIe.

On a U200 with an XDMA shell the host cannot drive an AXI4-Stream port of a kernel directly, so
the TOE frames go through two rings in the card's DDR, moved by a ring DMA kernel
(`rgw_ring_dma`) that sits where a network TOE core sits in a deployment (bitstreams/README.md):

    host ──writes slots──► rx ring (DDR) ──rgw_ring_dma──► s_axis_rx of rgw_card
    host ◄──reads slots─── tx ring (DDR) ◄─rgw_ring_dma─── m_axis_tx of rgw_card

The ring DMA is `hdl/rgw_ring_dma.sv`. Its registers follow the card's conventions
(riskgw/card/regmap.py: a self-describing block, 64-bit values as two words low first) in the DMA
kernel's own AXI-Lite space, so the card's map is unchanged. The host side below runs against the
RTL in Verilator, with rgw_card behind it (sim/ring_dma), and against a Python model of the DMA
that feeds the simulated card (tests/ring_dma_model.py). Neither has run on Vivado or a U200.

A ring is SLOTS slots of SLOT_BYTES bytes (SLOTS a power of two). Slot i of the rx ring holds rx
record number n with n mod SLOTS = i:

    +0   session  u16   tuser of the packet
    +2   length   u16   bytes of the packet (1..SLOT_BYTES-8)
    +4   record   u32   n, low 32 bits (the DMA checks it, so a stale slot is never sent)
    +8   the packet's bytes (whole wire-protocol frames), zero-padded to the slot's end

The host writes slots, syncs them to the device once per batch, then writes RX_HEAD (the number of
records produced, free-running modulo 2**32). The DMA sends record RX_TAIL as one rx packet, then
increments RX_TAIL. The tx ring is the same the other way: the DMA writes one tx packet per slot
and increments TX_HEAD (never past TX_TAIL + SLOTS: a full ring back-pressures the card's tx); the
host syncs the new slots from the device once, reads them, then writes TX_TAIL.

Write the bases and slot counts while ENABLE is clear; a base's low log2(SLOT_BYTES) bits are
ignored. A bad rx record or a SLVERR/DECERR clears ENABLE and the DMA stops at that record
(RX_TAIL names it; a tx packet whose write failed is lost, TX_HEAD does not count it): clearing
STATUS and setting ENABLE again goes on from there. A tx packet longer than a slot is cut, and the
DMA goes on.
"""

from __future__ import annotations

import enum
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from riskgw.card.bus import Bus
from riskgw.card.driver import CardError
from riskgw.card.regmap import Reg

RINGS_TYPE = 0x0006  # block type of the ring DMA's register block (after regmap.BlockType)
RINGS_VERSION = 1
SLOT_BYTES = 128  # two 512-bit beats: the largest frame (80 bytes) and the slot header fit
SLOT_HEADER = struct.Struct("<HHI")
MAX_PACKET = SLOT_BYTES - SLOT_HEADER.size
M32 = 0xFFFFFFFF


class RingControl(enum.IntFlag):
    ENABLE = 1 << 0  # move records (set after the bases and sizes are written)
    RESET = 1 << 1  # self-clearing: zero the four indices and STATUS


class RingStatus(enum.IntFlag):
    RX_BAD_RECORD = 1 << 0  # sticky: an rx slot's record number or length was wrong; the DMA stopped
    TX_TOO_LONG = 1 << 1  # sticky: a tx packet was longer than a slot holds (it was cut)
    AXI_ERROR = 1 << 2  # sticky: a memory read or write answered SLVERR/DECERR; the DMA stopped


RING_REGS: tuple[Reg, ...] = (
    Reg("TYPE_VERSION", 0x00, "r", "type[31:16] = 0x0006 (RINGS), version[15:0]"),
    Reg("NEXT", 0x04, "r", "0: the DMA kernel has one block"),
    Reg("CONTROL", 0x08, "rw", "RingControl bits"),
    Reg("STATUS", 0x0C, "w1c", "RingStatus bits; write 1 to clear a sticky bit"),
    Reg("SLOT_BYTES", 0x10, "r", "bytes per slot (128)"),
    Reg("RX_BASE", 0x18, "rw", "device address of the rx ring (64 bits)", 2),
    Reg("RX_SLOTS", 0x20, "rw", "slots in the rx ring, a power of two"),
    Reg("RX_HEAD", 0x24, "rw", "records the host has written (host writes)"),
    Reg("RX_TAIL", 0x28, "r", "records the DMA has sent into s_axis_rx"),
    Reg("TX_BASE", 0x30, "rw", "device address of the tx ring (64 bits)", 2),
    Reg("TX_SLOTS", 0x38, "rw", "slots in the tx ring, a power of two"),
    Reg("TX_HEAD", 0x3C, "r", "records the DMA has written from m_axis_tx"),
    Reg("TX_TAIL", 0x40, "rw", "records the host has read (host writes)"),
)
RING_ADDR_W = 12  # AXI-Lite address bits of the ring DMA kernel


def ring_addr(name: str, index: int = 0) -> int:
    for r in RING_REGS:
        if r.name == name:
            if not 0 <= index < r.count:
                raise IndexError(f"RINGS.{name}[{index}]: it has {r.count} words")
            return r.offset + 4 * index
    raise KeyError(f"the RINGS block has no register {name}")


class RingMemory(Protocol):
    """A ring's buffer: host bytes mirrored in card memory (a pynq buffer, or a test's model)."""

    @property
    def array(self) -> np.ndarray: ...  # uint8, SLOTS * SLOT_BYTES

    @property
    def device_address(self) -> int: ...

    def to_device(self, start: int, stop: int) -> None:
        """Make host bytes [start, stop) visible to the card."""
        ...

    def from_device(self, start: int, stop: int) -> None:
        """Make the card's bytes [start, stop) visible to the host."""
        ...


@dataclass(frozen=True)
class Packet:
    session: int
    data: bytes


class RingHost:
    """The host side of both rings. `send` and `poll` each sync once per contiguous slot run."""

    def __init__(self, bus: Bus, rx: RingMemory, tx: RingMemory, timeout_s: float = 1.0) -> None:
        self.bus = bus
        self.rx = rx
        self.tx = tx
        self.timeout_s = timeout_s
        self.rx_slots = self._slots(rx, "rx")
        self.tx_slots = self._slots(tx, "tx")
        self.rx_head = 0
        self.tx_tail = 0

    @staticmethod
    def _slots(mem: RingMemory, name: str) -> int:
        n, rest = divmod(mem.array.size, SLOT_BYTES)
        if rest or n < 2 or n & (n - 1):
            raise CardError(
                f"the {name} ring is {mem.array.size} bytes: a power of two slots of {SLOT_BYTES}"
            )
        return n

    def start(self) -> None:
        """Reset the DMA, give it the rings and enable it; checks the block is the one proposed."""
        tv = self.bus.read32(ring_addr("TYPE_VERSION"))
        if tv != RINGS_TYPE << 16 | RINGS_VERSION:
            raise CardError(
                f"the ring DMA's register block is {tv:#010x}, expected RINGS version {RINGS_VERSION}"
            )
        slot = self.bus.read32(ring_addr("SLOT_BYTES"))
        if slot != SLOT_BYTES:
            raise CardError(f"the ring DMA has {slot}-byte slots, this driver writes {SLOT_BYTES}")
        self.bus.write32(ring_addr("CONTROL"), int(RingControl.RESET))
        rx_a, tx_a = self.rx.device_address, self.tx.device_address
        self.bus.write_many(
            [
                (ring_addr("RX_BASE", 0), rx_a & M32),
                (ring_addr("RX_BASE", 1), rx_a >> 32 & M32),
                (ring_addr("RX_SLOTS"), self.rx_slots),
                (ring_addr("TX_BASE", 0), tx_a & M32),
                (ring_addr("TX_BASE", 1), tx_a >> 32 & M32),
                (ring_addr("TX_SLOTS"), self.tx_slots),
                (ring_addr("CONTROL"), int(RingControl.ENABLE)),
            ]
        )
        self.rx_head = 0
        self.tx_tail = 0

    def check(self) -> None:
        status = RingStatus(self.bus.read32(ring_addr("STATUS")))
        if status:
            raise CardError(f"the ring DMA reports {status!r}")

    def _sync_runs(self, first: int, count: int, slots: int) -> list[tuple[int, int]]:
        """Byte ranges of `count` slots from record `first`: one run, two when they wrap."""
        start = first % slots
        if start + count <= slots:
            return [(start * SLOT_BYTES, (start + count) * SLOT_BYTES)]
        return [(start * SLOT_BYTES, slots * SLOT_BYTES), (0, (start + count - slots) * SLOT_BYTES)]

    def send(self, packets: Sequence[Packet]) -> None:
        """Write the packets into rx slots and hand them to the DMA, waiting for room as needed."""
        done = 0
        while done < len(packets):
            tail = self.bus.read32(ring_addr("RX_TAIL"))
            room = self.rx_slots - ((self.rx_head - tail) & M32)
            deadline = time.monotonic() + self.timeout_s
            while room == 0:
                if time.monotonic() > deadline:
                    raise CardError(
                        f"the rx ring stayed full for {self.timeout_s} s: the card takes no frames"
                    )
                tail = self.bus.read32(ring_addr("RX_TAIL"))
                room = self.rx_slots - ((self.rx_head - tail) & M32)
            batch = packets[done : done + room]
            buf = self.rx.array
            for i, p in enumerate(batch):
                if not 0 < len(p.data) <= MAX_PACKET:
                    raise CardError(
                        f"a {len(p.data)}-byte packet does not fit a ring slot ({MAX_PACKET} at most)"
                    )
                n = self.rx_head + i
                at = (n % self.rx_slots) * SLOT_BYTES
                slot = SLOT_HEADER.pack(p.session, len(p.data), n & M32) + p.data
                buf[at : at + SLOT_BYTES] = 0
                buf[at : at + len(slot)] = np.frombuffer(slot, np.uint8)
            for start, stop in self._sync_runs(self.rx_head, len(batch), self.rx_slots):
                self.rx.to_device(start, stop)
            self.rx_head = (self.rx_head + len(batch)) & M32
            self.bus.write32(ring_addr("RX_HEAD"), self.rx_head)
            done += len(batch)

    def poll(self) -> list[Packet]:
        """The tx packets the DMA has written since the last poll (none yet: an empty list)."""
        head = self.bus.read32(ring_addr("TX_HEAD"))
        count = (head - self.tx_tail) & M32
        if count == 0:
            return []
        if count > self.tx_slots:
            raise CardError(
                f"TX_HEAD {head} is {count} records past TX_TAIL {self.tx_tail}: the ring overran"
            )
        for start, stop in self._sync_runs(self.tx_tail, count, self.tx_slots):
            self.tx.from_device(start, stop)
        buf = self.tx.array
        out: list[Packet] = []
        for i in range(count):
            n = (self.tx_tail + i) & M32
            at = (n % self.tx_slots) * SLOT_BYTES
            session, length, record = SLOT_HEADER.unpack_from(buf[at : at + SLOT_HEADER.size].tobytes())
            if record != n or not 0 < length <= MAX_PACKET:
                raise CardError(
                    f"tx slot {n % self.tx_slots}: record {record} of {length} bytes, expected record {n}"
                )
            body = at + SLOT_HEADER.size
            out.append(Packet(session, buf[body : body + length].tobytes()))
        self.tx_tail = head
        self.bus.write32(ring_addr("TX_TAIL"), head)
        return out
