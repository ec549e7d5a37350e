"""Constant folding and identities that hold under the exact semantics (NULLs and overflow included)."""

from __future__ import annotations

from riskgw.doe.isa import ALU_OPS, Op
from riskgw.engine import alu
from riskgw.ir.nodes import Graph, IRProgram, Kind, Node, copy_node, rebuild, remap_section

# Ops whose result is always 0, 1 or NULL: for them AND(x, 1) and OR(x, 0) are x itself.
_BOOLEAN = frozenset({Op.EQ, Op.NE, Op.LT, Op.LE, Op.GT, Op.GE, Op.AND, Op.OR, Op.NOT, Op.ISNULL, Op.NOTNULL})


def _const(n: Node) -> bool:
    return n.kind is Kind.CONST


def _value(n: Node) -> int | None:
    v: int | None = n.attrs[0]
    return v


def _boolean(n: Node) -> bool:
    if n.kind is Kind.CONST:
        return _value(n) in (None, 0, 1)
    return n.kind is Kind.ALU and n.op in _BOOLEAN


def fold_node(g: Graph, node: Node, args: tuple[Node, ...]) -> Node:
    if node.kind is Kind.ALU and node.op in ALU_OPS:
        op = node.op
        if all(_const(a) for a in args):
            vals = [_value(a) for a in args] + [None] * (3 - len(args))
            return g.const(alu.evaluate(op, vals[0], vals[1], vals[2]))
        a = args[0]
        b = args[1] if len(args) > 1 else None
        if op is Op.SEL:
            c = args[2]
            if _const(c):
                v = _value(c)
                return a if v is not None and v != 0 else args[1]
            if a is args[1]:
                return a
        if op is Op.AND and b is not None:
            for x, y in ((a, b), (b, a)):
                if _const(x) and _value(x) == 0:
                    return g.const(0)
                if _const(x) and _value(x) not in (None, 0) and _boolean(y):
                    return y
        if op is Op.OR and b is not None:
            for x, y in ((a, b), (b, a)):
                if _const(x) and _value(x) not in (None, 0):
                    return g.const(1)
                if _const(x) and _value(x) == 0 and _boolean(y):
                    return y
        if op is Op.COALESCE and b is not None:
            if _const(a):
                return a if _value(a) is not None else b
            if _const(b) and _value(b) is None:
                return a
        if op in (Op.ADD, Op.SUB) and b is not None and _const(b) and _value(b) == 0:
            return a
        if op is Op.ADD and _const(a) and _value(a) == 0 and b is not None:
            return b
        if op is Op.MUL and b is not None:
            for x, y in ((a, b), (b, a)):
                if _const(x) and _value(x) == 1:
                    return y
        if op is Op.NOT and a.kind is Kind.ALU and a.op is Op.NOT and _boolean(a.args[0]):
            return a.args[0]
    if node.kind in (Kind.LOOKUP, Kind.SCAN) and any(_const(a) and _value(a) is None for a in args):
        return g.const(None)
    if node.kind is Kind.READ and _const(args[0]) and _value(args[0]) is None:
        return g.const(None)
    return copy_node(g, node, args)


def fold_constants(prog: IRProgram) -> IRProgram:
    mapping = rebuild(prog.graph, prog.roots(), fold_node)
    prog.sections = {k: remap_section(s, mapping) for k, s in prog.sections.items()}
    return prog
