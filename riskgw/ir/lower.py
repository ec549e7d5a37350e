"""Lowering the checked AST into IR sections: values become 64-bit words, statements become writes.

- A CHAR value is a tuple of words that are NULL together; comparisons of CHARs compare words.
- A sub-query without aggregate becomes a keyed LOOKUP and READs of the row found.
- An aggregate (or ORDER BY ... LIMIT 1) becomes an AGG node with templates over the row; the
  incremental-aggregate pass turns it into a lookup of a maintained table (or a SCAN).
- Each statement records the rows it changes (old and new values) so that pass can maintain the
  aggregates over the table it writes.
"""

from __future__ import annotations

from dataclasses import dataclass

from riskgw.doe.image import RuleInfo, SourceInfo, TableConfig
from riskgw.doe.isa import EVENT_FIELD_REGS, Event, Op
from riskgw.doe.values import char_words, encode_char
from riskgw.ir.keys import derive_keys, equalities, source_line, subexprs
from riskgw.ir.layout import column_words, table_config
from riskgw.ir.nodes import (
    AggSpec,
    Graph,
    Group,
    IRProgram,
    Kind,
    Node,
    RowChange,
    RuleCheck,
    Section,
    Stmt,
    Write,
)
from riskgw.lang import ast

Words = tuple[Node, ...]

_ARITH = {
    ast.BinaryOp.ADD: Op.ADD,
    ast.BinaryOp.SUB: Op.SUB,
    ast.BinaryOp.MUL: Op.MUL,
    ast.BinaryOp.DIV: Op.DIV,
    ast.BinaryOp.MOD: Op.MOD,
    ast.BinaryOp.EQ: Op.EQ,
    ast.BinaryOp.NE: Op.NE,
    ast.BinaryOp.LT: Op.LT,
    ast.BinaryOp.LE: Op.LE,
    ast.BinaryOp.GT: Op.GT,
    ast.BinaryOp.GE: Op.GE,
    ast.BinaryOp.AND: Op.AND,
    ast.BinaryOp.OR: Op.OR,
}
_TRIGGER_EVENTS = {
    ast.TriggerEvent.ACCEPT: Event.ACCEPT,
    ast.TriggerEvent.FILL: Event.FILL,
    ast.TriggerEvent.REJECT: Event.REJECT,
    ast.TriggerEvent.CANCEL: Event.CANCEL,
}


@dataclass
class _Handle:
    """A row variable bound to a row found by handle, read at `epoch`."""

    table: str
    handle: Node
    epoch: int


@dataclass
class _Values:
    """A row variable bound to values (the proposed row of an upsert, or a template's ROWCOLs)."""

    table: str
    words: dict[int, Node]
    template: bool = False


def _error(loc: ast.Loc, message: str) -> ast.CompileError:
    return ast.CompileError(ast.Diagnostic(ast.Severity.ERROR, message, loc, source_line(loc)))


class Lowering:
    def __init__(self, program: ast.Program) -> None:
        self.program = program
        self.g = Graph()
        self.keys = derive_keys(program)
        self.configs: dict[str, TableConfig] = {
            t.name: table_config(i, t, self.keys[t.name]) for i, t in enumerate(program.tables)
        }
        self.ast_tables = {t.name: t for t in program.tables}
        self.epochs: dict[str, int] = {}
        self.rows: dict[int, _Handle | _Values] = {}
        self.origin = ""
        self.null = self.g.const(None)
        self.zero = self.g.const(0)
        self.true = self.g.const(1)

    # ------------------------------------------------------------------ program

    def run(self) -> IRProgram:
        sections: dict[tuple[Event, int], Section] = {}
        rules: list[RuleInfo] = []
        src_index = {s.path: i for i, s in enumerate(self.program.sources)}

        self.epochs = {}
        new = Section()
        for i, rule in enumerate(self.program.rules):
            self.origin = f"rule {rule.name}"
            expr = self.scalar(rule.expr, rule.loc)
            guard = self.true if rule.guard is None else self.scalar(rule.guard, rule.loc)
            new.items.append(RuleCheck(i, guard, expr))
            rules.append(RuleInfo(i, rule.name, src_index.get(rule.loc.path, 0), rule.loc.line, rule.loc.col))
        sections[(Event.NEW, 0)] = new

        for tevent, event in _TRIGGER_EVENTS.items():
            self.epochs = {}
            section = Section()
            for trig in self.program.triggers:
                if trig.event is not tevent:
                    continue
                self.origin = f"trigger {trig.name}"
                when = self.true if trig.when is None else self.scalar(trig.when, trig.loc)
                for statement in trig.body:
                    if isinstance(statement, ast.Update):
                        section.items.append(self.update(statement, when))
                    else:
                        section.items.append(self.insert(statement, when))
            if section.items:
                sections[(event, 0)] = section

        for table in self.program.tables:
            self.epochs = {}
            self.origin = f"load {table.name}"
            cfg = self.configs[table.name]
            values = {i: self.g.input(i) for i in range(len(cfg.columns))}
            stmt = self.insert_values(table, values, self.true, None, table.loc)
            sections[(Event.LOAD, cfg.id)] = Section([stmt])

        return IRProgram(
            graph=self.g,
            tables=list(self.configs.values()),
            sections=sections,
            rules=rules,
            sources=[SourceInfo(s.path, s.sha256) for s in self.program.sources],
            warnings=list(self.program.warnings),
        )

    # ------------------------------------------------------------------ helpers

    def epoch(self, table: str) -> int:
        return self.epochs.get(table, 0)

    def and_(self, *preds: Node) -> Node:
        """AND for predicates (only truth matters), skipping constant TRUE operands."""
        out: Node | None = None
        for p in preds:
            if p is self.true:
                continue
            out = p if out is None else self.g.alu(Op.AND, out, p)
        return self.true if out is None else out

    def scalar(self, expr: ast.Expr, loc: ast.Loc) -> Node:
        words = self.expr(expr)
        if len(words) != 1 or expr.type.kind is ast.TypeKind.CHAR:
            raise _error(loc, f"a {expr.type} value is not a condition: compare it with = or IN")
        return words[0]

    def pad(self, words: Words, n: int) -> Words:
        """Widen a CHAR value to n words; extra words are 0, or NULL when the value is NULL."""
        if len(words) >= n:
            return words
        first = words[0]
        if first.kind is Kind.CONST:
            fill = self.null if first.attrs[0] is None else self.zero
        else:
            fill = self.g.alu(Op.SEL, self.zero, self.null, self.g.alu(Op.NOTNULL, first))
        return words + (fill,) * (n - len(words))

    def equal(self, a: Words, b: Words) -> Node:
        n = max(len(a), len(b))
        a, b = self.pad(a, n), self.pad(b, n)
        out = self.g.alu(Op.EQ, a[0], b[0])
        for x, y in zip(a[1:], b[1:], strict=True):
            out = self.g.alu(Op.AND, out, self.g.alu(Op.EQ, x, y))
        return out

    def store(self, column: ast.Column, value: ast.Expr) -> Words:
        """The words stored into `column` for a value: INT is range-checked, CHAR widened."""
        words = self.expr(value)
        if column.type.kind is ast.TypeKind.CHAR:
            return self.fit(words, char_words(column.type.size))
        if column.type.kind is ast.TypeKind.INT and value.type.kind is not ast.TypeKind.INT:
            return (self.g.alu(Op.RANGE32, words[0]),)
        return words[:1]

    def fit(self, words: Words, n: int) -> Words:
        """A CHAR value as n words: padded, or NULL when it is longer (it cannot be stored or match)."""
        if len(words) <= n:
            return self.pad(words, n)
        fits = self.g.alu(Op.EQ, words[n], self.zero)
        for extra in words[n + 1 :]:
            fits = self.g.alu(Op.AND, fits, self.g.alu(Op.EQ, extra, self.zero))
        return tuple(self.g.alu(Op.SEL, w, self.null, fits) for w in words[:n])

    def column(self, scope: ast.RowScope, column: ast.Column, loc: ast.Loc) -> Words:
        binding = self.rows.get(scope.id)
        if binding is None:
            raise _error(loc, f"{scope.table.name}.{column.name} is not visible here")
        cfg = self.configs[binding.table]
        phys = column_words(cfg, column.index)
        if isinstance(binding, _Values):
            return tuple(binding.words[p] for p in phys)
        return tuple(self.g.read(binding.table, p, binding.epoch, binding.handle) for p in phys)

    # ------------------------------------------------------------------ expressions

    def expr(self, e: ast.Expr) -> Words:
        g = self.g
        if isinstance(e, ast.Literal):
            if e.value is None:
                return (self.null,)
            if isinstance(e.value, str):
                size = max(1, len(e.value.encode("utf-8")))
                return tuple(g.const(w) for w in encode_char(e.value, size))
            return (g.const(e.value),)
        if isinstance(e, ast.Field):
            reg, n = EVENT_FIELD_REGS[e.name]
            return tuple(g.input(reg + i) for i in range(n))
        if isinstance(e, ast.ColumnRef):
            return self.column(e.scope, e.column, e.loc)
        if isinstance(e, ast.Unary):
            v = self.expr(e.operand)
            op = {
                ast.UnaryOp.NEG: Op.NEG,
                ast.UnaryOp.ABS: Op.ABS,
                ast.UnaryOp.NOT: Op.NOT,
                ast.UnaryOp.IS_NULL: Op.ISNULL,
                ast.UnaryOp.IS_NOT_NULL: Op.NOTNULL,
            }[e.op]
            return (g.alu(op, v[0]),)
        if isinstance(e, ast.Binary):
            left, right = self.expr(e.left), self.expr(e.right)
            is_char = ast.TypeKind.CHAR in (e.left.type.kind, e.right.type.kind)
            if is_char and e.op in (ast.BinaryOp.EQ, ast.BinaryOp.NE):
                eq = self.equal(left, right)
                return (eq if e.op is ast.BinaryOp.EQ else g.alu(Op.NOT, eq),)
            if is_char:
                raise _error(e.loc, f"{e.op.value} does not apply to CHAR values: use = , != or IN")
            return (g.alu(_ARITH[e.op], left[0], right[0]),)
        if isinstance(e, ast.Between):
            x, lo, hi = self.expr(e.value)[0], self.expr(e.low)[0], self.expr(e.high)[0]
            within = g.alu(Op.AND, g.alu(Op.GE, x, lo), g.alu(Op.LE, x, hi))
            return (g.alu(Op.NOT, within) if e.negated else within,)
        if isinstance(e, ast.InList):
            v = self.expr(e.value)
            found: Node | None = None
            for item in e.items:
                eq = self.equal(v, self.expr(item))
                found = eq if found is None else g.alu(Op.OR, found, eq)
            assert found is not None
            return (g.alu(Op.NOT, found) if e.negated else found,)
        if isinstance(e, ast.Case):
            branches = [(self.expr(c)[0], self.expr(v)) for c, v in e.whens]
            else_ = self.expr(e.else_) if e.else_ is not None else (self.null,)
            n = max([len(else_)] + [len(v) for _, v in branches])
            acc = self.pad(else_, n)
            for cond, value in reversed(branches):
                value = self.pad(value, n)
                acc = tuple(g.alu(Op.SEL, v, a, cond) for v, a in zip(value, acc, strict=True))
            return acc
        if isinstance(e, ast.Coalesce):
            args = [self.expr(a) for a in e.args]
            n = max(len(a) for a in args)
            acc = self.pad(args[-1], n)
            for arg in reversed(args[:-1]):
                arg = self.pad(arg, n)
                acc = tuple(g.alu(Op.COALESCE, x, y) for x, y in zip(arg, acc, strict=True))
            return acc
        if isinstance(e, ast.Subquery):
            if isinstance(e.select, ast.Agg) or e.order_by is not None:
                return self.aggregate(e)
            return self.lookup(e)
        if isinstance(e, ast.Agg):
            raise _error(e.loc, f"{e.func.value} is only allowed as the whole SELECT of a sub-query")
        raise _error(e.loc, f"unsupported expression {type(e).__name__}")

    def lookup(self, e: ast.Subquery) -> Words:
        table = e.scope.table.name
        eqs, rest = equalities(e.where, e.scope)
        key, extra = self.key_words_with_scope(table, e.scope, eqs, e.loc)
        epoch = self.epoch(table)
        h = self.g.lookup(table, epoch, key)
        self.rows[e.scope.id] = _Handle(table, h, epoch)
        try:
            filters = [self.scalar(c, c.loc) for c in extra + rest]
            value = self.expr(e.select)
        finally:
            del self.rows[e.scope.id]
        return self.only_if_found(value, h, filters)

    def only_if_found(self, value: Words, h: Node, filters: list[Node]) -> Words:
        """The sub-query's value: NULL unless the row exists and passes the filters.

        A plain column of a missing row is NULL already, but an expression over it need not be:
        `(SELECT COALESCE(x, 0) ...)` with no row is NULL, not 0.
        """
        plain = all(w.kind is Kind.READ and w.args[0] is h for w in value)
        if plain and not filters:
            return value
        cond = self.and_(self.g.alu(Op.NOTNULL, h), *filters)
        return tuple(self.g.alu(Op.SEL, w, self.null, cond) for w in value)

    def key_words_with_scope(
        self, table: str, scope: ast.RowScope, eqs: list[tuple[ast.Column, ast.Expr]], loc: ast.Loc
    ) -> tuple[Words, list[ast.Expr]]:
        words, rest_pairs = self._key(table, eqs, loc)
        extra = [_eq_expr(col, other, loc, scope) for col, other in rest_pairs]
        return words, extra

    def _key(
        self, table: str, eqs: list[tuple[ast.Column, ast.Expr]], loc: ast.Loc
    ) -> tuple[Words, list[tuple[ast.Column, ast.Expr]]]:
        key_cols = self.keys[table]
        cfg = self.configs[table]
        used: set[int] = set()
        words: list[Node] = []
        for k in key_cols:
            for i, (col, other) in enumerate(eqs):
                if col is k and i not in used:
                    used.add(i)
                    n = len(column_words(cfg, k.index))
                    words.extend(self.fit(self.expr(other), n))
                    break
            else:
                raise _error(loc, f"this statement does not pin {table}.{k.name}, part of the table's key")
        return tuple(words), [p for i, p in enumerate(eqs) if i not in used]

    def aggregate(self, e: ast.Subquery) -> Words:
        table = e.scope.table.name
        cfg = self.configs[table]
        eqs, rest = equalities(e.where, e.scope)
        for c in rest:
            for sub in subexprs(c):
                if isinstance(sub, ast.Field) or (
                    isinstance(sub, ast.ColumnRef) and sub.scope is not e.scope
                ):
                    raise _error(
                        c.loc,
                        f"this condition of an aggregate over {table} reads the order or an outer row: "
                        f"only equalities (col = ...) may; keep a windowed counter in a table instead",
                    )
        # The SELECT of ORDER BY ... LIMIT 1 is read from the chosen row when the query runs, so it
        # may hold sub-queries; what the maintained state is computed from may not.
        parts = [*rest] + ([e.order_by] if e.order_by is not None else [e.select])
        for part in parts:
            for sub in subexprs(part):
                if sub is not e and isinstance(sub, ast.Subquery):
                    raise _error(sub.loc, "a sub-query inside an aggregate's arguments is not supported")
        seen: set[str] = set()
        group_cols: list[ast.Column] = []
        group_vals: dict[str, Words] = {}
        for col, other in eqs:
            if col.name in seen:
                raise _error(e.loc, f"{table}.{col.name} is compared twice: keep one equality")
            seen.add(col.name)
            group_cols.append(col)
            group_vals[col.name] = self.expr(other)
        group_cols.sort(key=lambda c: c.index)
        group_phys: list[int] = []
        key: list[Node] = []
        for col in group_cols:
            phys = column_words(cfg, col.index)
            key.extend(self.fit(group_vals[col.name], len(phys)))
            group_phys.extend(phys)

        self.rows[e.scope.id] = _Values(table, {i: self.g.rowcol(i) for i in range(len(cfg.columns))}, True)
        try:
            filters = [self.scalar(c, c.loc) for c in rest]
            filt = None if not filters else (self.and_(*filters) if len(filters) > 1 else filters[0])
            epoch = self.epoch(table)
            if isinstance(e.select, ast.Agg):
                agg = e.select
                if (
                    agg.arg is not None
                    and agg.arg.type.kind is ast.TypeKind.CHAR
                    and agg.func is not ast.AggFunc.COUNT
                ):
                    raise _error(agg.loc, f"{agg.func.value} of a CHAR value is not supported")
                arg = None if agg.arg is None else self.expr(agg.arg)[0]
                spec = AggSpec(
                    table, tuple(group_phys), filt, agg.func.name, arg, None, False, (), 0, epoch, self.origin
                )
                return (self.g.agg(spec, tuple(key)),)
            assert e.order_by is not None
            if e.order_by.type.kind is ast.TypeKind.CHAR:
                raise _error(e.order_by.loc, "ORDER BY a CHAR value is not supported")
            order = self.expr(e.order_by)[0]
            best = self.g.make(
                Kind.BEST, (table, tuple(group_phys), filt, order, e.descending, epoch, tuple(key))
            )
            self.rows[e.scope.id] = _Handle(table, best, epoch)
            select = self.only_if_found(self.expr(e.select), best, [])
            out = []
            for w in range(len(select)):
                spec = AggSpec(
                    table,
                    tuple(group_phys),
                    filt,
                    "FIRST",
                    None,
                    order,
                    e.descending,
                    select,
                    w,
                    epoch,
                    self.origin,
                )
                out.append(self.g.agg(spec, tuple(key)))
            return tuple(out)
        finally:
            del self.rows[e.scope.id]

    # ------------------------------------------------------------------ statements

    def update(self, s: ast.Update, when: Node) -> Stmt:
        table = s.table.name
        cfg = self.configs[table]
        key_names = {k.name for k in self.keys[table]}
        for a in s.sets:
            if a.column.name in key_names:
                raise _error(a.loc, f"{table}.{a.column.name} is part of the table's key and cannot be SET")
        eqs, rest = equalities(s.where, s.target)
        key, extra_pairs = self._key(table, eqs, s.loc)
        extra = [_eq_expr(col, other, s.loc, s.target) for col, other in extra_pairs]
        e0 = self.epoch(table)
        h = self.g.lookup(table, e0, key)
        self.rows[s.target.id] = _Handle(table, h, e0)
        try:
            filters = [self.scalar(c, c.loc) for c in extra + rest]
            assigned = {a.column.index: self.store(a.column, a.value) for a in s.sets}
        finally:
            del self.rows[s.target.id]
        old = {p: self.g.read(table, p, e0, h) for p in range(len(cfg.columns))}
        checks = [
            self.g.alu(Op.NOTNULL, words[0])
            for idx, words in assigned.items()
            if not s.table.columns[idx].nullable
        ]
        pred = self.and_(when, self.g.alu(Op.NOTNULL, h), *filters, *checks)
        new = dict(old)
        writes: list[Write] = []
        written: set[int] = set()
        for idx, words in assigned.items():
            for p, w in zip(column_words(cfg, idx), words, strict=True):
                new[p] = w
                written.add(p)
                writes.append(Write(p, h, w, pred))
        self.epochs[table] = e0 + 1
        change = RowChange(pred, h, old, new, frozenset(written))
        return Stmt(table, [Group(table, e0, writes)], [change], self.origin)

    def insert(self, s: ast.Insert, when: Node) -> Stmt:
        table = s.table
        cfg = self.configs[table.name]
        values: dict[int, Node] = {p: self.null for p in range(len(cfg.columns))}
        for col, v in zip(s.columns, s.values, strict=True):
            for p, w in zip(column_words(cfg, col.index), self.store(col, v), strict=True):
                values[p] = w
        if s.conflict is not None:
            key_names = {k.name for k in self.keys[table.name]}
            for a in s.conflict_sets:
                if a.column.name in key_names:
                    raise _error(
                        a.loc, f"{table.name}.{a.column.name} is part of the table's key and cannot be SET"
                    )
        return self.insert_values(table, values, when, s, s.loc)

    def insert_values(
        self, table: ast.Table, values: dict[int, Node], when: Node, s: ast.Insert | None, loc: ast.Loc
    ) -> Stmt:
        name = table.name
        cfg = self.configs[name]
        key = tuple(values[p] for p in cfg.key)
        e0 = self.epoch(name)
        checks = [
            self.g.alu(Op.NOTNULL, values[column_words(cfg, c.index)[0]])
            for c in table.columns
            if not c.nullable
        ]
        pred_ok = self.and_(when, *checks)
        h0 = self.g.lookup(name, e0, key) if cfg.key else None
        p_ins = self.and_(pred_ok, self.g.alu(Op.ISNULL, h0)) if h0 is not None else pred_ok
        hn = self.g.alloc(name, e0, p_ins, key)
        group_a = Group(name, e0, [], [hn])
        group_b = Group(name, e0 + 1, [])
        for p, v in values.items():
            if p in cfg.key or v is self.null:
                continue
            group_b.writes.append(Write(p, hn, v, p_ins))
        changes = [RowChange(p_ins, hn, None, dict(values), frozenset(values))]

        if s is not None and s.conflict is not None and h0 is not None:
            assert s.target is not None and s.excluded is not None
            self.rows[s.target.id] = _Handle(name, h0, e0)
            self.rows[s.excluded.id] = _Values(name, values)
            try:
                assigned = {a.column.index: self.store(a.column, a.value) for a in s.conflict_sets}
            finally:
                del self.rows[s.target.id]
                del self.rows[s.excluded.id]
            upd_checks = [
                self.g.alu(Op.NOTNULL, words[0])
                for idx, words in assigned.items()
                if not table.columns[idx].nullable
            ]
            # SQLite checks the proposed row's NOT NULL columns before it looks for a conflict, so
            # a proposed row that breaks one skips the statement, DO UPDATE included.
            p_upd = self.and_(pred_ok, self.g.alu(Op.NOTNULL, h0), *upd_checks)
            old = {p: self.g.read(name, p, e0, h0) for p in range(len(cfg.columns))}
            new = dict(old)
            written: set[int] = set()
            for idx, words in assigned.items():
                for p, w in zip(column_words(cfg, idx), words, strict=True):
                    new[p] = w
                    written.add(p)
                    group_a.writes.append(Write(p, h0, w, p_upd))
            changes.append(RowChange(p_upd, h0, old, new, frozenset(written)))
        elif s is not None and s.conflict is not None:
            raise _error(loc, f"ON CONFLICT needs a key on {name}")

        self.epochs[name] = e0 + 2
        groups = [group_a] + ([group_b] if group_b.writes else [])
        if not group_b.writes:
            self.epochs[name] = e0 + 1
        return Stmt(name, groups, changes, self.origin)


def _eq_expr(col: ast.Column, other: ast.Expr, loc: ast.Loc, scope: ast.RowScope | None) -> ast.Expr:
    """Rebuild `scope.col = other` as an expression (an equality that filters rather than pins)."""
    assert scope is not None
    ref = ast.ColumnRef(col.type, col.nullable, loc, scope, col)
    return ast.Binary(ast.BOOL, True, loc, ast.BinaryOp.EQ, ref, other)


def lower(program: ast.Program) -> IRProgram:
    return Lowering(program).run()
