"""Incremental aggregates: every aggregate becomes a keyed lookup of a table the program maintains.

For each distinct (table, group columns, row filter) the pass adds a hidden table keyed by the
group, with the state its aggregates need:

| aggregate | state | kept up to date when rows are |
| --- | --- | --- |
| COUNT(*) | rows | inserted or updated |
| COUNT(x), SUM(x), AVG(x) | non-NULL count, 128-bit sum as (high, low) words | inserted or updated |
| MIN(x), MAX(x) | the extreme | inserted (updates of what they read: see below) |
| ORDER BY o LIMIT 1 | the best row's handle, its `o`, whether `o` is NULL | inserted |

After every statement that changes the table, the pass appends statements that fold the change
into the hidden table (remove the old row's contribution, add the new one), so a check costs the
same at any number of rows. MIN, MAX and ORDER BY cannot be kept that way when a statement updates
a column they read; those become a SCAN of the table (O(rows)), with a warning naming the rule.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from riskgw.doe.image import PhysColumn, TableConfig
from riskgw.doe.isa import INT64_MAX, INT64_MIN, MAX_KEY_WORDS, ColType, Op, ScanMode
from riskgw.ir.nodes import (
    AggSpec,
    Graph,
    Group,
    IRProgram,
    Kind,
    Node,
    RowChange,
    ScanSpecKey,
    Section,
    Stmt,
    Write,
    copy_node,
    rebuild,
    remap_section,
    section_roots,
    walk,
)
from riskgw.lang import ast

State = dict[str, Node]


@dataclass
class _View:
    table: str
    group: tuple[int, ...]
    filter: Node | None
    name: str = ""
    id: int = 0
    sums: list[Node] = field(default_factory=list)  # args of COUNT/SUM/AVG
    extremes: list[tuple[str, Node]] = field(default_factory=list)  # (MIN|MAX, arg)
    firsts: list[tuple[Node, bool]] = field(default_factory=list)  # (order, descending)
    columns: dict[str, int] = field(default_factory=dict)  # state name -> physical column

    @property
    def relevant(self) -> set[int]:
        """Base columns whose update changes the COUNT/SUM state."""
        cols = set(self.group)
        for n in ([self.filter] if self.filter is not None else []) + self.sums:
            cols |= _rowcols(n)
        return cols


def _rowcols(node: Node) -> set[int]:
    return {n.attrs[0] for n in walk([node]) if n.kind is Kind.ROWCOL}


class _Pass:
    def __init__(self, prog: IRProgram) -> None:
        self.prog = prog
        self.g: Graph = prog.graph
        self.null = self.g.const(None)
        self.zero = self.g.const(0)
        self.one = self.g.const(1)
        self.views: dict[tuple[str, tuple[int, ...], int | None], _View] = {}
        self.scans: dict[ScanSpecKey, int] = {}
        self.scanned: set[int] = set()  # ids of AGG nodes computed by SCAN
        self.warnings: list[ast.Diagnostic] = []

    # ------------------------------------------------------------------ analysis

    def updated_columns(self) -> dict[str, dict[int, str]]:
        """Per table, the columns some statement updates (not inserts), with the statement's origin."""
        out: dict[str, dict[int, str]] = {}
        for section in self.prog.sections.values():
            for item in section.items:
                if isinstance(item, Stmt):
                    for c in item.changes:
                        if c.old is not None:
                            for col in c.written:
                                out.setdefault(item.table, {}).setdefault(col, item.origin)
        return out

    def plan(self) -> None:
        updated = self.updated_columns()
        for section in self.prog.sections.values():
            for node in walk(section_roots(section)):
                if node.kind is not Kind.AGG:
                    continue
                spec: AggSpec = node.attrs[0]
                key = (spec.table, spec.group, None if spec.filter is None else spec.filter.id)
                view = self.views.get(key)
                if view is None:
                    view = self.views[key] = _View(spec.table, spec.group, spec.filter)
                if spec.func in ("COUNT_STAR",):
                    continue
                if spec.func in ("COUNT", "SUM", "AVG"):
                    assert spec.arg is not None
                    if spec.arg not in view.sums:
                        view.sums.append(spec.arg)
                    continue
                reads = set(spec.group)
                if spec.filter is not None:
                    reads |= _rowcols(spec.filter)
                target = spec.arg if spec.func in ("MIN", "MAX") else spec.order
                assert target is not None
                reads |= _rowcols(target)
                hit = sorted(set(updated.get(spec.table, {})) & reads)
                if hit:
                    self.plan_scan(node, spec, target, updated[spec.table][hit[0]], hit[0])
                elif spec.func in ("MIN", "MAX"):
                    if (spec.func, target) not in view.extremes:
                        view.extremes.append((spec.func, target))
                elif (target, spec.descending) not in view.firsts:
                    view.firsts.append((target, spec.descending))

    def plan_scan(self, node: Node, spec: AggSpec, target: Node, writer: str, column: int) -> None:
        base: TableConfig = self.prog.table(spec.table)
        what = "ORDER BY ... LIMIT 1" if spec.func == "FIRST" else spec.func
        if spec.filter is not None or target.kind is not Kind.ROWCOL:
            raise ast.CompileError(
                ast.Diagnostic(
                    ast.Severity.ERROR,
                    f"{spec.origin}: {what} over {spec.table} cannot be kept up to date because {writer} "
                    f"updates {spec.table}.{base.columns[column].name}, and it has a condition or an "
                    f"expression that a scan cannot evaluate: aggregate a plain column with only equalities",
                    None,
                )
            )
        if len(spec.group) > MAX_KEY_WORDS:
            raise ast.CompileError(
                ast.Diagnostic(ast.Severity.ERROR, f"{spec.origin}: too many group columns for a scan", None)
            )
        mode = {
            "MIN": ScanMode.MIN,
            "MAX": ScanMode.MAX,
            "FIRST": ScanMode.FIRST_DESC if spec.descending else ScanMode.FIRST_ASC,
        }[spec.func]
        key = ScanSpecKey(spec.table, mode, spec.group, target.attrs[0])
        if key not in self.scans:
            self.scans[key] = len(self.scans)
            self.warnings.append(
                ast.Diagnostic(
                    ast.Severity.WARNING,
                    f"{spec.origin}: {what} over {spec.table} scans the table on every use (O(rows)) "
                    f"because {writer} updates {spec.table}.{base.columns[column].name}",
                    None,
                )
            )
        self.scanned.add(node.id)

    def build_tables(self) -> None:
        next_id = len(self.prog.tables)
        for n, view in enumerate(self.views.values()):
            base: TableConfig = self.prog.table(view.table)
            cols: list[PhysColumn] = []
            if view.group:
                for p in view.group:
                    c = base.columns[p]
                    cols.append(PhysColumn(f"g_{c.name}", len(cols), 0, c.type, c.nullable, c.char_size))
            else:
                cols.append(PhysColumn("g_all", 0, 0, ColType.INT64, False))
            key = tuple(range(len(cols)))
            if len(key) > MAX_KEY_WORDS:
                raise ast.CompileError(
                    ast.Diagnostic(
                        ast.Severity.ERROR,
                        f"an aggregate over {view.table} groups by {len(key)} words; "
                        f"the most is {MAX_KEY_WORDS}",
                        None,
                    )
                )

            state = ["rows"]
            for i in range(len(view.sums)):
                state += [f"count{i}", f"sum_hi{i}", f"sum_lo{i}"]
            state += [f"ext{i}" for i in range(len(view.extremes))]
            for i in range(len(view.firsts)):
                state += [f"best_row{i}", f"best_val{i}", f"best_null{i}"]
            for name in state:
                view.columns[name] = len(cols)
                cols.append(PhysColumn(name, len(cols), 0, ColType.INT64, True))
            view.id = next_id + n
            view.name = f"__agg{n}_{view.table}"
            self.prog.tables.append(TableConfig(view.id, view.name, tuple(cols), key, hidden=True))

    # ------------------------------------------------------------------ arithmetic helpers

    def alu(self, op: Op, *args: Node) -> Node:
        return self.g.alu(op, *args)

    def flag(self, cond: Node) -> Node:
        """1 when cond is TRUE, else 0."""
        return self.alu(Op.SEL, self.one, self.zero, cond)

    def acc_add(self, hi: Node, lo: Node, x: Node) -> tuple[Node, Node]:
        """(hi, lo) + x for a 128-bit value hi * 2^64 + lo (lo signed), x not NULL."""
        g, big, small = self.g, self.g.const(INT64_MAX), self.g.const(INT64_MIN)
        t = self.alu(Op.ADD, lo, x)
        fits = self.alu(Op.NOTNULL, t)
        up = self.alu(Op.GT, x, self.zero)
        # lo + x - 2^64 (positive overflow: lo, x > 0) and lo + x + 2^64 (negative: lo, x < 0),
        # in steps that cannot overflow on the branch that is taken.
        wrap_up = self.alu(
            Op.SUB, self.alu(Op.SUB, self.alu(Op.ADD, self.alu(Op.SUB, lo, big), x), big), g.const(2)
        )
        wrap_down = self.alu(
            Op.ADD, self.alu(Op.ADD, self.alu(Op.ADD, self.alu(Op.SUB, lo, small), x), big), self.one
        )
        new_lo = self.alu(Op.SEL, t, self.alu(Op.SEL, wrap_up, wrap_down, up), fits)
        carry = self.alu(Op.SEL, self.alu(Op.ADD, hi, self.one), self.alu(Op.SUB, hi, self.one), up)
        new_hi = self.alu(Op.SEL, hi, carry, fits)
        return new_hi, new_lo

    def acc_sub(self, hi: Node, lo: Node, x: Node) -> tuple[Node, Node]:
        """(hi, lo) - x, as adding -x (which is 2^63 + ... when x is the smallest value)."""
        is_min = self.alu(Op.EQ, x, self.g.const(INT64_MIN))
        first = self.alu(Op.SEL, self.g.const(INT64_MAX), self.alu(Op.NEG, x), is_min)
        hi, lo = self.acc_add(hi, lo, first)
        return self.acc_add(hi, lo, self.flag(is_min))

    def instantiate(self, template: Node, row: dict[int, Node]) -> Node:
        def fn(g: Graph, node: Node, args: tuple[Node, ...]) -> Node:
            if node.kind is Kind.ROWCOL:
                return row[node.attrs[0]]
            return copy_node(g, node, args)

        return rebuild(self.g, [template], fn)[template.id]

    # ------------------------------------------------------------------ maintenance

    def empty_state(self, view: _View) -> State:
        state = {"rows": self.zero}
        for i in range(len(view.sums)):
            state |= {f"count{i}": self.zero, f"sum_hi{i}": self.zero, f"sum_lo{i}": self.zero}
        for i in range(len(view.extremes)):
            state[f"ext{i}"] = self.null
        for i in range(len(view.firsts)):
            state |= {f"best_row{i}": self.null, f"best_val{i}": self.null, f"best_null{i}": self.zero}
        return state

    def fold(self, view: _View, state: State, row: dict[int, Node], handle: Node, add: bool) -> State:
        """The state after adding (or removing) one row's contribution."""
        out = dict(state)
        f = self.one if view.filter is None else self.instantiate(view.filter, row)
        step = self.alu(Op.ADD if add else Op.SUB, state["rows"], self.flag(f))
        out["rows"] = step
        for i, arg in enumerate(view.sums):
            x = self.instantiate(arg, row)
            present = (
                self.alu(Op.AND, f, self.alu(Op.NOTNULL, x))
                if view.filter is not None
                else self.alu(Op.NOTNULL, x)
            )
            out[f"count{i}"] = self.alu(Op.ADD if add else Op.SUB, state[f"count{i}"], self.flag(present))
            value = self.alu(Op.SEL, x, self.zero, present)
            acc = self.acc_add if add else self.acc_sub
            out[f"sum_hi{i}"], out[f"sum_lo{i}"] = acc(state[f"sum_hi{i}"], state[f"sum_lo{i}"], value)
        if not add:
            return out
        for i, (func, arg) in enumerate(view.extremes):
            x = self.instantiate(arg, row)
            cur = state[f"ext{i}"]
            better = self.alu(Op.LT if func == "MIN" else Op.GT, x, cur)
            take = self.alu(
                Op.AND,
                self.alu(Op.AND, f, self.alu(Op.NOTNULL, x)),
                self.alu(Op.OR, self.alu(Op.ISNULL, cur), better),
            )
            out[f"ext{i}"] = self.alu(Op.SEL, x, cur, take)
        for i, (order, desc) in enumerate(view.firsts):
            o = self.instantiate(order, row)
            best_row, best_val, best_null = (
                state[f"best_row{i}"],
                state[f"best_val{i}"],
                state[f"best_null{i}"],
            )
            empty = self.alu(Op.ISNULL, best_row)
            o_null = self.alu(Op.ISNULL, o)
            o_set = self.alu(Op.NOTNULL, o)
            if desc:  # NULLs last
                beats = self.alu(Op.AND, o_set, self.alu(Op.OR, best_null, self.alu(Op.GT, o, best_val)))
            else:  # NULLs first
                not_null_best = self.alu(Op.NOT, best_null)
                beats = self.alu(
                    Op.OR,
                    self.alu(Op.AND, o_null, not_null_best),
                    self.alu(Op.AND, self.alu(Op.AND, o_set, not_null_best), self.alu(Op.LT, o, best_val)),
                )
            take = self.alu(Op.AND, f, self.alu(Op.OR, empty, beats))
            out[f"best_row{i}"] = self.alu(Op.SEL, handle, best_row, take)
            out[f"best_val{i}"] = self.alu(Op.SEL, o, best_val, take)
            out[f"best_null{i}"] = self.alu(Op.SEL, o_null, best_null, take)
        return out

    def view_key(self, view: _View, row: dict[int, Node]) -> tuple[Node, ...]:
        return tuple(row[p] for p in view.group) if view.group else (self.zero,)

    def maintain(self, view: _View, change: RowChange, epochs: dict[str, int], origin: str) -> list[Stmt]:
        stmts: list[Stmt] = []
        if change.old is not None:
            if not (change.written & view.relevant):
                return []
            key = self.view_key(view, change.old)
            pred = self.and_(change.pred, *[self.alu(Op.NOTNULL, k) for k in key])
            e0 = epochs.get(view.name, 0)
            h = self.g.lookup(view.name, e0, key)
            cur = {n: self.g.read(view.name, c, e0, h) for n, c in view.columns.items()}
            new = self.fold(view, cur, change.old, change.handle, add=False)
            p = self.and_(pred, self.alu(Op.NOTNULL, h))
            writes = [Write(view.columns[n], h, v, p) for n, v in new.items() if v is not cur[n]]
            stmts.append(Stmt(view.name, [Group(view.name, e0, writes)], [], origin))
            epochs[view.name] = e0 + 1
        key = self.view_key(view, change.new)
        pred = self.and_(change.pred, *[self.alu(Op.NOTNULL, k) for k in key])
        e0 = epochs.get(view.name, 0)
        h0 = self.g.lookup(view.name, e0, key)
        p_ins = self.and_(pred, self.alu(Op.ISNULL, h0))
        p_upd = self.and_(pred, self.alu(Op.NOTNULL, h0))
        hn = self.g.alloc(view.name, e0, p_ins, key)
        cur = {n: self.g.read(view.name, c, e0, h0) for n, c in view.columns.items()}
        upd = self.fold(view, cur, change.new, change.handle, add=True)
        ins = self.fold(view, self.empty_state(view), change.new, change.handle, add=True)
        group_a = Group(
            view.name,
            e0,
            [Write(view.columns[n], h0, v, p_upd) for n, v in upd.items() if v is not cur[n]],
            [hn],
        )
        group_b = Group(view.name, e0 + 1, [Write(view.columns[n], hn, v, p_ins) for n, v in ins.items()])
        stmts.append(Stmt(view.name, [group_a, group_b], [], origin))
        epochs[view.name] = e0 + 2
        return stmts

    def and_(self, *preds: Node) -> Node:
        out: Node | None = None
        for p in preds:
            if p is self.one:
                continue
            out = p if out is None else self.alu(Op.AND, out, p)
        return self.one if out is None else out

    def section(self, section: Section) -> tuple[Section, dict[str, dict[int, int]]]:
        """Adds maintenance after each statement; returns view epochs by (view, base epoch)."""
        items = []
        epochs: dict[str, int] = {}
        base_epochs: dict[str, int] = {}
        at: dict[str, dict[int, int]] = {v.name: {0: 0} for v in self.views.values()}
        for item in section.items:
            items.append(item)
            if not isinstance(item, Stmt):
                continue
            base_epochs[item.table] = max(g.number for g in item.groups) + 1
            for view in self.views.values():
                if view.table != item.table:
                    continue
                for change in item.changes:
                    items.extend(self.maintain(view, change, epochs, item.origin))
                at[view.name][base_epochs[item.table]] = epochs.get(view.name, 0)
        return Section(items), at

    # ------------------------------------------------------------------ queries

    def query(
        self, spec: AggSpec, key: tuple[Node, ...], node_id: int, at: dict[str, dict[int, int]]
    ) -> Node:
        g = self.g
        base = spec.table
        if node_id in self.scanned:
            target = spec.arg if spec.func in ("MIN", "MAX") else spec.order
            assert target is not None
            mode = {
                "MIN": ScanMode.MIN,
                "MAX": ScanMode.MAX,
                "FIRST": ScanMode.FIRST_DESC if spec.descending else ScanMode.FIRST_ASC,
            }[spec.func]
            skey = ScanSpecKey(base, mode, spec.group, target.attrs[0])
            h = g.scan(skey, base, spec.epoch, key)
            if spec.func == "FIRST":
                return self.at_row(spec.select[spec.word], h)
            return g.read(base, target.attrs[0], spec.epoch, h)
        view = self.views[(spec.table, spec.group, None if spec.filter is None else spec.filter.id)]
        epoch = max(e for b, e in at[view.name].items() if b <= spec.epoch) if at[view.name] else 0
        vkey = key if view.group else (self.zero,)
        h = g.lookup(view.name, epoch, vkey)

        def col(name: str) -> Node:
            return g.read(view.name, view.columns[name], epoch, h)

        if spec.func == "COUNT_STAR":
            return self.alu(Op.COALESCE, col("rows"), self.zero)
        if spec.func in ("COUNT", "SUM", "AVG"):
            assert spec.arg is not None
            i = view.sums.index(spec.arg)
            count = col(f"count{i}")
            if spec.func == "COUNT":
                return self.alu(Op.COALESCE, count, self.zero)
            ok = self.alu(
                Op.AND, self.alu(Op.GT, count, self.zero), self.alu(Op.EQ, col(f"sum_hi{i}"), self.zero)
            )
            total = self.alu(Op.SEL, col(f"sum_lo{i}"), self.null, ok)
            return total if spec.func == "SUM" else self.alu(Op.DIV, total, count)
        if spec.func in ("MIN", "MAX"):
            assert spec.arg is not None
            return col(f"ext{view.extremes.index((spec.func, spec.arg))}")
        assert spec.order is not None
        i = view.firsts.index((spec.order, spec.descending))
        return self.at_row(spec.select[spec.word], col(f"best_row{i}"))

    def at_row(self, select: Node, handle: Node) -> Node:
        """The SELECT of ORDER BY ... LIMIT 1 with its BEST placeholder bound to the chosen row."""

        def fn(g: Graph, node: Node, args: tuple[Node, ...]) -> Node:
            return handle if node.kind is Kind.BEST else copy_node(g, node, args)

        return rebuild(self.g, [select], fn)[select.id]


def incremental_aggregates(prog: IRProgram) -> IRProgram:
    p = _Pass(prog)
    p.plan()
    p.build_tables()
    sections = {}
    for key, section in prog.sections.items():
        maintained, at = p.section(section)
        mapping: dict[int, Node] = {}
        for node in walk(section_roots(maintained)):
            args = tuple(mapping[a.id] for a in node.args)
            if node.kind is Kind.AGG:
                mapping[node.id] = p.query(node.attrs[0], args, node.id, at)
            else:
                mapping[node.id] = copy_node(p.g, node, args)
        sections[key] = remap_section(maintained, mapping)
    prog.sections = sections
    prog.scans = sorted(p.scans, key=lambda k: p.scans[k])
    prog.warnings.extend(p.warnings)
    return prog
