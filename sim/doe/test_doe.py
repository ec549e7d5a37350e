"""rgw_doe against the software engine: the same program image, rows and events must give the
same decisions (verdict and failed rules) and the same final table state, bit for bit."""

from __future__ import annotations

import os
import random
from pathlib import Path

import cocotb
import pytest
import random_program
from cocotb.clock import Clock
from cocotb.triggers import RisingEdge
from cocotbext.axi.stream import define_stream

from riskgw.card.cocotb_doe import cfg_access
from riskgw.card.doeport import (
    CTRL_ID,
    CTRL_LAST_CYCLES,
    CTRL_PARAMS,
    CTRL_STATUS,
    REGION_COUNT,
    REGION_CTRL,
    DoeParams,
    addr,
    cell_addr,
    image_writes,
)
from riskgw.doe.image import Image
from riskgw.doe.isa import ABI_VERSION, INT64_MAX, N_EVENT_REGS, ColType, Event
from riskgw.doe.values import encode_char
from riskgw.engine.engine import DuplicateKeyError, Engine, event_inputs

REPO = Path(__file__).resolve().parents[2]
SEED_RULES = Path("/work/shared/fixtures/seed_rules.sql")
M64 = (1 << 64) - 1
Value = int | None

EvtBus, EvtTransaction, EvtSource, EvtSink, EvtMonitor = define_stream(
    "Evt", signals=["valid", "ready", "tag", "kind", "table", "null", "data"]
)
DecBus, DecTransaction, DecSource, DecSink, DecMonitor = define_stream(
    "Dec", signals=["valid", "ready", "tag", "accept", "failed"]
)


def params() -> DoeParams:
    return DoeParams(**{k: int(v) for k, v in (kv.split("=") for kv in os.environ["RGW_PARAMS"].split(","))})


def signed(v: int) -> int:
    return v - (1 << 64) if v >> 63 else v


class TB:
    def __init__(self, dut) -> None:  # type: ignore[no-untyped-def]
        self.dut = dut
        self.p = params()
        # cocotb 2's Clock.start() schedules the clock's task itself
        Clock(dut.clk, 4, unit="ns").start()
        dut.s_cfg_valid.value = 0
        dut.s_cfg_write.value = 0
        self.evt = EvtSource(EvtBus.from_prefix(dut, "s_evt"), dut.clk, dut.rst)
        self.dec = DecSink(DecBus.from_prefix(dut, "m_dec"), dut.clk, dut.rst)
        self.next_tag = 0

    def set_pauses(self, on: bool, seed: int = 1) -> None:
        if not on:
            self.evt.set_pause_generator(None)
            self.dec.set_pause_generator(None)
            return
        rng = random.Random(seed)
        self.evt.set_pause_generator(iter(lambda: rng.random() < 0.4, None))
        self.dec.set_pause_generator(iter(lambda: rng.random() < 0.6, None))

    async def reset(self) -> None:
        self.dut.rst.value = 1
        for _ in range(4):
            await RisingEdge(self.dut.clk)
        self.dut.rst.value = 0
        await RisingEdge(self.dut.clk)
        while await self.read(addr(REGION_CTRL, CTRL_STATUS)) & 1:
            pass
        ident = await self.read(addr(REGION_CTRL, CTRL_ID))
        assert ident == int.from_bytes(b"RGWD", "big") << 32 | ABI_VERSION, f"ID register {ident:#x}"
        params = await self.read(addr(REGION_CTRL, CTRL_PARAMS))
        assert params == (
            self.p.rules << 48
            | (self.p.rows - 1).bit_length() << 32
            | self.p.tables << 24
            | self.p.cols << 16
        ) | (self.p.lanes << 8), f"parameter register {params:#x} does not describe {self.p}"

    async def _access(self, a: int, write: bool, data: int = 0) -> int:
        return await cfg_access(self.dut, a, write, data)

    async def write(self, a: int, data: int) -> None:
        await self._access(a, True, data)

    async def read(self, a: int) -> int:
        return await self._access(a, False)

    async def load_image(self, image: Image) -> None:
        for a, data in image_writes(image, self.p):
            await self.write(a, data)

    def words(self, values: list[Value]) -> tuple[int, int]:
        data, nulls = 0, (1 << self.p.in_words) - 1
        for i, v in enumerate(values):
            if v is not None:
                data |= (v & M64) << (64 * i)
                nulls &= ~(1 << i)
        return data, nulls

    async def send(self, kind: Event, values: list[Value], table: int = 0) -> int:
        tag = self.next_tag
        self.next_tag += 1
        data, nulls = self.words(values)
        await self.evt.send(EvtTransaction(tag=tag, kind=int(kind), table=table, null=nulls, data=data))
        return tag

    async def table_state(self, image: Image) -> dict[int, list[tuple[Value, ...]]]:
        out = {}
        for t in image.tables:
            n = await self.read(addr(REGION_COUNT, t.id))
            rows = []
            for r in range(n):
                row: list[Value] = []
                for c in range(len(t.columns)):
                    null = await self.read(cell_addr(self.p, t.id, c, r, True))
                    value = await self.read(cell_addr(self.p, t.id, c, r, False))
                    row.append(None if null else signed(value))
                rows.append(tuple(row))
            out[t.id] = rows
        return out


# ---------------------------------------------------------------------------- data and events

ACCOUNTS = [1, 2, 3, 4, 5, 6]
TICKETS = ["AAPL", "MSFT", "TSLA", "IBM"]


def column_value(rng: random.Random, name: str, ctype: ColType, size: int, nullable: bool) -> list[Value]:
    words = max(1, (size + 7) // 8) if ctype is ColType.CHAR else 1
    if nullable and rng.random() < 0.1:
        return [None] * words
    if "ticket" in name:
        return list(encode_char(rng.choice(TICKETS), size))
    if ctype is ColType.CHAR:
        return list(encode_char(rng.choice(["x", "yy", "zzz"]), size))
    if "account" in name:
        return [rng.choice(ACCOUNTS)]
    tight = rng.random() < 0.2  # mostly roomy limits, so that orders pass as well as fail
    if "top_price" in name or "low_price" in name:
        return [None] if nullable and not tight else [rng.randint(90, 110)]
    if "price" in name:
        return [rng.randint(95, 105)]
    if "bps" in name:
        return [rng.choice([100, 500])] if tight else [2000]
    if "max_" in name or "balance" in name:
        return [rng.randint(0, 5000)] if tight else [10**9]
    if "quantity" in name:
        return [rng.randint(0, 50)] if tight else [100_000]
    if ctype is ColType.INT32:
        return [rng.randint(0, 5000)]
    return [rng.randint(0, 10_000_000)]


def random_rows(image: Image, rng: random.Random, per_table: int) -> list[tuple[int, list[Value]]]:
    rows = []
    for t in image.tables:
        if t.hidden or (Event.LOAD, t.id) not in image.code:
            continue
        for _ in range(per_table):
            words: list[Value] = []
            for c in t.columns:
                if c.word == 0:
                    words += column_value(rng, c.name, c.type, c.char_size, c.nullable)
            rows.append((t.id, words))
    return rows


def random_events(rng: random.Random, n: int) -> list[tuple[Event, dict[str, int | str | None]]]:
    events: list[tuple[Event, dict[str, int | str | None]]] = []
    orders: list[dict[str, int | str | None]] = []
    for i in range(n):
        kind = rng.choices([Event.NEW, Event.FILL, Event.REJECT, Event.CANCEL], [6, 2, 1, 1])[0]
        if kind is Event.NEW or not orders:
            f: dict[str, int | str | None] = {
                "order_id": 1000 + i,
                "account_id": rng.choice([*ACCOUNTS, 99]),
                "ticket_id": rng.choice([*TICKETS, "NONE"]),
                "direction": rng.choice([0, 1]),
                "price": rng.randint(85, 115),
                "quantity": rng.choice([1, 10, 100, 1000, 100000])
                if rng.random() < 0.3
                else rng.randint(1, 50),
                "ts": 1_000_000 + 1000 * i,
            }
            if rng.random() < 0.05:
                f["price"] = None
            orders.append(f)
            events.append((Event.NEW, f))
        else:
            o = dict(rng.choice(orders))
            o["exec_price"] = o["price"]
            o["exec_quantity"] = rng.randint(1, 200)
            o["ts"] = 1_000_000 + 1000 * i
            events.append((kind, o))
    return events


# ---------------------------------------------------------------------------- differential run


Row = tuple[int, list[Value]]
EventIn = tuple[Event, list[Value]]


async def differential(  # type: ignore[no-untyped-def]  # dut: cocotb's handle, signals found by name
    dut,
    image: Image,
    rows: list[Row],
    events: list[EventIn],
    pauses: bool,
    seed: int = 1,
    need_both_verdicts: bool = True,
) -> list[int]:
    tb = TB(dut)
    await tb.reset()
    await tb.load_image(image)
    engine = Engine(image, backend="interp")
    tb.set_pauses(pauses, seed)

    sent: list[tuple[int, Event, tuple[bool, tuple[int, ...]]]] = []
    for tid, words in rows:
        try:
            engine.load_row(tid, words)
        except DuplicateKeyError:
            continue
        tag = await tb.send(Event.LOAD, words, table=tid)
        sent.append((tag, Event.LOAD, (True, ())))
    for kind, inputs in events:
        d = engine.process(kind, inputs)
        tag = await tb.send(kind, inputs)
        sent.append((tag, kind, (d.accepted, tuple(sorted(d.failed)))))

    accepted = rejected = 0
    for tag, kind, want in sent:
        dec = await tb.dec.recv()
        assert int(dec.tag) == tag, f"decision for tag {int(dec.tag)}, expected {tag}"
        mask = int(dec.failed)
        got = (bool(int(dec.accept)), tuple(i for i in range(tb.p.rules) if mask >> i & 1))
        assert got == want, f"event {tag} ({kind.name}): DOE {got}, engine {want}"
        if kind is Event.NEW:
            accepted += want[0]
            rejected += not want[0]
    dut._log.info("%d events: %d NEW accepted, %d rejected", len(sent), accepted, rejected)
    if need_both_verdicts:
        assert accepted and rejected, "the events should exercise both verdicts"

    tb.set_pauses(False)
    status = await tb.read(addr(REGION_CTRL, CTRL_STATUS))
    assert status & 0b110 == 0, (
        f"the DOE ran out of index slots or rows (status {status:#x}): enlarge the parameters"
    )
    state = await tb.table_state(image)
    for t in image.tables:
        want_rows = engine.state.table(t.id).rows()
        assert state[t.id] == want_rows, f"table {t.name}: DOE {state[t.id]}, engine {want_rows}"
    return [len(state[t.id]) for t in image.tables]


def order_flow(image: Image, seed: int, n_rows: int, n_events: int) -> tuple[list[Row], list[EventIn]]:
    rng = random.Random(seed)
    rows = random_rows(image, rng, n_rows)
    events = [(kind, list(event_inputs(f))) for kind, f in random_events(rng, n_events)]
    return rows, events


def compiled(paths: list[Path], lanes: int) -> Image:
    from riskgw.doe.compiler import compile_files

    return compile_files(paths, lanes=lanes).image


def rules_image(lanes: int) -> Image:
    return compiled(sorted((REPO / "rules").glob("*.sql")), lanes)


@cocotb.test()
@cocotb.parametrize(pauses=[False, True])
async def run_rules(dut, pauses: bool) -> None:  # type: ignore[no-untyped-def]
    """The example rule set: rows for every table, then a mix of NEW / FILL / REJECT / CANCEL."""
    image = rules_image(params().lanes)
    rows, events = order_flow(image, seed=11 + pauses, n_rows=8, n_events=120)
    counts = await differential(dut, image, rows, events, pauses=pauses, seed=pauses)
    dut._log.info("rows per table at the end: %s", counts)


@cocotb.test()
async def run_seed_rules(dut) -> None:  # type: ignore[no-untyped-def]
    """The reference rule file, unchanged."""
    image = compiled([SEED_RULES], params().lanes)
    rows, events = order_flow(image, seed=5, n_rows=10, n_events=80)
    await differential(dut, image, rows, events, pauses=True, seed=5)


@cocotb.test()
@cocotb.parametrize(seed=[1, 2, 3, 4])
async def run_random_programs(dut, seed: int) -> None:  # type: ignore[no-untyped-def]
    """Random programs: every ALU and table op, scans, same-bundle reads and writes."""
    image = random_program.random_image(seed, params().lanes)
    rng = random.Random(seed)
    rows = [(t.id, random_program.random_row(rng, t)) for _ in range(6) for t in image.tables]
    events: list[EventIn] = []
    for _ in range(40):
        kind = rng.choice([Event.NEW, Event.NEW, Event.FILL, Event.CANCEL])
        inputs: list[Value] = [
            None if rng.random() < 0.1 else rng.choice([rng.randint(0, 6), rng.randint(-3, 3), INT64_MAX])
            for _ in range(N_EVENT_REGS)
        ]
        events.append((kind, inputs))
    counts = await differential(
        dut, image, rows, events, pauses=seed % 2 == 0, seed=seed, need_both_verdicts=False
    )
    dut._log.info("random program %d: rows per table %s", seed, counts)


@cocotb.test()
async def run_unknown_events(dut) -> None:  # type: ignore[no-untyped-def]
    """A LOAD of a table the DOE does not have and an unknown event kind run nothing."""
    tb = TB(dut)
    await tb.reset()
    image = compiled([SEED_RULES], tb.p.lanes)
    await tb.load_image(image)
    engine = Engine(image, backend="interp")
    rows, _ = order_flow(image, seed=8, n_rows=5, n_events=0)
    sent = 0
    for tid, words in rows:
        try:
            engine.load_row(tid, words)
        except DuplicateKeyError:
            continue
        await tb.send(Event.LOAD, words, table=tid)
        sent += 1
    strays = [(Event.LOAD, tb.p.tables), (Event.LOAD, 255), (6, 0), (7, 0)]
    for kind, table in strays:
        tag = tb.next_tag
        tb.next_tag += 1
        data, nulls = tb.words(rows[0][1])
        await tb.evt.send(EvtTransaction(tag=tag, kind=int(kind), table=table, null=nulls, data=data))
    for _ in range(sent):
        await tb.dec.recv()
    for _ in strays:
        dec = await tb.dec.recv()
        assert int(dec.accept) == 1 and int(dec.failed) == 0
    state = await tb.table_state(image)
    for t in image.tables:
        assert state[t.id] == engine.state.table(t.id).rows(), t.name


@cocotb.test()
async def run_cycles(dut) -> None:  # type: ignore[no-untyped-def]
    """Cycles per event (accept to decision) on the example rules, one event at a time; an accepted
    NEW's decision does not wait for its ACCEPT section."""
    tb = TB(dut)
    await tb.reset()
    image = rules_image(tb.p.lanes)
    await tb.load_image(image)
    engine = Engine(image, backend="interp")
    rng = random.Random(3)
    for tid, words in random_rows(image, rng, 8):
        try:
            engine.load_row(tid, words)
        except DuplicateKeyError:
            continue
        await tb.send(Event.LOAD, words, table=tid)
        await tb.dec.recv()
    cycles: dict[str, list[int]] = {}
    for kind, fields in random_events(rng, 60):
        inputs = list(event_inputs(fields))
        d = engine.process(kind, inputs)
        await tb.send(kind, inputs)
        dec = await tb.dec.recv()
        assert bool(int(dec.accept)) == d.accepted
        n = await tb.read(addr(REGION_CTRL, CTRL_LAST_CYCLES))
        name = kind.name if kind is not Event.NEW else ("NEW accepted" if d.accepted else "NEW rejected")
        cycles.setdefault(name, []).append(n)
    for name, ns in sorted(cycles.items()):
        dut._log.info(
            "cycles per event %-13s min %d max %d mean %.1f", name, min(ns), max(ns), sum(ns) / len(ns)
        )
    # A NEW's decision leaves when its NEW section ends; its ACCEPT section runs after that, so an
    # accepted order takes no longer than a rejected one
    assert cycles["NEW accepted"] and cycles["NEW rejected"]
    assert max(cycles["NEW accepted"]) <= max(cycles["NEW rejected"]), cycles


PARAM_SETS = {
    "default": DoeParams(rows=256),
    # four lanes, small tables, index and masks: the compiler's 4-lane images and the limits
    "narrow": DoeParams(lanes=4, cols=8, rows=256, key_words=3, ways=2, scans=8, rules=16, in_words=10),
}


@pytest.mark.sim
@pytest.mark.xdist_group("sim")
@pytest.mark.parametrize("name", sorted(PARAM_SETS))
def test_doe(name: str) -> None:
    import simrun

    p = PARAM_SETS[name]
    simrun.run(
        "rgw_doe",
        "test_doe",
        Path(__file__).parent,
        parameters=p.hdl(),
        hdl_toplevel="test_rgw_doe",
        extra_env={"RGW_PARAMS": ",".join(f"{k}={v}" for k, v in vars(p).items())},
    )
