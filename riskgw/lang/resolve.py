"""Names, types and nullability: from parsed statements (sqlglot trees) to the checked AST.

Each check that fails raises `Problem`; the caller records it and goes on with the next statement,
so one run reports every statement's first mistake. Anything sqlglot parsed that is not handled
here is reported as unsupported, never dropped.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, replace

from sqlglot import exp
from sqlglot.tokenizer_core import TokenType

from riskgw.lang import ast
from riskgw.lang.ast import (
    BOOL,
    INT,
    INT8,
    Diagnostic,
    Loc,
    RowKind,
    RowScope,
    Severity,
    SqlType,
    TypeKind,
)
from riskgw.lang.parser import ParsedFile, RuleStmt, TableStmt, TriggerStmt

MAX_CHAR = 32
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

FIELDS: dict[str, SqlType] = dict(ast.TRADE_ORDER_FIELDS)
FIELD_LIST = ", ".join(name for name, _ in ast.TRADE_ORDER_FIELDS)

_ARITH: dict[type, ast.BinaryOp] = {
    exp.Add: ast.BinaryOp.ADD,
    exp.Sub: ast.BinaryOp.SUB,
    exp.Mul: ast.BinaryOp.MUL,
    exp.Div: ast.BinaryOp.DIV,
    exp.Mod: ast.BinaryOp.MOD,
}
_COMPARE: dict[type, ast.BinaryOp] = {
    exp.EQ: ast.BinaryOp.EQ,
    exp.NEQ: ast.BinaryOp.NE,
    exp.LT: ast.BinaryOp.LT,
    exp.LTE: ast.BinaryOp.LE,
    exp.GT: ast.BinaryOp.GT,
    exp.GTE: ast.BinaryOp.GE,
}
_LOGIC: dict[type, ast.BinaryOp] = {exp.And: ast.BinaryOp.AND, exp.Or: ast.BinaryOp.OR}
_AGGS: dict[type, ast.AggFunc] = {
    exp.Sum: ast.AggFunc.SUM,
    exp.Count: ast.AggFunc.COUNT,
    exp.Avg: ast.AggFunc.AVG,
    exp.Min: ast.AggFunc.MIN,
    exp.Max: ast.AggFunc.MAX,
}

# What to call a sqlglot construct in an "is not supported" message, and how to do without it.
_UNSUPPORTED: dict[type, str] = {
    exp.Like: "LIKE is not supported; compare with = or IN",
    exp.ILike: "LIKE is not supported; compare with = or IN",
    exp.Glob: "GLOB is not supported; compare with = or IN",
    exp.Window: "window functions (OVER) are not supported; use a sub-query with an aggregate",
    exp.Exists: "EXISTS is not supported; write (SELECT COUNT(*) FROM t WHERE ...) > 0",
    exp.Union: "UNION is not supported; write one sub-query per table",
    exp.Intersect: "INTERSECT is not supported",
    exp.Except: "EXCEPT is not supported",
    exp.Cast: "CAST is not supported; values already have the column's type",
    exp.DPipe: "string concatenation (||) is not supported",
    exp.Collate: "COLLATE is not supported; CHAR values compare byte for byte",
    exp.NullSafeEQ: "IS / IS NOT DISTINCT FROM is only supported as IS [NOT] NULL",
    exp.Star: "SELECT * is not supported; select exactly one value",
    exp.Distinct: "DISTINCT is not supported",
    exp.Select: "a SELECT must be a scalar sub-query in parentheses: (SELECT e FROM t WHERE ...)",
    exp.Placeholder: "parameters (?, :name) are not supported; write the value",
    exp.Parameter: "parameters (@name) are not supported; write the value",
    exp.HexString: "blob literals (x'..') are not supported; write a string or a number",
    exp.BitwiseAnd: "bitwise operators are not supported",
    exp.BitwiseOr: "bitwise operators are not supported",
    exp.BitwiseXor: "bitwise operators are not supported",
    exp.BitwiseNot: "bitwise operators are not supported",
    exp.BitwiseLeftShift: "bitwise operators are not supported",
    exp.BitwiseRightShift: "bitwise operators are not supported",
}

_CLAUSES: dict[str, tuple[str, tuple[TokenType, ...]]] = {
    "joins": ("JOIN is not supported; read each table with its own sub-query", (TokenType.JOIN,)),
    "group": ("GROUP BY is not supported; the sub-query's WHERE selects the group", (TokenType.GROUP_BY,)),
    "having": ("HAVING is not supported; compare the sub-query's result instead", (TokenType.HAVING,)),
    "distinct": ("DISTINCT is not supported", (TokenType.DISTINCT,)),
    "offset": ("OFFSET is not supported; use ORDER BY col [ASC|DESC] LIMIT 1", (TokenType.OFFSET,)),
    "with_": ("WITH is not supported", (TokenType.WITH,)),
    "windows": ("WINDOW is not supported", (TokenType.WINDOW,)),
    "returning": ("RETURNING is not supported", (TokenType.RETURNING,)),
    "from_": ("UPDATE ... FROM is not supported; read other tables with sub-queries", (TokenType.FROM,)),
    "exists": ("IF NOT EXISTS is not supported; declare each table once", ()),
    "where": ("WHERE is not supported here", (TokenType.WHERE,)),
    "indexed": ("INDEXED BY is not supported", ()),
}


class Problem(Exception):
    """A statement's first mistake; `diagnostic` is None when an earlier diagnostic already explains it."""

    def __init__(self, diagnostic: Diagnostic | None) -> None:
        super().__init__(diagnostic.message if diagnostic else "")
        self.diagnostic = diagnostic


@dataclass(frozen=True)
class Visible:
    """A row variable and the names it is reached by (`t`, its alias, or `excluded`)."""

    row: RowScope
    names: frozenset[str]
    bare: bool = True  # whether unqualified column names may resolve to it


@dataclass(frozen=True)
class Env:
    scopes: tuple[Visible, ...]  # innermost last
    agg_error: str  # why an aggregate is not allowed here
    context: str  # where we are, for messages about bare columns


def _is_null(e: ast.Expr) -> bool:
    return isinstance(e, ast.Literal) and e.value is None


def _join_types(types: list[SqlType]) -> SqlType:
    if all(t.kind is TypeKind.CHAR for t in types):
        return ast.char(max(t.size for t in types))
    first = types[0]
    return first if all(t == first for t in types) else INT8


def _walk(e: ast.Expr) -> Iterator[ast.Expr]:
    stack = [e]
    while stack:
        node = stack.pop()
        yield node
        for value in vars(node).values():
            if isinstance(value, ast.Expr):
                stack.append(value)
            elif isinstance(value, tuple):
                for item in value:
                    if isinstance(item, ast.Expr):
                        stack.append(item)
                    elif isinstance(item, tuple):
                        stack.extend(x for x in item if isinstance(x, ast.Expr))


class Resolver:
    """Checks statements of one Program; tables first, then rules and triggers in file order."""

    def __init__(self) -> None:
        self.tables: dict[str, ast.Table] = {}
        self.rules: list[ast.Rule] = []
        self.triggers: list[ast.Trigger] = []
        self.diagnostics: list[Diagnostic] = []
        self._rule_names: dict[str, Loc] = {}
        self._trigger_names: dict[str, Loc] = {}
        self._next_scope = 0
        self.broken_tables: set[str] = set()  # declared, but the declaration has an error
        self.pf: ParsedFile | None = None
        self._default = 0  # offset used when a node has no position (the statement's start)

    # ------------------------------------------------------------------ helpers

    @property
    def _pf(self) -> ParsedFile:
        assert self.pf is not None
        return self.pf

    def _offset(self, node: exp.Expr | None) -> int:
        # Nodes without a position of their own (a constraint, a clause) point at their parent.
        while node is not None:
            offset = self._pf.node_offset(node, -1)
            if offset >= 0:
                return offset
            node = node.parent
        return self._default

    def loc(self, node: exp.Expr | None) -> Loc:
        return self._pf.src.loc(self._offset(node))

    def problem(self, node: exp.Expr | None, message: str) -> Problem:
        return Problem(self._pf.src.error_at(self._offset(node), message))

    def problem_at(self, loc: Loc, message: str) -> Problem:
        return Problem(Diagnostic(Severity.ERROR, message, loc, self._pf.src.line_text(loc.line)))

    def warn(self, loc: Loc, message: str) -> None:
        self.diagnostics.append(Diagnostic(Severity.WARNING, message, loc, self._pf.src.line_text(loc.line)))

    def _scope(self, kind: RowKind, table: ast.Table) -> RowScope:
        self._next_scope += 1
        return RowScope(kind, table, self._next_scope)

    def _word_at(self, node: exp.Expr) -> str:
        text = self._pf.src.text
        m = re.compile(r"[A-Za-z_][A-Za-z0-9_]*").match(text, self._offset(node))
        return m.group(0).upper() if m else node.key.upper()

    def _unsupported(self, node: exp.Expr) -> Problem:
        for cls, message in _UNSUPPORTED.items():
            if isinstance(node, cls):
                if isinstance(node, exp.Like | exp.ILike | exp.Glob):
                    # point at the operator, not at the left operand where the node starts
                    kws = (TokenType.LIKE, TokenType.ILIKE, TokenType.GLOB)
                    at = self._pf.keyword_offset(kws, self._offset(node), self._offset(node.expression))
                    if at is not None:
                        return Problem(self._pf.src.error_at(at, message))
                return self.problem(node, message)
        if isinstance(node, exp.Anonymous):
            return self.problem(
                node,
                f"unknown function {str(node.this).upper()}; the functions are ABS and COALESCE, "
                "and SUM, COUNT, AVG, MIN, MAX as a sub-query's select value",
            )
        if isinstance(node, exp.Func):
            return self.problem(
                node,
                f"function {self._word_at(node)}(...) is not supported here; the functions are ABS and "
                "COALESCE, and SUM, COUNT, AVG, MIN, MAX as a sub-query's select value",
            )
        return self.problem(node, f"{node.key.upper()} is not supported in rule expressions")

    def _only(self, node: exp.Expr, allowed: set[str]) -> None:
        """Reject every clause of `node` that is set and not in `allowed`: nothing is dropped."""
        for key, value in node.args.items():
            if key in allowed or value is None or value is False or value == []:
                continue
            message, kws = _CLAUSES.get(key, (f"{key.upper().rstrip('_')} is not supported here", ()))
            if key == "alternative":
                message = (
                    f"INSERT OR {str(value).upper()} is not supported; INSERT already skips existing rows"
                )
            where = value if isinstance(value, exp.Expr) else node
            if isinstance(value, list) and value and isinstance(value[0], exp.Expr):
                where = value[0]
            offset = self._offset(where)
            if kws:
                found = self._pf.keyword_offset(kws, self._offset(node), offset + 1)
                if found is None and offset == self._offset(node):
                    # a clause without a position of its own (DISTINCT) follows the statement's start
                    found = self._pf.keyword_offset(kws, offset, self._pf.next_token_offset(offset) + 1)
                offset = found if found is not None else offset
            raise Problem(self._pf.src.error_at(offset, message))

    # ------------------------------------------------------------------ types

    def _numeric(self, e: ast.Expr, what: str) -> ast.Expr:
        if e.type.kind is TypeKind.CHAR:
            raise self.problem_at(
                e.loc, f"a {e.type} value cannot be used {what}; only INT and INT8 values can"
            )
        return e

    def _condition(self, e: ast.Expr) -> ast.Expr:
        if e.type.kind is TypeKind.CHAR:
            raise self.problem_at(
                e.loc, f"a {e.type} value is not a condition; compare it, for example with = 'text'"
            )
        return e

    def _retype_null(self, e: ast.Expr, t: SqlType) -> ast.Expr:
        return replace(e, type=t) if _is_null(e) else e

    def _comparable(self, a: ast.Expr, b: ast.Expr, op: str) -> tuple[ast.Expr, ast.Expr]:
        a = self._retype_null(a, b.type)
        b = self._retype_null(b, a.type)
        a_char = a.type.kind is TypeKind.CHAR
        b_char = b.type.kind is TypeKind.CHAR
        if a_char != b_char:
            raise self.problem_at(
                b.loc,
                f"cannot compare {a.type} with {b.type}; compare CHAR values with strings or CHAR "
                "columns, numbers with numbers",
            )
        if a_char and op not in ("=", "!=", "IN"):
            raise self.problem_at(
                a.loc, f"CHAR values can only be compared with =, !=, <> and IN, not with {op}"
            )
        return a, b

    def _storable(self, column: ast.Column, e: ast.Expr, table: ast.Table) -> ast.Expr:
        e = self._retype_null(e, column.type)
        where = f"column {table.name}.{column.name} ({column.type})"
        if column.type.kind is TypeKind.CHAR:
            if e.type.kind is not TypeKind.CHAR:
                raise self.problem_at(
                    e.loc, f"cannot store a number into {where}; write a string 'like this'"
                )
            if e.type.size > column.type.size:
                if isinstance(e, ast.Literal):
                    raise self.problem_at(
                        e.loc, f"the string is {e.type.size} bytes, too long for {where}; shorten it"
                    )
                self.warn(e.loc, f"a {e.type} value may be too long for {where}")
        elif e.type.kind is TypeKind.CHAR:
            raise self.problem_at(e.loc, f"cannot store a {e.type} value into {where}; store a number")
        return e

    # ------------------------------------------------------------------ tables

    def table(self, pf: ParsedFile, stmt: TableStmt) -> None:
        self.pf = pf
        schema = stmt.create.this
        name = schema.this.name.lower() if isinstance(schema, exp.Schema) else ""
        try:
            self._table(stmt)
        except Problem:
            if name and name not in self.tables:
                self.broken_tables.add(name)
            raise

    def _unknown_table(self, node: exp.Expr, name: str) -> Problem:
        if name in self.broken_tables:
            return Problem(None)
        return self.problem(node, f"unknown table {name}; declare it with CREATE TABLE")

    def _table(self, stmt: TableStmt) -> None:
        create = stmt.create
        self._default = self._offset(create)
        self._only(create, {"this", "kind"})
        schema = create.this
        if not isinstance(schema, exp.Schema) or not isinstance(schema.this, exp.Table):
            raise self.problem(create, "expected CREATE TABLE name (column TYPE, ...)")
        tnode = schema.this
        self._only(tnode, {"this"})
        name = tnode.name.lower()
        if name == "trade_order":
            raise self.problem(
                tnode, f"trade_order is built in (fields {FIELD_LIST}); do not declare it with CREATE TABLE"
            )
        if name in self.tables:
            raise self.problem(
                tnode, f"table {name} is already declared at {self.tables[name].loc}; rename one"
            )
        columns: list[ast.Column] = []
        pk: tuple[str, ...] | None = None
        pk_node: exp.Expr | None = None
        for item in schema.expressions:
            if isinstance(item, exp.ColumnDef):
                col, col_pk = self._column(item, len(columns), name)
                if any(c.name == col.name for c in columns):
                    raise self.problem(
                        item, f"column {col.name} is declared twice in table {name}; rename one"
                    )
                columns.append(col)
                if col_pk:
                    if pk is not None:
                        raise self.problem(item, f"table {name} has more than one PRIMARY KEY; declare one")
                    pk, pk_node = (col.name,), item
            elif isinstance(item, exp.PrimaryKey):
                if pk is not None:
                    raise self.problem(item, f"table {name} has more than one PRIMARY KEY; declare one")
                pk = tuple(self._key_name(k) for k in item.expressions)
                pk_node = item
            else:
                raise self.problem(
                    item,
                    f"{item.key.upper()} is not supported in CREATE TABLE; declare columns and PRIMARY KEY",
                )
        if not columns:
            raise self.problem(tnode, f"table {name} has no columns")
        if pk is not None:
            for k in pk:
                if not any(c.name == k for c in columns):
                    raise self.problem(pk_node, f"PRIMARY KEY column {k} is not a column of table {name}")
            if len(set(pk)) != len(pk):
                raise self.problem(pk_node, "a column appears twice in the PRIMARY KEY")
        self.tables[name] = ast.Table(name, tuple(columns), pk, self.loc(tnode))

    def _key_name(self, k: exp.Expr) -> str:
        node = k.this if isinstance(k, exp.Ordered) else k
        if isinstance(node, exp.Identifier | exp.Column):
            return node.name.lower()
        raise self.problem(k, "a PRIMARY KEY lists column names")

    def _column(self, item: exp.ColumnDef, index: int, table: str) -> tuple[ast.Column, bool]:
        name = item.name.lower()
        kind = item.args.get("kind")
        if not isinstance(kind, exp.DataType):
            raise self.problem(item, f"column {name} needs a type: INT, INT8, CHAR(n) or VARCHAR(n)")
        sqltype = self._type(kind, name, self._pf.next_token_offset(self._offset(item)))
        nullable: bool | None = None
        pk = False
        for constraint in item.args.get("constraints") or []:
            ckind = constraint.args.get("kind")
            if isinstance(ckind, exp.NotNullColumnConstraint):
                this_nullable = bool(ckind.args.get("allow_null"))
                if nullable is not None and nullable != this_nullable:
                    raise self.problem(constraint, f"column {name} is declared both NULL and NOT NULL")
                nullable = this_nullable
            elif isinstance(ckind, exp.PrimaryKeyColumnConstraint) and not any(ckind.args.values()):
                pk = True
            else:
                word = ckind.key.upper() if isinstance(ckind, exp.Expr) else "this constraint"
                raise self.problem(
                    item,
                    f"{word.removesuffix('COLUMNCONSTRAINT')} is not supported on a column; "
                    "use NULL, NOT NULL or PRIMARY KEY",
                )
        return ast.Column(name, sqltype, nullable is not False, index, self.loc(item)), pk

    def _type(self, kind: exp.DataType, column: str, at: int) -> SqlType:
        """The column's type; `at` is where its type name starts."""
        src = self._pf.src

        def bad(message: str) -> Problem:
            return Problem(src.error_at(at, f"column {column}: {message}"))

        dtype = kind.this
        params = kind.expressions
        if dtype is exp.DataType.Type.INT and not params:
            return INT
        if dtype is exp.DataType.Type.BIGINT and not params:
            return INT8
        if dtype in (exp.DataType.Type.CHAR, exp.DataType.Type.VARCHAR):
            if len(params) != 1:
                raise bad(f"CHAR needs a size in bytes, CHAR(n) with n 1..{MAX_CHAR}")
            size_node = params[0].this if isinstance(params[0], exp.DataTypeParam) else params[0]
            if not (
                isinstance(size_node, exp.Literal) and not size_node.is_string and size_node.this.isdigit()
            ):
                raise bad(f"the CHAR size must be a whole number 1..{MAX_CHAR}")
            size = int(size_node.this)
            if not 1 <= size <= MAX_CHAR:
                raise bad(f"CHAR({size}) is out of range; the size must be 1..{MAX_CHAR} bytes")
            return ast.char(size)
        m = re.compile(r"\w+").match(src.text, at)
        shown = m.group(0).upper() if m else kind.sql().upper()
        raise bad(f"unknown type {shown}; use INT, INTEGER, INT8, BIGINT, CHAR(n) or VARCHAR(n)")

    # ------------------------------------------------------------------ rules and triggers

    def rule(self, pf: ParsedFile, stmt: RuleStmt) -> None:
        self.pf = pf
        self._default = self._offset(stmt.expr)
        key = stmt.name.lower()
        if key in self._rule_names:
            raise self.problem_at(
                stmt.loc,
                f"rule {stmt.name} is already defined at {self._rule_names[key]}; rule names must differ",
            )
        self._rule_names[key] = stmt.loc
        env = Env((), "an aggregate must be inside a sub-query: (SELECT SUM(col) FROM t WHERE ...)", "a rule")
        problems: list[Problem] = []
        expr = guard = None
        try:
            expr = self._condition(self.expr(stmt.expr, env))
        except Problem as p:
            problems.append(p)
        if stmt.guard is not None:
            try:
                guard = self._condition(self.expr(stmt.guard, env))
            except Problem as p:
                problems.append(p)
        if problems:
            self.diagnostics.extend(p.diagnostic for p in problems[1:] if p.diagnostic)
            raise problems[0]
        assert expr is not None
        self.rules.append(ast.Rule(stmt.name, expr, guard, stmt.loc))

    def trigger(self, pf: ParsedFile, stmt: TriggerStmt) -> None:
        self.pf = pf
        self._default = self._offset(stmt.body[0])
        key = stmt.name.lower()
        if key in self._trigger_names:
            raise self.problem_at(
                stmt.loc,
                f"trigger {stmt.name} is already defined at {self._trigger_names[key]}; "
                "trigger names must differ",
            )
        self._trigger_names[key] = stmt.loc
        agg = "an aggregate must be inside a sub-query: (SELECT SUM(col) FROM t WHERE ...)"
        when = None
        if stmt.when is not None:
            when = self._condition(self.expr(stmt.when, Env((), agg, "a trigger's WHEN")))
        body: list[ast.Statement] = []
        for node in stmt.body:
            if isinstance(node, exp.Update):
                body.append(self._update(node))
            elif isinstance(node, exp.Insert):
                body.append(self._insert(node))
            else:
                word = self._word_at(node)
                raise self.problem(node, f"{word} is not allowed in a trigger; use UPDATE or INSERT")
        self.triggers.append(
            ast.Trigger(stmt.name, ast.TriggerEvent(stmt.event), when, tuple(body), stmt.loc)
        )

    def _target_table(self, node: exp.Expr) -> ast.Table:
        if not isinstance(node, exp.Table):
            raise self.problem(node, "expected a table name")
        self._only(node, {"this", "alias"})
        name = node.name.lower()
        if name == "trade_order":
            raise self.problem(node, "trade_order is the event and is read-only; triggers change user tables")
        table = self.tables.get(name)
        if table is None:
            raise self._unknown_table(node, name)
        return table

    def _set_column(self, table: ast.Table, lhs: exp.Expr) -> ast.Column:
        if not isinstance(lhs, exp.Column) or lhs.args.get("db"):
            raise self.problem(lhs, "SET assigns to a column: SET col = value")
        qual = lhs.table.lower()
        if qual and qual != table.name:
            raise self.problem(lhs, f"SET names a column of {table.name} without a prefix: SET col = value")
        column = table.column(lhs.name.lower())
        if column is None:
            names = ", ".join(c.name for c in table.columns)
            raise self.problem(
                lhs, f"table {table.name} has no column {lhs.name.lower()}; its columns are {names}"
            )
        return column

    def _assignments(self, table: ast.Table, sets: list[exp.Expr], env: Env) -> tuple[ast.Assignment, ...]:
        out: list[ast.Assignment] = []
        for item in sets:
            if not isinstance(item, exp.EQ):
                raise self.problem(item, "SET takes col = value, separated by commas")
            column = self._set_column(table, item.this)
            if any(a.column is column for a in out):
                raise self.problem(item.this, f"column {column.name} is SET twice; set it once")
            value = self._storable(column, self.expr(item.expression, env), table)
            out.append(ast.Assignment(column, value, self.loc(item.this)))
        return tuple(out)

    def _update(self, node: exp.Update) -> ast.Update:
        self._only(node, {"this", "expressions", "where"})
        table = self._target_table(node.this)
        target = self._scope(RowKind.TARGET, table)
        names = {table.name}
        alias = node.this.alias
        if alias:
            names = {alias.lower()}
        env = Env(
            (Visible(target, frozenset(names)),),
            "aggregates are not allowed in UPDATE; use a sub-query (SELECT SUM(col) FROM t WHERE ...)",
            "an UPDATE",
        )
        sets = self._assignments(table, node.expressions, env)
        where = None
        w = node.args.get("where")
        if w is not None:
            where = self._condition(self.expr(w.this, env))
        return ast.Update(table, target, sets, where, self.loc(node))

    def _insert(self, node: exp.Insert) -> ast.Insert:
        self._only(node, {"this", "expression", "conflict"})
        into = node.this
        listed: list[exp.Expr] | None = None
        if isinstance(into, exp.Schema):
            listed = list(into.expressions)
            into = into.this
        table = self._target_table(into)
        if listed is None:
            columns = list(table.columns)
        else:
            columns = []
            for ident in listed:
                column = table.column(ident.name.lower())
                if column is None:
                    names = ", ".join(c.name for c in table.columns)
                    raise self.problem(
                        ident,
                        f"table {table.name} has no column {ident.name.lower()}; its columns are {names}",
                    )
                if column in columns:
                    raise self.problem(ident, f"column {column.name} is listed twice")
                columns.append(column)
        source = node.expression
        if isinstance(source, exp.Values):
            self._only(source, {"expressions"})
            rows = source.expressions
            if len(rows) != 1:
                raise self.problem(rows[1], "INSERT takes one row of VALUES; write one INSERT per row")
            row = rows[0]
        else:
            raise self.problem(source, "INSERT takes VALUES (...); INSERT ... SELECT is not supported")
        values_nodes = row.expressions if isinstance(row, exp.Tuple) else [row]
        if len(values_nodes) != len(columns):
            raise self.problem(
                row,
                f"INSERT lists {len(columns)} column(s) but {len(values_nodes)} value(s); "
                "give one value per column",
            )
        env = Env(
            (),
            "aggregates are not allowed in VALUES; use a sub-query (SELECT SUM(col) FROM t WHERE ...)",
            "INSERT ... VALUES",
        )
        values = tuple(
            self._storable(c, self.expr(v, env), table) for c, v in zip(columns, values_nodes, strict=True)
        )
        conflict: tuple[ast.Column, ...] | None = None
        sets: tuple[ast.Assignment, ...] = ()
        target = excluded = None
        oc = node.args.get("conflict")
        if oc is not None:
            self._only(oc, {"expressions", "action", "conflict_keys"})
            action = str(oc.args.get("action") or "").upper()
            if action == "DO NOTHING":
                on = self._pf.keyword_offset((TokenType.ON,), self._offset(source), len(self._pf.src.text))
                raise Problem(
                    self._pf.src.error_at(
                        on if on is not None else self._offset(node),
                        "ON CONFLICT DO NOTHING is what a plain INSERT does already; drop the clause",
                    )
                )
            keys = oc.args.get("conflict_keys") or []
            if action != "DO UPDATE" or not keys:
                raise self.problem(oc, "write ON CONFLICT (key columns) DO UPDATE SET col = value, ...")
            conflict_cols: list[ast.Column] = []
            for k in keys:
                kname = self._key_name(k)
                column = table.column(kname)
                if column is None:
                    raise self.problem(k, f"ON CONFLICT names {kname}, which is not a column of {table.name}")
                conflict_cols.append(column)
            conflict = tuple(conflict_cols)
            target = self._scope(RowKind.TARGET, table)
            excluded = self._scope(RowKind.EXCLUDED, table)
            env = Env(
                (
                    Visible(excluded, frozenset({"excluded"}), bare=False),
                    Visible(target, frozenset({into.alias.lower() if into.alias else table.name})),
                ),
                "aggregates are not allowed in DO UPDATE SET; use a sub-query",
                "DO UPDATE SET",
            )
            sets = self._assignments(table, oc.expressions, env)
            if not sets:
                raise self.problem(oc, "DO UPDATE needs SET col = value")
        return ast.Insert(table, tuple(columns), values, conflict, sets, target, excluded, self.loc(node))

    # ------------------------------------------------------------------ expressions

    def expr(self, node: exp.Expr, env: Env) -> ast.Expr:
        loc = self.loc(node)
        if isinstance(node, exp.Paren):
            return self.expr(node.this, env)
        if isinstance(node, exp.Literal):
            return self._literal(node, loc)
        if isinstance(node, exp.Null):
            return ast.Literal(INT8, True, loc, None)
        if isinstance(node, exp.Boolean):
            return ast.Literal(INT8, False, loc, 1 if node.this else 0)
        if isinstance(node, exp.Column):
            return self._column_ref(node, env, loc)
        if isinstance(node, exp.Neg):
            inner = node.this
            if isinstance(inner, exp.Literal) and not inner.is_string:
                lit = self._literal(inner, loc, negate=True)
                return lit
            operand = self._numeric(self.expr(inner, env), "with unary -")
            return ast.Unary(INT8, True, loc, ast.UnaryOp.NEG, operand)
        if isinstance(node, exp.Not):
            return self._not(node, env, loc)
        if type(node) in _ARITH:
            op = _ARITH[type(node)]
            left = self._numeric(self.expr(node.this, env), f"in arithmetic ({op.value})")
            right = self._numeric(self.expr(node.expression, env), f"in arithmetic ({op.value})")
            return ast.Binary(INT8, True, loc, op, left, right)
        if type(node) in _COMPARE:
            op = _COMPARE[type(node)]
            left, right = self._comparable(
                self.expr(node.this, env), self.expr(node.expression, env), op.value
            )
            return ast.Binary(BOOL, left.nullable or right.nullable, loc, op, left, right)
        if type(node) in _LOGIC:
            op = _LOGIC[type(node)]
            left = self._condition(self.expr(node.this, env))
            right = self._condition(self.expr(node.expression, env))
            return ast.Binary(BOOL, left.nullable or right.nullable, loc, op, left, right)
        if isinstance(node, exp.Is):
            if not isinstance(node.expression, exp.Null):
                raise self.problem(node, "IS is only supported as IS NULL / IS NOT NULL; use = to compare")
            operand = self.expr(node.this, env)
            return ast.Unary(BOOL, False, loc, ast.UnaryOp.IS_NULL, operand)
        if isinstance(node, exp.Between):
            return self._between(node, env, loc, negated=False)
        if isinstance(node, exp.In):
            return self._in(node, env, loc, negated=False)
        if isinstance(node, exp.Case):
            return self._case(node, env, loc)
        if isinstance(node, exp.Coalesce):
            return self._coalesce(node, env, loc)
        if isinstance(node, exp.Abs):
            operand = self._numeric(self.expr(node.this, env), "in ABS")
            return ast.Unary(INT8, True, loc, ast.UnaryOp.ABS, operand)
        if isinstance(node, exp.Subquery):
            return self._subquery(node, env, loc)
        if type(node) in _AGGS:
            raise self.problem(node, env.agg_error)
        raise self._unsupported(node)

    def _literal(self, node: exp.Literal, loc: Loc, negate: bool = False) -> ast.Literal:
        text = str(node.this)
        if node.is_string:
            size = len(text.encode("utf-8"))
            if size > MAX_CHAR:
                raise self.problem_at(
                    loc, f"the string is {size} bytes; CHAR values are at most {MAX_CHAR} bytes"
                )
            return ast.Literal(ast.char(size), False, loc, text)
        if not text.isdigit():
            raise self.problem_at(
                loc,
                f"{text} is not an integer; values are integers "
                "(write prices in fixed point, e.g. 1050 for 10.50)",
            )
        value = -int(text) if negate else int(text)
        if not INT64_MIN <= value <= INT64_MAX:
            raise self.problem_at(loc, f"{value} does not fit 64 bits (INT8 holds {INT64_MIN}..{INT64_MAX})")
        return ast.Literal(INT8, False, loc, value)

    def _not(self, node: exp.Not, env: Env, loc: Loc) -> ast.Expr:
        inner = node.this
        while isinstance(inner, exp.Paren):
            inner = inner.this
        if isinstance(inner, exp.Is) and isinstance(inner.expression, exp.Null):
            operand = self.expr(inner.this, env)
            return ast.Unary(BOOL, False, loc, ast.UnaryOp.IS_NOT_NULL, operand)
        if isinstance(inner, exp.Between):
            return self._between(inner, env, loc, negated=True)
        if isinstance(inner, exp.In):
            return self._in(inner, env, loc, negated=True)
        operand = self._condition(self.expr(node.this, env))
        return ast.Unary(BOOL, operand.nullable, loc, ast.UnaryOp.NOT, operand)

    def _between(self, node: exp.Between, env: Env, loc: Loc, negated: bool) -> ast.Expr:
        self._only(node, {"this", "low", "high"})
        parts = [
            self.expr(node.this, env),
            self.expr(node.args["low"], env),
            self.expr(node.args["high"], env),
        ]
        for p in parts:
            if p.type.kind is TypeKind.CHAR:
                raise self.problem_at(
                    p.loc, "CHAR values can only be compared with =, !=, <> and IN, not BETWEEN"
                )
        value, low, high = parts
        return ast.Between(BOOL, any(p.nullable for p in parts), loc, value, low, high, negated)

    def _in(self, node: exp.In, env: Env, loc: Loc, negated: bool) -> ast.Expr:
        if node.args.get("query") is not None:
            raise self.problem(
                node.args["query"],
                "IN (SELECT ...) is not supported; list values, "
                "or use (SELECT COUNT(*) ... WHERE col = x) > 0",
            )
        self._only(node, {"this", "expressions"})
        value = self.expr(node.this, env)
        items: list[ast.Expr] = []
        for item_node in node.expressions:
            item = self.expr(item_node, env)
            value, item = self._comparable(value, item, "IN")
            items.append(item)
        if not items:
            raise self.problem(node, "IN needs at least one value")
        # A leading NULL item was typed before the value was known; retype items to the value's type.
        items = [self._retype_null(i, value.type) for i in items]
        nullable = value.nullable or any(i.nullable for i in items)
        return ast.InList(BOOL, nullable, loc, value, tuple(items), negated)

    def _case(self, node: exp.Case, env: Env, loc: Loc) -> ast.Expr:
        self._only(node, {"this", "ifs", "default"})
        subject = self.expr(node.this, env) if node.this is not None else None
        whens: list[tuple[ast.Expr, ast.Expr]] = []
        for branch in node.args.get("ifs") or []:
            cond_node, value_node = branch.this, branch.args.get("true")
            if subject is not None:
                s, c = self._comparable(subject, self.expr(cond_node, env), "=")
                cond: ast.Expr = ast.Binary(BOOL, s.nullable or c.nullable, c.loc, ast.BinaryOp.EQ, s, c)
            else:
                cond = self._condition(self.expr(cond_node, env))
            whens.append((cond, self.expr(value_node, env)))
        default = node.args.get("default")
        else_ = self.expr(default, env) if default is not None else None
        results = [v for _, v in whens] + ([else_] if else_ is not None else [])
        typed = [r for r in results if not _is_null(r)]
        if not typed:
            # Every branch is NULL, so the CASE is NULL; as a NULL literal it can still meet a CHAR.
            return ast.Literal(INT8, True, loc, None)
        for r in typed:
            if (r.type.kind is TypeKind.CHAR) != (typed[0].type.kind is TypeKind.CHAR):
                raise self.problem_at(
                    r.loc, "CASE mixes CHAR and numeric results; make every branch the same kind"
                )
        rtype = _join_types([r.type for r in typed])
        whens = [(c, self._retype_null(v, rtype)) for c, v in whens]
        if else_ is not None:
            else_ = self._retype_null(else_, rtype)
        nullable = else_ is None or any(r.nullable for r in results)
        return ast.Case(rtype, nullable, loc, tuple(whens), else_)

    def _coalesce(self, node: exp.Coalesce, env: Env, loc: Loc) -> ast.Expr:
        self._only(node, {"this", "expressions"})
        args = [self.expr(node.this, env)] + [self.expr(a, env) for a in node.expressions]
        if len(args) < 2:
            raise self.problem(node, "COALESCE needs at least two arguments")
        typed = [a for a in args if not _is_null(a)]
        if not typed:
            return ast.Literal(INT8, True, loc, None)  # COALESCE(NULL, NULL) is NULL, of no type yet
        rtype = _join_types([a.type for a in typed])
        kinds = {a.type.kind is TypeKind.CHAR for a in typed}
        if len(kinds) > 1:
            raise self.problem(node, "COALESCE mixes CHAR and numeric arguments; make them the same kind")
        args = [self._retype_null(a, rtype) for a in args]
        return ast.Coalesce(rtype, all(a.nullable for a in args), loc, tuple(args))

    def _column_ref(self, node: exp.Column, env: Env, loc: Loc) -> ast.Expr:
        if isinstance(node.this, exp.Star):
            raise self.problem(node, "SELECT * is not supported; select exactly one value")
        if node.args.get("db") or node.args.get("catalog"):
            raise self.problem(node, "names have at most two parts: table.column")
        name = node.name.lower()
        qual = node.table.lower()
        if not qual:
            for visible in reversed(env.scopes):
                column = visible.row.table.column(name) if visible.bare else None
                if column is not None:
                    return ast.ColumnRef(column.type, column.nullable, loc, visible.row, column)
            hint = f"; did you mean trade_order.{name}?" if name in FIELDS else ""
            if not env.scopes:
                raise self.problem(
                    node,
                    f"unknown name {name}: {env.context} reads event fields as trade_order.<field> "
                    "and tables "
                    f"through sub-queries{hint or ' (SELECT col FROM table WHERE ...)'}",
                )
            tables = ", ".join(sorted({v.row.table.name for v in env.scopes if v.bare}))
            raise self.problem(node, f"unknown column {name}: no table in scope ({tables}) has it{hint}")
        for visible in reversed(env.scopes):
            if qual in visible.names:
                column = visible.row.table.column(name)
                if column is None:
                    names = ", ".join(c.name for c in visible.row.table.columns)
                    raise self.problem(
                        node, f"table {visible.row.table.name} has no column {name}; its columns are {names}"
                    )
                return ast.ColumnRef(column.type, column.nullable, loc, visible.row, column)
        if qual == "trade_order":
            ftype = FIELDS.get(name)
            if ftype is None:
                raise self.problem(node, f"trade_order has no field {name}; its fields are {FIELD_LIST}")
            return ast.Field(ftype, True, loc, name)
        if qual == "excluded":
            raise self.problem(
                node, "excluded.<col> is only available in INSERT ... ON CONFLICT (...) DO UPDATE SET"
            )
        if qual in self.tables:
            raise self.problem(
                node,
                f"table {qual} is not in scope here; "
                f"read it with a sub-query (SELECT col FROM {qual} WHERE ...)",
            )
        raise self.problem(node, f"unknown table {qual} in {qual}.{name}; declare it with CREATE TABLE")

    # ------------------------------------------------------------------ sub-queries

    def _subquery(self, node: exp.Subquery, env: Env, loc: Loc) -> ast.Expr:
        self._only(node, {"this"})
        select = node.this
        while isinstance(select, exp.Subquery | exp.Paren):  # ((SELECT ...)): extra parentheses
            self._only(select, {"this"})
            select = select.this
        if not isinstance(select, exp.Select):
            raise self._unsupported(select)
        self._only(select, {"expressions", "from_", "where", "order", "limit"})
        items = select.expressions
        if len(items) != 1:
            at = items[1] if len(items) > 1 else select
            raise self.problem(at, "a sub-query selects exactly one value; write one sub-query per value")
        item = items[0]
        if isinstance(item, exp.Alias):
            item = item.this
        if isinstance(item, exp.Star) or (isinstance(item, exp.Column) and isinstance(item.this, exp.Star)):
            raise self.problem(item, "SELECT * is not supported; select exactly one value")
        row = self._from(select)
        names = {row.table.name}
        from_table = select.args["from_"].this
        if from_table.alias:
            names = {from_table.alias.lower()}
        inner_scope = Visible(row, frozenset(names))
        inner = Env((*env.scopes, inner_scope), "", env.context)

        where = None
        w = select.args.get("where")
        if w is not None:
            where_env = replace(
                inner, agg_error="aggregates are not allowed in WHERE; use a separate sub-query"
            )
            where = self._condition(self.expr(w.this, where_env))

        order_by: ast.Expr | None = None
        descending = False
        order = select.args.get("order")
        limit = select.args.get("limit")
        if limit is not None:
            lim = limit.expression
            if not (
                isinstance(lim, exp.Literal) and not lim.is_string and str(lim.this) == "1"
            ) or limit.args.get("offset"):
                raise self.problem(limit, "LIMIT must be LIMIT 1, after ORDER BY col [ASC|DESC]")
            if order is None:
                raise self.problem(limit, "LIMIT 1 needs ORDER BY col [ASC|DESC] to say which row")
        if order is not None:
            if limit is None:
                raise self.problem(order, "ORDER BY needs LIMIT 1: a sub-query returns one row")
            self._only(order, {"expressions"})
            if len(order.expressions) != 1:
                raise self.problem(order.expressions[1], "ORDER BY takes one expression")
            ordered = order.expressions[0]
            descending = bool(ordered.args.get("desc"))
            if bool(ordered.args.get("nulls_first")) == descending:
                raise self.problem(
                    ordered, "NULLS FIRST/LAST is not supported: NULL sorts first with ASC and last with DESC"
                )
            order_env = replace(inner, agg_error="ORDER BY cannot use an aggregate; order by a column")
            order_by = self.expr(ordered.this, order_env)
            if isinstance(order_by, ast.Literal):
                # SQLite reads ORDER BY <integer> as a select-column position, not as a value.
                raise self.problem_at(
                    order_by.loc, "ORDER BY needs a column of the sub-query's table, not a constant"
                )
            if order_by.type.kind is TypeKind.CHAR:
                raise self.problem_at(
                    order_by.loc, "ORDER BY a CHAR value is not supported; order by a number"
                )
            self._row_only(order_by, row, "ORDER BY")

        select_expr: ast.Expr
        if type(item) in _AGGS:
            if order is not None:
                raise self.problem(
                    order, "ORDER BY ... LIMIT 1 picks a row; it cannot be used with an aggregate"
                )
            select_expr = self._aggregate(item, inner, row)
        else:
            select_env = replace(
                inner,
                agg_error="an aggregate must be the whole select value: (SELECT SUM(col) FROM t WHERE ...); "
                "do arithmetic outside the parentheses",
            )
            select_expr = self.expr(item, select_env)
        nullable = not (
            isinstance(select_expr, ast.Agg)
            and select_expr.func in (ast.AggFunc.COUNT, ast.AggFunc.COUNT_STAR)
        )
        return ast.Subquery(select_expr.type, nullable, loc, row, select_expr, where, order_by, descending)

    def _from(self, select: exp.Select) -> RowScope:
        source = select.args.get("from_")
        if source is None:
            raise self.problem(select, "a sub-query needs FROM table")
        tnode = source.this
        if isinstance(tnode, exp.Subquery):
            raise self.problem(tnode, "FROM (SELECT ...) is not supported; read the table directly")
        if not isinstance(tnode, exp.Table):
            raise self._unsupported(tnode)
        self._only(tnode, {"this", "alias"})
        name = tnode.name.lower()
        if name == "trade_order":
            raise self.problem(
                tnode, "trade_order is the event being checked, not a table; use trade_order.<field> directly"
            )
        table = self.tables.get(name)
        if table is None:
            raise self._unknown_table(tnode, name)
        return self._scope(RowKind.SUBQUERY, table)

    def _row_only(self, e: ast.Expr, row: RowScope, what: str) -> None:
        for node in _walk(e):
            if isinstance(node, ast.Field):
                raise self.problem_at(
                    node.loc, f"{what} may only read the sub-query's row, not trade_order.{node.name}"
                )
            if isinstance(node, ast.ColumnRef) and node.scope is not row:
                raise self.problem_at(
                    node.loc,
                    f"{what} may only read the sub-query's row, "
                    f"not {node.scope.table.name}.{node.column.name}",
                )
            if isinstance(node, ast.Subquery):
                raise self.problem_at(node.loc, f"{what} cannot contain a sub-query")

    def _aggregate(self, node: exp.Expr, inner: Env, row: RowScope) -> ast.Agg:
        func = _AGGS[type(node)]
        loc = self.loc(node)
        arg_node = node.this
        if isinstance(node, exp.Count) and (arg_node is None or isinstance(arg_node, exp.Star)):
            return ast.Agg(INT8, False, loc, ast.AggFunc.COUNT_STAR, None)
        if isinstance(arg_node, exp.Distinct):
            raise self.problem(node, f"{func.value}(DISTINCT ...) is not supported")
        if arg_node is None or node.expressions:
            raise self.problem(node, f"{func.value} takes one argument")
        arg_env = replace(inner, agg_error="aggregates cannot be nested")
        arg = self.expr(arg_node, arg_env)
        self._row_only(arg, row, f"the argument of {func.value}")
        if isinstance(node, exp.Count):
            return ast.Agg(INT8, False, loc, ast.AggFunc.COUNT, arg)
        if arg.type.kind is TypeKind.CHAR:
            raise self.problem_at(arg.loc, f"{func.value} needs a number, not a {arg.type} value")
        rtype = arg.type if func in (ast.AggFunc.MIN, ast.AggFunc.MAX) else INT8
        return ast.Agg(rtype, True, loc, func, arg)
