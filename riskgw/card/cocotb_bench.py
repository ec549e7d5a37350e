"""A cocotb bench for `hdl/rgw_card.sv`: clock, reset, the AXI-Lite host port and the TOE streams.

Used by the card's cocotb suite (sim/card) and by the simulated-card server, so both drive the
card the same way. It runs inside a cocotb test only (it imports cocotb and cocotbext-axi).

    bench = CardBench(dut)
    await bench.start()                        # clock and reset; the card is then idle
    await bench.axil_write(addr, value)        # 32-bit registers of riskgw/card/regmap.py
    value = await bench.axil_read(addr)
    await bench.send(session, frames_bytes)    # one rx packet (whole frames, or anything)
    session, frame = await bench.recv()        # one tx packet: exactly one frame
    bench.set_tx_backpressure(0.5)             # the host takes a tx beat with probability 0.5

Port names of the top level: `clk`, `rst` (active high), `s_axil_*` (AXI-Lite slave),
`s_axis_rx_*` and `m_axis_tx_*` (AXI4-Stream with tdata, tkeep, tvalid, tready, tlast, tuser).
"""

from __future__ import annotations

import random
from typing import Any

from cocotb.clock import Clock
from cocotb.triggers import RisingEdge
from cocotbext.axi import (
    AxiLiteBus,
    AxiLiteMaster,
    AxiStreamBus,
    AxiStreamFrame,
    AxiStreamSink,
    AxiStreamSource,
)

CLOCK_NS = 4  # 250 MHz, the clock the card is timed for


class CardBench:
    """Owns the clock, the reset and the bus models of one `rgw_card` instance."""

    def __init__(self, dut: Any, seed: int = 1) -> None:
        self.dut = dut
        self._rng = random.Random(seed)
        self.axil = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axil"), dut.clk, dut.rst)
        self.rx = AxiStreamSource(AxiStreamBus.from_prefix(dut, "s_axis_rx"), dut.clk, dut.rst)
        self.tx = AxiStreamSink(AxiStreamBus.from_prefix(dut, "m_axis_tx"), dut.clk, dut.rst)
        self.data_bytes = len(dut.s_axis_rx_tdata) // 8

    async def start(self) -> None:
        """Start the clock and hold reset for a few cycles; returns with the card out of reset."""
        Clock(self.dut.clk, CLOCK_NS, unit="ns").start()
        self.dut.rst.value = 1
        for _ in range(8):
            await RisingEdge(self.dut.clk)
        self.dut.rst.value = 0
        for _ in range(2):
            await RisingEdge(self.dut.clk)

    async def axil_read(self, addr: int) -> int:
        """The 32-bit register at byte address `addr`."""
        return int(await self.axil.read_dword(addr))

    async def axil_write(self, addr: int, value: int) -> None:
        """Write the low 32 bits of `value` to the register at `addr` (returns after the B response)."""
        await self.axil.write_dword(addr, value & 0xFFFFFFFF)

    async def send(self, session: int, data: bytes, idle_prob: float = 0.0) -> None:
        """Queue one rx packet of `data` on `session`. `idle_prob` is the share of cycles the rx
        source leaves idle from now on (for every packet still queued too). Returns once the
        packet is queued, not sent: `wait_sent` waits for that."""
        if idle_prob > 0:
            rng = self._rng
            self.rx.set_pause_generator(iter(lambda: rng.random() < idle_prob, None))
        else:
            self.rx.set_pause_generator(None)
        await self.rx.send(AxiStreamFrame(data, tuser=session))

    async def wait_sent(self) -> None:
        """Until every queued rx packet has left the source."""
        await self.rx.wait()

    async def recv(self) -> tuple[int, bytes]:
        """The next tx packet: (session it goes to, its bytes: one frame)."""
        frame = await self.tx.recv()
        tuser = frame.tuser
        session = tuser if isinstance(tuser, int) else (tuser[0] if tuser else 0)
        return int(session), bytes(frame.tdata)

    def tx_pending(self) -> int:
        """Tx packets received and not yet taken by `recv`."""
        return int(self.tx.count())

    def set_tx_backpressure(self, stall_prob: float) -> None:
        """Deassert tx tready in a `stall_prob` share of cycles (0 turns back-pressure off)."""
        if stall_prob > 0:
            rng = self._rng
            self.tx.set_pause_generator(iter(lambda: rng.random() < stall_prob, None))
        else:
            self.tx.set_pause_generator(None)
