"""Checks on a program image that both executors rely on, done once when an engine is built."""

from __future__ import annotations

from riskgw.doe.image import Image
from riskgw.doe.isa import N_INPUT_REGS, REG_CONST_BASE, Event, Op, ScanMode
from riskgw.engine.table import EngineError

# Events whose sections the engine runs; a LOAD section's table id is checked against the tables.
_EVENTS = frozenset(Event)


def register_count(image: Image) -> int:
    """Registers an executor needs: the header's count, widened to cover every operand used."""
    n = max(image.n_regs, REG_CONST_BASE + len(image.consts), N_INPUT_REGS)
    for bundles in image.code.values():
        for bundle in bundles:
            for insn in bundle:
                n = max(n, insn.dst + 1, insn.pred + 1, *(s + 1 for s in insn.srcs))
    return n


def check_image(image: Image) -> None:
    """Raise EngineError when the image breaks an assumption the executors make.

    - every table, scan spec, rule and column an instruction names exists;
    - keyed instructions carry exactly the table's (or scan spec's) key words;
    - no WRITE changes a key column (the hash index would go stale);
    - the NEW section writes no table (a rejected order must change nothing), and only it has RULEs.
    """
    tables = {t.id: t for t in image.tables}
    scans = {s.id: s for s in image.scans}
    rules = {r.id for r in image.rules}
    for s in image.scans:
        if s.table not in tables:
            raise EngineError(f"scan spec {s.id} names table {s.table}, which the image does not have")
        t = tables[s.table]
        if any(c >= len(t.columns) for c in (*s.match, s.order)):
            raise EngineError(f"scan spec {s.id}: column out of range for table {t.name}")
        ScanMode(s.mode)
    for (event, arg), bundles in image.code.items():
        where = f"section {event.name}" + (f"/{arg}" if event is Event.LOAD else "")
        if event not in _EVENTS:
            raise EngineError(f"{where}: unknown event")
        if event is Event.LOAD and arg not in tables:
            raise EngineError(f"{where}: no table {arg}")
        for bundle in bundles:
            for insn in bundle:
                op = insn.op
                if op is Op.SCAN:
                    if insn.table not in scans:
                        raise EngineError(f"{where}: SCAN of unknown scan spec {insn.table}")
                    if len(insn.srcs) != len(scans[insn.table].match):
                        raise EngineError(f"{where}: SCAN with {len(insn.srcs)} key words")
                elif op in (Op.LOOKUP, Op.ALLOC, Op.READ, Op.WRITE):
                    if insn.table not in tables:
                        raise EngineError(f"{where}: {op.name} of unknown table {insn.table}")
                    t = tables[insn.table]
                    if op in (Op.LOOKUP, Op.ALLOC) and len(insn.srcs) != len(t.key):
                        raise EngineError(f"{where}: {op.name} {t.name} with {len(insn.srcs)} key words")
                    if op is Op.LOOKUP and not t.key:
                        raise EngineError(f"{where}: LOOKUP in {t.name}, which has no key")
                    if op in (Op.READ, Op.WRITE) and insn.imm >= len(t.columns):
                        raise EngineError(f"{where}: {op.name} of column {insn.imm} of {t.name}")
                    if op is Op.WRITE and insn.imm in t.key:
                        raise EngineError(f"{where}: WRITE to key column {insn.imm} of {t.name}")
                    if event is Event.NEW and op in (Op.ALLOC, Op.WRITE):
                        raise EngineError(f"{where}: {op.name} in the NEW section (a check writes nothing)")
                elif op is Op.RULE:
                    if event is not Event.NEW:
                        raise EngineError(f"{where}: RULE outside the NEW section")
                    if insn.imm not in rules:
                        raise EngineError(f"{where}: RULE with unknown rule id {insn.imm}")
