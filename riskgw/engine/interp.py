"""The reference executor: runs a section bundle by bundle, instruction by instruction.

It is written to be read against riskgw/doe/isa.py, not to be fast; `fastpath` must give the same
results and a test runs both on the same events.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from riskgw.doe.image import Bundle, Image, ScanSpec
from riskgw.doe.isa import REG_CONST_BASE, Event, Op, ScanMode, truthy
from riskgw.engine import alu
from riskgw.engine.program import register_count
from riskgw.engine.state import EngineState
from riskgw.engine.table import ColumnTable, Value


def scan(table: ColumnTable, spec: ScanSpec, key: Sequence[Value]) -> Value:
    """SCAN: the best row among those whose match columns equal `key`; ties to the lowest address."""
    if any(k is None for k in key):
        return None
    table.sync()
    n = table.n_rows
    mask = np.ones(n, np.bool_)
    for col, k in zip(spec.match, key, strict=True):
        mask &= (table.words[col][:n] == k) & ~table.nulls[col][:n]
    rows = np.flatnonzero(mask)
    if rows.size == 0:
        return None
    order_nulls = table.nulls[spec.order][rows]
    present = rows[~order_nulls]
    if spec.mode is ScanMode.FIRST_ASC and present.size < rows.size:
        return int(rows[order_nulls][0])
    if present.size == 0:
        return int(rows[0]) if spec.mode is ScanMode.FIRST_DESC else None
    values = table.words[spec.order][present]
    if spec.mode in (ScanMode.MIN, ScanMode.FIRST_ASC):
        return int(present[int(np.argmin(values))])
    return int(present[int(np.argmax(values))])


class Interpreter:
    def __init__(self, image: Image, state: EngineState) -> None:
        self.image = image
        self.state = state
        self.n_regs = register_count(image)
        self.scans = {s.id: s for s in image.scans}
        self._consts = list(image.consts)

    def run(self, event: Event, arg: int, inputs: Sequence[Value], failed: set[int] | None = None) -> None:
        """Run section (event, arg) with `inputs` in registers 0..; RULE failures are added to `failed`."""
        regs: list[Value] = [None] * self.n_regs
        regs[: len(inputs)] = inputs
        regs[REG_CONST_BASE : REG_CONST_BASE + len(self._consts)] = self._consts
        for bundle in self.image.section(event, arg):
            self._bundle(bundle, regs, failed)

    def _bundle(self, bundle: Bundle, regs: list[Value], failed: set[int] | None) -> None:
        # Everything reads `regs` and the tables as they were; effects are collected, then applied.
        reg_writes: list[tuple[int, Value]] = []
        table_writes: list[tuple[Op, int, int, tuple[Value, ...]]] = []  # op, table, dst or column, operands
        tables = self.state.tables
        for insn in bundle:
            op = insn.op
            src = [regs[s] for s in insn.srcs]
            if op is Op.NOP:
                continue
            if op in alu.UNARY:
                reg_writes.append((insn.dst, alu.UNARY[op](src[0])))
            elif op in alu.BINARY:
                reg_writes.append((insn.dst, alu.BINARY[op](src[0], src[1])))
            elif op is Op.SEL:
                reg_writes.append((insn.dst, alu.sel(src[0], src[1], src[2])))
            elif op is Op.RULE:
                if truthy(src[0]) and not truthy(src[1]) and failed is not None:
                    failed.add(insn.imm)
            elif op is Op.LOOKUP:
                reg_writes.append((insn.dst, tables[insn.table].lookup(tuple(src))))
            elif op is Op.READ:
                handle = src[0]
                value = None if handle is None else tables[insn.table].get(insn.imm, handle)
                reg_writes.append((insn.dst, value))
            elif op is Op.SCAN:
                spec = self.scans[insn.table]
                reg_writes.append((insn.dst, scan(tables[spec.table], spec, src)))
            elif op is Op.ALLOC:
                # Its handle is known only when the row is appended, after the bundle's other results.
                table_writes.append((op, insn.table, insn.dst, (truthy(regs[insn.pred]), *src)))
            elif op is Op.WRITE:
                if truthy(regs[insn.pred]) and src[0] is not None:
                    table_writes.append((op, insn.table, insn.imm, (src[0], src[1])))
            else:
                raise ValueError(f"cannot execute {op.name}")
        for dst, value in reg_writes:
            regs[dst] = value
        for op, table_id, target, operands in table_writes:
            table = tables[table_id]
            if op is Op.ALLOC:
                regs[target] = table.alloc(operands[1:]) if operands[0] else None
            else:
                handle = operands[0]
                assert handle is not None
                table.write(target, handle, operands[1])
