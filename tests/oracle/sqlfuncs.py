"""SQL functions registered on the oracle's connection: each is one listed difference from SQLite.

SQLite itself does the arithmetic: on 64-bit overflow of `+ - * /` and unary minus its integer
arithmetic falls back to a real number, so `rg_int` (a real result means overflow) turns that into
NULL. `SUM` is replaced because SQLite raises on overflow, even on an intermediate sum whose exact
total fits; riskgw's SUM is the exact sum, NULL when it does not fit.
"""

from __future__ import annotations

import sqlite3

INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1
INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1

SqlValue = int | str | float | bytes | None


def rg_int(x: SqlValue) -> SqlValue:
    """An integer result as it is; a real one (SQLite's overflow fallback) as NULL."""
    if isinstance(x, float):
        return None
    return x


def rg_i32(x: SqlValue) -> SqlValue:
    """A value stored into an INT column: NULL when it does not fit 32 bits."""
    if isinstance(x, int) and not INT32_MIN <= x <= INT32_MAX:
        return None
    return x


def rg_char(x: SqlValue, words: int) -> SqlValue:
    """A value stored into a CHAR column of `words` 8-byte words: NULL when its UTF-8 is longer."""
    if isinstance(x, str) and len(x.encode("utf-8")) > 8 * words:
        return None
    return x


class ExactSum:
    """SUM over the non-NULL values: NULL for none, or when the exact sum does not fit 64 bits."""

    def __init__(self) -> None:
        self.total = 0
        self.count = 0

    def step(self, x: SqlValue) -> None:
        if x is None:
            return
        if not isinstance(x, int):
            raise TypeError(f"rg_sum of a non-integer {x!r}")
        self.total += x
        self.count += 1

    def finalize(self) -> int | None:
        if self.count == 0 or not INT64_MIN <= self.total <= INT64_MAX:
            return None
        return self.total


def register(conn: sqlite3.Connection) -> None:
    conn.create_function("rg_int", 1, rg_int, deterministic=True)
    conn.create_function("rg_i32", 1, rg_i32, deterministic=True)
    conn.create_function("rg_char", 2, rg_char, deterministic=True)
    conn.create_aggregate("rg_sum", 1, ExactSum)  # type: ignore[arg-type]  # typeshed wants exact types
