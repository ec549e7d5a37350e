"""A text form of IR programs, for golden-file tests and for reading what a pass did."""

from __future__ import annotations

from collections.abc import Callable

from riskgw.doe.isa import Event
from riskgw.ir.nodes import AggSpec, IRProgram, Kind, Node, RuleCheck, Stmt, walk


def _ref(n: Node) -> str:
    if n.kind is Kind.CONST:
        return "NULL" if n.attrs[0] is None else f"#{n.attrs[0]}"
    if n.kind is Kind.INPUT:
        return f"r{n.attrs[0]}"
    if n.kind is Kind.ROWCOL:
        return f"row.{n.attrs[0]}"
    return f"%{n.id}"


def _node(n: Node, names: dict[str, dict[int, str]], ref: Callable[[Node], str]) -> str:
    args = ", ".join(ref(a) for a in n.args)
    if n.kind is Kind.ALU:
        return f"{n.op.name.lower()} {args}"
    if n.kind is Kind.LOOKUP:
        return f"lookup {n.table}@{n.epoch} [{args}]"
    if n.kind is Kind.READ:
        col = names.get(n.table, {}).get(n.attrs[1], str(n.attrs[1]))
        return f"read {n.table}.{col}@{n.epoch} {args}"
    if n.kind is Kind.SCAN:
        spec = n.attrs[0]
        return f"scan {n.table}@{n.epoch} {spec.mode.name} order={spec.order} [{args}]"
    if n.kind is Kind.ALLOC:
        pred, *key = n.args
        return f"alloc {n.table} group={n.attrs[1]} [{', '.join(ref(k) for k in key)}] if {ref(pred)}"
    if n.kind is Kind.AGG:
        s: AggSpec = n.attrs[0]
        parts = [f"agg {s.func} {s.table}@{s.epoch} group={list(s.group)} [{args}]"]
        if s.filter is not None:
            parts.append(f"filter={ref(s.filter)}")
        if s.arg is not None:
            parts.append(f"arg={ref(s.arg)}")
        if s.order is not None:
            parts.append(f"order={ref(s.order)}{' desc' if s.descending else ''} word={s.word}")
        return " ".join(parts)
    return f"{n.kind.value} {args}"


def print_program(prog: IRProgram) -> str:
    names = {t.name: {i: c.name for i, c in enumerate(t.columns)} for t in prog.tables}
    out: list[str] = []
    for t in prog.tables:
        key = ", ".join(t.columns[k].name for k in t.key)
        cols = ", ".join(c.name for c in t.columns)
        out.append(f"table {t.name}{' hidden' if t.hidden else ''} ({cols}) key ({key})")
    for k in prog.scans:
        out.append(f"scan {k.table} {k.mode.name} match={list(k.match)} order={k.order}")
    tables = {t.id: t.name for t in prog.tables}
    for (event, table), section in sorted(prog.sections.items(), key=lambda kv: (int(kv[0][0]), kv[0][1])):
        title = f"LOAD {tables[table]}" if event is Event.LOAD else event.name
        out.append(f"section {title}")
        # Number nodes by first appearance so the text does not depend on interning history.
        roots = list(section.values())
        order = [n for n in walk(roots) if n.kind not in (Kind.CONST, Kind.INPUT, Kind.ROWCOL)]
        renumber = {n.id: i for i, n in enumerate(order)}

        def ref(n: Node, renumber: dict[int, int] = renumber) -> str:
            return f"%{renumber[n.id]}" if n.id in renumber else _ref(n)

        for n in order:
            out.append(f"  %{renumber[n.id]} = {_node(n, names, ref)}")
        for item in section.items:
            if isinstance(item, RuleCheck):
                out.append(f"  rule {item.rule} guard={ref(item.guard)} expr={ref(item.expr)}")
            elif isinstance(item, Stmt):
                out.append(f"  stmt {item.table} ({item.origin})")
                for g in item.groups:
                    for a in g.allocs:
                        out.append(f"    group {g.number}: {ref(a)}")
                    for w in g.writes:
                        col = names[g.table][w.column]
                        out.append(
                            f"    group {g.number}: write {g.table}.{col} {ref(w.handle)} = {ref(w.value)}"
                            f" if {ref(w.pred)}"
                        )
    return "\n".join(out) + "\n"
