"""The front end: rule files on disk to a checked `Program`, or a `CompileError` with every problem."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from riskgw.lang.ast import CompileError, Diagnostic, Program, Severity, Source
from riskgw.lang.parser import ParsedFile, RuleStmt, TableStmt, TriggerStmt, parse_file
from riskgw.lang.resolve import Problem, Resolver
from riskgw.lang.source import read_source, tokenize

# sqlglot's parser recurses about 22 frames per nesting level; MAX_NESTING levels need this many.
_RECURSION_LIMIT = 20_000


@contextlib.contextmanager
def deep_recursion() -> Iterator[None]:
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old, _RECURSION_LIMIT))
    # sqlglot logs a warning when it falls back to an opaque command; we report such statements
    # ourselves, with a position, so its warning would only repeat the file on stderr.
    sqlglot_log = logging.getLogger("sqlglot")
    old_level = sqlglot_log.level
    sqlglot_log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        sys.setrecursionlimit(old)
        sqlglot_log.setLevel(old_level)


def _too_complex(pf: ParsedFile, stmt: TableStmt | RuleStmt | TriggerStmt) -> Diagnostic:
    loc = stmt.loc
    return Diagnostic(
        Severity.ERROR,
        "the statement is too complex to check; split long expressions into several rules",
        loc,
        pf.src.line_text(loc.line),
    )


def parse_files(paths: Sequence[Path]) -> Program:
    """Read, parse and check rule files; statements keep file order, files the order given."""
    with deep_recursion():
        return _parse_files(paths)


def _parse_files(paths: Sequence[Path]) -> Program:
    diagnostics: list[Diagnostic] = []
    sources: list[Source] = []
    parsed: list[ParsedFile] = []
    if not paths:
        raise CompileError(Diagnostic(Severity.ERROR, "no rule files given", None))
    for path in paths:
        src = read_source(Path(path))
        if isinstance(src, Diagnostic):
            diagnostics.append(src)
            continue
        sources.append(Source(src.path, src.sha256))
        tokens = tokenize(src)
        if tokens and isinstance(tokens[0], Diagnostic):
            diagnostics.extend(d for d in tokens if isinstance(d, Diagnostic))
            continue
        pf = parse_file(src, [t for t in tokens if not isinstance(t, Diagnostic)])
        diagnostics.extend(pf.diagnostics)
        parsed.append(pf)

    resolver = Resolver()
    for pf in parsed:
        resolver.broken_tables |= pf.broken_tables
    # Tables first, so a rule may read a table declared further down or in a later file.
    for pf in parsed:
        for stmt in pf.statements:
            if isinstance(stmt, TableStmt):
                _check(resolver, pf, stmt, diagnostics)
    for pf in parsed:
        for stmt in pf.statements:
            if not isinstance(stmt, TableStmt):
                _check(resolver, pf, stmt, diagnostics)
    diagnostics.extend(resolver.diagnostics)

    errors = [d for d in diagnostics if d.severity is Severity.ERROR]
    if errors:
        raise CompileError(_in_file_order(diagnostics, [str(p) for p in paths]))
    return Program(
        sources=tuple(sources),
        tables=tuple(resolver.tables.values()),
        rules=tuple(resolver.rules),
        triggers=tuple(resolver.triggers),
        warnings=tuple(diagnostics),
    )


def _check(
    resolver: Resolver, pf: ParsedFile, stmt: TableStmt | RuleStmt | TriggerStmt, out: list[Diagnostic]
) -> None:
    try:
        if isinstance(stmt, TableStmt):
            resolver.table(pf, stmt)
        elif isinstance(stmt, RuleStmt):
            resolver.rule(pf, stmt)
        else:
            resolver.trigger(pf, stmt)
    except Problem as problem:
        if problem.diagnostic is not None:
            out.append(problem.diagnostic)
    except RecursionError:
        out.append(_too_complex(pf, stmt))


def _in_file_order(diagnostics: list[Diagnostic], paths: list[str]) -> list[Diagnostic]:
    """Diagnostics sorted by file (in the order given), then line and column."""
    rank = {p: i for i, p in enumerate(paths)}

    def key(d: Diagnostic) -> tuple[int, int, int]:
        if d.loc is None:
            return (-1, 0, 0)
        return (rank.get(d.loc.path, len(rank)), d.loc.line, d.loc.col)

    return sorted(diagnostics, key=key)
