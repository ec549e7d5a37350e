"""The bus the register-level driver talks over: 32-bit register reads and writes.

Three buses carry it: the simulated card's ZeroMQ link (riskgw/card/simcard.py), pynq's MMIO on a
U200 (riskgw/card/pynq.py), and cocotb's AXI-Lite master inside the simulation. The batch calls
exist so a bus with a round trip per call (ZeroMQ) can send a whole program load at once; they
mean exactly the single calls in order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

# An access of a bus's optional `access_many`: (addr, value) a write, (addr, None) a read, and on a
# bus that sets `polls`, (addr, None, want) a poll: addr read until it reads `want`.
AccessOp = tuple[int, int | None] | tuple[int, None, int]


class Bus(Protocol):
    def read32(self, addr: int) -> int:
        """The register at byte address `addr`."""
        ...

    def write32(self, addr: int, value: int) -> None:
        """Write the low 32 bits of `value` to the register at `addr`."""
        ...

    def write_many(self, writes: Sequence[tuple[int, int]]) -> None:
        """`write32` for each (addr, value), in order."""
        ...

    def read_many(self, addrs: Sequence[int]) -> list[int]:
        """`read32` for each address, in order."""
        ...
