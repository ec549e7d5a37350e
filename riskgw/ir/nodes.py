"""The IR: a typed DAG of 64-bit word values, and the statements that change tables.

Every value is one word (a CHAR is several nodes, one per word). Nodes are hash-consed by a
`Graph`: building the same node twice gives the same object, so equality is identity and common
sub-expressions are shared by construction.

Table reads carry an *epoch*: the number of write groups on that table that must have happened
before the read. Two reads of a table at the same epoch see the same state and are merged; a read
after a write is a different node. Write groups are the steps a statement takes on a table (an
INSERT allocates the row in one group and fills it in the next), numbered per table and section.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from riskgw.doe.isa import Op, ScanMode


class Kind(enum.Enum):
    CONST = "const"  # attrs: (value | None,)
    INPUT = "input"  # attrs: (register,): an event field word or a loaded row's word
    ALU = "alu"  # attrs: (Op,), args: sources in instruction order
    LOOKUP = "lookup"  # attrs: (table, epoch), args: key words -> row handle
    READ = "read"  # attrs: (table, column, epoch), args: (handle,)
    SCAN = "scan"  # attrs: (scan spec, table, epoch), args: key words -> row handle
    ALLOC = "alloc"  # attrs: (table, group), args: (predicate, *key words) -> new row handle
    ROWCOL = "rowcol"  # attrs: (column,): a placeholder for "this row's column" in aggregate templates
    AGG = "agg"  # attrs: (AggSpec,), args: group key words; replaced by the incremental pass
    BEST = "best"  # the row ORDER BY ... LIMIT 1 picks, as a handle; replaced by the incremental pass


class Node:
    """One IR value. Build nodes through a Graph only."""

    __slots__ = ("args", "attrs", "id", "kind")

    def __init__(self, kind: Kind, attrs: tuple[Any, ...], args: tuple[Node, ...], id: int) -> None:
        self.kind = kind
        self.attrs = attrs
        self.args = args
        self.id = id

    @property
    def op(self) -> Op:
        assert self.kind is Kind.ALU
        op: Op = self.attrs[0]
        return op

    @property
    def table(self) -> str:
        assert self.kind in (Kind.LOOKUP, Kind.READ, Kind.SCAN, Kind.ALLOC)
        name: str = self.attrs[1] if self.kind is Kind.SCAN else self.attrs[0]
        return name

    @property
    def epoch(self) -> int:
        """For table reads: how many write groups on the table come before this read."""
        if self.kind is Kind.LOOKUP:
            e: int = self.attrs[1]
        elif self.kind in (Kind.READ, Kind.SCAN):
            e = self.attrs[2]
        else:
            raise AssertionError(self.kind)
        return e

    def __repr__(self) -> str:
        return f"%{self.id}"


@dataclass(frozen=True)
class AggSpec:
    """An aggregate over the group of `table`'s rows whose `group` columns equal the node's args.

    `filter`, `arg`, `order` and `select` are templates over the row (ROWCOL placeholders).
    `func` is one of SUM, COUNT, COUNT_STAR, AVG, MIN, MAX or FIRST (ORDER BY ... LIMIT 1, which
    returns word `word` of `select`).
    """

    table: str
    group: tuple[int, ...]  # physical columns
    filter: Node | None
    func: str
    arg: Node | None
    order: Node | None
    descending: bool
    select: tuple[Node, ...]
    word: int
    epoch: int  # of `table`, at the point of the query
    origin: str  # "rule NAME" or "trigger NAME", for warnings


class Graph:
    """Interns nodes: the same (kind, attrs, args) is always the same Node."""

    def __init__(self) -> None:
        self._nodes: dict[tuple[Any, ...], Node] = {}

    def make(self, kind: Kind, attrs: tuple[Any, ...], args: tuple[Node, ...] = ()) -> Node:
        key = (kind, attrs, tuple(a.id for a in args))
        node = self._nodes.get(key)
        if node is None:
            node = Node(kind, attrs, args, len(self._nodes))
            self._nodes[key] = node
        return node

    def __len__(self) -> int:
        return len(self._nodes)

    # ------------------------------------------------------------------ shorthands

    def const(self, value: int | None) -> Node:
        return self.make(Kind.CONST, (value,))

    def input(self, reg: int) -> Node:
        return self.make(Kind.INPUT, (reg,))

    def alu(self, op: Op, *args: Node) -> Node:
        return self.make(Kind.ALU, (op,), args)

    def lookup(self, table: str, epoch: int, key: tuple[Node, ...]) -> Node:
        return self.make(Kind.LOOKUP, (table, epoch), key)

    def read(self, table: str, column: int, epoch: int, handle: Node) -> Node:
        return self.make(Kind.READ, (table, column, epoch), (handle,))

    def scan(self, spec: ScanSpecKey, table: str, epoch: int, key: tuple[Node, ...]) -> Node:
        return self.make(Kind.SCAN, (spec, table, epoch), key)

    def alloc(self, table: str, group: int, pred: Node, key: tuple[Node, ...]) -> Node:
        return self.make(Kind.ALLOC, (table, group), (pred, *key))

    def rowcol(self, column: int) -> Node:
        return self.make(Kind.ROWCOL, (column,))

    def agg(self, spec: AggSpec, key: tuple[Node, ...]) -> Node:
        return self.make(Kind.AGG, (spec,), key)


@dataclass(frozen=True)
class ScanSpecKey:
    """What a SCAN looks for; the code generator numbers the distinct ones."""

    table: str
    mode: ScanMode
    match: tuple[int, ...]
    order: int


# --------------------------------------------------------------------------- statements


@dataclass
class Write:
    """One cell write: table.column at `handle` = value, when `pred` is TRUE."""

    column: int
    handle: Node
    value: Node
    pred: Node


@dataclass
class Group:
    """The writes of one step of a statement on one table; they take effect together.

    `number` is the group's index among the table's groups in its section: reads at epoch
    `number + 1` or later see its effects.
    """

    table: str
    number: int
    writes: list[Write] = field(default_factory=list)
    allocs: list[Node] = field(default_factory=list)  # ALLOC nodes (they are values too)


@dataclass
class RowChange:
    """What a statement did to one row, for the incremental-aggregate pass.

    `old` and `new` map every physical column to its value before and after (old is None for
    an insert); the change happened when `pred` is TRUE; `handle` is the row.
    """

    pred: Node
    handle: Node
    old: dict[int, Node] | None
    new: dict[int, Node]
    written: frozenset[int]  # columns the statement assigns (all of them for an insert)


@dataclass
class Stmt:
    """A statement on `table`: its write groups in order, and the row changes it makes."""

    table: str
    groups: list[Group]
    changes: list[RowChange]
    origin: str  # "trigger NAME" or "load TABLE", for diagnostics


@dataclass
class RuleCheck:
    rule: int
    guard: Node
    expr: Node


Item = Stmt | RuleCheck


@dataclass
class Section:
    items: list[Item] = field(default_factory=list)

    def values(self) -> Iterator[Node]:
        """The roots: every node an item needs."""
        for item in self.items:
            if isinstance(item, RuleCheck):
                yield item.guard
                yield item.expr
            else:
                for g in item.groups:
                    yield from g.allocs
                    for w in g.writes:
                        yield w.handle
                        yield w.value
                        yield w.pred


def walk(roots: Iterable[Node]) -> list[Node]:
    """Every node reachable from roots, operands before users (iterative: DAGs can be deep)."""
    seen: set[int] = set()
    order: list[Node] = []
    for root in roots:
        if root.id in seen:
            continue
        stack: list[tuple[Node, int]] = [(root, 0)]
        while stack:
            node, i = stack.pop()
            if i == 0 and node.id in seen:
                continue
            children = _children(node)
            if i < len(children):
                stack.append((node, i + 1))
                child = children[i]
                if child.id not in seen:
                    stack.append((child, 0))
            else:
                if node.id not in seen:
                    seen.add(node.id)
                    order.append(node)
    return order


def _children(node: Node) -> tuple[Node, ...]:
    if node.kind is Kind.AGG:
        spec: AggSpec = node.attrs[0]
        extra = [n for n in (spec.filter, spec.arg, spec.order) if n is not None]
        return node.args + tuple(extra) + spec.select
    return node.args


def rebuild(
    graph: Graph, roots: Iterable[Node], fn: Callable[[Graph, Node, tuple[Node, ...]], Node]
) -> dict[int, Node]:
    """Rebuild every node reachable from roots bottom-up into `graph`.

    `fn(graph, old_node, new_args)` returns the new node for old_node given its rebuilt args;
    the result maps old node ids to new nodes.
    """
    mapping: dict[int, Node] = {}
    for node in walk(roots):
        if node.kind is Kind.AGG:
            spec: AggSpec = node.attrs[0]

            def m(n: Node | None) -> Node | None:
                return None if n is None else mapping[n.id]

            new_spec = AggSpec(
                spec.table,
                spec.group,
                m(spec.filter),
                spec.func,
                m(spec.arg),
                m(spec.order),
                spec.descending,
                tuple(mapping[s.id] for s in spec.select),
                spec.word,
                spec.epoch,
                spec.origin,
            )
            new_args = tuple(mapping[a.id] for a in node.args)
            mapping[node.id] = fn(graph, Node(Kind.AGG, (new_spec,), node.args, -1), new_args)
            continue
        new_args = tuple(mapping[a.id] for a in node.args)
        mapping[node.id] = fn(graph, node, new_args)
    return mapping


def copy_node(graph: Graph, node: Node, args: tuple[Node, ...]) -> Node:
    return graph.make(node.kind, node.attrs, args)


def remap_section(section: Section, mapping: dict[int, Node]) -> Section:
    """The same section with every node replaced through `mapping`."""

    def m(n: Node) -> Node:
        return mapping[n.id]

    items: list[Item] = []
    for item in section.items:
        if isinstance(item, RuleCheck):
            items.append(RuleCheck(item.rule, m(item.guard), m(item.expr)))
            continue
        groups = [
            Group(
                g.table,
                g.number,
                [Write(w.column, m(w.handle), m(w.value), m(w.pred)) for w in g.writes],
                [m(a) for a in g.allocs],
            )
            for g in item.groups
        ]
        changes = [
            RowChange(
                m(c.pred),
                m(c.handle),
                None if c.old is None else {k: m(v) for k, v in c.old.items()},
                {k: m(v) for k, v in c.new.items()},
                c.written,
            )
            for c in item.changes
        ]
        items.append(Stmt(item.table, groups, changes, item.origin))
    return Section(items)


def section_roots(section: Section) -> list[Node]:
    roots = list(section.values())
    for item in section.items:
        if isinstance(item, Stmt):
            for c in item.changes:
                roots.append(c.pred)
                roots.append(c.handle)
                roots.extend(c.new.values())
                if c.old is not None:
                    roots.extend(c.old.values())
    return roots


@dataclass
class IRProgram:
    """The whole program in IR: table layouts, code sections, rules and what the passes found."""

    graph: Graph
    tables: list[Any]  # riskgw.doe.image.TableConfig, user tables first, then hidden ones
    sections: dict[tuple[Any, int], Section]  # (riskgw.doe.isa.Event, table id for LOAD else 0)
    rules: list[Any]  # riskgw.doe.image.RuleInfo
    sources: list[Any]  # riskgw.doe.image.SourceInfo
    scans: list[ScanSpecKey] = field(default_factory=list)
    warnings: list[Any] = field(default_factory=list)  # riskgw.lang.ast.Diagnostic

    def table(self, name: str) -> Any:
        for t in self.tables:
            if t.name == name:
                return t
        raise KeyError(name)

    def roots(self) -> list[Node]:
        out: list[Node] = []
        for s in self.sections.values():
            out.extend(section_roots(s))
        return out
