"""The DOE's load port (hdl/rgw_doe.sv `s_cfg_*`) driven from cocotb: one access at a time.

Shared by the DOE's cocotb bench (sim/doe) and its cycle benchmark (bench/hdl_tb.py), so both load
programs and read tables back through the same handshake. Runs inside a cocotb test only.
"""

from __future__ import annotations

from typing import Any

from cocotb.triggers import ReadOnly, RisingEdge

from riskgw.card.doeport import M64


async def cfg_access(dut: Any, a: int, write: bool, data: int = 0) -> int:
    """One load-port write (returns 0) or read (returns the 64-bit value) at address `a`."""
    dut.s_cfg_valid.value = 1
    dut.s_cfg_write.value = int(write)
    dut.s_cfg_addr.value = a
    dut.s_cfg_data.value = data & M64
    while True:
        await ReadOnly()
        ready = int(dut.s_cfg_ready.value)
        await RisingEdge(dut.clk)
        if ready:
            break
    dut.s_cfg_valid.value = 0
    if write:
        return 0
    while True:
        await ReadOnly()
        if int(dut.m_cfg_rd_valid.value):
            value = int(dut.m_cfg_rd_data.value)
            await RisingEdge(dut.clk)
            return value
        await RisingEdge(dut.clk)
