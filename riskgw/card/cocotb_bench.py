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

`CardBench(dut, lean_axil=True)` (the simulated-card server) drives AXI-Lite with `LeanAxil`
instead of cocotbext-axi's master: one access after another, the fewest clock-edge awaits a
handshake allows, and `axil_access(ops)` runs a whole batch without a task per access.

Port names of the top level: `clk`, `rst` (active high), `s_axil_*` (AXI-Lite slave),
`s_axis_rx_*` and `m_axis_tx_*` (AXI4-Stream with tdata, tkeep, tvalid, tready, tlast, tuser).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
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


class LeanAxil:
    """An AXI-Lite master that touches Python only on the clock edges of its own accesses.

    rgw_card_regs answers a write with bvalid and a read with rvalid for exactly one cycle (bready
    and rready stay high), and neither can be high the edge after, so seeing it after an edge
    means the access was taken at that edge. The next access is put on the bus at once: two
    edges per access when the card is ready, more while a DOE command holds writes back.
    """

    def __init__(self, dut: Any) -> None:
        self.dut = dut
        self._edge = RisingEdge(dut.clk)
        dut.s_axil_awvalid.value = 0
        dut.s_axil_wvalid.value = 0
        dut.s_axil_arvalid.value = 0
        dut.s_axil_bready.value = 1
        dut.s_axil_rready.value = 1
        dut.s_axil_wstrb.value = 0xF
        dut.s_axil_awprot.value = 0
        dut.s_axil_arprot.value = 0

    async def access(self, ops: Sequence[tuple[int, int | None]]) -> list[int]:
        """(addr, value) writes and (addr, None) reads, in order; the values read."""
        dut = self.dut
        edge = self._edge
        values: list[int] = []
        try:
            for addr, value in ops:
                if value is None:
                    dut.s_axil_awvalid.value = 0
                    dut.s_axil_wvalid.value = 0
                    dut.s_axil_araddr.value = addr
                    dut.s_axil_arvalid.value = 1
                    await edge
                    while not dut.s_axil_rvalid.value:
                        await edge
                    dut.s_axil_arvalid.value = 0
                    values.append(int(dut.s_axil_rdata.value))
                else:
                    dut.s_axil_arvalid.value = 0
                    dut.s_axil_awaddr.value = addr
                    dut.s_axil_wdata.value = value & 0xFFFFFFFF
                    dut.s_axil_awvalid.value = 1
                    dut.s_axil_wvalid.value = 1
                    await edge
                    while not dut.s_axil_bvalid.value:
                        await edge
                    dut.s_axil_awvalid.value = 0
                    dut.s_axil_wvalid.value = 0
        finally:
            dut.s_axil_awvalid.value = 0
            dut.s_axil_wvalid.value = 0
            dut.s_axil_arvalid.value = 0
        return values


class CardBench:
    """Owns the clock, the reset and the bus models of one `rgw_card` instance."""

    def __init__(self, dut: Any, seed: int = 1, lean_axil: bool = False) -> None:
        self.dut = dut
        self._rng = random.Random(seed)
        self.lean: LeanAxil | None = LeanAxil(dut) if lean_axil else None
        self.axil: AxiLiteMaster | None = (
            None if lean_axil else AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axil"), dut.clk, dut.rst)
        )
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
        if self.axil is None:
            return (await self.axil_access([(addr, None)]))[0]
        return int(await self.axil.read_dword(addr))

    async def axil_write(self, addr: int, value: int) -> None:
        """Write the low 32 bits of `value` to the register at `addr` (returns after the B response)."""
        if self.axil is None:
            await self.axil_access([(addr, value)])
            return
        await self.axil.write_dword(addr, value & 0xFFFFFFFF)

    async def axil_access(self, ops: Sequence[tuple[int, int | None]]) -> list[int]:
        """(addr, value) writes and (addr, None) reads one after another; the values read."""
        if self.lean is not None:
            return await self.lean.access(ops)
        values: list[int] = []
        for addr, value in ops:
            if value is None:
                values.append(await self.axil_read(addr))
            else:
                await self.axil_write(addr, value)
        return values

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
