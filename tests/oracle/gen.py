"""Hypothesis strategies for random rule programs, their tables and event streams.

A generated case is rule-file text (tables, rules, triggers), data rows and events. The programs
stay inside the language: every keyed sub-query, UPDATE and ON CONFLICT of a table pins the same
key columns, aggregates group by equalities and filter on the row only, and every expression is
well typed. Within that, they aim at the corners: NULLs everywhere, 32- and 64-bit boundaries,
division and modulo by zero and by negatives, empty sub-queries and groups, every aggregate,
ORDER BY ... LIMIT 1 with ties and NULLs, upserts, NOT NULL columns, deep nesting, many rules.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st

Value = int | str | None
Draw = Callable[[st.SearchStrategy[Any]], Any]

INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1
INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1

SMALL = (0, 1, -1, 2, -2, 3, 5, -7, 10, 100)
BOUNDARY = (INT32_MAX, INT32_MIN, INT32_MAX + 1, INT32_MIN - 1, INT64_MAX, INT64_MIN, INT64_MAX - 1)
TICKETS = ("A", "B", "C")
ACCOUNTS = (0, 1, 2, 3)
EVENT_KINDS = ("NEW", "NEW", "NEW", "FILL", "REJECT", "CANCEL")


@dataclass(frozen=True)
class Col:
    name: str
    kind: str  # INT, INT8 or CHAR
    nullable: bool

    @property
    def is_char(self) -> bool:
        return self.kind == "CHAR"


@dataclass(frozen=True)
class Table:
    name: str
    cols: tuple[Col, ...]
    key: tuple[str, ...]  # () when nothing pins a row: only aggregates read it, only INSERT writes it

    def col(self, name: str) -> Col:
        return next(c for c in self.cols if c.name == name)

    def ddl(self) -> str:
        lines = ",\n".join(
            f"    {c.name} {'CHAR(16)' if c.is_char else c.kind} {'null' if c.nullable else 'not null'}"
            for c in self.cols
        )
        return f"create table {self.name}\n(\n{lines}\n)\n"


@dataclass
class Case:
    tables: list[Table]
    files: list[str]  # rule files' text, loaded in this order
    data: dict[str, list[tuple[Value, ...]]]
    events: list[tuple[str, dict[str, Value]]] = field(default_factory=list)


# ----------------------------------------------------------------------------- values


def int_literal(v: int | None) -> str:
    if v is None:
        return "NULL"
    if v == INT64_MIN:
        return "(-9223372036854775807 - 1)"
    return str(v) if v >= 0 else f"(-{-v})"


def char_literal(v: str | None) -> str:
    return "NULL" if v is None else "'" + v.replace("'", "''") + "'"


def int_values(kind: str) -> st.SearchStrategy[int]:
    if kind == "INT":
        return st.sampled_from((*SMALL, INT32_MAX, INT32_MIN)) | st.integers(INT32_MIN, INT32_MAX)
    return st.sampled_from(SMALL + BOUNDARY) | st.integers(INT64_MIN, INT64_MAX)


def col_value(c: Col) -> st.SearchStrategy[Value]:
    base: st.SearchStrategy[Value] = st.sampled_from(TICKETS) if c.is_char else int_values(c.kind)
    return st.none() | base if c.nullable else base


# ----------------------------------------------------------------------------- expressions


@dataclass(frozen=True)
class Scope:
    """What an expression may read: `row` unqualified; `quals` as qualifier.column; trade_order."""

    row: Table | None = None
    quals: tuple[tuple[str, Table], ...] = ()
    fields: bool = True

    def int_refs(self) -> list[str]:
        out = [c.name for c in self.row.cols if not c.is_char] if self.row else []
        for q, t in self.quals:
            out += [f"{q}.{c.name}" for c in t.cols if not c.is_char]
        if self.fields:
            out += [f"trade_order.{f}" for f in INT_FIELDS]
        return out

    def char_refs(self) -> list[str]:
        out = [c.name for c in self.row.cols if c.is_char] if self.row else []
        for q, t in self.quals:
            out += [f"{q}.{c.name}" for c in t.cols if c.is_char]
        if self.fields:
            out.append("trade_order.ticket_id")
        return out

    def outer(self, sub: Table) -> Scope:
        """The scope a sub-query on `sub` sees from outside its row (no unqualified row)."""
        quals = tuple((q, t) for q, t in self.quals if t.name != sub.name)
        if self.row is not None and self.row.name != sub.name:
            quals = ((self.row.name, self.row), *quals)
        return Scope(None, quals, self.fields)


INT_FIELDS = ("order_id", "account_id", "direction", "price", "quantity", "exec_price", "exec_quantity", "ts")


class ExprGen:
    def __init__(self, draw: Draw, tables: list[Table], subqueries: bool = True) -> None:
        self.draw = draw
        self.tables = tables
        self.subqueries = subqueries

    def pick(self, options: list[Any] | tuple[Any, ...]) -> Any:
        return self.draw(st.sampled_from(options))

    def int_atom(self, scope: Scope) -> str:
        refs = scope.int_refs()
        if refs and self.draw(st.integers(0, 2)) > 0:
            return str(self.pick(refs))
        v = self.draw(st.none() | st.sampled_from(SMALL + BOUNDARY))
        return int_literal(v)

    def char_atom(self, scope: Scope) -> str:
        refs = scope.char_refs()
        if refs and self.draw(st.booleans()):
            return str(self.pick(refs))
        return char_literal(self.draw(st.none() | st.sampled_from((*TICKETS, "Z"))))

    def int_expr(self, scope: Scope, depth: int) -> str:
        if depth <= 0:
            return self.int_atom(scope)
        kind = self.draw(st.integers(0, 11))
        d = depth - 1
        if kind <= 1:
            return self.int_atom(scope)
        if kind <= 4:
            op = self.pick(["+", "-", "*", "/", "%", "/", "%"])
            return f"({self.int_expr(scope, d)} {op} {self.int_expr(scope, d)})"
        if kind == 5:
            return (
                f"(- {self.int_expr(scope, d)})"
                if self.draw(st.booleans())
                else f"abs({self.int_expr(scope, d)})"
            )
        if kind == 6:
            n = self.draw(st.integers(1, 2))
            whens = " ".join(
                f"when {self.bool_expr(scope, d)} then {self.int_expr(scope, d)}" for _ in range(n)
            )
            else_ = f" else {self.int_expr(scope, d)}" if self.draw(st.booleans()) else ""
            return f"(case {whens}{else_} end)"
        if kind == 7:
            n = self.draw(st.integers(2, 3))
            return "coalesce(" + ", ".join(self.int_expr(scope, d) for _ in range(n)) + ")"
        if self.subqueries and self.tables:
            return self.subquery(scope, d, want_char=False)
        return self.int_atom(scope)

    def char_expr(self, scope: Scope, depth: int) -> str:
        if depth > 0 and self.draw(st.integers(0, 5)) == 0:
            return f"coalesce({self.char_expr(scope, depth - 1)}, {self.char_atom(scope)})"
        if depth > 0 and self.subqueries and self.draw(st.integers(0, 5)) == 0:
            sub = self.subquery(scope, depth - 1, want_char=True)
            if sub:
                return sub
        return self.char_atom(scope)

    def bool_expr(self, scope: Scope, depth: int) -> str:
        d = max(depth - 1, 0)
        kind = self.draw(st.integers(0, 9 if depth > 0 else 2))
        if kind <= 1:
            op = self.pick(["=", "!=", "<>", "<", "<=", ">", ">="])
            return f"({self.int_expr(scope, d)} {op} {self.int_expr(scope, d)})"
        if kind == 2:
            op = self.pick(["=", "!="])
            return f"({self.char_expr(scope, d)} {op} {self.char_expr(scope, d)})"
        if kind == 3:
            op = self.pick(["and", "or"])
            return f"({self.bool_expr(scope, d)} {op} {self.bool_expr(scope, d)})"
        if kind == 4:
            return f"(not {self.bool_expr(scope, d)})"
        if kind == 5:
            inner = self.char_expr(scope, d) if self.draw(st.booleans()) else self.int_expr(scope, d)
            return f"({inner} is {self.pick(['', 'not '])}null)"
        if kind == 6:
            neg = self.pick(["", "not "])
            lo, hi = self.int_expr(scope, d), self.int_expr(scope, d)
            return f"({self.int_expr(scope, d)} {neg}between {lo} and {hi})"
        if kind == 7:
            neg = self.pick(["", "not "])
            if self.draw(st.booleans()):
                items = ", ".join(self.char_expr(scope, d) for _ in range(self.draw(st.integers(1, 3))))
                return f"({self.char_expr(scope, d)} {neg}in ({items}))"
            items = ", ".join(self.int_expr(scope, d) for _ in range(self.draw(st.integers(1, 3))))
            return f"({self.int_expr(scope, d)} {neg}in ({items}))"
        return f"({self.int_expr(scope, d)} {self.pick(['<', '>=', '='])} {self.int_expr(scope, d)})"

    def value(self, c: Col, scope: Scope, depth: int) -> str:
        return self.char_expr(scope, depth) if c.is_char else self.int_expr(scope, depth)

    def key_match(self, t: Table, outer: Scope, depth: int) -> list[str]:
        """`k = <outer expression>` for every key column of t, in a random order."""
        keys = list(t.key)
        order = self.draw(st.permutations(keys))
        out = []
        for k in order:
            c = t.col(k)
            if c.is_char:
                rhs = self.char_expr(outer, min(depth, 1))
            elif self.draw(st.booleans()):
                rhs = self.pick(["trade_order.account_id", "trade_order.direction", "trade_order.order_id"])
            else:
                rhs = self.int_expr(outer, min(depth, 1))
            out.append(f"{k} = {rhs}" if self.draw(st.booleans()) else f"{rhs} = {k}")
        return out

    def row_filter(self, t: Table) -> str:
        """A condition over the row alone (what an aggregate's WHERE may add to its equalities)."""
        return self.bool_expr(Scope(t, (), fields=False), 1)

    def subquery(self, scope: Scope, depth: int, want_char: bool) -> str:
        t: Table = self.pick(self.tables)
        outer = scope.outer(t)
        row_only = Scope(t, (), fields=False)
        kinds = ["agg", "order"] + (["key", "key"] if t.key else [])
        kind = self.pick(kinds)
        if want_char:
            chars = [c.name for c in t.cols if c.is_char]
            if not chars or kind == "agg":
                return ""
        if kind == "key":
            conds = self.key_match(t, outer, depth)
            if self.draw(st.integers(0, 3)) == 0:
                conds.append(self.bool_expr(Scope(t, outer.quals, outer.fields), 1))
            if want_char:
                select = self.pick([c.name for c in t.cols if c.is_char])
            else:
                select = self.int_expr(Scope(t, outer.quals, outer.fields), depth)
            return f"(select {select} from {t.name} where {' and '.join(conds)})"
        conds = []
        for c in t.cols:
            if self.draw(st.integers(0, 3)) == 0:
                rhs = self.char_expr(outer, 0) if c.is_char else self.int_expr(outer, min(depth, 1))
                conds.append(f"{c.name} = {rhs}")
        if self.draw(st.integers(0, 2)) == 0:
            conds.append(self.row_filter(t))
        where = f" where {' and '.join(conds)}" if conds else ""
        if kind == "agg":
            func = self.pick(["sum", "count", "count(*)", "avg", "min", "max"])
            if func == "count(*)":
                return f"(select count(*) from {t.name}{where})"
            arg = self.int_expr(row_only, min(depth, 2))
            return f"(select {func}({arg}) from {t.name}{where})"
        order_col = self.pick([c.name for c in t.cols if not c.is_char] or [t.cols[0].name])
        if want_char:
            select = self.pick([c.name for c in t.cols if c.is_char])
        else:
            select = self.int_expr(row_only, min(depth, 1))
        direction = self.pick(["", " asc", " desc"])
        return f"(select {select} from {t.name}{where} order by {order_col}{direction} limit 1)"


# ----------------------------------------------------------------------------- programs


@st.composite
def tables_strategy(draw: Draw, max_tables: int = 3) -> list[Table]:
    n = draw(st.integers(1, max_tables))
    out = []
    for i in range(n):
        prefix = "abc"[i]
        ncols = draw(st.integers(2, 5))
        cols = []
        for j in range(ncols):
            kind = draw(st.sampled_from(["INT", "INT8", "INT8", "CHAR"]))
            cols.append(Col(f"{prefix}{j}", kind, draw(st.booleans())))
        nkey = draw(st.sampled_from([0, 1, 1, 1, 2]))
        nkey = min(nkey, ncols - 1)
        key = tuple(c.name for c in cols[:nkey])
        # key columns compare with small values only; a nullable key column is allowed (NULL keys
        # are stored and never found)
        cols = [
            Col(c.name, "INT" if c.name in key and c.kind == "INT8" else c.kind, c.nullable) for c in cols
        ]
        out.append(Table(f"t{i}", tuple(cols), key))
    return out


def key_value(c: Col) -> st.SearchStrategy[Value]:
    base: st.SearchStrategy[Value] = (
        st.sampled_from(TICKETS) if c.is_char else st.sampled_from((*ACCOUNTS, -1))
    )
    return st.none() | base if c.nullable else base


@st.composite
def rows_strategy(draw: Draw, t: Table, max_rows: int = 6) -> list[tuple[Value, ...]]:
    rows: list[tuple[Value, ...]] = []
    seen: set[tuple[Value, ...]] = set()
    for _ in range(draw(st.integers(0, max_rows))):
        row = tuple(draw(key_value(c)) if c.name in t.key else draw(col_value(c)) for c in t.cols)
        k = tuple(row[i] for i, c in enumerate(t.cols) if c.name in t.key)
        if t.key and None not in k:
            if k in seen:
                continue
            seen.add(k)
        rows.append(row)
    return rows


def rule_text(g: ExprGen, name: str, depth: int) -> str:
    expr = g.bool_expr(Scope(), depth)
    guard = f"\n    where {g.bool_expr(Scope(), 1)}" if g.draw(st.integers(0, 2)) == 0 else ""
    return f"Rule {name} (\n    {expr}{guard}\n)\n"


def statement_text(g: ExprGen, tables: list[Table], depth: int) -> str:
    t: Table = g.pick(tables)
    nonkey = [c for c in t.cols if c.name not in t.key]
    kind = g.pick(["update", "insert", "upsert"] if t.key else ["insert"])
    if kind == "update":
        n = g.draw(st.integers(1, min(2, len(nonkey))))
        cols = g.draw(st.permutations(nonkey))[:n]
        scope = Scope(t, (), True)
        sets = ", ".join(f"{c.name} = {g.value(c, scope, depth)}" for c in cols)
        conds = g.key_match(t, Scope(), depth)
        if g.draw(st.integers(0, 2)) == 0:
            conds.append(g.bool_expr(scope, 1))
        return f"update {t.name} set {sets} where {' and '.join(conds)}"
    listed = [c for c in t.cols if c.name in t.key or g.draw(st.booleans())] or [t.cols[-1]]
    vals = []
    for c in listed:
        if c.name in t.key and g.draw(st.booleans()):
            vals.append(
                "trade_order.ticket_id"
                if c.is_char
                else g.pick(["trade_order.account_id", "trade_order.direction"])
            )
        else:
            vals.append(g.value(c, Scope(), depth))
    sql = f"insert into {t.name} ({', '.join(c.name for c in listed)}) values ({', '.join(vals)})"
    if kind == "upsert":
        n = g.draw(st.integers(1, min(2, len(nonkey))))
        cols = g.draw(st.permutations(nonkey))[:n]
        scope = Scope(t, (("excluded", t),), True)
        sets = ", ".join(f"{c.name} = {g.value(c, scope, depth)}" for c in cols)
        sql += f" on conflict ({', '.join(t.key)}) do update set {sets}"
    return sql


def trigger_text(g: ExprGen, name: str, tables: list[Table], depth: int) -> str:
    event = g.pick(["accept", "accept", "fill", "reject", "cancel"])
    when = f"\nwhen {g.bool_expr(Scope(), 1)}" if g.draw(st.booleans()) else ""
    body = "".join(f"    {statement_text(g, tables, depth)};\n" for _ in range(g.draw(st.integers(1, 3))))
    return f"create trigger {name} after {event} on trade_order{when}\nbegin\n{body}end;\n"


@st.composite
def event_strategy(draw: Draw, order_id: int) -> tuple[str, dict[str, Value]]:
    kind = draw(st.sampled_from(EVENT_KINDS))
    small = st.sampled_from(SMALL)
    any64 = st.none() | small | st.sampled_from(BOUNDARY)
    fields: dict[str, Value] = {
        "order_id": order_id if kind == "NEW" else draw(st.integers(1, max(order_id, 1))),
        "account_id": draw(st.none() | st.sampled_from(ACCOUNTS)),
        "ticket_id": draw(st.none() | st.sampled_from(TICKETS)),
        "direction": draw(st.sampled_from((0, 1))),
        "price": draw(any64),
        "quantity": draw(any64),
        "exec_price": draw(any64) if kind != "NEW" else None,
        "exec_quantity": draw(any64) if kind != "NEW" else None,
        "ts": draw(st.sampled_from((0, 1, 999_999_999, 1_000_000_000, 2_500_000_000))),
    }
    return kind, fields


@st.composite
def events_strategy(draw: Draw, max_events: int = 12) -> list[tuple[str, dict[str, Value]]]:
    n = draw(st.integers(1, max_events))
    return [draw(event_strategy(i + 1)) for i in range(n)]


@st.composite
def cases(draw: Draw, max_rules: int = 6, max_triggers: int = 4, depth: int = 3) -> Case:
    tables = draw(tables_strategy())
    g = ExprGen(draw, tables)
    schema = "".join(t.ddl() for t in tables)
    rules = "".join(rule_text(g, f"R{i}", depth) for i in range(draw(st.integers(1, max_rules))))
    triggers = "".join(
        trigger_text(g, f"trg{i}", tables, depth - 1) for i in range(draw(st.integers(0, max_triggers)))
    )
    data = {t.name: draw(rows_strategy(t)) for t in tables}
    files = [schema, rules + triggers] if draw(st.booleans()) else [schema + rules + triggers]
    return Case(tables, files, data, draw(events_strategy()))


@st.composite
def many_rules_cases(draw: Draw) -> Case:
    """100+ shallow rules over one table: the rule count, not the nesting, is what is exercised."""
    tables = draw(tables_strategy(max_tables=2))
    g = ExprGen(draw, tables)
    n = draw(st.integers(100, 130))
    rules = "".join(rule_text(g, f"Many{i}", 1) for i in range(n))
    data = {t.name: draw(rows_strategy(t)) for t in tables}
    return Case(tables, ["".join(t.ddl() for t in tables) + rules], data, draw(events_strategy(max_events=6)))


@st.composite
def deep_cases(draw: Draw) -> Case:
    """Rules nested 12 to 24 levels deep: arithmetic, CASE and sub-queries inside each other."""
    tables = draw(tables_strategy(max_tables=2))
    g = ExprGen(draw, tables)
    rules = []
    for i in range(draw(st.integers(1, 3))):
        levels = draw(st.integers(12, 24))
        e = g.int_expr(Scope(), 1)
        for _ in range(levels):
            shape = draw(st.integers(0, 3))
            other = g.int_expr(Scope(), 1)
            if shape == 0:
                e = f"({e} {g.pick(['+', '-', '*', '/', '%'])} {other})"
            elif shape == 1:
                e = f"(case when {other} > {g.int_atom(Scope())} then {e} else {other} end)"
            elif shape == 2:
                e = f"coalesce({e}, {other})"
            else:
                e = f"abs({e})"
        rules.append(f"Rule Deep{i} (\n    {e} {g.pick(['<', '>', '=', '!='])} {g.int_expr(Scope(), 2)}\n)\n")
    data = {t.name: draw(rows_strategy(t)) for t in tables}
    return Case(tables, ["".join(t.ddl() for t in tables) + "".join(rules)], data, draw(events_strategy()))
