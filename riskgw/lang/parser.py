"""Splitting a rule file into statements and parsing each with the sqlglot dialect.

sqlglot parses expressions, CREATE TABLE, UPDATE and INSERT. The statements it has no grammar for
(`Rule NAME (expr WHERE guard)`, `CREATE TRIGGER ... BEGIN ... END`, and statements separated only
by the start of the next one) are taken apart here, on tokens, and their pieces handed to sqlglot.
The nesting depth is checked on tokens first, because sqlglot's parser recurses.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlglot import exp
from sqlglot.errors import ErrorLevel, ParseError, SqlglotError
from sqlglot.tokenizer_core import Token, TokenType

from riskgw.lang.ast import Diagnostic, Loc
from riskgw.lang.dialect import DIALECT
from riskgw.lang.source import SourceFile

MAX_NESTING = 256  # parentheses, CASEs and prefix operators open at once

_PREFIX_OPS = frozenset({TokenType.NOT, TokenType.DASH, TokenType.PLUS, TokenType.TILDE})
TRIGGER_EVENTS = ("ACCEPT", "FILL", "REJECT", "CANCEL")


@dataclass(frozen=True, eq=False)
class TableStmt:
    create: exp.Create
    loc: Loc


@dataclass(frozen=True, eq=False)
class RuleStmt:
    name: str
    expr: exp.Expr
    guard: exp.Expr | None
    loc: Loc  # of the name


@dataclass(frozen=True, eq=False)
class TriggerStmt:
    name: str
    event: str
    when: exp.Expr | None
    body: tuple[exp.Expr, ...]
    loc: Loc  # of the name


Statement = TableStmt | RuleStmt | TriggerStmt


class SyntaxProblem(Exception):
    """One diagnostic that ends the parse of the current statement."""

    def __init__(self, diagnostic: Diagnostic) -> None:
        super().__init__(diagnostic.message)
        self.diagnostic = diagnostic


@dataclass(eq=False)
class ParsedFile:
    src: SourceFile
    tokens: list[Token]
    statements: list[Statement] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    broken_tables: set[str] = field(default_factory=set)  # CREATE TABLEs that did not parse
    _starts: list[int] = field(default_factory=list)
    _node_starts: dict[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._starts = [t.start for t in self.tokens]

    # ------------------------------------------------------------------ positions

    def error_at_token(self, token: Token, message: str) -> Diagnostic:
        return self.src.error_at(token.start, message)

    def index_nodes(self, root: exp.Expr) -> None:
        """Record where every node of a parsed tree starts (the first token it covers)."""
        order = list(root.dfs())
        for node in reversed(order):  # children before parents
            meta = node._meta if hasattr(node, "_meta") else None
            best = meta["start"] if meta and "start" in meta else None
            for child in node.iter_expressions():
                s = self._node_starts.get(id(child))
                if s is not None and (best is None or s < best):
                    best = s
            if best is None:
                continue
            opener = _OPENERS.get(type(node))
            if opener is not None:
                best = self._back_to(best, opener)
            self._node_starts[id(node)] = best

    def _back_to(self, offset: int, token_type: TokenType) -> int:
        i = bisect.bisect_left(self._starts, offset)
        for j in range(i - 1, max(i - 6, -1), -1):
            if self.tokens[j].token_type is token_type:
                return self.tokens[j].start
        return offset

    def node_offset(self, node: exp.Expr, default: int) -> int:
        return self._node_starts.get(id(node), default)

    def next_token_offset(self, offset: int) -> int:
        """Where the token after the one at `offset` starts (`offset` itself at the end)."""
        i = bisect.bisect_right(self._starts, offset)
        return self._starts[i] if i < len(self._starts) else offset

    def keyword_offset(self, token_types: Sequence[TokenType], lo: int, hi: int) -> int | None:
        """The first token of one of `token_types` with lo <= start < hi."""
        i = bisect.bisect_left(self._starts, lo)
        while i < len(self.tokens) and self.tokens[i].start < hi:
            if self.tokens[i].token_type in token_types:
                return self.tokens[i].start
            i += 1
        return None


_OPENERS: dict[type, TokenType] = {
    exp.Select: TokenType.SELECT,
    exp.Subquery: TokenType.L_PAREN,
    exp.Paren: TokenType.L_PAREN,
    exp.Case: TokenType.CASE,
    exp.Tuple: TokenType.L_PAREN,
    exp.Update: TokenType.UPDATE,
    exp.Insert: TokenType.INSERT,
    exp.Delete: TokenType.DELETE,
    exp.Create: TokenType.CREATE,
    exp.Exists: TokenType.EXISTS,
    exp.Cast: TokenType.VAR,  # CAST is not a keyword token
}


# ---------------------------------------------------------------------- splitting


def _is_name(token: Token) -> bool:
    return token.token_type is TokenType.IDENTIFIER or token.text.isidentifier()


def _is_rule_start(tokens: list[Token], i: int) -> bool:
    return (
        tokens[i].token_type is TokenType.VAR
        and tokens[i].text.upper() == "RULE"
        and i + 2 < len(tokens)
        and _is_name(tokens[i + 1])
        and tokens[i + 2].token_type is TokenType.L_PAREN
    )


def _is_statement_start(tokens: list[Token], i: int) -> bool:
    return tokens[i].token_type is TokenType.CREATE or _is_rule_start(tokens, i)


def _is_misspelt_rule(tokens: list[Token], i: int) -> bool:
    """`Rule name` not followed by `(`: a statement of its own, so it gets its own diagnostic."""
    return (
        tokens[i].token_type is TokenType.VAR
        and tokens[i].text.upper() == "RULE"
        and i + 1 < len(tokens)
        and tokens[i + 1].token_type in (TokenType.VAR, TokenType.IDENTIFIER)
    )


def _is_trigger(tokens: list[Token], i: int) -> bool:
    return (
        tokens[i].token_type is TokenType.CREATE
        and i + 1 < len(tokens)
        and tokens[i + 1].token_type is TokenType.TRIGGER
    )


def split_statements(tokens: list[Token]) -> list[tuple[int, int]]:
    """[start, end) token ranges of the statements; semicolons between statements are dropped.

    A statement ends at a `;` outside parentheses or at the next `CREATE` / `Rule name (`. A
    trigger's `;`-separated body belongs to it up to its END (an END that closes no CASE).
    """
    out: list[tuple[int, int]] = []
    n = len(tokens)
    i = 0
    while i < n:
        if tokens[i].token_type is TokenType.SEMICOLON:
            i += 1
            continue
        start = i
        trigger = _is_trigger(tokens, i)
        depth = 0
        cases = 0
        j = i
        while j < n:
            tt = tokens[j].token_type
            # CREATE and `Rule name (` cannot occur inside a statement, so they start the next one
            # even when this one left a parenthesis open: one missing ) costs one statement.
            if j > start and _is_statement_start(tokens, j):
                break
            if j > start and depth == 0 and not trigger and _is_misspelt_rule(tokens, j):
                break
            if tt is TokenType.L_PAREN:
                depth += 1
            elif tt is TokenType.R_PAREN:
                depth = max(0, depth - 1)
            elif tt is TokenType.CASE:
                cases += 1
            elif tt is TokenType.END:
                if cases > 0:
                    cases -= 1
                elif trigger and depth == 0:
                    j += 1
                    break
            elif tt is TokenType.SEMICOLON and depth == 0 and not trigger:
                break
            j += 1
        out.append((start, j))
        i = j
    return out


def nesting_problem(tokens: list[Token]) -> tuple[Token, int] | None:
    """(the first token past the limit, the deepest nesting) when the statement nests too deeply."""
    stack: list[TokenType] = []
    run = 0
    deepest = 0
    first_over: Token | None = None
    for tok in tokens:
        tt = tok.token_type
        run = run + 1 if tt in _PREFIX_OPS else 0
        if tt is TokenType.L_PAREN or tt is TokenType.CASE:
            stack.append(tt)
        elif tt is TokenType.R_PAREN:
            while stack and stack.pop() is not TokenType.L_PAREN:
                pass
        elif tt is TokenType.END and stack and stack[-1] is TokenType.CASE:
            stack.pop()
        level = len(stack) + run
        if level > deepest:
            deepest = level
            if level > MAX_NESTING and first_over is None:
                first_over = tok
    return (first_over, deepest) if first_over is not None else None


# ---------------------------------------------------------------------- parsing


class StatementParser:
    def __init__(self, pf: ParsedFile) -> None:
        self.pf = pf

    def fail(self, token: Token, message: str) -> SyntaxProblem:
        return SyntaxProblem(self.pf.error_at_token(token, message))

    def _sqlglot_error(self, exc: ParseError, tokens: list[Token]) -> SyntaxProblem:
        info = exc.errors[0] if exc.errors else {}
        desc = str(info.get("description") or exc).split("\n")[0]
        if desc.startswith("Required keyword") or desc.startswith("Invalid expression"):
            desc = "unexpected or missing text"
        line, col = info.get("line"), info.get("col")
        at = next((t for t in tokens if t.line == line and t.col == col), None)
        if at is None:
            at = tokens[-1]
        return self.fail(at, f"syntax error: {desc}; check the statement here")

    def sqlglot_condition(self, tokens: list[Token], what: Token) -> exp.Expr:
        if not tokens:
            raise self.fail(what, f"expected an expression after {what.text}")
        parser = DIALECT.parser(error_level=ErrorLevel.IMMEDIATE)
        try:
            parsed = parser.parse_into(exp.Condition, tokens, self.pf.src.text)
        except ParseError as exc:
            cause = exc.__cause__ if isinstance(exc.__cause__, ParseError) else exc
            raise self._sqlglot_error(cause, tokens) from None
        except SqlglotError as exc:
            raise self.fail(tokens[0], f"syntax error: {str(exc).splitlines()[0]}") from None
        node = parsed[0] if parsed else None
        if node is None:
            raise self.fail(tokens[0], "expected an expression")
        self.pf.index_nodes(node)
        return node

    def sqlglot_statement(self, tokens: list[Token]) -> exp.Expr:
        parser = DIALECT.parser(error_level=ErrorLevel.IMMEDIATE)
        try:
            parsed = parser.parse(tokens, self.pf.src.text)
        except ParseError as exc:
            raise self._sqlglot_error(exc, tokens) from None
        except SqlglotError as exc:
            raise self.fail(tokens[0], f"syntax error: {str(exc).splitlines()[0]}") from None
        nodes = [n for n in parsed if n is not None]
        if len(nodes) != 1:
            raise self.fail(tokens[0], "expected one statement here; separate statements with ;")
        self.pf.index_nodes(nodes[0])
        return nodes[0]

    # -------------------------------------------------------------- statements

    def statement(self, tokens: list[Token]) -> Statement:
        first = tokens[0]
        if first.token_type is TokenType.CREATE:
            kind = tokens[1] if len(tokens) > 1 else first
            if kind.token_type is TokenType.TABLE:
                return self.table(tokens)
            if kind.token_type is TokenType.TRIGGER:
                return self.trigger(tokens)
            raise self.fail(
                kind, f"CREATE {kind.text.upper()} is not supported; use CREATE TABLE or CREATE TRIGGER"
            )
        if _is_rule_start(tokens, 0):
            return self.rule(tokens)
        if first.token_type in (TokenType.UPDATE, TokenType.INSERT):
            raise self.fail(
                first,
                f"{first.text.upper()} must be inside a trigger: "
                "CREATE TRIGGER name AFTER event ON trade_order BEGIN ... END",
            )
        if first.token_type is TokenType.DELETE:
            raise self.fail(
                first, "DELETE is not supported; rows are changed with UPDATE or upserts in triggers"
            )
        if first.text.upper() == "RULE":
            raise self.fail(first, "a rule is written Rule NAME ( expression [WHERE guard] )")
        raise self.fail(
            first,
            f"unexpected '{first.text}': a rule file holds CREATE TABLE, CREATE TRIGGER and Rule statements",
        )

    def table(self, tokens: list[Token]) -> TableStmt:
        node = self.sqlglot_statement(tokens)
        if not isinstance(node, exp.Create) or str(node.args.get("kind", "")).upper() != "TABLE":
            raise self.fail(tokens[0], "expected CREATE TABLE name (column TYPE, ...)")
        return TableStmt(node, self.pf.src.loc(tokens[0].start))

    def rule(self, tokens: list[Token]) -> RuleStmt:
        name = tokens[1]
        open_ = 2
        depth = 0
        close = None
        for k in range(open_, len(tokens)):
            tt = tokens[k].token_type
            if tt is TokenType.L_PAREN:
                depth += 1
            elif tt is TokenType.R_PAREN:
                depth -= 1
                if depth == 0:
                    close = k
                    break
        if close is None:
            raise self.fail(tokens[open_], "this ( is never closed; end the rule with )")
        if close + 1 < len(tokens):
            raise self.fail(
                tokens[close + 1], "unexpected text after the rule's closing ); start a new statement"
            )
        body = tokens[open_ + 1 : close]
        if not body:
            raise self.fail(tokens[close], "the rule is empty; write Rule NAME ( expression [WHERE guard] )")
        wheres = []
        depth = 0
        for k, tok in enumerate(body):
            if tok.token_type is TokenType.L_PAREN:
                depth += 1
            elif tok.token_type is TokenType.R_PAREN:
                depth -= 1
            elif tok.token_type is TokenType.WHERE and depth == 0:
                wheres.append(k)
        if len(wheres) > 1:
            raise self.fail(body[wheres[1]], "a rule has one WHERE guard; join the conditions with AND")
        if wheres:
            k = wheres[0]
            if k == 0:
                raise self.fail(body[0], "the rule has a WHERE guard but no expression before it")
            expr = self.sqlglot_condition(body[:k], tokens[open_])
            guard: exp.Expr | None = self.sqlglot_condition(body[k + 1 :], body[k])
        else:
            expr = self.sqlglot_condition(body, tokens[open_])
            guard = None
        return RuleStmt(name.text, expr, guard, self.pf.src.loc(name.start))

    def trigger(self, tokens: list[Token]) -> TriggerStmt:
        n = len(tokens)

        def at(k: int, expected: str) -> Token:
            if k >= n:
                raise self.fail(tokens[-1], f"the trigger ends early: expected {expected}")
            return tokens[k]

        name = at(2, "the trigger's name")
        if not _is_name(name):
            raise self.fail(name, "expected the trigger's name after CREATE TRIGGER")
        timing = at(3, "AFTER")
        if timing.text.upper() != "AFTER":
            raise self.fail(
                timing, "triggers run AFTER an event; write CREATE TRIGGER name AFTER event ON trade_order"
            )
        event = at(4, "the event")
        if event.text.upper() not in TRIGGER_EVENTS:
            raise self.fail(
                event, f"unknown trigger event '{event.text}'; use ACCEPT, FILL, REJECT or CANCEL"
            )
        on = at(5, "ON trade_order")
        if on.token_type is not TokenType.ON:
            raise self.fail(on, "expected ON trade_order after the event")
        table = at(6, "trade_order")
        if table.text.lower() != "trade_order":
            raise self.fail(table, "triggers fire on trade_order events; write ON trade_order")
        k = 7
        if k < n and tokens[k].token_type is TokenType.FOR:
            words = [t.text.upper() for t in tokens[k : k + 3]]
            if words != ["FOR", "EACH", "ROW"]:
                raise self.fail(tokens[k], "expected FOR EACH ROW")
            k += 3
        when: exp.Expr | None = None
        if at(k, "WHEN or BEGIN").token_type is TokenType.WHEN:
            begin = self._find_begin(tokens, k + 1)
            when = self.sqlglot_condition(tokens[k + 1 : begin], tokens[k])
            k = begin
        if at(k, "BEGIN").token_type is not TokenType.BEGIN:
            raise self.fail(
                tokens[k], "expected BEGIN; a trigger is ... ON trade_order [WHEN cond] BEGIN stmt; ... END"
            )
        end = n - 1
        if tokens[end].token_type is not TokenType.END:
            raise self.fail(tokens[k], "this BEGIN has no END; close the trigger body with END;")
        body: list[exp.Expr] = []
        piece: list[Token] = []
        depth = 0
        for tok in tokens[k + 1 : end]:
            if tok.token_type is TokenType.L_PAREN:
                depth += 1
            elif tok.token_type is TokenType.R_PAREN:
                depth -= 1
            if tok.token_type is TokenType.SEMICOLON and depth == 0:
                if piece:
                    body.append(self.sqlglot_statement(piece))
                piece = []
            else:
                piece.append(tok)
        if piece:
            body.append(self.sqlglot_statement(piece))
        if not body:
            raise self.fail(tokens[k], "the trigger has no statements; add UPDATE or INSERT statements")
        return TriggerStmt(name.text, event.text.upper(), when, tuple(body), self.pf.src.loc(name.start))

    def _find_begin(self, tokens: list[Token], k: int) -> int:
        depth = 0
        for j in range(k, len(tokens)):
            tt = tokens[j].token_type
            if tt is TokenType.L_PAREN:
                depth += 1
            elif tt is TokenType.R_PAREN:
                depth -= 1
            elif tt is TokenType.BEGIN and depth == 0:
                return j
        raise self.fail(tokens[k - 1], "expected BEGIN after the trigger's WHEN condition")


def parse_file(src: SourceFile, tokens: list[Token]) -> ParsedFile:
    """All statements of one file that parse, and a diagnostic for each that does not."""
    pf = ParsedFile(src, tokens)
    ranges = split_statements(tokens)
    if not ranges:
        what = "has no statements" if src.text.strip() else "is empty"
        pf.diagnostics.append(
            src.error_at(0, f"the file {what}; add CREATE TABLE, CREATE TRIGGER or Rule statements")
        )
        return pf
    sp = StatementParser(pf)
    for start, end in ranges:
        toks = tokens[start:end]
        deep = nesting_problem(toks)
        if deep is not None:
            tok, levels = deep
            pf.diagnostics.append(
                pf.error_at_token(
                    tok,
                    f"nested too deeply ({levels} levels, the limit is {MAX_NESTING}); "
                    "split the expression into simpler parts",
                )
            )
            continue
        try:
            pf.statements.append(sp.statement(toks))
        except SyntaxProblem as problem:
            pf.diagnostics.append(problem.diagnostic)
            if (
                len(toks) > 2
                and toks[0].token_type is TokenType.CREATE
                and toks[1].token_type is TokenType.TABLE
            ):
                pf.broken_tables.add(toks[2].text.lower())
        except RecursionError:
            pf.diagnostics.append(
                pf.error_at_token(
                    toks[0], "the statement is too complex to parse; split it into simpler parts"
                )
            )
    return pf
