"""Levelling: schedule a section's DAG onto bundles of at most `lanes` instructions.

Every value is placed in the earliest bundle after its operands, so latency grows with the depth
of the expressions, not with how many rules there are (up to the lane count per level). Table
accesses keep program order per table: a read at epoch e comes after the writes of group e - 1,
and the writes of group n come no earlier than every read that must see the state before them
(the same bundle is fine: a bundle reads before it writes).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from riskgw.ir.nodes import Kind, Node, RuleCheck, Section, Stmt, Write, walk

_PLACED_KINDS = frozenset({Kind.ALU, Kind.LOOKUP, Kind.READ, Kind.SCAN, Kind.ALLOC})
_READS = frozenset({Kind.LOOKUP, Kind.READ, Kind.SCAN})


@dataclass(frozen=True)
class WriteOp:
    table: str
    write: Write


Entry = Node | WriteOp | RuleCheck


class _Scheduler:
    def __init__(self, section: Section, lanes: int) -> None:
        self.lanes = lanes
        self.bundle_of: dict[int, int] = {}
        self.used: list[int] = []
        self.entries: list[list[Entry]] = []
        self.group_last: dict[str, dict[int, int]] = defaultdict(dict)
        self.reads: dict[str, list[Node]] = defaultdict(list)
        # Only what instructions need: the old/new row values kept for the aggregate pass are not code.
        for n in walk(list(section.values())):
            if n.kind in _READS:
                self.reads[n.table].append(n)

    def slot(self, lower: int, entry: Entry) -> int:
        b = lower
        while True:
            while len(self.used) <= b:
                self.used.append(0)
                self.entries.append([])
            if self.used[b] < self.lanes:
                self.used[b] += 1
                self.entries[b].append(entry)
                return b
            b += 1

    def ready(self, nodes: list[Node]) -> int:
        """The first bundle in which all of `nodes` can be read."""
        lower = 0
        for n in nodes:
            self.place(n)
            if n.kind in _PLACED_KINDS:
                lower = max(lower, self.bundle_of[n.id] + 1)
        return lower

    def place(self, root: Node) -> None:
        if root.kind not in _PLACED_KINDS or root.id in self.bundle_of:
            return
        for node in walk([root]):
            if node.kind not in _PLACED_KINDS or node.id in self.bundle_of:
                continue
            lower = 0
            for a in node.args:
                if a.kind in _PLACED_KINDS:
                    lower = max(lower, self.bundle_of[a.id] + 1)
            if node.kind in _READS and node.epoch > 0:
                lower = max(lower, self.group_last[node.table][node.epoch - 1] + 1)
            if node.kind is Kind.ALLOC:
                raise AssertionError("ALLOC is placed with its group")
            self.bundle_of[node.id] = self.slot(lower, node)

    def group(self, table: str, number: int, allocs: list[Node], writes: list[Write]) -> None:
        lower = 0
        if number > 0:
            lower = self.group_last[table][number - 1] + 1
        for r in self.reads[table]:
            if r.epoch <= number:
                self.place(r)
                lower = max(lower, self.bundle_of[r.id])
        last = lower
        for a in allocs:
            b = self.slot(max(lower, self.ready(list(a.args))), a)
            self.bundle_of[a.id] = b
            last = max(last, b)
        for w in writes:
            b = self.slot(max(lower, self.ready([w.handle, w.value, w.pred])), WriteOp(table, w))
            last = max(last, b)
        self.group_last[table][number] = last

    def run(self, section: Section) -> list[list[Entry]]:
        for item in section.items:
            if isinstance(item, RuleCheck):
                self.slot(self.ready([item.guard, item.expr]), item)
            elif isinstance(item, Stmt):
                for g in item.groups:
                    self.group(g.table, g.number, g.allocs, g.writes)
        return [bundle for bundle in self.entries if bundle]


def level(section: Section, lanes: int) -> list[list[Entry]]:
    """The section's instructions grouped into bundles, in execution order."""
    return _Scheduler(section, lanes).run(section)
