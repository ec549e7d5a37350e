"""The DOE's load port layout (hdl/rgw_doe.sv): a program image as a list of 64-bit writes.

The cocotb benches of the DOE and the card's register-level driver (riskgw/card/regs.py) both
use it, through the bare load port and through the card's DOE register window.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from riskgw.doe.image import Image
from riskgw.doe.isa import REG_CONST_BASE, Event, Insn, Op

M64 = (1 << 64) - 1


# hdl/rgw_doe_hash.sv's odd multiplier for each key word
HASH_MULT = (
    0x9E3779B97F4A7C15,
    0xC2B2AE3D27D4EB4F,
    0x165667B19E3779F9,
    0x85EBCA77C2B2AE63,
    0x27D4EB2F165667C5,
    0xFF51AFD7ED558CCD,
)


def hash_bucket(key: Sequence[int], cl_buckets: int) -> int:
    """hdl/rgw_doe_hash.sv: the bucket of a key (its words) in an index of 2**cl_buckets buckets.

    Vector multiply-shift: each word times its own odd constant, summed modulo 2**64, and the top
    `cl_buckets` bits of the sum. Words are two's complement (a negative word hashes as its 64-bit
    pattern). The DOE takes at most six key words.
    """
    if len(key) > len(HASH_MULT):
        raise ValueError(f"a key of {len(key)} words: the DOE's hash takes at most {len(HASH_MULT)}")
    x = sum((w & M64) * m for w, m in zip(key, HASH_MULT, strict=False)) & M64
    return x >> (64 - cl_buckets)


REGION_CTRL = 0x0
REGION_PROG = 0x1
REGION_SECTION = 0x2
REGION_CONST = 0x3
REGION_TABLE = 0x4
REGION_SCAN = 0x5
REGION_CELL = 0x6
REGION_COUNT = 0x7

CTRL_ID = 0
CTRL_PARAMS = 1
CTRL_STATUS = 2
CTRL_CLEAR = 3
CTRL_LAST_CYCLES = 4


@dataclass(frozen=True)
class DoeParams:
    lanes: int = 8
    regs: int = 256
    prog_rows: int = 256
    tables: int = 8
    cols: int = 16
    rows: int = 1024
    key_words: int = 6
    ways: int = 4
    scans: int = 16
    rules: int = 64
    in_words: int = 16

    def hdl(self) -> dict[str, int]:
        return {
            "LANES": self.lanes,
            "REGS": self.regs,
            "PROG_ROWS": self.prog_rows,
            "TABLES": self.tables,
            "COLS": self.cols,
            "ROWS": self.rows,
            "KEY_WORDS": self.key_words,
            "WAYS": self.ways,
            "SCANS": self.scans,
            "RULES": self.rules,
            "IN_WORDS": self.in_words,
        }


def addr(region: int, index: int) -> int:
    return (region << 28) | index


def _clog2(n: int) -> int:
    return max((n - 1).bit_length(), 1) if n > 1 else 1


def cell_addr(p: DoeParams, table: int, col: int, row: int, null_half: bool) -> int:
    cl_rows = (p.rows - 1).bit_length()
    cl_cols = _clog2(p.cols)
    index = (((table << cl_cols | col) << cl_rows) | row) << 1 | int(null_half)
    return addr(REGION_CELL, index)


class ImageDoesNotFit(ValueError):
    """The image needs more of something than these HDL parameters provide."""


def section_index(event: Event, table: int) -> int:
    return 8 + table if event is Event.LOAD else int(event)


def image_writes(image: Image, p: DoeParams) -> list[tuple[int, int]]:
    """Load-port writes that put `image` into a DOE built with parameters `p`."""
    writes: list[tuple[int, int]] = []
    if image.lanes > p.lanes or any(len(b) > p.lanes for bs in image.code.values() for b in bs):
        raise ImageDoesNotFit(f"bundles of {image.lanes} instructions, the DOE has {p.lanes} lanes")
    if REG_CONST_BASE + len(image.consts) > p.regs or image.n_regs > p.regs:
        raise ImageDoesNotFit(f"{image.n_regs} registers, the DOE has {p.regs}")
    if any(r.id >= p.rules for r in image.rules):
        raise ImageDoesNotFit(f"{len(image.rules)} rules, the DOE has {p.rules}")
    for t in image.tables:
        if t.id >= p.tables or len(t.columns) > p.cols or len(t.key) > p.key_words:
            raise ImageDoesNotFit(f"table {t.name} does not fit")
    if any(s.id >= p.scans for s in image.scans):
        raise ImageDoesNotFit("too many scan specs")
    row = 0
    present = {section_index(e, t) for e, t in image.code}
    # sections an earlier program had and this one does not must run nothing
    writes += [(addr(REGION_SECTION, i), 0) for i in range(8 + p.tables) if i not in present]
    for (event, table), bundles in sorted(image.code.items()):
        if row + len(bundles) > p.prog_rows:
            raise ImageDoesNotFit(f"more than {p.prog_rows} bundles")
        writes.append((addr(REGION_SECTION, section_index(event, table)), len(bundles) << 32 | row))
        for bundle in bundles:
            slots = list(bundle) + [Insn(Op.NOP)] * (p.lanes - len(bundle))
            for lane, insn in enumerate(slots):
                word = Insn(insn.op, insn.dst, insn.srcs, insn.pred, insn.table, insn.imm).encode()
                base = ((row * p.lanes) + lane) << 1
                writes.append((addr(REGION_PROG, base), word & M64))
                writes.append((addr(REGION_PROG, base | 1), word >> 64))
            row += 1
    for i, v in enumerate(image.consts):
        writes.append((addr(REGION_CONST, 2 * i), 0 if v is None else v & M64))
        writes.append((addr(REGION_CONST, 2 * i + 1), int(v is None)))
    for t in image.tables:
        writes.append((addr(REGION_TABLE, t.id << 4), len(t.key)))
        for i, c in enumerate(t.key):
            writes.append((addr(REGION_TABLE, t.id << 4 | (1 + i)), c))
    for s in image.scans:
        fields = [s.table, int(s.mode), len(s.match), s.order, *s.match]
        for f, v in enumerate(fields):
            writes.append((addr(REGION_SCAN, s.id << 4 | f), v))
    return writes
