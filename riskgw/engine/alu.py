"""The reference semantics of every ALU opcode (docs/semantics.md, riskgw/doe/isa.py).

One function per opcode over `int | None` (None is NULL). The software engine executes these (or
code generated from them), and the HDL's ALU is tested against them op by op.
"""

from __future__ import annotations

from collections.abc import Callable

from riskgw.doe.isa import INT32_MAX, INT32_MIN, INT64_MAX, INT64_MIN, Op

Value = int | None


def _fit(v: int) -> Value:
    return v if INT64_MIN <= v <= INT64_MAX else None


def add(a: Value, b: Value) -> Value:
    return None if a is None or b is None else _fit(a + b)


def sub(a: Value, b: Value) -> Value:
    return None if a is None or b is None else _fit(a - b)


def mul(a: Value, b: Value) -> Value:
    return None if a is None or b is None else _fit(a * b)


def _trunc_div(a: int, b: int) -> int:
    q = abs(a) // abs(b)
    return q if (a < 0) == (b < 0) else -q


def div(a: Value, b: Value) -> Value:
    if a is None or b is None or b == 0:
        return None
    return _fit(_trunc_div(a, b))


def mod(a: Value, b: Value) -> Value:
    if a is None or b is None or b == 0:
        return None
    if b == -1:
        return 0
    return a - b * _trunc_div(a, b)


def neg(a: Value) -> Value:
    return None if a is None else _fit(-a)


def abs_(a: Value) -> Value:
    return None if a is None else _fit(abs(a))


def eq(a: Value, b: Value) -> Value:
    return None if a is None or b is None else int(a == b)


def ne(a: Value, b: Value) -> Value:
    return None if a is None or b is None else int(a != b)


def lt(a: Value, b: Value) -> Value:
    return None if a is None or b is None else int(a < b)


def le(a: Value, b: Value) -> Value:
    return None if a is None or b is None else int(a <= b)


def gt(a: Value, b: Value) -> Value:
    return None if a is None or b is None else int(a > b)


def ge(a: Value, b: Value) -> Value:
    return None if a is None or b is None else int(a >= b)


def and_(a: Value, b: Value) -> Value:
    if a == 0 or b == 0:
        return 0
    if a is None or b is None:
        return None
    return 1


def or_(a: Value, b: Value) -> Value:
    if (a is not None and a != 0) or (b is not None and b != 0):
        return 1
    if a is None or b is None:
        return None
    return 0


def not_(a: Value) -> Value:
    return None if a is None else int(a == 0)


def isnull(a: Value) -> Value:
    return int(a is None)


def notnull(a: Value) -> Value:
    return int(a is not None)


def sel(a: Value, b: Value, c: Value) -> Value:
    """SEL: a if c is TRUE else b (operands in instruction order a, b, c)."""
    return a if c is not None and c != 0 else b


def coalesce(a: Value, b: Value) -> Value:
    return a if a is not None else b


def range32(a: Value) -> Value:
    return a if a is not None and INT32_MIN <= a <= INT32_MAX else None


def mov(a: Value) -> Value:
    return a


UNARY: dict[Op, Callable[[Value], Value]] = {
    Op.MOV: mov,
    Op.NEG: neg,
    Op.ABS: abs_,
    Op.NOT: not_,
    Op.ISNULL: isnull,
    Op.NOTNULL: notnull,
    Op.RANGE32: range32,
}
BINARY: dict[Op, Callable[[Value, Value], Value]] = {
    Op.ADD: add,
    Op.SUB: sub,
    Op.MUL: mul,
    Op.DIV: div,
    Op.MOD: mod,
    Op.EQ: eq,
    Op.NE: ne,
    Op.LT: lt,
    Op.LE: le,
    Op.GT: gt,
    Op.GE: ge,
    Op.AND: and_,
    Op.OR: or_,
    Op.COALESCE: coalesce,
}


def evaluate(op: Op, a: Value, b: Value = None, c: Value = None) -> Value:
    """Result of ALU opcode `op` on sources a, b, c."""
    if op in UNARY:
        return UNARY[op](a)
    if op in BINARY:
        return BINARY[op](a, b)
    if op is Op.SEL:
        return sel(a, b, c)
    raise ValueError(f"{op.name} is not an ALU opcode")
