"""Random, hand-assembled DOE programs: every ALU op, every table op and scan mode, and bundles
whose instructions read what others in the same bundle write (registers and tables)."""

from __future__ import annotations

import random

from riskgw.doe.image import Bundle, Image, PhysColumn, RuleInfo, ScanSpec, TableConfig
from riskgw.doe.isa import (
    ALU_OPS,
    INT64_MAX,
    INT64_MIN,
    REG_CONST_BASE,
    REG_TRUE,
    UNARY_OPS,
    ColType,
    Event,
    Insn,
    Op,
    ScanMode,
)


def _table(tid: int, name: str, n_cols: int, key: tuple[int, ...]) -> TableConfig:
    cols = tuple(PhysColumn(f"c{i}", i, 0, ColType.INT64, i not in key) for i in range(n_cols))
    return TableConfig(tid, name, cols, key)


TABLES = [_table(0, "acct", 4, (0,)), _table(1, "pos", 4, (0, 1)), _table(2, "log", 3, ())]
SCANS = [
    ScanSpec(0, 2, ScanMode.MIN, (0,), 2),
    ScanSpec(1, 2, ScanMode.MAX, (0,), 1),
    ScanSpec(2, 2, ScanMode.FIRST_ASC, (), 2),
    ScanSpec(3, 2, ScanMode.FIRST_DESC, (0,), 1),
    ScanSpec(4, 1, ScanMode.FIRST_DESC, (0, 1), 3),
]
CONSTS: list[int | None] = [None, 0, 1, -1, 2, 7, INT64_MIN, INT64_MAX, 100, 3]
N_RULES = 8


def _chunks(insns: list[Insn], lanes: int) -> list[Bundle]:
    return [tuple(insns[i : i + lanes]) for i in range(0, len(insns), lanes)]


class _Gen:
    def __init__(self, rng: random.Random, lanes: int) -> None:
        self.rng = rng
        self.lanes = lanes
        self.values = list(range(10)) + [REG_CONST_BASE + i for i in range(len(CONSTS))]
        self.temp = REG_CONST_BASE + len(CONSTS)
        self.handles: dict[int, list[int]] = {0: [], 1: [], 2: []}  # table -> handle registers
        self.hazard = (0, 0)

    def new_temp(self) -> int:
        r = self.temp
        self.temp += 1
        return r

    def alu_bundle(self, n: int) -> Bundle:
        rng = self.rng
        out = []
        dsts = []
        for _ in range(n):
            op = rng.choice(sorted(ALU_OPS))
            n_src = 1 if op in UNARY_OPS else 3 if op is Op.SEL else 2
            srcs = tuple(rng.choice(self.values) for _ in range(n_src))
            # sometimes overwrite a temporary that others in this bundle read (old value wins)
            reuse = [v for v in self.values if v >= REG_CONST_BASE + len(CONSTS)]
            dst = rng.choice(reuse) if reuse and rng.random() < 0.3 else self.new_temp()
            out.append(Insn(op, dst, srcs))
            dsts.append(dst)
        self.values += [d for d in dsts if d not in self.values]
        return tuple(out)

    def key(self, words: int) -> tuple[int, ...]:
        # key words from the inputs mostly (so rows are found), sometimes a computed value
        return tuple(self.rng.choice([1, 1, 2, 4, *self.values[-3:]]) for _ in range(words))

    def lookups(self) -> list[Bundle]:
        out = []
        for t in (0, 1):
            h = self.new_temp()
            out.append(Insn(Op.LOOKUP, h, self.key(len(TABLES[t].key)), table=t))
            self.handles[t].append(h)
        for s in SCANS:
            h = self.new_temp()
            out.append(Insn(Op.SCAN, h, self.key(len(s.match)), table=s.id))
            self.handles[s.table].append(h)
        return _chunks(out, self.lanes)

    def reads(self) -> Bundle:
        out = []
        for _ in range(self.rng.randint(1, self.lanes)):
            t = self.rng.choice([t for t in (0, 1, 2) if self.handles[t]])
            h = self.rng.choice(self.handles[t])
            d = self.new_temp()
            out.append(Insn(Op.READ, d, (h,), table=t, imm=self.rng.randrange(len(TABLES[t].columns))))
            self.values.append(d)
        return tuple(out)

    def writes(self) -> Bundle:
        """Reads and writes of the same cells in one bundle, ALLOCs beside LOOKUPs of their key."""
        rng = self.rng
        out = []
        t = rng.choice([t for t in (0, 1, 2) if self.handles[t]])
        h = rng.choice(self.handles[t])
        col = rng.choice([c for c in range(len(TABLES[t].columns)) if c not in TABLES[t].key])
        # the same cell read and written in one bundle: the read must see the old value
        d = self.new_temp()
        out.append(Insn(Op.READ, d, (h,), table=t, imm=col))
        out.append(Insn(Op.WRITE, 0, (h, rng.choice(self.values)), table=t, imm=col))
        self.values.append(d)
        # a key looked up in the bundle that allocates it: the LOOKUP must not find the new row
        key = self.key(len(TABLES[0].key))
        d = self.new_temp()
        out.append(Insn(Op.ALLOC, self.new_temp(), key, table=0))
        out.append(Insn(Op.LOOKUP, d, key, table=0))
        self.hazard = (out[0].dst, d)
        for _ in range(rng.randint(0, self.lanes - len(out))):
            kind = rng.random()
            t = rng.choice((0, 1, 2))
            if kind < 0.25:
                d = self.new_temp()
                pred = rng.choice([REG_TRUE, *self.values[-4:]])
                out.append(Insn(Op.ALLOC, d, self.key(len(TABLES[t].key)), pred=pred, table=t))
                self.handles[t].append(d)
            elif kind < 0.4 and t != 2:
                d = self.new_temp()
                out.append(Insn(Op.LOOKUP, d, self.key(len(TABLES[t].key)), table=t))
                self.handles[t].append(d)
            elif self.handles[t]:
                h = rng.choice(self.handles[t])
                free = [c for c in range(len(TABLES[t].columns)) if c not in TABLES[t].key]
                col = rng.choice(free)
                if kind < 0.6:
                    d = self.new_temp()
                    out.append(Insn(Op.READ, d, (h,), table=t, imm=col))
                    self.values.append(d)
                else:
                    pred = rng.choice([REG_TRUE, REG_TRUE, *self.values[-4:]])
                    out.append(Insn(Op.WRITE, 0, (h, rng.choice(self.values)), pred=pred, table=t, imm=col))
        return tuple(out)

    def expose(self) -> list[Bundle]:
        """Store the last same-bundle results in a new row of the unkeyed table, so they count."""
        h = self.new_temp()
        read, found = self.hazard
        return [
            (Insn(Op.ALLOC, h, (), table=2),),
            (Insn(Op.WRITE, 0, (h, read), table=2, imm=1), Insn(Op.WRITE, 0, (h, found), table=2, imm=2)),
        ]

    def rules(self) -> list[Bundle]:
        out = []
        for rid in range(N_RULES):
            guard = self.rng.choice([REG_TRUE, *self.values[-6:]])
            out.append(Insn(Op.RULE, 0, (guard, self.rng.choice(self.values)), imm=rid))
        return _chunks(out, self.lanes)


def random_image(seed: int, lanes: int = 8) -> Image:
    if lanes < 4:
        raise ValueError("the same-bundle hazards need 4 lanes")
    rng = random.Random(seed)
    code: dict[tuple[Event, int], list[Bundle]] = {}

    gens = [_Gen(rng, lanes)]
    g = gens[0]
    new = [*g.lookups(), g.reads(), g.alu_bundle(lanes), g.alu_bundle(rng.randint(1, lanes)), g.reads()]
    new.append(g.alu_bundle(lanes))
    new += g.rules()
    code[(Event.NEW, 0)] = new

    for event in (Event.ACCEPT, Event.FILL, Event.CANCEL):
        g = _Gen(rng, lanes)
        gens.append(g)
        body = [*g.lookups(), g.reads(), g.alu_bundle(rng.randint(2, lanes))]
        for _ in range(4):
            body.append(g.writes())
            body.append(g.reads())
            body += g.expose()
            body.append(g.alu_bundle(rng.randint(1, lanes)))
        code[(event, 0)] = body

    for t in TABLES:
        # a data row: words in registers 0.. in column order
        h = 100
        load: list[Bundle] = [(Insn(Op.ALLOC, h, tuple(t.key), table=t.id),)]
        load += _chunks(
            [Insn(Op.WRITE, 0, (h, c), table=t.id, imm=c) for c in range(len(t.columns)) if c not in t.key],
            lanes,
        )
        code[(Event.LOAD, t.id)] = load

    n_regs = max(max(x.temp for x in gens), 101) + 1
    rules = [RuleInfo(i, f"R{i}", 0, i + 1, 1) for i in range(N_RULES)]
    return Image(list(TABLES), list(CONSTS), rules, list(SCANS), [], code, lanes, n_regs)


def random_row(rng: random.Random, t: TableConfig) -> list[int | None]:
    row: list[int | None] = []
    for c in range(len(t.columns)):
        if c in t.key:
            row.append(rng.randint(0, 6))
        else:
            row.append(
                None if rng.random() < 0.15 else rng.choice([rng.randint(-50, 50), INT64_MAX, INT64_MIN])
            )
    return row
