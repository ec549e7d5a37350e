"""The checked rule program: what the front end (riskgw.lang) hands to the back end (riskgw.ir).

Every name here is resolved and every expression is typed. Nothing in this module parses or
checks: the front end builds these objects only after its semantic checks pass, so a consumer
(the IR lowering, the SQLite translation in the tests) may rely on the invariants written on each
class.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Loc:
    """A position in a rule file: 1-based line and column (column counts characters, not bytes)."""

    path: str
    line: int
    col: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.col}"


class TypeKind(enum.Enum):
    INT = "INT"  # 32-bit signed
    INT8 = "INT8"  # 64-bit signed
    CHAR = "CHAR"  # fixed maximum length in bytes, 1..32; compared with = / != / IN only
    BOOL = "BOOL"  # result of a comparison or logic: 0, 1 or NULL (an INT8 at run time)


@dataclass(frozen=True)
class SqlType:
    kind: TypeKind
    size: int = 0  # CHAR: maximum length in bytes; 0 otherwise

    @property
    def is_numeric(self) -> bool:
        return self.kind is not TypeKind.CHAR

    def __str__(self) -> str:
        return f"CHAR({self.size})" if self.kind is TypeKind.CHAR else self.kind.value


INT = SqlType(TypeKind.INT)
INT8 = SqlType(TypeKind.INT8)
BOOL = SqlType(TypeKind.BOOL)


def char(size: int) -> SqlType:
    return SqlType(TypeKind.CHAR, size)


@dataclass(frozen=True, eq=False)
class Column:
    name: str  # as declared, lower-cased
    type: SqlType
    nullable: bool
    index: int  # position in the table's declaration
    loc: Loc


@dataclass(frozen=True, eq=False)
class Table:
    """A user table (CREATE TABLE). `trade_order` is not a Table: its fields are `Field` nodes."""

    name: str  # lower-cased
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...] | None  # declared PRIMARY KEY, if any (column names)
    loc: Loc

    def column(self, name: str) -> Column | None:
        for c in self.columns:
            if c.name == name:
                return c
        return None


# The built-in event table. Order matters: it is the order of `trade_order` in docs and wire formats.
TRADE_ORDER_FIELDS: tuple[tuple[str, SqlType], ...] = (
    ("order_id", INT8),
    ("account_id", INT),
    ("ticket_id", char(16)),
    ("direction", INT),
    ("price", INT8),
    ("quantity", INT8),
    ("exec_price", INT8),
    ("exec_quantity", INT8),
    ("ts", INT8),
)


# --------------------------------------------------------------------------- expressions


@dataclass(frozen=True, eq=False)
class Expr:
    type: SqlType
    nullable: bool  # False only when the value can never be NULL
    loc: Loc


@dataclass(frozen=True, eq=False)
class Literal(Expr):
    value: int | str | None  # None is SQL NULL; str only for CHAR-typed literals


@dataclass(frozen=True, eq=False)
class Field(Expr):
    """`trade_order.<name>`: a field of the event being processed."""

    name: str


class RowKind(enum.Enum):
    SUBQUERY = "subquery"  # the row a scalar sub-query reads
    TARGET = "target"  # the row an UPDATE or an upsert's DO UPDATE changes (its values before the change)
    EXCLUDED = "excluded"  # `excluded.col` in ON CONFLICT DO UPDATE: the row the INSERT proposed


@dataclass(frozen=True, eq=False)
class RowScope:
    """One row variable: a sub-query's FROM table, an UPDATE's target, or `excluded`."""

    kind: RowKind
    table: Table
    id: int  # unique within a Program


@dataclass(frozen=True, eq=False)
class ColumnRef(Expr):
    scope: RowScope
    column: Column


class UnaryOp(enum.Enum):
    NEG = "-"
    NOT = "NOT"
    IS_NULL = "IS NULL"
    IS_NOT_NULL = "IS NOT NULL"
    ABS = "ABS"


@dataclass(frozen=True, eq=False)
class Unary(Expr):
    op: UnaryOp
    operand: Expr


class BinaryOp(enum.Enum):
    ADD = "+"
    SUB = "-"
    MUL = "*"
    DIV = "/"
    MOD = "%"
    EQ = "="
    NE = "!="
    LT = "<"
    LE = "<="
    GT = ">"
    GE = ">="
    AND = "AND"
    OR = "OR"


@dataclass(frozen=True, eq=False)
class Binary(Expr):
    op: BinaryOp
    left: Expr
    right: Expr


@dataclass(frozen=True, eq=False)
class Between(Expr):
    value: Expr
    low: Expr
    high: Expr
    negated: bool


@dataclass(frozen=True, eq=False)
class InList(Expr):
    value: Expr
    items: tuple[Expr, ...]  # at least one
    negated: bool


@dataclass(frozen=True, eq=False)
class Case(Expr):
    """Searched CASE. A simple CASE (`CASE x WHEN a ...`) is rewritten by the front end to `x = a`."""

    whens: tuple[tuple[Expr, Expr], ...]
    else_: Expr | None  # None: ELSE NULL


@dataclass(frozen=True, eq=False)
class Coalesce(Expr):
    args: tuple[Expr, ...]  # at least two


class AggFunc(enum.Enum):
    SUM = "SUM"
    COUNT = "COUNT"  # COUNT(col): rows where col is not NULL
    COUNT_STAR = "COUNT(*)"
    AVG = "AVG"  # SUM(x) / COUNT(x), integer division toward zero
    MIN = "MIN"
    MAX = "MAX"


@dataclass(frozen=True, eq=False)
class Agg(Expr):
    """An aggregate; appears only as the whole select expression of a Subquery."""

    func: AggFunc
    arg: Expr | None  # None for COUNT(*); otherwise an expression over the sub-query's row only


@dataclass(frozen=True, eq=False)
class Subquery(Expr):
    """`(SELECT select FROM scope.table WHERE where [ORDER BY order_by [DESC] LIMIT 1])`.

    Invariants from the front end:
    - `select` is an Agg, or an expression over `scope`'s row (and outer values);
    - `order_by` is set only when `select` is not an Agg, and then it is an expression over `scope`'s row;
    - `where` may reference `scope`'s row, `trade_order` fields and enclosing row scopes.
    The front end does not decide keys: the back end derives them from `where`.
    """

    scope: RowScope
    select: Expr
    where: Expr | None
    order_by: Expr | None
    descending: bool


# --------------------------------------------------------------------------- statements


@dataclass(frozen=True, eq=False)
class Rule:
    """`Rule NAME ( expr [WHERE guard] )`: an order fails it when guard is TRUE and expr is not TRUE."""

    name: str  # as written (case kept); unique case-insensitively
    expr: Expr
    guard: Expr | None
    loc: Loc


class TriggerEvent(enum.Enum):
    ACCEPT = "ACCEPT"
    FILL = "FILL"
    REJECT = "REJECT"
    CANCEL = "CANCEL"


@dataclass(frozen=True, eq=False)
class Assignment:
    column: Column
    value: Expr
    loc: Loc


@dataclass(frozen=True, eq=False)
class Update:
    """`UPDATE table SET ... WHERE where`; `target` is the row scope the SET and WHERE read."""

    table: Table
    target: RowScope
    sets: tuple[Assignment, ...]
    where: Expr | None
    loc: Loc


@dataclass(frozen=True, eq=False)
class Insert:
    """`INSERT INTO table (columns) VALUES (values) [ON CONFLICT (conflict) DO UPDATE SET ...]`.

    Columns of the table not listed are NULL. `conflict_sets` read `target` (the existing row) and
    `excluded` (the proposed row).
    """

    table: Table
    columns: tuple[Column, ...]
    values: tuple[Expr, ...]
    conflict: tuple[Column, ...] | None
    conflict_sets: tuple[Assignment, ...]
    target: RowScope | None
    excluded: RowScope | None
    loc: Loc


Statement = Update | Insert


@dataclass(frozen=True, eq=False)
class Trigger:
    """`CREATE TRIGGER name AFTER event ON trade_order [WHEN when] BEGIN body END`."""

    name: str
    event: TriggerEvent
    when: Expr | None
    body: tuple[Statement, ...]
    loc: Loc


@dataclass(frozen=True)
class Source:
    path: str
    sha256: str  # of the file's bytes


@dataclass(frozen=True, eq=False)
class Program:
    """Everything from one or more rule files, in file order."""

    sources: tuple[Source, ...]
    tables: tuple[Table, ...]
    rules: tuple[Rule, ...]
    triggers: tuple[Trigger, ...]
    warnings: tuple[Diagnostic, ...] = field(default=())

    def table(self, name: str) -> Table | None:
        for t in self.tables:
            if t.name == name:
                return t
        return None


# --------------------------------------------------------------------------- diagnostics


class Severity(enum.Enum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True)
class Diagnostic:
    severity: Severity
    message: str
    loc: Loc | None  # None when the problem is with a file as a whole and has no position
    source_line: str | None = None  # the offending line's text, for the caret display

    def render(self) -> str:
        where = f"{self.loc}: " if self.loc else ""
        out = f"{where}{self.severity.value}: {self.message}"
        if self.loc and self.source_line is not None:
            text, caret = _window(self.source_line.rstrip(), self.loc.col - 1)
            out += f"\n    {text}\n    {' ' * caret}^"
        return out


def _window(line: str, col: int, width: int = 100) -> tuple[str, int]:
    """A long source line cut to about `width` characters around `col`, and the caret's offset."""
    if len(line) <= width:
        return line, col
    start = max(0, min(col - width // 2, len(line) - width))
    text = line[start : start + width]
    caret = col - start
    if start > 0:
        text, caret = "..." + text, caret + 3
    if start + width < len(line):
        text += "..."
    return text, caret


class CompileError(Exception):
    """A user's mistake in rule files: carries one or more diagnostics, never a traceback for the user."""

    def __init__(self, diagnostics: list[Diagnostic] | Diagnostic) -> None:
        self.diagnostics = [diagnostics] if isinstance(diagnostics, Diagnostic) else list(diagnostics)
        super().__init__("\n".join(d.render() for d in self.diagnostics))
