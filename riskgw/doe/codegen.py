"""Code generation: scheduled IR sections -> registers and instruction words -> a program image."""

from __future__ import annotations

from riskgw.doe.image import Bundle, Image, ScanSpec
from riskgw.doe.isa import MAX_KEY_WORDS, REG_CONST_BASE, REG_TRUE, REG_W, Event, Insn, Op
from riskgw.ir.nodes import IRProgram, Kind, Node, RuleCheck, Section
from riskgw.ir.passes.level import Entry, WriteOp, level
from riskgw.lang import ast

MAX_REGS = 1 << REG_W


class CodegenError(ast.CompileError):
    pass


def _fail(message: str) -> CodegenError:
    return CodegenError(ast.Diagnostic(ast.Severity.ERROR, message, None))


class _Consts:
    def __init__(self) -> None:
        self.values: list[int | None] = [None, 0, 1]  # REG_NULL, REG_ZERO, REG_TRUE
        self.index: dict[int | None, int] = {None: 0, 0: 1, 1: 2}

    def reg(self, value: int | None) -> int:
        i = self.index.get(value)
        if i is None:
            i = self.index[value] = len(self.values)
            self.values.append(value)
        return REG_CONST_BASE + i


def _sources(entry: Entry) -> list[Node]:
    if isinstance(entry, RuleCheck):
        return [entry.guard, entry.expr]
    if isinstance(entry, WriteOp):
        return [entry.write.handle, entry.write.value, entry.write.pred]
    if entry.kind is Kind.ALLOC:
        return list(entry.args)  # predicate, then key words
    return list(entry.args)


class _SectionCodegen:
    def __init__(self, prog: IRProgram, consts: _Consts, first_temp: int) -> None:
        self.prog = prog
        self.consts = consts
        self.first_temp = first_temp
        self.table_ids = {t.name: t.id for t in prog.tables}
        self.scan_ids = {k: i for i, k in enumerate(prog.scans)}
        self.regs: dict[int, int] = {}
        self.max_reg = first_temp - 1

    def operand(self, node: Node) -> int:
        if node.kind is Kind.CONST:
            return self.consts.reg(node.attrs[0])
        if node.kind is Kind.INPUT:
            reg: int = node.attrs[0]
            return reg
        return self.regs[node.id]

    def allocate(self, bundles: list[list[Entry]]) -> None:
        last_use: dict[int, int] = {}
        for b, bundle in enumerate(bundles):
            for entry in bundle:
                for src in _sources(entry):
                    last_use[src.id] = b
        free: list[int] = []
        next_reg = self.first_temp
        expiring: dict[int, list[int]] = {}
        for b, bundle in enumerate(bundles):
            # Registers last read in this bundle may take this bundle's results: reads come first.
            for reg in expiring.pop(b, []):
                free.append(reg)
            free.sort(reverse=True)
            for entry in bundle:
                if isinstance(entry, (RuleCheck, WriteOp)):
                    continue
                if free:
                    reg = free.pop()
                else:
                    reg = next_reg
                    next_reg += 1
                    if reg >= MAX_REGS:
                        raise _fail(f"the program needs more than {MAX_REGS} registers: split the rule files")
                self.regs[entry.id] = reg
                end = last_use.get(entry.id, b)
                expiring.setdefault(end + 1 if end == b else end, []).append(reg)
        self.max_reg = max(self.max_reg, next_reg - 1)

    def insn(self, entry: Entry) -> Insn:
        if isinstance(entry, RuleCheck):
            return Insn(Op.RULE, srcs=(self.operand(entry.guard), self.operand(entry.expr)), imm=entry.rule)
        if isinstance(entry, WriteOp):
            w = entry.write
            return Insn(
                Op.WRITE,
                srcs=(self.operand(w.handle), self.operand(w.value)),
                pred=self.operand(w.pred),
                table=self.table_ids[entry.table],
                imm=w.column,
            )
        node = entry
        dst = self.regs[node.id]
        if node.kind is Kind.ALU:
            return Insn(node.op, dst, tuple(self.operand(a) for a in node.args))
        if node.kind is Kind.LOOKUP:
            return Insn(Op.LOOKUP, dst, self.key(node.args), table=self.table_ids[node.table])
        if node.kind is Kind.READ:
            return Insn(
                Op.READ,
                dst,
                (self.operand(node.args[0]),),
                table=self.table_ids[node.table],
                imm=node.attrs[1],
            )
        if node.kind is Kind.SCAN:
            return Insn(Op.SCAN, dst, self.key(node.args), table=self.scan_ids[node.attrs[0]])
        if node.kind is Kind.ALLOC:
            pred, *key = node.args
            return Insn(
                Op.ALLOC, dst, self.key(tuple(key)), pred=self.operand(pred), table=self.table_ids[node.table]
            )
        raise AssertionError(node.kind)

    def key(self, words: tuple[Node, ...]) -> tuple[int, ...]:
        if len(words) > MAX_KEY_WORDS:
            raise _fail(f"a key of {len(words)} words is longer than the {MAX_KEY_WORDS} the DOE compares")
        return tuple(self.operand(w) for w in words)

    def run(self, section: Section, lanes: int) -> list[Bundle]:
        bundles = level(section, lanes)
        self.allocate(bundles)
        return [tuple(self.insn(e) for e in bundle) for bundle in bundles]


def _collect_consts(prog: IRProgram, consts: _Consts) -> None:
    from riskgw.ir.nodes import walk

    for section in prog.sections.values():
        for n in walk(list(section.values())):
            if n.kind is Kind.CONST:
                consts.reg(n.attrs[0])


def generate(prog: IRProgram, lanes: int, source_hash: bytes) -> Image:
    if not 1 <= lanes <= 64:
        raise _fail(f"--lanes must be between 1 and 64, not {lanes}")
    for t in prog.tables:
        if len(t.key) > MAX_KEY_WORDS:
            raise _fail(
                f"the key of {t.name} is {len(t.key)} words; the DOE compares at most {MAX_KEY_WORDS} "
                f"(a CHAR(n) takes n/8 words)"
            )
    if len(prog.tables) > 256:
        raise _fail(f"{len(prog.tables)} tables (aggregates included); the DOE holds at most 256")
    consts = _Consts()
    _collect_consts(prog, consts)
    first_temp = REG_CONST_BASE + len(consts.values)
    code: dict[tuple[Event, int], list[Bundle]] = {}
    n_regs = first_temp
    for key, section in sorted(prog.sections.items(), key=lambda kv: (int(kv[0][0]), kv[0][1])):
        gen = _SectionCodegen(prog, consts, first_temp)
        bundles = gen.run(section, lanes)
        if bundles:
            code[key] = bundles
        n_regs = max(n_regs, gen.max_reg + 1)
    assert REG_TRUE == REG_CONST_BASE + 2
    scans = [
        ScanSpec(i, next(t.id for t in prog.tables if t.name == k.table), k.mode, k.match, k.order)
        for i, k in enumerate(prog.scans)
    ]
    return Image(
        tables=list(prog.tables),
        consts=consts.values,
        rules=list(prog.rules),
        scans=scans,
        sources=list(prog.sources),
        code=code,
        lanes=max((len(b) for bs in code.values() for b in bs), default=1),
        n_regs=n_regs,
        source_hash=source_hash,
    )
