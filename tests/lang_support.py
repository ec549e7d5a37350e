"""Helpers for the rule-language tests: write a rule file, compile it, look at the diagnostics."""

from __future__ import annotations

from pathlib import Path

import pytest

from riskgw.lang.ast import CompileError, Diagnostic, Program, Severity
from riskgw.lang.frontend import parse_files

TABLES = """\
create table acct (account_id INT not null, balance INT8 null, name CHAR(8), primary key (account_id));
create table pos (account_id INT not null, ticket_id CHAR(16) not null, qty INT8, price INT8);
"""


def write(tmp_path: Path, text: str | bytes, name: str = "rules.sql") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def compile_text(tmp_path: Path, text: str, name: str = "rules.sql") -> Program:
    return parse_files([write(tmp_path, text, name)])


def errors(tmp_path: Path, text: str | bytes, name: str = "rules.sql") -> list[Diagnostic]:
    path = write(tmp_path, text, name)
    with pytest.raises(CompileError) as info:
        parse_files([path])
    return [d for d in info.value.diagnostics if d.severity is Severity.ERROR]


def one_error(tmp_path: Path, text: str | bytes, name: str = "rules.sql") -> Diagnostic:
    found = errors(tmp_path, text, name)
    assert len(found) == 1, [d.render() for d in found]
    return found[0]


def assert_at(d: Diagnostic, path: Path, line: int, col: int, *fragments: str) -> None:
    assert d.loc is not None, d.render()
    assert (d.loc.path, d.loc.line, d.loc.col) == (str(path), line, col), d.render()
    for fragment in fragments:
        assert fragment in d.message, d.render()
    assert "\n" not in d.message
