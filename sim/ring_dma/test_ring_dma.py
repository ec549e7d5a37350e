"""rgw_ring_dma through its ports: the RINGS registers, the rings in an AxiRam, the TOE streams.

Records go through both rings with the slot index and the 32-bit record numbers wrapping (the
bench deposits start indices near 2**32 into the DMA's index registers while it is idle: a host
cannot, RESET zeroes them), with idle cycles and back-pressure on every stream and AXI channel.
Stale and malformed rx slots, too-long tx packets, a full tx ring and SLVERR answers are checked
against rings.py's contract. Last, the host side of riskgw/card/rings.py (RingHost, its real code)
drives the DMA with rgw_card behind it, and every answer is compared with the software engine.
"""

from __future__ import annotations

import itertools
import os
import random
import sys
from collections.abc import Sequence
from pathlib import Path

import cocotb
import numpy as np
import pytest
from cocotb.clock import Clock
from cocotb.task import bridge, resume
from cocotb.triggers import ClockCycles, RisingEdge, with_timeout
from cocotb.utils import get_sim_time
from cocotbext.axi import (
    AxiBus,
    AxiLiteBus,
    AxiLiteMaster,
    AxiRam,
    AxiStreamBus,
    AxiStreamFrame,
    AxiStreamSink,
    AxiStreamSource,
)

from riskgw.card.doeport import DoeParams
from riskgw.card.rings import (
    MAX_PACKET,
    RING_REGS,
    RINGS_TYPE,
    RINGS_VERSION,
    SLOT_BYTES,
    SLOT_HEADER,
    Packet,
    RingControl,
    RingHost,
    RingStatus,
    ring_addr,
)

M32 = 0xFFFFFFFF
CLOCK_NS = 4
RX_BASE = 0x1_2345_6000  # above 4 GiB: the bases' high words are used
TX_BASE = 0x2_0000_0000 - 0x800  # the tx ring ends at a 4 GiB boundary
Slot = tuple[int, bytes]  # session, packet bytes


def set_pauses(channel, rng: random.Random, share: float) -> None:  # type: ignore[no-untyped-def]
    """Idle cycles or back-pressure on a cocotbext-axi channel in `share` of the cycles (0: none)."""
    if share > 0:
        channel.set_pause_generator(iter(lambda: rng.random() < share, None))
    else:
        channel.set_pause_generator(None)
        channel.pause = False  # the generator's last value would stay


class TB:
    """Clock, reset, the DMA's AXI-Lite master, the ring memory and the DMA's stream ends."""

    def __init__(self, dut, seed: int = 1, card: bool = False) -> None:  # type: ignore[no-untyped-def]
        self.dut = dut
        self.rng = random.Random(seed)
        dut.use_card.value = int(card)
        self.axil = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axi_control"), dut.clk, dut.rst)
        self.ram = AxiRam(AxiBus.from_prefix(dut, "m_axi_gmem"), dut.clk, dut.rst, size=1 << 34)
        self.bad: list[tuple[int, int]] = []  # address windows that answer SLVERR
        self._wrap_errors()
        if not card:
            self.rx = AxiStreamSink(AxiStreamBus.from_prefix(dut, "m_axis_rx"), dut.clk, dut.rst)
            self.tx = AxiStreamSource(AxiStreamBus.from_prefix(dut, "s_axis_tx"), dut.clk, dut.rst)
            # the card alone is not used here: its ports stay idle
            for name in ("s_axil_awvalid", "s_axil_wvalid", "s_axil_arvalid", "s_axis_rx_tvalid"):
                getattr(dut, name).value = 0
            dut.m_axis_tx_tready.value = 1
        self.rx_slots = 0
        self.tx_slots = 0

    def _wrap_errors(self) -> None:
        """AxiRam answers SLVERR when its access raises: make accesses in `bad` raise."""
        read, write = self.ram.read_if._read, self.ram.write_if._write

        def check(address: int) -> None:
            if any(lo <= address < hi for lo, hi in self.bad):
                raise OSError(f"no memory at {address:#x}")

        async def bad_read(address: int, length: int) -> bytes:
            check(address)
            return bytes(await read(address, length))

        async def bad_write(address: int, data: bytes) -> None:
            check(address)
            await write(address, data)

        self.ram.read_if._read = bad_read
        self.ram.write_if._write = bad_write

    async def start(self) -> None:
        Clock(self.dut.clk, CLOCK_NS, unit="ns").start()
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, 8)
        self.dut.rst.value = 0
        await ClockCycles(self.dut.clk, 4)

    def stalls(self, share: float) -> None:
        """Back-pressure and idle cycles on every stream and AXI channel (0 turns them off)."""
        rng = self.rng
        w, r = self.ram.write_if, self.ram.read_if
        for ch in (w.aw_channel, w.w_channel, w.b_channel, r.ar_channel, r.r_channel):
            set_pauses(ch, rng, share)
        if hasattr(self, "rx"):
            set_pauses(self.rx, rng, share)
            set_pauses(self.tx, rng, share)

    async def read(self, name: str, index: int = 0) -> int:
        return int(await self.axil.read_dword(ring_addr(name, index)))

    async def write(self, name: str, value: int, index: int = 0) -> None:
        await self.axil.write_dword(ring_addr(name, index), value & M32)

    async def status(self) -> RingStatus:
        return RingStatus(await self.read("STATUS"))

    def deposit(self, rx: int, tx: int) -> None:
        """Start both rings at records rx and tx (the DMA disabled and idle)."""
        dma = self.dut.dma_inst
        for reg in (dma.rd_n_reg, dma.rx_tail_reg, dma.rx_head_reg):
            reg.value = rx & M32
        for reg in (dma.tx_head_reg, dma.tx_tail_reg):
            reg.value = tx & M32

    async def setup(self, rx_slots: int, tx_slots: int, rx_start: int = 0, tx_start: int = 0) -> None:
        """RESET, the rings, the start records, ENABLE: as RingHost.start does, but any start."""
        self.rx_slots, self.tx_slots = rx_slots, tx_slots
        await self.write("CONTROL", RingControl.RESET)
        for name, value in (("RX", RX_BASE), ("TX", TX_BASE)):
            await self.write(f"{name}_BASE", value, 0)
            await self.write(f"{name}_BASE", value >> 32, 1)
        await self.write("RX_SLOTS", rx_slots)
        await self.write("TX_SLOTS", tx_slots)
        self.deposit(rx_start, tx_start)
        await RisingEdge(self.dut.clk)
        await self.write("CONTROL", RingControl.ENABLE)

    def put_rx(
        self, n: int, session: int, data: bytes, record: int | None = None, length: int | None = None
    ) -> None:
        """Slot of rx record n as the host writes it; `record` / `length` override the header."""
        slot = SLOT_HEADER.pack(
            session, len(data) if length is None else length, n & M32 if record is None else record
        )
        slot += data
        assert len(slot) <= SLOT_BYTES
        self.ram.write(RX_BASE + (n % self.rx_slots) * SLOT_BYTES, slot + bytes(SLOT_BYTES - len(slot)))

    def get_tx(self, n: int) -> tuple[int, int, int, bytes]:
        """Session, length, record and the whole body of tx slot n's record."""
        raw = self.ram.read(TX_BASE + (n % self.tx_slots) * SLOT_BYTES, SLOT_BYTES)
        session, length, record = SLOT_HEADER.unpack_from(raw)
        return session, length, record, bytes(raw[SLOT_HEADER.size :])

    async def recv_rx(self, timeout_us: float = 50) -> Slot:
        frame = await with_timeout(self.rx.recv(), timeout_us, "us")
        tuser = frame.tuser
        sessions = {int(t) for t in tuser} if isinstance(tuser, list) else {int(tuser)}
        assert len(sessions) == 1, f"tuser changes inside a packet: {sessions}"
        return sessions.pop(), bytes(frame.tdata)

    async def send_tx(self, session: int, data: bytes) -> None:
        await self.tx.send(AxiStreamFrame(data, tuser=session))


def random_packets(rng: random.Random, n: int, longest: int = MAX_PACKET) -> list[Slot]:
    return [(rng.randrange(1 << 16), rng.randbytes(rng.randint(1, longest))) for _ in range(n)]


# ---------------------------------------------------------------------------- tests


@cocotb.test()
async def run_registers(dut) -> None:  # type: ignore[no-untyped-def]
    """The block's identity, every read-write register, RESET, unmapped addresses."""
    tb = TB(dut)
    await tb.start()
    assert await tb.read("TYPE_VERSION") == RINGS_TYPE << 16 | RINGS_VERSION
    assert await tb.read("NEXT") == 0
    assert await tb.read("SLOT_BYTES") == SLOT_BYTES
    assert await tb.read("CONTROL") == 0 and await tb.status() == 0
    values = {}
    for r in RING_REGS:
        if r.access == "rw" and r.name != "CONTROL":
            for i in range(r.count):
                values[r.name, i] = tb.rng.randrange(1 << 32)
                await tb.write(r.name, values[r.name, i], i)
    for (name, i), v in values.items():
        assert await tb.read(name, i) == v, name
    assert await tb.read("RX_TAIL") == 0 and await tb.read("TX_HEAD") == 0
    # byte enables: one byte of RX_SLOTS
    await tb.axil.write(ring_addr("RX_SLOTS") + 1, b"\xab")
    want = values["RX_SLOTS", 0] & ~0xFF00 | 0xAB00
    assert await tb.read("RX_SLOTS") == want
    await tb.write("CONTROL", RingControl.ENABLE)
    assert await tb.read("CONTROL") == RingControl.ENABLE
    # RESET reads back as 0, zeroes the host's two indices and leaves the ring layout alone
    await tb.write("CONTROL", RingControl.RESET | RingControl.ENABLE)
    assert await tb.read("CONTROL") == RingControl.ENABLE
    assert await tb.read("RX_HEAD") == 0 and await tb.read("TX_TAIL") == 0
    assert await tb.read("RX_SLOTS") == want and await tb.read("TX_BASE", 1) == values["TX_BASE", 1]
    await tb.write("CONTROL", 0)
    for a in (0x14, 0x2C, 0x44, 0xFFC):
        assert int(await tb.axil.read_dword(a)) == 0, f"{a:#x}"


async def run_traffic(
    tb: TB, rx_packets: list[Slot], tx_packets: list[Slot], rx_start: int, tx_start: int
) -> None:
    """The host's side of both rings, as rings.py describes it, while the DMA moves records."""
    rng = tb.rng
    got_rx: list[Slot] = []
    got_tx: list[Slot] = []

    async def produce() -> None:
        head, i = rx_start, 0
        while i < len(rx_packets):
            tail = await tb.read("RX_TAIL")
            room = tb.rx_slots - ((head - tail) & M32)
            assert 0 <= room <= tb.rx_slots, f"RX_TAIL {tail} is past RX_HEAD {head}"
            k = min(room, rng.randint(1, tb.rx_slots), len(rx_packets) - i)
            for j in range(k):
                tb.put_rx(head + j, *rx_packets[i + j])
            if k:
                head = (head + k) & M32
                i += k
                await tb.write("RX_HEAD", head)

    async def collect_rx() -> None:
        while len(got_rx) < len(rx_packets):
            got_rx.append(await tb.recv_rx())

    async def consume() -> None:
        tail = tx_start
        while len(got_tx) < len(tx_packets):
            head = await tb.read("TX_HEAD")
            count = (head - tail) & M32
            assert count <= tb.tx_slots, f"TX_HEAD {head} overran TX_TAIL {tail}"
            for j in range(count):
                n = (tail + j) & M32
                session, length, record, body = tb.get_tx(n)
                assert record == n, f"tx slot {n % tb.tx_slots}: record {record}, expected {n}"
                assert 0 < length <= MAX_PACKET, f"tx record {n}: length {length}, head {head}"
                assert body[length:] == bytes(len(body) - length), f"tx record {n}: not zero-padded"
                got_tx.append((session, body[:length]))
            if count:
                tail = head
                await tb.write("TX_TAIL", tail)

    async def feed_tx() -> None:
        for session, data in tx_packets:
            await tb.send_tx(session, data)

    tasks = [cocotb.start_soon(c()) for c in (produce, collect_rx, consume, feed_tx)]
    budget = 20 + 2 * (len(rx_packets) + len(tx_packets))
    for t in tasks:
        await with_timeout(t, budget, "us")
    assert got_rx == rx_packets
    assert got_tx == tx_packets
    assert await tb.read("RX_TAIL") == (rx_start + len(rx_packets)) & M32
    assert await tb.read("TX_HEAD") == (tx_start + len(tx_packets)) & M32
    assert await tb.status() == 0
    assert await tb.read("CONTROL") == RingControl.ENABLE


@cocotb.test()
@cocotb.parametrize(stall=[0.0, 0.5])
async def run_rings(dut, stall: float) -> None:  # type: ignore[no-untyped-def]
    """Packets of every length through both rings at once; the slot index wraps several times and
    the record numbers wrap through 2**32; with and without idle cycles and back-pressure on the
    streams and on every AXI channel."""
    tb = TB(dut, seed=7 + int(stall * 10))
    await tb.start()
    tb.stalls(stall)
    rx_start, tx_start = (1 << 32) - 13, (1 << 32) - 6
    await tb.setup(rx_slots=8, tx_slots=4, rx_start=rx_start, tx_start=tx_start)
    rx = random_packets(tb.rng, 40)
    tx = random_packets(tb.rng, 30)
    # the lengths at the beat boundaries: 56 and 64 bytes are one beat on each side of a slot
    rx[:6] = [(1, bytes(range(n))) for n in (1, 56, 57, 64, 65, MAX_PACKET)]
    tx[:6] = [(2, bytes(range(n))) for n in (1, 56, 63, 64, 65, MAX_PACKET)]
    await run_traffic(tb, rx, tx, rx_start, tx_start)
    if not stall:
        await log_rate(tb, rx_start + len(rx), tx_start + len(tx))
    # RESET zeroes the four indices and STATUS
    await tb.write("CONTROL", RingControl.RESET)
    for name in ("RX_HEAD", "RX_TAIL", "TX_HEAD", "TX_TAIL"):
        assert await tb.read(name) == 0, name


async def log_rate(tb: TB, rx_n: int, tx_n: int) -> None:
    """Cycles per record each way with a full ring handed over at once (the AxiRam answers in
    a few cycles: a DDR controller takes far longer, and the DMA has one access in flight)."""
    packets = [(1, bytes(64))] * tb.rx_slots
    for j, p in enumerate(packets):
        tb.put_rx(rx_n + j, *p)
    t0 = get_sim_time("ns")
    await tb.write("RX_HEAD", rx_n + len(packets))
    for _ in packets:
        await tb.recv_rx()
    rx_cycles = (get_sim_time("ns") - t0) / CLOCK_NS / len(packets)
    t0 = get_sim_time("ns")
    for p in packets[: tb.tx_slots]:
        await tb.send_tx(*p)
    await wait_reg(tb, "TX_HEAD", (tx_n + tb.tx_slots) & M32)
    tx_cycles = (get_sim_time("ns") - t0) / CLOCK_NS / tb.tx_slots
    tb.dut._log.info("64-byte records: rx %.1f cycles each, tx %.1f (polls included)", rx_cycles, tx_cycles)
    await tb.write("TX_TAIL", tx_n + tb.tx_slots)


@cocotb.test()
async def run_bad_records(dut) -> None:  # type: ignore[no-untyped-def]
    """A stale slot (the record number of the lap before), a zero length and a length past a
    slot: each stops the DMA at that record with RX_BAD_RECORD; fixed, cleared and enabled again,
    the DMA goes on from that record."""
    tb = TB(dut, seed=3)
    await tb.start()
    await tb.setup(rx_slots=4, tx_slots=4)
    good = random_packets(tb.rng, 8)
    for n in range(2):
        tb.put_rx(n, *good[n])
    tb.put_rx(2, *good[2], record=(2 - 4) & M32)  # what slot 2 held a lap before
    await tb.write("RX_HEAD", 3)
    assert [await tb.recv_rx(), await tb.recv_rx()] == good[:2]
    await ClockCycles(dut.clk, 100)
    assert await tb.status() == RingStatus.RX_BAD_RECORD
    assert await tb.read("CONTROL") == 0, "the DMA stops"
    assert await tb.read("RX_TAIL") == 2 and tb.rx.empty()
    for n, length in ((2, None), (3, 0), (4, MAX_PACKET + 1)):
        if length is not None:
            tb.put_rx(n, *good[n], length=length)
            await tb.write("RX_HEAD", n + 1)
            await ClockCycles(dut.clk, 100)
            assert await tb.status() == RingStatus.RX_BAD_RECORD, f"length {length}"
            assert await tb.read("RX_TAIL") == n and tb.rx.empty()
        tb.put_rx(n, *good[n])
        await tb.write("RX_HEAD", n + 1)
        await tb.write("STATUS", RingStatus.RX_BAD_RECORD)
        assert await tb.status() == 0
        await tb.write("CONTROL", RingControl.ENABLE)
        assert await tb.recv_rx() == good[n]
        assert await tb.read("RX_TAIL") == n + 1


@cocotb.test()
async def run_tx_too_long(dut) -> None:  # type: ignore[no-untyped-def]
    """A packet of exactly MAX_PACKET bytes fits; a longer one is cut to MAX_PACKET with
    TX_TOO_LONG and the DMA goes on; the packet after it is whole."""
    tb = TB(dut, seed=4)
    await tb.start()
    await tb.setup(rx_slots=4, tx_slots=4)
    packets = [(5, tb.rng.randbytes(n)) for n in (MAX_PACKET, 150, 3 * 64 + 7, 10)]
    await tb.send_tx(*packets[0])
    await with_timeout(wait_reg(tb, "TX_HEAD", 1), 20, "us")
    assert await tb.status() == 0
    for p in packets[1:]:
        await tb.send_tx(*p)
    await with_timeout(wait_reg(tb, "TX_HEAD", 4), 20, "us")
    assert await tb.status() == RingStatus.TX_TOO_LONG
    assert await tb.read("CONTROL") == RingControl.ENABLE
    for n, (session, data) in enumerate(packets):
        want = data[:MAX_PACKET]
        assert tb.get_tx(n) == (session, len(want), n, want + bytes(MAX_PACKET - len(want))), n
    await tb.write("STATUS", RingStatus.TX_TOO_LONG)
    assert await tb.status() == 0


async def wait_reg(tb: TB, name: str, value: int) -> None:
    while await tb.read(name) != value:
        pass


@cocotb.test()
async def run_tx_full(dut) -> None:  # type: ignore[no-untyped-def]
    """A full tx ring holds s_axis_tx back and never overwrites a slot the host has not read;
    moving TX_TAIL lets the rest through."""
    tb = TB(dut, seed=5)
    await tb.start()
    await tb.setup(rx_slots=4, tx_slots=4)
    packets = random_packets(tb.rng, 10)
    for p in packets:
        cocotb.start_soon(tb.send_tx(*p))
    await with_timeout(wait_reg(tb, "TX_HEAD", 4), 20, "us")
    await ClockCycles(dut.clk, 300)
    assert await tb.read("TX_HEAD") == 4
    assert tb.tx.count() >= 4, "the source should still hold packets the DMA has not taken"
    got = []
    for n in range(4):
        session, length, record, body = tb.get_tx(n)
        assert record == n
        got.append((session, body[:length]))
    await tb.write("TX_TAIL", 2)
    await with_timeout(wait_reg(tb, "TX_HEAD", 6), 20, "us")
    await ClockCycles(dut.clk, 300)
    assert await tb.read("TX_HEAD") == 6
    for n in range(4, 6):
        session, length, record, body = tb.get_tx(n)
        assert record == n
        got.append((session, body[:length]))
    await tb.write("TX_TAIL", 6)
    await with_timeout(wait_reg(tb, "TX_HEAD", 10), 20, "us")
    for n in range(6, 10):
        session, length, record, body = tb.get_tx(n)
        assert record == n
        got.append((session, body[:length]))
    assert got == packets
    assert await tb.status() == 0


@cocotb.test()
async def run_axi_error(dut) -> None:  # type: ignore[no-untyped-def]
    """SLVERR on a slot's read stops the DMA before that record (nothing of it is sent); SLVERR
    on a tx slot's write stops it without counting the record. Cleared and enabled again, both
    rings go on."""
    tb = TB(dut, seed=6)
    await tb.start()
    await tb.setup(rx_slots=4, tx_slots=4)
    rx = random_packets(tb.rng, 3)
    for n, p in enumerate(rx):
        tb.put_rx(n, *p)
    slot1 = RX_BASE + SLOT_BYTES
    tb.bad = [(slot1 + 64, slot1 + 128)]  # the slot's second beat
    await tb.write("RX_HEAD", 3)
    assert await tb.recv_rx() == rx[0]
    await ClockCycles(dut.clk, 100)
    assert await tb.status() == RingStatus.AXI_ERROR
    assert await tb.read("CONTROL") == 0
    assert await tb.read("RX_TAIL") == 1 and tb.rx.empty()
    tb.bad = []
    await tb.write("STATUS", RingStatus.AXI_ERROR)
    await tb.write("CONTROL", RingControl.ENABLE)
    assert [await tb.recv_rx(), await tb.recv_rx()] == rx[1:]
    assert await tb.read("RX_TAIL") == 3

    tb.bad = [(TX_BASE, TX_BASE + 64)]
    await tb.send_tx(3, b"lost")
    await with_timeout(wait_status(tb), 20, "us")
    assert await tb.status() == RingStatus.AXI_ERROR
    assert await tb.read("CONTROL") == 0 and await tb.read("TX_HEAD") == 0
    tb.bad = []
    await tb.write("STATUS", RingStatus.AXI_ERROR)
    await tb.write("CONTROL", RingControl.ENABLE)
    await tb.send_tx(4, b"kept")
    await with_timeout(wait_reg(tb, "TX_HEAD", 1), 20, "us")
    assert tb.get_tx(0)[:3] == (4, 4, 0) and tb.get_tx(0)[3][:4] == b"kept"
    assert await tb.status() == 0


async def wait_status(tb: TB) -> None:
    while not await tb.read("STATUS"):
        pass


@cocotb.test()
async def run_reset(dut) -> None:  # type: ignore[no-untyped-def]
    """RESET with records in flight: the indices and STATUS read 0 at once, a packet already on
    m_axis_rx finishes and nothing else of the old records follows; a tx packet half taken is
    dropped at its end (no slot, no TX_TOO_LONG). Set up again, both rings start from record 0."""
    tb = TB(dut, seed=9)
    await tb.start()
    await tb.setup(rx_slots=8, tx_slots=4)
    old = random_packets(tb.rng, 8)
    for n, p in enumerate(old):
        tb.put_rx(n, *p)
    set_pauses(tb.rx, tb.rng, 0.8)
    await tb.write("RX_HEAD", len(old))
    while tb.rx.count() < 2:
        await RisingEdge(dut.clk)
    # a 3-beat tx packet whose source stops after the first beat until the RESET is done
    tb.tx.set_pause_generator(itertools.repeat(True))
    cocotb.start_soon(tb.send_tx(1, tb.rng.randbytes(150)))
    await ClockCycles(dut.clk, 4)
    tb.tx.set_pause_generator(itertools.chain([False], itertools.repeat(True)))
    while not (dut.s_axis_tx_tvalid.value and dut.s_axis_tx_tready.value):
        await RisingEdge(dut.clk)
    done_before = tb.rx.count()
    assert dut.dma_inst.out_valid_reg.value == 1, "a packet should be on its way into m_axis_rx"
    await tb.write("CONTROL", RingControl.RESET)
    assert not tb.tx.idle(), "the tx packet should be half taken"
    for name in ("RX_HEAD", "RX_TAIL", "TX_HEAD", "TX_TAIL", "STATUS", "CONTROL"):
        assert await tb.read(name) == 0, name
    set_pauses(tb.rx, tb.rng, 0)
    set_pauses(tb.tx, tb.rng, 0)
    await ClockCycles(dut.clk, 100)
    stale = [await tb.recv_rx() for _ in range(tb.rx.count())]
    assert stale == old[: len(stale)] and done_before <= len(stale) <= done_before + 1

    new = random_packets(tb.rng, 5)
    await tb.setup(rx_slots=4, tx_slots=4)
    await with_timeout(tb.tx.wait(), 1, "us")  # the half-taken packet's rest is taken once enabled
    await run_traffic(tb, new, new[:3], 0, 0)


# ---------------------------------------------------------------------------- RingHost and rgw_card


class AxilBus:
    """riskgw.card.bus.Bus over the DMA's AXI-Lite port, for code running in a bridge thread."""

    def __init__(self, axil: AxiLiteMaster) -> None:
        self._read = resume(axil.read_dword)
        self._write = resume(axil.write_dword)

    def read32(self, addr: int) -> int:
        return int(self._read(addr))

    def write32(self, addr: int, value: int) -> None:
        self._write(addr, value)

    def write_many(self, writes: Sequence[tuple[int, int]]) -> None:
        for a, v in writes:
            self.write32(a, v)

    def read_many(self, addrs: Sequence[int]) -> list[int]:
        return [self.read32(a) for a in addrs]


class RamRing:
    """rings.RingMemory over the AxiRam: a host copy, synced into and out of the card's memory."""

    def __init__(self, ram: AxiRam, address: int, slots: int) -> None:
        self.ram = ram
        self.device_address = address
        self.array = np.zeros(slots * SLOT_BYTES, np.uint8)

    def to_device(self, start: int, stop: int) -> None:
        self.ram.write(self.device_address + start, self.array[start:stop].tobytes())

    def from_device(self, start: int, stop: int) -> None:
        data = self.ram.read(self.device_address + start, stop - start)
        self.array[start:stop] = np.frombuffer(bytes(data), np.uint8)


@cocotb.test()
async def run_host_card(dut) -> None:  # type: ignore[no-untyped-def]
    """RingHost (riskgw/card/rings.py) feeds rgw_card through the DMA, as on the U200: the
    reference rule file, an order flow with both verdicts, every answer against the software
    engine; both rings wrap, the record numbers through 2**32."""
    sys.path[:0] = [str(Path(__file__).resolve().parents[1] / d) for d in ("card", "doe")]
    from card_model import CardModel
    from test_card import EXCH, SEED_RULES, Card, compare, load_rows, random_flow
    from test_doe import compiled

    from riskgw.engine.engine import Engine

    card = Card(dut, seed=8)  # the card's own bench: clock, reset, its AXI-Lite port
    tb = TB(dut, seed=8, card=True)
    await card.up()
    image = compiled([SEED_RULES], card.p.lanes)
    engine = Engine(image, backend="interp")
    rows, frames = random_flow(image, seed=8, n_rows=6, n_events=36)
    await card.load_image(image)
    await load_rows(card, engine, rows)
    tb.stalls(0.3)

    model = CardModel(engine, EXCH)
    batches: list[tuple[list[Packet], int]] = []  # rx packets and the answers expected after them
    for i in range(0, len(frames), 3):
        batch = [Packet(s, f) for s, f in frames[i : i + 3]]
        for p in batch:
            model.packet(p.session, p.data)
        batches.append((batch, len(model.out.frames)))
    rx_mem, tx_mem = RamRing(tb.ram, RX_BASE, 8), RamRing(tb.ram, TX_BASE, 8)
    start = (1 << 32) - 20
    deposit = resume(_deposit)

    @bridge
    def host_side() -> list[Packet]:
        host = RingHost(AxilBus(tb.axil), rx_mem, tx_mem, timeout_s=600)
        host.start()
        deposit(tb, start)
        host.rx_head = host.tx_tail = start
        got: list[Packet] = []
        for batch, answers in batches:
            host.send(batch)
            for _ in range(20_000):
                if len(got) >= answers:
                    break
                got += host.poll()
            assert len(got) == answers, f"{len(got)} answers of {answers}"
        host.check()
        return got

    got = await with_timeout(host_side(), 5_000, "us")
    compare([(p.session, p.data) for p in got], model.out)
    want = model.out
    assert want.accepted and want.rejected, "the flow should exercise both verdicts"
    assert await tb.read("RX_TAIL") == (start + len(frames)) & M32
    assert await tb.read("TX_HEAD") == (start + len(got)) & M32
    dut._log.info("%d rx packets, %d answers through the rings", len(frames), len(got))


async def _deposit(tb: TB, start: int) -> None:
    await tb.write("CONTROL", 0)
    await ClockCycles(tb.dut.clk, 4)  # nothing in flight: both rings are empty
    tb.deposit(start, start)
    await RisingEdge(tb.dut.clk)
    await tb.write("CONTROL", RingControl.ENABLE)


# ---------------------------------------------------------------------------- pytest

PARAMS = DoeParams(rows=256)
GIT_HASH = 0x0123456789ABCDEF0123456789ABCDEF01234567


@pytest.mark.sim
@pytest.mark.xdist_group("sim")
def test_ring_dma() -> None:
    import simrun

    tests = os.environ.get("RGW_RING_TESTS", ".*")  # a regex of test names, to run only some
    simrun.run(
        "rgw_ring_dma",
        "test_ring_dma",
        Path(__file__).parent,
        parameters={"DATA_W": 512, "GIT_HASH": f"160'h{GIT_HASH:040x}", **PARAMS.hdl()},
        extra_env={
            "RGW_PARAMS": ",".join(f"{k}={v}" for k, v in vars(PARAMS).items()),
            "COCOTB_TEST_FILTER": rf"\.({tests})$",
        },
        hdl_toplevel="test_ring_dma",
        more_tops=("rgw_card",),
    )
