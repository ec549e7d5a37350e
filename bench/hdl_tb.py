"""cocotb side of bench/hdl.py: drives rgw_doe (through sim/doe/test_rgw_doe.sv) and counts cycles.

The job list comes from the JSON file named by RGW_BENCH_JOB; the figures go to the JSON file it
names as "out". A latency is the number of rising clock edges from the edge that accepts an
event (s_evt valid & ready) to the edge after which its decision is valid on m_dec: 0 would be a
combinational DOE. m_dec ready is held high, as a TOE tx port that never back-pressures.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import statistics
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal, TypedDict

import cocotb
from cocotb.clock import Clock
from cocotb.simtime import get_sim_time
from cocotb.triggers import ReadOnly, RisingEdge, Timer

from riskgw.card.cocotb_doe import cfg_access
from riskgw.card.doeport import (
    CTRL_CLEAR,
    CTRL_LAST_CYCLES,
    CTRL_STATUS,
    REGION_COUNT,
    REGION_CTRL,
    DoeParams,
    addr,
    image_writes,
)
from riskgw.doe.image import Image
from riskgw.doe.isa import Event
from riskgw.doe.values import encode_char
from riskgw.engine.engine import event_inputs

CLOCK_NS = 4
M64 = (1 << 64) - 1
Value = int | None
Fields = dict[str, int | str | None]
N_ACCOUNTS = 20
POOR = 19  # an account with no cash: its buys fail the funds check


class FlowsJob(TypedDict):
    """The eight flows at each table size of `orders` (a number, or a rising list of sizes)."""

    name: str
    kind: Literal["flows"]
    rules: list[str]
    orders: int | list[int]
    samples: int


class SweepJob(TypedDict):
    """NEW latency on each case's rule files (case name -> paths)."""

    name: str
    kind: Literal["sweep"]
    cases: dict[str, list[str]]
    samples: int


class ThroughputJob(TypedDict):
    """The initiation interval of `orders` NEW orders offered back to back."""

    name: str
    kind: Literal["throughput"]
    rules: list[str]
    orders: int


Job = FlowsJob | SweepJob | ThroughputJob


class BenchSpec(TypedDict):
    """The JSON file named by RGW_BENCH_JOB, as bench/hdl.py's run_sim writes it."""

    top: str
    params: dict[str, int]
    jobs: list[Job]
    out: str
    sources: str


def ticket(i: int) -> str:
    return f"{600000 + i:06d}"


def _compile(paths: Sequence[str], lanes: int) -> Image:
    from riskgw.doe.compiler import compile_files

    return compile_files([Path(p) for p in paths], lanes=lanes).image


class Doe:
    """The DOE's ports, driven directly (not through bus models) so every cycle is accounted for."""

    # Any: the DUT's signals are found by name at run time; cocotb types them all as one generic handle
    def __init__(self, dut: Any, p: DoeParams) -> None:
        self.dut = dut
        self.p = p
        # cocotb 2's Clock.start() schedules the clock's task itself
        Clock(dut.clk, CLOCK_NS, unit="ns").start()
        dut.s_cfg_valid.value = 0
        dut.s_cfg_write.value = 0
        dut.s_evt_valid.value = 0
        dut.m_dec_ready.value = 1
        self.tag = 0
        self.fresh = False  # tables as a reset leaves them: cleared, nothing loaded

    @property
    def clear_ns(self) -> int:
        # the index clear walks every bucket of every table once
        return (self.p.tables << ((self.p.rows - 1).bit_length() + 1)) * CLOCK_NS

    async def wait_idle(self) -> None:
        # one timer for the bulk of the clear: polling it cycle by cycle from Python is far slower
        await Timer(self.clear_ns + 10 * CLOCK_NS, unit="ns")
        await RisingEdge(self.dut.clk)
        while await self.read(addr(REGION_CTRL, CTRL_STATUS)) & 1:
            await Timer(1000 * CLOCK_NS, unit="ns")

    async def reset(self) -> None:
        self.dut.rst.value = 1
        for _ in range(4):
            await RisingEdge(self.dut.clk)
        self.dut.rst.value = 0
        await self.wait_idle()
        self.fresh = True

    async def _access(self, a: int, write: bool, data: int = 0) -> int:
        return await cfg_access(self.dut, a, write, data)

    async def write(self, a: int, data: int) -> None:
        await self._access(a, True, data)

    async def read(self, a: int) -> int:
        return await self._access(a, False)

    async def load_image(self, image: Image) -> None:
        # a reset has just cleared the tables: a second clear would only cost time (2^CL_BUCKETS *
        # TABLES cycles: minutes of simulation for the 1M-row table)
        if not self.fresh:
            await self.write(addr(REGION_CTRL, CTRL_CLEAR), 1)
            await self.wait_idle()
        self.fresh = False
        for a, data in image_writes(image, self.p):
            await self.write(a, data)

    def _put(self, kind: int, values: Sequence[Value], table: int) -> None:
        data, nulls = 0, (1 << self.p.in_words) - 1
        for i, v in enumerate(values):
            if v is not None:
                data |= (v & M64) << (64 * i)
                nulls &= ~(1 << i)
        d = self.dut
        d.s_evt_tag.value = self.tag
        d.s_evt_kind.value = kind
        d.s_evt_table.value = table
        d.s_evt_null.value = nulls
        d.s_evt_data.value = data
        d.s_evt_valid.value = 1
        self.tag += 1

    async def _accepted(self) -> None:
        """Returns just after the clock edge that accepts the event on the port."""
        d = self.dut
        while True:
            await ReadOnly()
            if int(d.s_evt_ready.value):
                await RisingEdge(d.clk)
                return
            await RisingEdge(d.s_evt_ready)

    async def stream(self, events: Iterable[tuple[int, int, Sequence[Value]]]) -> list[int]:
        """Offers events back to back (valid held high); returns each one's accept time in cycles."""
        times = []
        for kind, table, values in events:
            self._put(kind, values, table)
            await self._accepted()
            times.append(int(get_sim_time(unit="ns")) // CLOCK_NS)
        self.dut.s_evt_valid.value = 0
        return times

    async def timed(self, kind: Event, values: Sequence[Value]) -> tuple[int, int, int, bool]:
        """One event into an idle DOE: (latency in cycles, busy cycles, the DOE's own cycle count,
        accept). Busy: from the same edge to the edge after which s_evt is ready for the next event
        (an accepted NEW's ACCEPT section runs after its decision has left)."""
        d = self.dut
        self._put(int(kind), values, 0)
        await self._accepted()
        d.s_evt_valid.value = 0
        cycles = 0
        while True:
            await ReadOnly()
            if int(d.m_dec_valid.value):
                accept = bool(int(d.m_dec_accept.value))
                break
            await RisingEdge(d.clk)
            cycles += 1
        busy = cycles
        while True:
            await RisingEdge(d.clk)
            busy += 1
            await ReadOnly()
            if int(d.s_evt_ready.value):
                break
        await RisingEdge(d.clk)
        own = await self.read(addr(REGION_CTRL, CTRL_LAST_CYCLES))
        return cycles, busy, own, accept

    async def check_status(self) -> int:
        return await self.read(addr(REGION_CTRL, CTRL_STATUS))

    def has_streamer(self) -> bool:
        """bench/bench_rgw_doe.sv, with its rows file: True; sim/doe/test_rgw_doe.sv: False."""
        return hasattr(self.dut, "load_go") and Path(ROWS_FILE).exists()

    async def stream_file(self, first: int, n_rows: int) -> None:
        """Rows first .. first + n_rows - 1 of ROWS_FILE as LOAD events, offered back to back by the
        wrapper's streamer: one await for them all instead of one cocotb transaction per row."""
        if n_rows <= 0:
            return
        d = self.dut
        d.load_kind.value = int(Event.LOAD)
        d.load_first.value = first
        d.load_end.value = first + n_rows
        await RisingEdge(d.clk)
        d.load_go.value = 1
        await RisingEdge(d.clk)
        while not int(d.load_done.value):
            await RisingEdge(d.load_done)
        await RisingEdge(d.clk)
        d.load_go.value = 0
        await RisingEdge(d.clk)


def summary(values: list[int]) -> dict[str, object]:
    lat = {
        "min": min(values),
        "max": max(values),
        "median": statistics.median(values),
        "mean": round(statistics.fmean(values), 3),
        "jitter": max(values) - min(values),
    }
    return {
        "samples": len(values),
        "latency_cycles": lat,
        "ns_at_250mhz": {k: v * CLOCK_NS for k, v in lat.items()},
    }


# ---------------------------------------------------------------------------- reference data


def holdings(n_rows: int) -> list[tuple[int, int]]:
    """(account, security) of the holdings rows: up to 1024 per account, as the reference set-up."""
    per = max(1, min(1024, n_rows // N_ACCOUNTS))
    return [(a, s) for a in range(N_ACCOUNTS) for s in range(per)]


def row(image: Image, table: str, fields: Fields) -> tuple[int, list[Value]]:
    t = next(t for t in image.tables if t.name == table)
    words: list[Value] = []
    for c in t.columns:
        if c.word:
            continue
        v = fields.get(c.name)
        if c.type.name == "CHAR":
            n = max(1, (c.char_size + 7) // 8)
            words += [None] * n if v is None else list(encode_char(str(v), c.char_size))
        else:
            words.append(None if v is None else int(v))
    return t.id, words


# bench/bench_rgw_doe.sv's rows, in the simulator's working directory (the build directory)
ROWS_FILE = "bench_rows.hex"


def write_rows_file(path: Path, rows: Iterable[tuple[int, int, Sequence[Value]]], row_words: int) -> int:
    """The rows in bench_rgw_doe.sv's format: one hex line of {table, nulls, data} each; returns
    how many. row_words is the wrapper's min(COLS, IN_WORDS): the words a row may have."""
    n = 0
    digits = (8 + row_words + 64 * row_words + 3) // 4
    with path.open("w", encoding="ascii") as f:
        for _kind, table, values in rows:
            if len(values) > row_words:
                raise ValueError(f"a row of {len(values)} words; the streamer holds {row_words}")
            data, nulls = 0, (1 << row_words) - 1
            for i, v in enumerate(values):
                if v is not None:
                    data |= (v & M64) << (64 * i)
                    nulls &= ~(1 << i)
            line = (table << (row_words * 65)) | (nulls << (row_words * 64)) | data
            f.write(f"{line:0{digits}x}\n")
            n += 1
    return n


def stage_rows(n_orders: int, after: int = 0) -> int:
    """How many rows reference_rows(image, n_orders, after) yields."""
    old = set(holdings(after)) if after else set()
    return (0 if after else N_ACCOUNTS) + len(set(holdings(n_orders)) - old) + n_orders - after


def reference_rows(image: Image, n_orders: int, after: int = 0) -> Iterable[tuple[int, int, Sequence[Value]]]:
    """account_info: 20 accounts; account_ticket_info: holdings; order_info: n_orders open orders.
    With `after`, only the rows that take tables of `after` orders to tables of n_orders: a table
    grown in stages ends with the same rows as one loaded at once, bar which holding an order is on."""
    if not after:
        for a in range(N_ACCOUNTS):
            cash = 0 if a == POOR else 10**15
            tid, w = row(
                image, "account_info", {"account_id": a, "available_balance": cash, "total_balance": cash}
            )
            yield int(Event.LOAD), tid, w
    old = set(holdings(after)) if after else set()
    held = holdings(n_orders)
    for a, s in held:
        if (a, s) in old:
            continue
        f: Fields = {"account_id": a, "ticket_id": ticket(s), "avail_quantity": 1_000_000}
        f["total_quantity"] = 1_000_000
        tid, w = row(image, "account_ticket_info", f)
        yield int(Event.LOAD), tid, w
    for i in range(after, n_orders):
        a, s = held[i % len(held)]
        f = {"order_id": 1 + i, "account_id": a, "ticket_id": ticket(s), "direction": i % 2, "price": 150}
        f["open_quantity"] = 1
        tid, w = row(image, "order_info", f)
        yield int(Event.LOAD), tid, w


FLOWS = (
    "buy order",
    "buy accept/update",
    "sell order",
    "sell accept/update",
    "buy fill",
    "buy reject",
    "sell fill",
    "sell reject",
)


def flow_events(n_orders: int, sample: int, rng: random.Random) -> list[tuple[str, Event, Fields, bool]]:
    """The eight flows once, on a random holding: (flow, event, fields, expected accept). `sample`
    numbers the samples of every stage of one simulation: their order ids never repeat."""
    held = holdings(n_orders)
    a, s = rng.choice([h for h in held if h[0] != POOR])
    base = 10**9 + 10 * sample
    buy: Fields = {"order_id": base, "account_id": a, "ticket_id": ticket(s), "direction": 0}
    buy |= {"price": 100, "quantity": 10}
    sell: Fields = {"order_id": base + 1, "account_id": a, "ticket_id": ticket(s), "direction": 1}
    sell |= {"price": 200, "quantity": 10}
    poor: Fields = dict(buy, order_id=base + 2, account_id=POOR, ticket_id=ticket(rng.choice(held)[1]))
    big_sell: Fields = dict(sell, order_id=base + 3, quantity=10**9)
    fill = {"exec_price": 100, "exec_quantity": 4}
    return [
        ("buy order", Event.NEW, poor, False),
        ("buy accept/update", Event.NEW, buy, True),
        ("sell order", Event.NEW, big_sell, False),
        ("sell accept/update", Event.NEW, sell, True),
        ("buy fill", Event.FILL, buy | fill, True),
        ("buy reject", Event.REJECT, buy, True),
        ("sell fill", Event.FILL, sell | fill | {"exec_price": 200}, True),
        ("sell reject", Event.REJECT, sell, True),
    ]


# ---------------------------------------------------------------------------- jobs


def stage_sizes(job: FlowsJob) -> list[int]:
    """The table sizes of a flows job, in the order its stages grow the tables."""
    orders = job["orders"]
    return [int(n) for n in orders] if isinstance(orders, list) else [int(orders)]


async def job_flows(doe: Doe, job: FlowsJob) -> dict[str, object]:
    """The eight flows at each table size of job["orders"] (a number, or a rising list: the tables
    grow stage by stage in one simulation, with the samples taken in between)."""
    image = _compile(job["rules"], doe.p.lanes)
    sizes = stage_sizes(job)
    samples = int(job["samples"])
    await doe.load_image(image)
    out: dict[str, object] = {}
    first, after = 0, 0
    for stage, n in enumerate(sizes):
        out[str(n)] = await _flows_at(doe, image, n, after, first, samples, stage * samples)
        first += stage_rows(n, after)
        after = n
    return out


async def _flows_at(
    doe: Doe, image: Image, n: int, after: int, first: int, samples: int, sample0: int
) -> dict[str, object]:
    start = time.perf_counter()
    n_rows = stage_rows(n, after)
    t0 = int(get_sim_time(unit="ns")) // CLOCK_NS
    if doe.has_streamer():
        await doe.stream_file(first, n_rows)
        loader = "streamer (bench/bench_rgw_doe.sv)"
    else:
        await doe.stream(reference_rows(image, n, after))
        loader = "cocotb, one event at a time"
    await Timer(100 * CLOCK_NS, unit="ns")
    load_s = time.perf_counter() - start
    load_cycles = int(get_sim_time(unit="ns")) // CLOCK_NS - t0 - 100
    rows_held = {t.name: await doe.read(addr(REGION_COUNT, t.id)) for t in image.tables}
    status = await doe.check_status()
    lat: dict[str, list[int]] = {f: [] for f in FLOWS}
    busy: dict[str, list[int]] = {f: [] for f in FLOWS}
    own: dict[str, list[int]] = {f: [] for f in FLOWS}
    rng = random.Random(n)
    mismatches = []
    for k in range(samples):
        for flow, kind, fields, want in flow_events(n, sample0 + k, rng):
            cycles, busy_cycles, counted, accept = await doe.timed(kind, list(event_inputs(fields)))
            if accept != want:
                mismatches.append(f"{flow}: accept={accept}")
            lat[flow].append(cycles)
            busy[flow].append(busy_cycles)
            own[flow].append(counted)
    status |= await doe.check_status()
    flows = {
        f: summary(v)
        | {
            "busy_cycles": {"min": min(busy[f]), "max": max(busy[f]), "median": statistics.median(busy[f])},
            "doe_cycle_register": {"min": min(own[f]), "max": max(own[f])},
        }
        for f, v in lat.items()
    }
    every = [c for v in lat.values() for c in v]
    return {
        "table_rows": {
            "account_info": N_ACCOUNTS,
            "account_ticket_info": len(holdings(n)),
            "order_info": n,
        },
        "rows_param": doe.p.rows,
        "rows_loaded": n_rows,
        "loaded_onto_tables_of_orders": after,
        "rows_held_by_the_doe": rows_held,
        "loaded_by": loader,
        "load_seconds": round(load_s, 1),
        "load_cycles": load_cycles,
        "status_register": status,
        "index_or_table_full": bool(status & 0b110),
        "unexpected_verdicts": mismatches[:10],
        "flows": flows,
        "jitter_over_all_flows_cycles": max(every) - min(every),
        "max_jitter_within_a_flow_cycles": max(max(v) - min(v) for v in lat.values()),
    }


async def new_latency(doe: Doe, paths: list[str], samples: int) -> dict[str, object]:
    image = _compile(paths, doe.p.lanes)
    await doe.load_image(image)
    rows = [
        (int(Event.LOAD), *row(image, "account_info", {"account_id": a, "available_balance": 10**12}))
        for a in range(4)
    ]
    for a in range(4):
        f: Fields = {"account_id": a, "ticket_id": ticket(0), "avail_quantity": 10**6}
        rows.append((int(Event.LOAD), *row(image, "account_ticket_info", f)))
    await doe.stream(rows)
    lat, verdicts = [], set()
    for k in range(samples):
        f = {"order_id": 5000 + k, "account_id": k % 4, "ticket_id": ticket(0), "direction": k % 2}
        f |= {"price": 100 + k % 7, "quantity": 1 + k % 50}
        cycles, _busy, _own, accept = await doe.timed(Event.NEW, list(event_inputs(f)))
        lat.append(cycles)
        verdicts.add(accept)
    new_bundles = len(image.code.get((Event.NEW, 0), []))
    return summary(lat) | {
        "rules": len(image.rules),
        "new_section_bundles": new_bundles,
        "verdicts_seen": sorted(verdicts),
    }


async def job_sweep(doe: Doe, job: SweepJob) -> dict[str, object]:
    out: dict[str, object] = {}
    for name, paths in job["cases"].items():
        out[name] = await new_latency(doe, paths, int(job["samples"]))
    return out


async def job_throughput(doe: Doe, job: ThroughputJob) -> dict[str, object]:
    image = _compile(job["rules"], doe.p.lanes)
    await doe.load_image(image)
    await doe.stream(reference_rows(image, 64))
    await Timer(100 * CLOCK_NS, unit="ns")
    k = int(job["orders"])
    out: dict[str, object] = {}
    held = [h for h in holdings(64) if h[0] != POOR]
    for case in ("different accounts", "same account"):
        events = []
        for i in range(k):
            a, s = held[i % len(held)] if case == "different accounts" else held[0]
            f: Fields = {
                "order_id": 7 * 10**8 + len(out) * 10**6 + i,
                "account_id": a,
                "ticket_id": ticket(s),
                "direction": 0,
                "price": 100,
                "quantity": 1,
            }
            events.append((int(Event.NEW), 0, list(event_inputs(f))))
        times = await doe.stream(events)
        await Timer(200 * CLOCK_NS, unit="ns")
        gaps = [b - a for a, b in itertools.pairwise(times)]
        ii = {
            "min": min(gaps),
            "max": max(gaps),
            "median": statistics.median(gaps),
            "mean": round((times[-1] - times[0]) / (len(times) - 1), 3),
        }
        out[case] = {
            "orders": k,
            "initiation_interval_cycles": ii,
            "ns_at_250mhz": {n: v * CLOCK_NS for n, v in ii.items()},
            "orders_per_second_at_250mhz": round(250e6 / ii["mean"]),
        }
    return out


async def run_job(doe: Doe, job: Job) -> dict[str, object]:
    if job["kind"] == "flows":
        return await job_flows(doe, job)
    if job["kind"] == "sweep":
        return await job_sweep(doe, job)
    if job["kind"] == "throughput":
        return await job_throughput(doe, job)
    raise ValueError(f"unknown bench job kind {job['kind']!r}")


@cocotb.test()
async def run_bench(dut: Any) -> None:
    spec: BenchSpec = json.loads(Path(os.environ["RGW_BENCH_JOB"]).read_text())
    doe = Doe(dut, DoeParams(**spec["params"]))
    await doe.reset()
    results: dict[str, dict[str, object]] = {}
    for job in spec["jobs"]:
        start = time.perf_counter()
        results[job["name"]] = await run_job(doe, job)
        dut._log.info("%s done in %.1f s", job["name"], time.perf_counter() - start)
    Path(spec["out"]).write_text(json.dumps(results, indent=1))
