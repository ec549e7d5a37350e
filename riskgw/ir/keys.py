"""Deriving each table's unique key from how the rules and triggers use the table.

The seed rule file declares no keys, so the key of a table is the set of columns that its
non-aggregate sub-queries, UPDATEs and ON CONFLICT clauses pin with equalities (or its declared
PRIMARY KEY). The smallest such set is the key; every other use must pin at least those columns
(its extra equalities then filter the row found). Uses that disagree are an error: a lookup never
falls back to a scan.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from riskgw.lang import ast


@dataclass(frozen=True)
class KeyUse:
    columns: frozenset[str]
    loc: ast.Loc
    what: str  # "sub-query", "UPDATE", "ON CONFLICT", "PRIMARY KEY"
    exact: bool  # ON CONFLICT and PRIMARY KEY name the key itself


def conjuncts(expr: ast.Expr | None) -> list[ast.Expr]:
    if expr is None:
        return []
    if isinstance(expr, ast.Binary) and expr.op is ast.BinaryOp.AND:
        return conjuncts(expr.left) + conjuncts(expr.right)
    return [expr]


def references(expr: ast.Expr, scope: ast.RowScope) -> bool:
    """Whether expr reads a column of `scope` (anywhere, sub-queries included)."""
    return any(isinstance(e, ast.ColumnRef) and e.scope is scope for e in subexprs(expr))


def subexprs(expr: ast.Expr) -> Iterator[ast.Expr]:
    stack: list[ast.Expr] = [expr]
    while stack:
        e = stack.pop()
        yield e
        if isinstance(e, ast.Unary):
            stack.append(e.operand)
        elif isinstance(e, ast.Binary):
            stack += [e.left, e.right]
        elif isinstance(e, ast.Between):
            stack += [e.value, e.low, e.high]
        elif isinstance(e, ast.InList):
            stack += [e.value, *e.items]
        elif isinstance(e, ast.Case):
            for c, v in e.whens:
                stack += [c, v]
            if e.else_ is not None:
                stack.append(e.else_)
        elif isinstance(e, ast.Coalesce):
            stack += list(e.args)
        elif isinstance(e, ast.Agg):
            if e.arg is not None:
                stack.append(e.arg)
        elif isinstance(e, ast.Subquery):
            stack.append(e.select)
            if e.where is not None:
                stack.append(e.where)
            if e.order_by is not None:
                stack.append(e.order_by)


def equalities(
    where: ast.Expr | None, scope: ast.RowScope
) -> tuple[list[tuple[ast.Column, ast.Expr]], list[ast.Expr]]:
    """Split `where` into `scope.col = <expr not over scope>` pairs and the other conjuncts."""
    eqs: list[tuple[ast.Column, ast.Expr]] = []
    rest: list[ast.Expr] = []
    for c in conjuncts(where):
        if isinstance(c, ast.Binary) and c.op is ast.BinaryOp.EQ:
            for col_side, other in ((c.left, c.right), (c.right, c.left)):
                if (
                    isinstance(col_side, ast.ColumnRef)
                    and col_side.scope is scope
                    and not references(other, scope)
                ):
                    eqs.append((col_side.column, other))
                    break
            else:
                rest.append(c)
        else:
            rest.append(c)
    return eqs, rest


def _uses(program: ast.Program) -> dict[str, list[KeyUse]]:
    uses: dict[str, list[KeyUse]] = {t.name: [] for t in program.tables}
    for t in program.tables:
        if t.primary_key is not None:
            uses[t.name].append(KeyUse(frozenset(t.primary_key), t.loc, "PRIMARY KEY", True))

    def visit(expr: ast.Expr | None) -> None:
        if expr is None:
            return
        for e in subexprs(expr):
            if isinstance(e, ast.Subquery) and not isinstance(e.select, ast.Agg) and e.order_by is None:
                eqs, _ = equalities(e.where, e.scope)
                uses[e.scope.table.name].append(
                    KeyUse(frozenset(c.name for c, _ in eqs), e.loc, "sub-query", False)
                )

    for r in program.rules:
        visit(r.expr)
        visit(r.guard)
    for trig in program.triggers:
        visit(trig.when)
        for s in trig.body:
            if isinstance(s, ast.Update):
                eqs, _ = equalities(s.where, s.target)
                uses[s.table.name].append(KeyUse(frozenset(c.name for c, _ in eqs), s.loc, "UPDATE", False))
                visit(s.where)
                for a in s.sets:
                    visit(a.value)
            else:
                if s.conflict is not None:
                    uses[s.table.name].append(
                        KeyUse(frozenset(c.name for c in s.conflict), s.loc, "ON CONFLICT", True)
                    )
                for v in s.values:
                    visit(v)
                for a in s.conflict_sets:
                    visit(a.value)
    return uses


def derive_keys(program: ast.Program) -> dict[str, tuple[ast.Column, ...]]:
    """Each table's key columns in declaration order (empty: the table has no key)."""
    keys: dict[str, tuple[ast.Column, ...]] = {}
    errors: list[ast.Diagnostic] = []
    all_uses = _uses(program)
    for table in program.tables:
        uses = all_uses[table.name]
        for u in uses:
            if not u.columns:
                errors.append(
                    _error(
                        u.loc,
                        f"this {u.what} on {table.name} does not pin a key: add equalities such as "
                        f"{table.name}.{table.columns[0].name} = ... (a lookup never scans the table)",
                    )
                )
        uses = [u for u in uses if u.columns]
        if not uses:
            keys[table.name] = ()
            continue
        exact = [u for u in uses if u.exact]
        if exact:
            key = exact[0]
        else:
            key = min(uses, key=lambda u: (len(u.columns), u.loc.path, u.loc.line, u.loc.col))
        for u in uses:
            if (u.exact and u.columns != key.columns) or not u.columns >= key.columns:
                errors.append(
                    _error(
                        u.loc,
                        f"inconsistent keys for table {table.name}: this {u.what} uses "
                        f"({', '.join(sorted(u.columns))}) but the {key.what} at {key.loc} uses "
                        f"({', '.join(sorted(key.columns))}); every lookup, UPDATE and ON CONFLICT "
                        f"must pin the same unique key",
                    )
                )
        keys[table.name] = tuple(c for c in table.columns if c.name in key.columns)
    if errors:
        raise ast.CompileError(errors)
    return keys


def _error(loc: ast.Loc, message: str) -> ast.Diagnostic:
    return ast.Diagnostic(ast.Severity.ERROR, message, loc, source_line(loc))


def source_line(loc: ast.Loc) -> str | None:
    try:
        with open(loc.path, encoding="utf-8", errors="replace") as f:
            for i, line in enumerate(f, 1):
                if i == loc.line:
                    return line.rstrip("\n")
    except OSError:
        return None
    return None
