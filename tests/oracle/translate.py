"""A checked rule program as plain SQLite.

- Each user table is a table with its declared columns and NOT NULL constraints, plus a UNIQUE
  index on its derived key (the key decides what INSERT OR IGNORE and ON CONFLICT see).
- `trade_order` is a one-row table holding the order being checked; a rule is the query
  `SELECT (guard) IS TRUE AND (expr) IS NOT TRUE FROM trade_order`.
- Each riskgw trigger is a real SQLite trigger on its own event table (`AFTER INSERT ON rg_ev_<i>
  WHEN ...`), so SQLite evaluates the WHEN once before the first statement, runs the statements in
  order and binds `trade_order.x` as `NEW.x`. Replaying an event inserts it into the event table of
  every trigger for that event, in file order.

The differences from SQLite in docs/semantics.md, written out here and in `sqlfuncs`:

- arithmetic overflow is NULL: every `+ - * / %` and unary minus is wrapped in `rg_int`, which
  turns SQLite's real-number overflow result into NULL; ABS is `abs(rg_int(-x))`, because SQLite's
  abs() raises on -2^63 while -(-2^63) overflows to NULL first;
- SUM is `rg_sum` (exact, NULL on overflow); AVG is `rg_sum(x) / COUNT(x)` in integer division;
- a value stored into an INT column goes through `rg_i32` (NULL outside 32 bits), one stored into
  a CHAR(n) column through `rg_char` (NULL when longer than the column's ceil(n/8) 8-byte words);
- a failed constraint skips the statement: `INSERT OR IGNORE`, `UPDATE OR IGNORE`, and for
  ON CONFLICT DO UPDATE (which SQLite always runs as ABORT) a WHERE that skips the update when it
  would store NULL into a NOT NULL column;
- ORDER BY ... LIMIT 1 breaks ties by rowid (insertion order; nothing is ever deleted).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from riskgw.lang import ast

TRADE_ORDER = "trade_order"
INT64_MIN = -(1 << 63)


def ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def sql_literal(value: int | str | None) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    if value == INT64_MIN:
        return "(-9223372036854775807 - 1)"
    return str(value) if value >= 0 else f"(-{-value})"


def sql_type(t: ast.SqlType) -> str:
    return "TEXT" if t.kind is ast.TypeKind.CHAR else "INTEGER"


@dataclass
class Translation:
    schema: list[str] = field(default_factory=list)
    rules: list[tuple[str, str]] = field(default_factory=list)  # (name, query: 1 when the order fails)
    # event -> event tables to insert the event into, in file order
    triggers: dict[ast.TriggerEvent, list[str]] = field(default_factory=dict)


_ARITH = frozenset({ast.BinaryOp.ADD, ast.BinaryOp.SUB, ast.BinaryOp.MUL, ast.BinaryOp.DIV, ast.BinaryOp.MOD})


# SQLite's parser stack holds about 20 nested CASEs. A rule nested deeper than HOIST_EVERY levels
# has its closed sub-expressions (those reading no row variable) computed in a chain of common
# table expressions, each one read back as `(SELECT v FROM h<n>)`: the same value, parsed flat.
HOIST_EVERY = 5


def children(e: ast.Expr) -> list[ast.Expr]:
    if isinstance(e, ast.Unary):
        return [e.operand]
    if isinstance(e, ast.Binary):
        return [e.left, e.right]
    if isinstance(e, ast.Between):
        return [e.value, e.low, e.high]
    if isinstance(e, ast.InList):
        return [e.value, *e.items]
    if isinstance(e, ast.Case):
        out = [x for pair in e.whens for x in pair]
        return out if e.else_ is None else [*out, e.else_]
    if isinstance(e, ast.Coalesce):
        return list(e.args)
    if isinstance(e, ast.Subquery):
        return [x for x in (e.select, e.where, e.order_by) if x is not None]
    if isinstance(e, ast.Agg):
        return [] if e.arg is None else [e.arg]
    return []


class _Shape:
    """Depth and free row variables of expressions, memoised by node identity."""

    def __init__(self) -> None:
        self._depth: dict[int, int] = {}
        self._free: dict[int, frozenset[int]] = {}

    def depth(self, e: ast.Expr) -> int:
        d = self._depth.get(id(e))
        if d is None:
            d = self._depth[id(e)] = 1 + max((self.depth(c) for c in children(e)), default=0)
        return d

    def free(self, e: ast.Expr) -> frozenset[int]:
        f = self._free.get(id(e))
        if f is None:
            if isinstance(e, ast.ColumnRef):
                f = frozenset({e.scope.id})
            else:
                f = frozenset().union(*(self.free(c) for c in children(e)))
                if isinstance(e, ast.Subquery):
                    f -= {e.scope.id}
            self._free[id(e)] = f
        return f


class _Renderer:
    """Renders expressions; `field_prefix` is how `trade_order.x` is spelt in this context.

    With `hoist` (a list, for rule queries only: they read from the one-row trade_order table),
    deep closed sub-expressions go into common table expressions appended to it.
    """

    def __init__(self, field_prefix: str, hoist: list[str] | None = None) -> None:
        self.field_prefix = field_prefix
        self.hoisted = hoist
        self.shape = _Shape()

    def scope_name(self, scope: ast.RowScope) -> str:
        if scope.kind is ast.RowKind.SUBQUERY:
            return f"s{scope.id}"
        if scope.kind is ast.RowKind.EXCLUDED:
            return "excluded"
        # SQLite does not allow an alias on the target of a statement inside a trigger; sub-queries
        # always get aliases, so the bare table name always means the target row.
        return ident(scope.table.name)

    def expr(self, e: ast.Expr) -> str:
        if (
            self.hoisted is not None
            and isinstance(e, ast.Unary | ast.Binary | ast.Between | ast.InList | ast.Case | ast.Coalesce)
            and self.shape.depth(e) % HOIST_EVERY == 0
            and not self.shape.free(e)
        ):
            body = self.render(e)  # may hoist its own parts first: they come earlier in the WITH
            name = f"h{len(self.hoisted)}"
            self.hoisted.append(f"{name} AS (SELECT {body} AS v FROM {ident(TRADE_ORDER)})")
            return f"(SELECT v FROM {name})"
        return self.render(e)

    def render(self, e: ast.Expr) -> str:
        """SQL for e. Every rendering is a primary expression (a name, a literal, a call, a CASE or
        something in parentheses), so operands need no parentheses of their own: SQLite's parser
        stack is shallow, and deep rules must still parse."""
        r = self.expr
        if isinstance(e, ast.Literal):
            return sql_literal(e.value)
        if isinstance(e, ast.Field):
            return f"{self.field_prefix}.{ident(e.name)}"
        if isinstance(e, ast.ColumnRef):
            return f"{self.scope_name(e.scope)}.{ident(e.column.name)}"
        if isinstance(e, ast.Unary):
            x = r(e.operand)
            match e.op:
                case ast.UnaryOp.NEG:
                    return f"rg_int(-{x})"
                case ast.UnaryOp.ABS:
                    return f"abs(rg_int(-{x}))"
                case ast.UnaryOp.NOT:
                    return f"(NOT {x})"
                case ast.UnaryOp.IS_NULL:
                    return f"({x} IS NULL)"
                case ast.UnaryOp.IS_NOT_NULL:
                    return f"({x} IS NOT NULL)"
        if isinstance(e, ast.Binary):
            a, b = r(e.left), r(e.right)
            if e.op in _ARITH:
                return f"rg_int({a} {e.op.value} {b})"
            op = "<>" if e.op is ast.BinaryOp.NE else e.op.value
            return f"({a} {op} {b})"
        if isinstance(e, ast.Between):
            neg = "NOT " if e.negated else ""
            return f"({r(e.value)} {neg}BETWEEN {r(e.low)} AND {r(e.high)})"
        if isinstance(e, ast.InList):
            neg = "NOT " if e.negated else ""
            items = ", ".join(r(i) for i in e.items)
            return f"({r(e.value)} {neg}IN ({items}))"
        if isinstance(e, ast.Case):
            whens = " ".join(f"WHEN {r(c)} THEN {r(v)}" for c, v in e.whens)
            else_ = f" ELSE {r(e.else_)}" if e.else_ is not None else ""
            return f"CASE {whens}{else_} END"
        if isinstance(e, ast.Coalesce):
            return "COALESCE(" + ", ".join(r(a) for a in e.args) + ")"
        if isinstance(e, ast.Subquery):
            return self.subquery(e)
        if isinstance(e, ast.Agg):
            raise ValueError("an aggregate outside a sub-query's select")
        raise TypeError(f"unknown expression node {type(e).__name__}")

    def agg(self, a: ast.Agg) -> str:
        if a.func is ast.AggFunc.COUNT_STAR:
            return "COUNT(*)"
        assert a.arg is not None
        x = self.expr(a.arg)
        match a.func:
            case ast.AggFunc.SUM:
                return f"rg_sum({x})"
            case ast.AggFunc.AVG:
                return f"(rg_sum({x}) / COUNT({x}))"
            case ast.AggFunc.COUNT:
                return f"COUNT({x})"
            case ast.AggFunc.MIN:
                return f"MIN({x})"
            case ast.AggFunc.MAX:
                return f"MAX({x})"
        raise TypeError(f"unknown aggregate {a.func}")

    def subquery(self, q: ast.Subquery) -> str:
        alias = self.scope_name(q.scope)
        select = self.agg(q.select) if isinstance(q.select, ast.Agg) else self.expr(q.select)
        sql = f"(SELECT {select} FROM {ident(q.scope.table.name)} AS {alias}"
        if q.where is not None:
            sql += f" WHERE {self.expr(q.where)}"
        if q.order_by is not None:
            direction = "DESC" if q.descending else "ASC"
            rowid = _rowid_name(q.scope.table)
            # rg_int keeps an integer literal an expression (SQLite reads `ORDER BY 2` as a column number)
            sql += f" ORDER BY rg_int({self.expr(q.order_by)}) {direction}, {alias}.{rowid} ASC LIMIT 1"
        return sql + ")"


def _rowid_name(table: ast.Table) -> str:
    for name in ("rowid", "_rowid_", "oid"):
        if table.column(name) is None:
            return name
    raise ValueError(f"table {table.name} hides every name of SQLite's rowid")


def _stored(col: ast.Column, value_sql: str) -> str:
    if col.type.kind is ast.TypeKind.INT:
        return f"rg_i32({value_sql})"
    if col.type.kind is ast.TypeKind.CHAR:
        return f"rg_char({value_sql}, {(col.type.size + 7) // 8})"
    return value_sql


def _statement(st: ast.Statement, r: _Renderer) -> str:
    if isinstance(st, ast.Update):
        sets = ", ".join(f"{ident(a.column.name)} = {_stored(a.column, r.expr(a.value))}" for a in st.sets)
        sql = f"UPDATE OR IGNORE {ident(st.table.name)} SET {sets}"
        if st.where is not None:
            sql += f" WHERE {r.expr(st.where)}"
        return sql
    cols = ", ".join(ident(c.name) for c in st.columns)
    vals = ", ".join(_stored(c, r.expr(v)) for c, v in zip(st.columns, st.values, strict=True))
    sql = f"INSERT OR IGNORE INTO {ident(st.table.name)} ({cols}) VALUES ({vals})"
    if st.conflict is not None:
        target = ", ".join(ident(c.name) for c in st.conflict)
        if st.conflict_sets:
            stored = [(a.column, _stored(a.column, r.expr(a.value))) for a in st.conflict_sets]
            sets = ", ".join(f"{ident(c.name)} = {v}" for c, v in stored)
            sql += f" ON CONFLICT ({target}) DO UPDATE SET {sets}"
            not_null = [f"({v}) IS NOT NULL" for c, v in stored if not c.nullable]
            if not_null:
                sql += " WHERE " + " AND ".join(not_null)
        else:
            sql += f" ON CONFLICT ({target}) DO NOTHING"
    return sql


def event_table_ddl(name: str) -> str:
    cols = ", ".join(f"{ident(n)} {sql_type(t)}" for n, t in ast.TRADE_ORDER_FIELDS)
    return f"CREATE TABLE {ident(name)} ({cols})"


def translate(program: ast.Program, keys: Mapping[str, tuple[str, ...]]) -> Translation:
    """The SQLite schema, rule queries and triggers of `program`; `keys` maps table -> key columns."""
    out = Translation()
    for t in program.tables:
        cols = ", ".join(
            f"{ident(c.name)} {sql_type(c.type)}{'' if c.nullable else ' NOT NULL'}" for c in t.columns
        )
        out.schema.append(f"CREATE TABLE {ident(t.name)} ({cols})")
        key = keys.get(t.name, ())
        if key:
            out.schema.append(
                f"CREATE UNIQUE INDEX {ident('rg_key_' + t.name)} ON {ident(t.name)} "
                f"({', '.join(ident(k) for k in key)})"
            )
    out.schema.append(event_table_ddl(TRADE_ORDER))

    for rule in program.rules:
        hoisted: list[str] = []
        rule_r = _Renderer(ident(TRADE_ORDER), hoisted)
        guard = "1" if rule.guard is None else rule_r.expr(rule.guard)
        fails = f"({guard} IS TRUE) AND ({rule_r.expr(rule.expr)} IS NOT TRUE)"
        with_ = f"WITH {', '.join(hoisted)} " if hoisted else ""
        out.rules.append((rule.name, f"{with_}SELECT {fails} FROM {ident(TRADE_ORDER)}"))

    trig_r = _Renderer("NEW")
    for i, trig in enumerate(program.triggers):
        ev_table = f"rg_ev_{i}"
        out.schema.append(event_table_ddl(ev_table))
        out.triggers.setdefault(trig.event, []).append(ev_table)
        if not trig.body:
            continue
        when = f" WHEN {trig_r.expr(trig.when)}" if trig.when is not None else ""
        body = "".join(f"  {_statement(st, trig_r)};\n" for st in trig.body)
        out.schema.append(
            f"CREATE TRIGGER {ident(f'rg_trg_{i}')} AFTER INSERT ON {ident(ev_table)}{when}\nBEGIN\n{body}END"
        )
    return out
