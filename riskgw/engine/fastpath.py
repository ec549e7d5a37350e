"""The fast executor: each section becomes one straight-line Python function, compiled once.

Registers become local variables in SSA form: every result gets a fresh name, and a bundle's
results are bound to their registers only after the whole bundle is emitted, so every instruction
reads the values from before the bundle (isa.py's bundle rule) at no run-time cost. Table writes
of a bundle are emitted after its reads. Constants are folded with the reference ALU, and NULL
checks are left out where a value is known never to be NULL. Table cells are read from and
written to the tables' Python list mirrors; a written row is marked dirty, and the numpy store
catches up when something reads it (ColumnTable.sync).

`Interpreter` is the reference; a test runs both on the same events and compares.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from riskgw.doe.image import Image
from riskgw.doe.isa import INT32_MAX, INT32_MIN, INT64_MAX, INT64_MIN, REG_CONST_BASE, Event, Insn, Op
from riskgw.engine import alu
from riskgw.engine.interp import scan
from riskgw.engine.state import EngineState
from riskgw.engine.table import Value

_BINARY_CMP = {Op.EQ: "==", Op.NE: "!=", Op.LT: "<", Op.LE: "<=", Op.GT: ">", Op.GE: ">="}
_ARITH = {Op.ADD: "+", Op.SUB: "-", Op.MUL: "*"}
# NULL in, NULL out
_STRICT = frozenset({*_ARITH, *_BINARY_CMP, Op.DIV, Op.MOD, Op.NEG, Op.ABS, Op.NOT, Op.RANGE32})
_NO_VALUE = object()


@dataclass(frozen=True)
class _Val:
    """What the generator knows about a register: the Python expression holding it."""

    expr: str  # a local name or a literal
    nonnull: bool = False
    const: object = _NO_VALUE  # the value, when known at generation time
    boolean: bool = False  # always 0, 1 or NULL (a comparison or logic result)

    @property
    def is_const(self) -> bool:
        return self.const is not _NO_VALUE


def _lit(value: Value) -> _Val:
    return _Val(repr(value), value is not None, value, value in (None, 0, 1))


def _cse_key(insn: Insn, src: list[_Val]) -> tuple[object, ...] | None:
    """What makes two instructions give the same value (while their table is unchanged); None: never."""
    op = insn.op
    exprs = tuple(v.expr for v in src)
    if op in alu.UNARY or op in alu.BINARY or op is Op.SEL:
        return (op, exprs)
    if op in (Op.LOOKUP, Op.SCAN):
        return (op, insn.table, exprs)
    if op is Op.READ:
        return (op, insn.table, insn.imm, exprs)
    return None


def _key_table(insn: Insn, gen: _Gen) -> int | None:
    """The table an instruction's value depends on (None for ALU ops)."""
    if insn.op is Op.SCAN:
        return gen.image.scans[[s.id for s in gen.image.scans].index(insn.table)].table
    if insn.op in (Op.LOOKUP, Op.READ):
        return insn.table
    return None


def _emission_order(bundle: tuple[Insn, ...]) -> tuple[Insn, ...]:
    """The bundle's instructions with READs last, grouped by handle, so reads share one NULL test.

    Instructions of a bundle all see the state from before it, so their order does not matter,
    except between two that write the same register (the later wins): such a bundle keeps its order.
    """
    dsts = [i.dst for i in bundle if i.op not in (Op.RULE, Op.WRITE, Op.NOP)]
    if len(dsts) != len(set(dsts)):
        return bundle
    reads = sorted((i for i in bundle if i.op is Op.READ), key=lambda i: i.srcs[0])
    return tuple(i for i in bundle if i.op is not Op.READ) + tuple(reads)


class _SectionGen:
    """Emits the body of one section into `out` (a list of source lines)."""

    def __init__(self, gen: _Gen, n_inputs: int, indent: str) -> None:
        self.gen = gen
        self.indent = indent
        self.regs: dict[int, _Val] = {}
        for r in range(n_inputs):
            self.regs[r] = _Val(f"i{r}")
        for i, c in enumerate(gen.image.consts):
            self.regs[REG_CONST_BASE + i] = _lit(c)

        # the last WRITE emitted: (late list, its length after it, condition, handle, table)
        self._write_group: tuple[int, int, str, str, int] | None = None
        # the last READ emitted: (output list, its length after it, handle, index of its `else:`)
        self._read_group: tuple[int, int, str, int] | None = None

    def reg(self, r: int) -> _Val:
        return self.regs.get(r, _lit(None))

    def emit_section(self, bundles: Sequence[tuple[Insn, ...]], out: list[str]) -> None:
        cse = self.gen.cse
        for bundle in bundles:
            pending: dict[int, _Val] = {}
            late: list[str] = []
            late_regs: dict[int, _Val] = {}
            self._write_group = None
            for insn in _emission_order(bundle):
                key = _cse_key(insn, [self.reg(s) for s in insn.srcs])
                if key is not None and key in cse:
                    pending[insn.dst] = cse[key][1]
                    continue
                self._insn(insn, out, pending, late, late_regs)
                if key is not None:
                    cse[key] = (_key_table(insn, self.gen), pending[insn.dst])
            out.extend(late)
            self.regs.update(pending)
            self.regs.update(late_regs)
            written = {insn.table for insn in bundle if insn.op in (Op.ALLOC, Op.WRITE)}
            if written:
                # what was read from a table before this bundle's writes is stale after them
                for k in [k for k, (t, _) in cse.items() if t in written]:
                    del cse[k]

    # ------------------------------------------------------------------ helpers

    def _name(self) -> str:
        return self.gen.fresh()

    def _line(self, out: list[str], text: str, depth: int = 0) -> None:
        out.append(self.indent + "    " * depth + text)

    @staticmethod
    def _none_test(*vals: _Val) -> str:
        return " or ".join(f"{v.expr} is None" for v in vals if not v.nonnull)

    # ------------------------------------------------------------------ instructions

    def _insn(
        self,
        insn: Insn,
        out: list[str],
        pending: dict[int, _Val],
        late: list[str],
        late_regs: dict[int, _Val],
    ) -> None:
        op = insn.op
        src = [self.reg(s) for s in insn.srcs]
        if op is Op.NOP:
            return
        if op in alu.UNARY or op in alu.BINARY or op is Op.SEL:
            pending[insn.dst] = self._alu(op, src, out)
        elif op is Op.RULE:
            self._rule(insn, src, out)
        elif op is Op.LOOKUP:
            pending[insn.dst] = self._lookup(insn, src, out)
        elif op is Op.READ:
            pending[insn.dst] = self._read(insn, src[0], out)
        elif op is Op.SCAN:
            if any(v.is_const and v.const is None for v in src):
                pending[insn.dst] = _lit(None)
            else:
                name = self._name()
                fn = self.gen.bind(f"S{insn.table}", self.gen.scans[insn.table])
                self._line(out, f"{name} = {fn}(({''.join(v.expr + ', ' for v in src)}))")
                pending[insn.dst] = _Val(name)
        elif op is Op.ALLOC:
            late_regs[insn.dst] = self._alloc(insn, src, late)
        elif op is Op.WRITE:
            self._write(insn, src, late)
        else:
            raise ValueError(f"cannot generate {op.name}")

    def _alu(self, op: Op, src: list[_Val], out: list[str]) -> _Val:
        if all(v.is_const for v in src):
            consts: list[Any] = [v.const for v in src]
            return _lit(alu.evaluate(op, *consts))
        if op in _STRICT and any(v.is_const and v.const is None for v in src):
            return _lit(None)
        if op is Op.MOV:
            return src[0]
        if op is Op.COALESCE and src[0].nonnull:
            return src[0]
        name = self._name()
        a = src[0]
        b = src[1] if len(src) > 1 else None
        line = partial(self._line, out)
        if op in _ARITH:
            assert b is not None
            test = self._none_test(a, b)
            expr = f"{a.expr} {_ARITH[op]} {b.expr}"
            if test:
                line(f"if {test}:")
                line(f"{name} = None", 1)
                line("else:")
                line(f"{name} = {expr}", 1)
                line(f"if not {INT64_MIN} <= {name} <= {INT64_MAX}:", 1)
                line(f"{name} = None", 2)
            else:
                line(f"{name} = {expr}")
                line(f"if not {INT64_MIN} <= {name} <= {INT64_MAX}:")
                line(f"{name} = None", 1)
            return _Val(name)
        if op in (Op.DIV, Op.MOD):
            assert b is not None
            fn = self.gen.bind(op.name.lower(), alu.div if op is Op.DIV else alu.mod)
            line(f"{name} = {fn}({a.expr}, {b.expr})")
            return _Val(name)
        if op in (Op.NEG, Op.ABS):
            value = f"-{a.expr}" if op is Op.NEG else f"abs({a.expr})"
            test = " or ".join(t for t in (self._none_test(a), f"{a.expr} == {INT64_MIN}") if t)
            line(f"{name} = None if {test} else {value}")
            return _Val(name)
        if op in _BINARY_CMP:
            assert b is not None
            test = self._none_test(a, b)
            cmp = f"1 if {a.expr} {_BINARY_CMP[op]} {b.expr} else 0"
            line(f"{name} = None if {test} else ({cmp})" if test else f"{name} = {cmp}")
            return _Val(name, not test, boolean=True)
        if op in (Op.AND, Op.OR):
            assert b is not None
            return self._logic(op, a, b, name, out)
        if op is Op.NOT:
            if a.nonnull:
                line(f"{name} = 0 if {a.expr} else 1")
                return _Val(name, True, boolean=True)
            line(f"{name} = None if {a.expr} is None else (0 if {a.expr} else 1)")
            return _Val(name, boolean=True)
        if op is Op.ISNULL:
            if a.nonnull:
                return _lit(0)
            line(f"{name} = 1 if {a.expr} is None else 0")
            return _Val(name, True, boolean=True)
        if op is Op.NOTNULL:
            if a.nonnull:
                return _lit(1)
            line(f"{name} = 0 if {a.expr} is None else 1")
            return _Val(name, True, boolean=True)
        if op is Op.SEL:
            assert b is not None
            c = src[2]
            if c.is_const:
                return a if c.const else b
            line(f"{name} = {a.expr} if {c.expr} else {b.expr}")
            return _Val(name, a.nonnull and b.nonnull, boolean=a.boolean and b.boolean)
        if op is Op.COALESCE:
            assert b is not None
            line(f"{name} = {a.expr} if {a.expr} is not None else {b.expr}")
            return _Val(name, b.nonnull, boolean=a.boolean and b.boolean)
        if op is Op.RANGE32:
            test = f"{INT32_MIN} <= {a.expr} <= {INT32_MAX}"
            if not a.nonnull:
                test = f"{a.expr} is not None and {test}"
            line(f"{name} = {a.expr} if {test} else None")
            return _Val(name)
        raise ValueError(f"cannot generate {op.name}")

    def _logic(self, op: Op, a: _Val, b: _Val, name: str, out: list[str]) -> _Val:
        """AND / OR. On 0/1/NULL operands, one known not NULL decides or passes the other through."""
        x, y = a.expr, b.expr
        if a.boolean and b.boolean:
            if a.nonnull and b.nonnull:
                self._line(out, f"{name} = {x} and {y}" if op is Op.AND else f"{name} = {x} or {y}")
                return _Val(name, True, boolean=True)
            if a.nonnull or b.nonnull:
                known, other = (x, y) if a.nonnull else (y, x)
                if op is Op.AND:  # AND(v, 1) = v, AND(v, 0) = 0
                    self._line(out, f"{name} = {other} if {known} else 0")
                else:  # OR(v, 1) = 1, OR(v, 0) = v
                    self._line(out, f"{name} = 1 if {known} else {other}")
                return _Val(name, boolean=True)
        test = self._none_test(a, b)
        if op is Op.AND:
            if not test:
                self._line(out, f"{name} = 1 if {x} and {y} else 0")
                return _Val(name, True, boolean=True)
            self._line(out, f"{name} = 0 if {x} == 0 or {y} == 0 else (None if {test} else 1)")
            return _Val(name, boolean=True)
        if not test:
            self._line(out, f"{name} = 1 if {x} or {y} else 0")
            return _Val(name, True, boolean=True)
        self._line(out, f"{name} = 1 if {x} or {y} else (None if {test} else 0)")
        return _Val(name, boolean=True)

    def _rule(self, insn: Insn, src: list[_Val], out: list[str]) -> None:
        guard, expr = src
        bit = 1 << self.gen.rule_bit[insn.imm]
        if guard.is_const and not guard.const:
            return
        if expr.is_const and expr.const:
            return
        tests = []
        if not guard.is_const:
            tests.append(guard.expr)
        if not expr.is_const:
            tests.append(f"not {expr.expr}")
        if tests:
            self._line(out, f"if {' and '.join(tests)}:")
            self._line(out, f"f |= {bit}", 1)
        else:
            self._line(out, f"f |= {bit}")

    def _lookup(self, insn: Insn, src: list[_Val], out: list[str]) -> _Val:
        if any(v.is_const and v.const is None for v in src):
            return _lit(None)
        index = self.gen.bind(f"I{insn.table}", self.gen.state.table(insn.table).index)
        name = self._name()
        key = "".join(v.expr + ", " for v in src)
        self._line(out, f"{name} = {index}.get(({key}))")
        return _Val(name)

    def _read(self, insn: Insn, handle: _Val, out: list[str]) -> _Val:
        if handle.is_const and handle.const is None:
            return _lit(None)
        column = self._column(insn.table, insn.imm)
        name = self._name()
        h = handle.expr
        if handle.nonnull:
            self._line(out, f"{name} = {column}[{h}]")
            return _Val(name)
        group = self._read_group
        if group is not None and group[:3] == (id(out), len(out), h):
            # Another read through the handle the previous statement tested: join its branches.
            else_at = group[3]
            out.insert(else_at, f"{self.indent}    {name} = None")
            self._line(out, f"{name} = {column}[{h}]", 1)
            self._read_group = (id(out), len(out), h, else_at + 1)
        else:
            self._line(out, f"if {h} is None:")
            self._line(out, f"{name} = None", 1)
            self._line(out, "else:")
            self._line(out, f"{name} = {column}[{h}]", 1)
            self._read_group = (id(out), len(out), h, len(out) - 2)
        return _Val(name)

    def _column(self, table: int, col: int) -> str:
        mirror = self.gen.state.table(table).mirror
        assert mirror is not None
        return self.gen.bind(f"M{table}_{col}", mirror[col])

    def _alloc(self, insn: Insn, src: list[_Val], late: list[str]) -> _Val:
        """ALLOC inline (ColumnTable.alloc with mirrors on): a method call costs more than the work."""
        pred = self.reg(insn.pred)
        if pred.is_const and not pred.const:
            return _lit(None)
        table = self.gen.state.table(insn.table)
        name = self._name()
        depth = 0
        if not pred.is_const:
            self._line(late, f"if not {pred.expr}:")
            self._line(late, f"{name} = None", 1)
            self._line(late, "else:")
            depth = 1
        cells = ["None"] * table.n_cols
        for col, v in zip(table.key_cols, src, strict=True):
            cells[col] = v.expr
        append = [
            f"{name} = {self.gen.bind(f'T{insn.table}', table)}.n_rows",
            f"T{insn.table}.n_rows = {name} + 1",
            *(f"{self._column(insn.table, c)}.append({cells[c]})" for c in range(table.n_cols)),
            f"{self.gen.bind(f'D{insn.table}', table.dirty)}.add({name})",
        ]
        if not table.key_cols:
            for text in append:
                self._line(late, text, depth)
            return _Val(name)
        index = self.gen.bind(f"I{insn.table}", table.index)
        key = f"k{name}"
        self._line(late, f"{key} = ({''.join(v.expr + ', ' for v in src)})", depth)
        self._line(late, f"if {key} in {index}:", depth)
        self._line(late, f"{name} = None", depth + 1)
        self._line(late, "else:", depth)
        for text in append:
            self._line(late, text, depth + 1)
        nullable = [f"{v.expr} is not None" for v in src if not v.nonnull]
        if nullable:
            # a key with a NULL word is stored but never found
            self._line(late, f"if {' and '.join(nullable)}:", depth + 1)
            self._line(late, f"{index}[{key}] = {name}", depth + 2)
        else:
            self._line(late, f"{index}[{key}] = {name}", depth + 1)
        return _Val(name)

    def _write(self, insn: Insn, src: list[_Val], late: list[str]) -> None:
        handle, value = src
        pred = self.reg(insn.pred)
        if (pred.is_const and not pred.const) or (handle.is_const and handle.const is None):
            return
        tests = []
        if not pred.is_const:
            tests.append(pred.expr)
        if not handle.nonnull:
            tests.append(f"{handle.expr} is not None")
        depth = 1 if tests else 0
        column = self._column(insn.table, insn.imm)
        group = (id(late), len(late), " and ".join(tests), handle.expr, insn.table)
        if self._write_group != group:
            # Not a continuation of the previous WRITE's row and condition: open a new group.
            if tests:
                self._line(late, f"if {group[2]}:")
            dirty = self.gen.bind(f"D{insn.table}", self.gen.state.table(insn.table).dirty)
            self._line(late, f"{dirty}.add({handle.expr})", depth)
        self._line(late, f"{column}[{handle.expr}] = {value.expr}", depth)
        self._write_group = (id(late), len(late), group[2], handle.expr, insn.table)


class _Gen:
    def __init__(self, image: Image, state: EngineState) -> None:
        self.image = image
        self.state = state
        self.rule_bit = {r.id: i for i, r in enumerate(image.rules)}
        self.scans = {s.id: partial(scan, state.table(s.table), s) for s in image.scans}
        self.bound: dict[str, object] = {}
        self._counter = 0
        # Values already computed in this function, for all sections it runs: NEW writes no table,
        # so ACCEPT can reuse what NEW looked up and computed.
        self.cse: dict[tuple[object, ...], tuple[int | None, _Val]] = {}

    def fresh(self) -> str:
        self._counter += 1
        return f"v{self._counter}"

    def bind(self, name: str, obj: object) -> str:
        """Make `obj` a local of the generated function (a default argument) named `name`."""
        self.bound[name] = obj
        return name

    def function(self, name: str, n_inputs: int, sections: Sequence[Event | tuple[Event, int]]) -> str:
        """Source of `def name(inp)`: runs `sections` in order; NEW returns early with its failed bits."""
        self.cse.clear()
        body: list[str] = []
        ind = "    "
        if n_inputs:
            body.append(f"{ind}{''.join(f'i{r}, ' for r in range(n_inputs))}= inp")
        for sec in sections:
            event, arg = sec if isinstance(sec, tuple) else (sec, 0)
            bundles = self.image.section(event, arg)
            if event is Event.NEW:
                body.append(f"{ind}f = 0")
            _SectionGen(self, n_inputs, ind).emit_section(bundles, body)
            if event is Event.NEW:
                body.append(f"{ind}if f:")
                body.append(f"{ind}    return f")
        body.append(f"{ind}return 0")
        params = "".join(f", {k}={k}" for k in sorted(self.bound))
        return f"def {name}(inp{params}):\n" + "\n".join(body) + "\n"


SectionFn = Callable[[Sequence[Value]], int]


class FastPath:
    """Generated functions for every event and every LOAD section of an image."""

    def __init__(self, image: Image, state: EngineState, n_event_inputs: int) -> None:
        for table in state.tables.values():
            table.enable_mirror()
        self.sources: dict[str, str] = {}
        self.new = self._build("event_new", image, state, n_event_inputs, [Event.NEW, Event.ACCEPT])
        self.events: dict[Event, SectionFn] = {
            e: self._build(f"event_{e.name.lower()}", image, state, n_event_inputs, [e])
            for e in (Event.FILL, Event.REJECT, Event.CANCEL)
        }
        self.loads: dict[int, SectionFn] = {
            t.id: self._build(f"load_{t.id}", image, state, len(t.columns), [(Event.LOAD, t.id)])
            for t in image.tables
        }

    def _build(
        self,
        name: str,
        image: Image,
        state: EngineState,
        n_inputs: int,
        sections: Sequence[Event | tuple[Event, int]],
    ) -> SectionFn:
        gen = _Gen(image, state)
        source = gen.function(name, n_inputs, sections)
        self.sources[name] = source
        namespace: dict[str, Any] = dict(gen.bound)
        exec(compile(source, f"<riskgw generated {name}>", "exec"), namespace)
        fn: SectionFn = namespace[name]
        return fn
