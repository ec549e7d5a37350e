"""The rule language's sqlglot dialect: SQLite's grammar with riskgw's type names and positions.

Only class-level tables are extended (keywords, primary and unary parsers), so a new sqlglot minor
release breaks here loudly rather than somewhere inside the parser.
"""

from __future__ import annotations

from typing import Any, ClassVar

from sqlglot import exp
from sqlglot.dialects.sqlite import SQLite
from sqlglot.parsers.sqlite import SQLiteParser
from sqlglot.tokenizer_core import Token, TokenType


def _null(parser: Any, token: Token) -> exp.Expr:
    # sqlglot's NULL carries no position; a diagnostic about a NULL must still point at it.
    expr: exp.Expr = parser.expression(exp.Null(), token)
    return expr


def _not(parser: Any) -> exp.Expr:
    token = parser._prev
    expr: exp.Expr = parser.expression(exp.Not(this=parser._parse_equality()), token)
    return expr


def _neg(parser: Any) -> exp.Expr:
    token = parser._prev
    expr: exp.Expr = parser.expression(exp.Neg(this=parser._parse_unary()), token)
    return expr


class RiskGW(SQLite):
    """`INT8` is the 64-bit integer (sqlglot's base tokenizer reads it as TINYINT)."""

    class Tokenizer(SQLite.Tokenizer):
        KEYWORDS: ClassVar[dict[str, TokenType]] = {
            **SQLite.Tokenizer.KEYWORDS,
            "INT8": TokenType.BIGINT,
        }

    class Parser(SQLiteParser):
        PRIMARY_PARSERS: ClassVar[dict[TokenType, Any]] = {
            **SQLiteParser.PRIMARY_PARSERS,
            TokenType.NULL: _null,
        }
        UNARY_PARSERS: ClassVar[dict[TokenType, Any]] = {
            **SQLiteParser.UNARY_PARSERS,
            TokenType.NOT: _not,
            TokenType.DASH: _neg,
        }


DIALECT = RiskGW()
