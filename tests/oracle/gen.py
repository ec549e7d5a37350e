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
LONG_TICKET = "LONGTICKET"  # wider than a CHAR(4) or CHAR(8) key: matches no row there
ACCOUNTS = (0, 1, 2, 3)
EVENT_KINDS = ("NEW", "NEW", "NEW", "FILL", "REJECT", "CANCEL")


@dataclass(frozen=True)
class Col:
    name: str
    kind: str  # INT, INT8 or CHAR
    nullable: bool
    size: int = 16  # CHAR(size); narrower than trade_order.ticket_id only for key columns

    @property
    def is_char(self) -> bool:
        return self.kind == "CHAR"

    @property
    def type_name(self) -> str:
        return f"CHAR({self.size})" if self.is_char else self.kind


@dataclass(frozen=True)
class Table:
    name: str
    cols: tuple[Col, ...]
    key: tuple[str, ...]  # () when nothing pins a row: only aggregates read it, only INSERT writes it
    # non-key columns that UPDATEs and upserts may SET; a MIN/MAX/ORDER BY that reads one of them
    # is kept up to date by a scan, which the language allows only for a plain column and equalities
    writable: tuple[str, ...] = ()
    declared: bool = False  # the key is also declared: PRIMARY KEY (...)

    def col(self, name: str) -> Col:
        return next(c for c in self.cols if c.name == name)

    def ddl(self) -> str:
        lines = ",\n".join(
            f"    {c.name} {c.type_name} {'null' if c.nullable else 'not null'}" for c in self.cols
        )
        if self.declared:
            lines += f",\n    primary key ({', '.join(self.key)})"
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
    """Mostly a few small values (so ORDER BY and MIN/MAX meet ties), often the boundaries (so
    sums overflow), sometimes anything."""
    if kind == "INT":
        bounds: tuple[int, ...] = (INT32_MAX, INT32_MIN, INT32_MAX - 1)
        anything = st.integers(INT32_MIN, INT32_MAX)
    else:
        bounds, anything = BOUNDARY, st.integers(INT64_MIN, INT64_MAX)
    return st.integers(0, 9).flatmap(
        lambda roll: (
            st.sampled_from(bounds) if roll < 2 else anything if roll == 2 else st.sampled_from(SMALL[:6])
        )
    )


def col_value(c: Col) -> st.SearchStrategy[Value]:
    base: st.SearchStrategy[Value] = st.sampled_from(TICKETS) if c.is_char else int_values(c.kind)
    if not c.nullable:
        return base
    return st.integers(0, 4).flatmap(lambda roll: st.none() if roll == 0 else base)


# ----------------------------------------------------------------------------- expressions


@dataclass(frozen=True)
class Scope:
    """What an expression may read: `row` unqualified; `quals` as qualifier.column; trade_order."""

    row: Table | None = None
    quals: tuple[tuple[str, Table], ...] = ()
    fields: bool = True
    subqueries: bool = True

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
        return Scope(None, quals, self.fields, self.subqueries)


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
        roll = self.draw(st.integers(0, 9))
        if roll == 0:
            return "NULL"
        return int_literal(self.pick(BOUNDARY if roll <= 2 else SMALL))

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
        if self.subqueries and scope.subqueries and self.tables:
            return self.subquery(scope, d, want_char=False)
        return self.int_atom(scope)

    def char_expr(self, scope: Scope, depth: int) -> str:
        if depth > 0 and self.draw(st.integers(0, 5)) == 0:
            # the last argument is never NULL: an all-NULL COALESCE is numeric to the type checker
            last = self.pick([*scope.char_refs(), *(char_literal(t) for t in TICKETS)])
            return f"coalesce({self.char_expr(scope, depth - 1)}, {last})"
        if depth > 0 and self.subqueries and scope.subqueries and self.draw(st.integers(0, 5)) == 0:
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
            # items without sub-queries: `x IN ((SELECT ...))` reads as IN (SELECT ...), not supported
            items_scope = Scope(scope.row, scope.quals, scope.fields, False)
            if self.draw(st.booleans()):
                items = ", ".join(self.char_expr(items_scope, d) for _ in range(self.draw(st.integers(1, 3))))
                return f"({self.char_expr(scope, d)} {neg}in ({items}))"
            items = ", ".join(self.int_expr(items_scope, d) for _ in range(self.draw(st.integers(1, 3))))
            return f"({self.int_expr(scope, d)} {neg}in ({items}))"
        return f"({self.int_expr(scope, d)} {self.pick(['<', '>=', '='])} {self.int_expr(scope, d)})"

    def value(self, c: Col, scope: Scope, depth: int) -> str:
        if c.is_char and c.size < 16 and self.draw(st.booleans()):
            return char_literal(self.pick(TICKETS))
        return self.char_expr(scope, depth) if c.is_char else self.int_expr(scope, depth)

    def key_match(self, t: Table, outer: Scope, depth: int) -> list[str]:
        """`k = <outer expression>` for every key column of t, in a random order."""
        keys = list(t.key)
        order = self.draw(st.permutations(keys))
        out = []
        for k in order:
            c = t.col(k)
            if c.is_char:
                rhs = (
                    "trade_order.ticket_id"
                    if self.draw(st.booleans())
                    else self.char_expr(outer, min(depth, 1))
                )
            elif self.draw(st.integers(0, 3)) > 0:
                # values that hit the rows: the data's keys are small
                rhs = self.pick(
                    ["trade_order.account_id", "trade_order.direction", "trade_order.order_id", "1", "2"]
                )
            else:
                rhs = self.int_expr(outer, min(depth, 1))
            out.append(f"{k} = {rhs}" if self.draw(st.booleans()) else f"{rhs} = {k}")
        return out

    def row_filter(self, t: Table, depth: int = 1) -> str:
        """A condition over the row alone with no top-level equality (an equality there would be
        a group or key column of its own)."""
        ints = [c.name for c in t.cols if not c.is_char]
        kind = self.draw(st.integers(0, 4 if depth > 0 else 1))
        if kind == 0 and ints:
            other = self.pick([*ints, *(int_literal(v) for v in SMALL)])
            return f"({self.pick(ints)} {self.pick(['<', '<=', '>', '>=', '<>'])} {other})"
        if kind <= 1:
            return f"({self.pick([c.name for c in t.cols])} is {self.pick(['', 'not '])}null)"
        if kind == 2:
            return f"({self.row_filter(t, depth - 1)} or {self.bool_expr(Scope(t, (), False, False), 1)})"
        if kind == 3:
            return f"(not {self.bool_expr(Scope(t, (), False, False), 1)})"
        return f"({self.row_filter(t, depth - 1)} and {self.row_filter(t, depth - 1)})"

    def subquery(self, scope: Scope, depth: int, want_char: bool) -> str:
        t: Table = self.pick(self.tables)
        outer = scope.outer(t)
        kind = self.pick(["agg", "agg", "extreme", "order"] + (["key", "key", "key"] if t.key else []))
        chars = [c.name for c in t.cols if c.is_char]
        if want_char and (not chars or kind in ("agg", "extreme")):
            return ""
        if kind == "key":
            conds = self.key_match(t, outer, depth)
            if self.draw(st.integers(0, 3)) == 0:
                conds.append(self.row_filter(t))
            if want_char:
                select = self.pick(chars)
            else:
                select = self.int_expr(Scope(t, outer.quals, outer.fields, outer.subqueries), depth)
            return f"(select {select} from {t.name} where {' and '.join(conds)})"
        # an aggregate: SUM/COUNT/AVG take any expression and filter; MIN/MAX/ORDER BY too, over
        # columns no trigger updates; over updated columns only a plain column and equalities
        simple = kind != "agg" and bool(t.writable) and self.draw(st.booleans())
        view = (
            t
            if simple or kind == "agg"
            else Table(t.name, tuple(c for c in t.cols if c.name not in t.writable), t.key)
        )
        if not view.cols:
            simple, view = True, t
        row_only = Scope(view, (), fields=False, subqueries=False)
        conds = []
        for c in (t if simple else view).cols:
            # at most two group columns: a group key has at most 6 words (a CHAR(16) takes 2)
            if len(conds) < 2 and self.draw(st.integers(0, 4)) == 0:
                rhs = self.char_expr(outer, 0) if c.is_char else self.int_expr(outer, min(depth, 1))
                conds.append(f"{c.name} = {rhs}")
        if not simple and self.draw(st.integers(0, 2)) == 0:
            conds.append(self.row_filter(view))
        where = f" where {' and '.join(conds)}" if conds else ""
        ints = [c.name for c in view.cols if not c.is_char]
        if kind == "agg":
            func = self.pick(["sum", "count", "count(*)", "avg"])
            if func == "count(*)":
                return f"(select count(*) from {t.name}{where})"
            arg = (
                self.pick(ints)
                if ints and self.draw(st.booleans())
                else self.int_expr(row_only, min(depth, 2))
            )
            return f"(select {func}({arg}) from {t.name}{where})"
        if kind == "extreme":
            if not ints:
                return f"(select count(*) from {t.name}{where})"
            arg = self.pick(ints) if simple else self.int_expr(row_only, min(depth, 2))
            return f"(select {self.pick(['min', 'max'])}({arg}) from {t.name}{where})"
        if not ints:
            return "" if want_char else f"(select count(*) from {t.name}{where})"
        order = self.pick(ints)
        if not simple and self.draw(st.booleans()):
            # an expression over the row (a constant would be SQL's column number: not allowed)
            shape = self.pick(["({c} {op} {x})", "abs({c})", "(- {c})", "coalesce({c}, {x})"])
            op = self.pick(["+", "-", "*", "/", "%"])
            order = shape.format(c=order, op=op, x=self.int_atom(row_only))
        if want_char:
            select = self.pick(chars)
        else:
            # the selected value is read from the row found, so it may be any row expression; a
            # plain column other than the order one is what tells tied rows apart
            whole = Scope(t, (), fields=False, subqueries=False)
            select = self.pick(ints) if self.draw(st.booleans()) else self.int_expr(whole, min(depth, 1))
        direction = self.pick(["", " asc", " desc"])
        return f"(select {select} from {t.name}{where} order by {order}{direction} limit 1)"


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
        # a nullable key column is allowed (NULL keys are stored and never found)
        cols = [
            Col(
                c.name,
                c.kind,
                c.nullable,
                draw(st.sampled_from((4, 8, 16))) if c.name in key and c.is_char else 16,
            )
            for c in cols
        ]
        writable = tuple(c.name for c in cols[nkey:] if key and draw(st.integers(0, 2)))
        declared = bool(key) and draw(st.integers(0, 3)) == 0
        out.append(Table(f"t{i}", tuple(cols), key, writable, declared))
    return out


def key_value(c: Col) -> st.SearchStrategy[Value]:
    base: st.SearchStrategy[Value] = (
        st.sampled_from(TICKETS) if c.is_char else st.sampled_from((*ACCOUNTS, -1))
    )
    return st.none() | base if c.nullable else base


@st.composite
def rows_strategy(draw: Draw, t: Table, max_rows: int = 8) -> list[tuple[Value, ...]]:
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
    if g.draw(st.integers(0, 2)) > 0:
        # random conditions over NULL-rich data are mostly NULL, which fails: let most pass, or
        # hardly any order would be accepted and the ACCEPT triggers would never run
        expr = (
            f"(coalesce({expr}, 1) or coalesce({g.bool_expr(Scope(), 1)}, 1))"
            if g.draw(st.integers(0, 3))
            else f"({expr} or {g.int_expr(Scope(), 1)} is null)"
        )
    guard = f"\n    where {g.bool_expr(Scope(), 2)}" if g.draw(st.booleans()) else ""
    return f"Rule {name} (\n    {expr}{guard}\n)\n"


def stored_value(g: ExprGen, c: Col, scope: Scope, depth: int) -> str:
    """A value for column c: into a NOT NULL column, mostly one that is not NULL (a NULL there
    skips the whole statement, which is tested, but should not be all that ever happens)."""
    v = g.value(c, scope, depth)
    if c.nullable or g.draw(st.integers(0, 5)) == 0:
        return v
    return f"coalesce({v}, {char_literal(g.pick(TICKETS)) if c.is_char else g.pick(['0', '1', '7'])})"


def key_value_expr(g: ExprGen, c: Col, depth: int) -> str:
    if g.draw(st.integers(0, 3)) == 0:
        return g.value(c, Scope(), depth)
    if c.is_char:
        return "trade_order.ticket_id"  # into a narrow column, LONGTICKET is stored as NULL
    return str(
        g.pick(["trade_order.account_id", "trade_order.direction", "coalesce(trade_order.account_id, 1)"])
    )


def statement_text(g: ExprGen, tables: list[Table], depth: int) -> str:
    t: Table = g.pick(tables)
    nonkey = [c for c in t.cols if c.name in t.writable]
    kind = g.pick(["update", "insert", "upsert", "upsert"] if nonkey else ["insert"])
    if kind == "update":
        n = g.draw(st.integers(1, min(2, len(nonkey))))
        cols = g.draw(st.permutations(nonkey))[:n]
        scope = Scope(t, (), True)
        sets = ", ".join(f"{c.name} = {stored_value(g, c, scope, depth)}" for c in cols)
        conds = g.key_match(t, Scope(), depth)
        if g.draw(st.integers(0, 2)) == 0:
            conds.append(g.bool_expr(scope, 1))
        return f"update {t.name} set {sets} where {' and '.join(conds)}"
    # key columns and, mostly, the NOT NULL ones are listed; others at random
    listed = [
        c
        for c in t.cols
        if c.name in t.key or (not c.nullable and g.draw(st.integers(0, 5))) or g.draw(st.booleans())
    ] or [t.cols[-1]]
    vals = [
        key_value_expr(g, c, depth) if c.name in t.key else stored_value(g, c, Scope(), depth) for c in listed
    ]
    sql = f"insert into {t.name} ({', '.join(c.name for c in listed)}) values ({', '.join(vals)})"
    if kind == "upsert":
        n = g.draw(st.integers(1, min(2, len(nonkey))))
        cols = g.draw(st.permutations(nonkey))[:n]
        scope = Scope(t, (("excluded", t),), True)
        sets = ", ".join(f"{c.name} = {stored_value(g, c, scope, depth)}" for c in cols)
        sql += f" on conflict ({', '.join(t.key)}) do update set {sets}"
    return sql


def trigger_text(g: ExprGen, name: str, tables: list[Table], depth: int) -> str:
    event = g.pick(["accept", "accept", "fill", "reject", "cancel"])
    when = f"\nwhen coalesce({g.bool_expr(Scope(), 2)}, 1)" if g.draw(st.booleans()) else ""
    body = "".join(f"    {statement_text(g, tables, depth)};\n" for _ in range(g.draw(st.integers(1, 3))))
    return f"create trigger {name} after {event} on trade_order{when}\nbegin\n{body}end;\n"


@st.composite
def event_strategy(draw: Draw, order_id: int) -> tuple[str, dict[str, Value]]:
    kind = draw(st.sampled_from(EVENT_KINDS))

    def any64() -> Value:
        roll = draw(st.integers(0, 9))
        return None if roll == 0 else draw(st.sampled_from(BOUNDARY if roll == 1 else SMALL))

    def maybe_null(values: tuple[Value, ...]) -> Value:
        return None if draw(st.integers(0, 9)) == 0 else draw(st.sampled_from(values))

    fields: dict[str, Value] = {
        "order_id": order_id if kind == "NEW" else draw(st.integers(1, max(order_id, 1))),
        "account_id": maybe_null(ACCOUNTS),
        "ticket_id": maybe_null((*TICKETS, LONG_TICKET)),
        "direction": draw(st.sampled_from((0, 1))),
        "price": any64(),
        "quantity": any64(),
        "exec_price": any64() if kind != "NEW" else None,
        "exec_quantity": any64() if kind != "NEW" else None,
        "ts": draw(st.sampled_from((0, 1, 999_999_999, 1_000_000_000, 2_500_000_000))),
    }
    return kind, fields


@st.composite
def events_strategy(draw: Draw, max_events: int = 16) -> list[tuple[str, dict[str, Value]]]:
    n = draw(st.integers(1, max_events))
    return [draw(event_strategy(i + 1)) for i in range(n)]


@st.composite
def cases(draw: Draw, max_rules: int = 4, max_triggers: int = 4, depth: int = 3) -> Case:
    tables = draw(tables_strategy())
    g = ExprGen(draw, tables)
    schema = "".join(t.ddl() for t in tables)
    rules = "".join(rule_text(g, f"R{i}", depth) for i in range(draw(st.integers(1, max_rules))))
    triggers = "".join(
        trigger_text(g, f"trg{i}", tables, depth - 1) for i in range(draw(st.integers(1, max_triggers)))
    )
    data = {t.name: draw(rows_strategy(t)) for t in tables}
    if draw(st.integers(0, 3)):
        # a log table that records sub-query values as they are: a wrong value shows in the state
        # even where the expressions around it would have hidden it
        cols = (*(Col(f"p{i}", "INT8", True) for i in range(4)), Col("p4", "CHAR", True))
        probe = Table("tp", cols, ())
        vals = [g.subquery(Scope(), depth - 1, want_char=False) for _ in range(3)]
        vals.append(g.int_expr(Scope(), depth))
        vals.append(g.subquery(Scope(), depth - 1, want_char=True) or g.char_expr(Scope(), 1))
        event = g.pick(["accept", "fill", "cancel"])
        schema += probe.ddl()
        triggers += (
            f"create trigger probe after {event} on trade_order\nbegin\n"
            f"    insert into tp (p0, p1, p2, p3, p4) values ({', '.join(vals)});\nend;\n"
        )
        tables = [*tables, probe]
        data[probe.name] = []
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
    """Rules nested 12 to 40 levels deep: arithmetic, CASE, COALESCE, ABS and sub-queries inside
    each other. The operands are mostly non-NULL so that the value survives the nesting and the
    verdicts vary."""
    tables = draw(tables_strategy(max_tables=2))
    g = ExprGen(draw, tables)

    def operand() -> str:
        roll = draw(st.integers(0, 9))
        if roll < 4:
            return str(g.pick(["2", "3", "(-7)", "10", "100"]))
        if roll < 7:
            return str(g.pick(["trade_order.price", "trade_order.quantity", "trade_order.ts"]))
        if roll < 9:
            return f"coalesce({g.subquery(Scope(), 1, want_char=False)}, 5)"
        return g.int_expr(Scope(), 1)

    rules = []
    for i in range(draw(st.integers(1, 3))):
        levels = draw(st.integers(12, 40))
        e = g.pick(["trade_order.price", "trade_order.quantity", "7"])
        for _ in range(levels):
            shape = draw(st.integers(0, 5))
            other = operand()
            if shape <= 1:
                e = f"({e} {g.pick(['+', '-', '*', '+', '-', '/', '%'])} {other})"
            elif shape == 2:
                test = g.pick(["0", "3", "trade_order.direction"])
                e = f"(case when {other} > {test} then {e} else {other} end)"
            elif shape == 3:
                e = f"coalesce({e}, {other})"
            elif shape == 4:
                e = f"abs({e})"
            else:
                e = f"(- {e})"
        # the residue keeps the sign, so a wrong sign anywhere inside changes the verdict
        rules.append(f"Rule Deep{i} (\n    coalesce({e}, 0) % 4 in (1, 2)\n)\n")
    data = {t.name: draw(rows_strategy(t)) for t in tables}
    return Case(tables, ["".join(t.ddl() for t in tables) + "".join(rules)], data, draw(events_strategy()))
