"""Software engine benchmark on the reference scenario, with an indexed SQLite as the baseline.

    python -m bench.engine [--quick] [--out bench/results/engine.json]

The reference scenario: 20 accounts, 2048 securities, 1024 holdings per account; the funds,
holdings and anti-self-trade rules with the eight order flows (rules/00_schema, 10_funds,
20_holdings, 30_self_trade, 90_flows). A scripted broker and exchange (riskgw.scenario) record a
session of N orders per account; the recorded events are then replayed through a fresh engine:

- throughput: events per second of CPU time (time.process_time, so other processes on a shared
  machine do not count) and of wall time, median of several runs from the same snapshot;
- latency: wall time of each event (perf_counter_ns), p50 / p99 / max per flow;
- peak memory: the process's peak resident set after the engine runs (before SQLite);
- table memory (key `table_memory`): the engine's tables alone at the end of the session: their
  numpy columns and NULL bits (rows held and allocated capacity), the key index and, for the fast
  path, its Python list mirrors of the columns;
- baseline: the same events through SQLite with a unique index on every table key, running the
  rules as queries and the flows as triggers (the test suite's SQLite translation, tests/oracle).

`--quick` runs 1,000 orders per account (bench/run.py's quick form) or, alone, 1,000 and 10,000, one run each.
The 1,000 and 10,000 levels replay their whole session. The 100,000 and 1,000,000 levels (3.4M and
34M events) do not: their order history is built in bulk (bench/history.py: the order_info rows
such a session leaves, through the engine's table API and SQLite's executemany), and a session of
SAMPLE_PER_ACCOUNT orders per account is replayed and timed on top of it (key `history` says how
many rows, key `method` which way a level was built). A lookup's cost depends on the rows it
searches, not on how they got there. SQLite runs at every level on the events timed.
`--replay` replays every level instead: 1,000,000 is then recorded and timed in chunks (key
`chunked`, see bench_chunked; about an hour), without SQLite.
`--levels 1000,100000` runs only the levels named.
Each level times the fast path (key `engine`) and, when a C compiler is there, the native backend
(key `engine_native`: the same figures through one call per event, plus `batch_cpu_events_per_s`
and `batch_wall_events_per_s`, all events through `Engine.process_batch`).
Static data is frozen out of the garbage collector after loading (gc.freeze), as a gateway would.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from time import perf_counter_ns
from typing import Any

import numpy as np

from riskgw.doe.compiler import compile_files
from riskgw.doe.image import Image
from riskgw.doe.isa import Event
from riskgw.engine.cbuild import compiler
from riskgw.engine.csvdata import EVENT_NAMES
from riskgw.engine.engine import Backend, Engine, event_inputs
from riskgw.engine.replay import load_data
from riskgw.scenario import EVENT_HEADER, DataSet, Row, Session

ROOT = Path(__file__).resolve().parent.parent
RULES = [
    ROOT / "rules" / n
    for n in ("00_schema.sql", "10_funds.sql", "20_holdings.sql", "30_self_trade.sql", "90_flows.sql")
]
FIELDS = EVENT_HEADER[1:]
FLOW_OF = {Event.NEW: "order", Event.FILL: "fill", Event.REJECT: "reject", Event.CANCEL: "cancel"}
# the eight flows: (is a buy, event) -> name
FLOWS = {
    (buy, e): f"{'buy' if buy else 'sell'} {name}" for buy in (True, False) for e, name in FLOW_OF.items()
}

Recorded = list[tuple[Event, tuple[int | None, ...], str, Row]]


def _fields(row: Row) -> dict[str, Any]:
    return dict(zip(FIELDS, row[1:], strict=True))


def record_session(image: Image, data_dir: Path, data: DataSet, orders_per_account: int) -> Recorded:
    """The scripted session's events, decided by an engine, with each event's flow name."""
    engine = Engine(image, "native" if compiler() is not None else "fast")  # the same decisions, sooner
    load_data(engine, data_dir)

    def decide(row: Row) -> bool:
        return engine.process(EVENT_NAMES[str(row[0])], event_inputs(_fields(row))).accepted

    rows = Session(data=data, n_orders=orders_per_account * data.n_accounts, seed=1).run(decide)
    out: Recorded = []
    for row in rows:
        event = EVENT_NAMES[str(row[0])]
        flow = FLOWS[(row[4] == 0, event)]
        out.append((event, event_inputs(_fields(row)), flow, row))
    return out


def _percentiles(values: list[int]) -> dict[str, float]:
    values = sorted(values)
    n = len(values)
    return {
        "n": n,
        "p50_us": values[n // 2] / 1000,
        "p99_us": values[min(n - 1, int(n * 0.99))] / 1000,
        "max_us": values[-1] / 1000,
    }


def _throughput(
    run: Callable[[], object], n_events: int, reps: int, reset: Callable[[], None]
) -> dict[str, float]:
    cpu, wall = [], []
    for _ in range(reps):
        reset()
        w0, c0 = time.perf_counter(), time.process_time()
        run()
        c1, w1 = time.process_time(), time.perf_counter()
        cpu.append(n_events / max(c1 - c0, 1e-9))
        wall.append(n_events / max(w1 - w0, 1e-9))
    return {
        "cpu_events_per_s": statistics.median(cpu),
        "wall_events_per_s": statistics.median(wall),
        "runs": reps,
    }


def bench_engine(
    image: Image,
    data_dir: Path,
    events: Recorded,
    reps: int,
    backend: Backend = "fast",
    prepare: Callable[[Engine], None] | None = None,
) -> dict[str, Any]:
    """`prepare`, when given, fills the engine's tables further after the data load (bench.history:
    a long session's order history in bulk); every run starts from the state it leaves."""
    t0 = time.perf_counter()
    engine = Engine(image, backend)
    build_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    rows = load_data(engine, data_dir)
    load_s = time.perf_counter() - t0
    history_s = None
    if prepare is not None:
        t0 = time.perf_counter()
        prepare(engine)
        history_s = round(time.perf_counter() - t0, 3)
    snap = engine.snapshot()
    gc.collect()
    gc.freeze()
    process = engine.process
    pairs = [(e, inp) for e, inp, _, _ in events]

    def run() -> None:
        for e, inp in pairs:
            process(e, inp)

    result: dict[str, Any] = {"backend": backend, "build_s": round(build_s, 3), "rows_loaded": rows}
    result["load_s"] = round(load_s, 3)
    if history_s is not None:
        result["history_install_s"] = history_s
    result.update(_throughput(run, len(pairs), reps, lambda: engine.restore(snap)))
    if backend == "native":
        batch = _throughput(
            lambda: engine.process_batch(pairs), len(pairs), reps, lambda: engine.restore(snap)
        )
        result["batch_cpu_events_per_s"] = batch["cpu_events_per_s"]
        result["batch_wall_events_per_s"] = batch["wall_events_per_s"]

    engine.restore(snap)
    clock = time.perf_counter_ns
    latencies: dict[str, list[int]] = {}
    for e, inp, flow, _ in events:
        t = clock()
        process(e, inp)
        latencies.setdefault(flow, []).append(clock() - t)
    result["flows"] = {flow: _percentiles(v) for flow, v in sorted(latencies.items())}
    result["all"] = _percentiles([x for v in latencies.values() for x in v])
    result["state_hash"] = engine.state_hash()
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result["table_memory"] = _table_memory(engine)
    gc.unfreeze()
    return result


def _table_memory(engine: Engine) -> dict[str, Any]:
    """Bytes of the engine's tables, apart from the rest of the process.

    Columns: the int64 words and bool NULL bits of every physical column, for the rows held
    (`used`) and for the arrays' allocated capacity (`allocated`). Index: the native backend's
    open-addressing slot array (its Python dict is built only when read, and this does not read
    it); the other backends' key dict, as sys.getsizeof of the dict, its key tuples and their
    integers. Mirror: the fast path's per-column Python lists and their integers. The getsizeof
    sums count shared small integers more than once, so they are an upper estimate.
    """
    tables: dict[str, Any] = {}
    totals = {"columns_used_bytes": 0, "columns_allocated_bytes": 0, "index_bytes": 0, "mirror_bytes": 0}
    size = sys.getsizeof
    for table in engine.state.tables.values():
        n, cap = table.n_rows, table.capacity
        used = n * sum(w.itemsize + z.itemsize for w, z in zip(table.words, table.nulls, strict=True))
        allocated = sum(w.nbytes + z.nbytes for w, z in zip(table.words, table.nulls, strict=True))
        slots = getattr(table, "slots", None)
        if slots is not None:
            index = int(slots.nbytes)
        else:
            keys = table.index
            index = size(keys) + sum(size(k) for k in keys) + sum(size(v) for k in keys for v in k)
        mirror = 0
        if table.mirror is not None:
            mirror = sum(size(col) + sum(map(size, col)) for col in table.mirror)
        entry = {
            "rows": n,
            "capacity": cap,
            "columns_used_bytes": used,
            "columns_allocated_bytes": allocated,
            "index_bytes": index,
            "mirror_bytes": mirror,
        }
        tables[table.config.name] = entry
        for k in totals:
            totals[k] += entry[k]
    total = totals["columns_allocated_bytes"] + totals["index_bytes"] + totals["mirror_bytes"]
    return {**totals, "total_mb": round(total / 2**20, 1), "tables": tables}


# Latency histogram for the chunked levels: one bin per nanosecond below HIST_NS, the values at or
# over it kept one by one, so the percentiles and the maximum are the exact order statistics.
HIST_NS = 100_000


class Latencies:
    def __init__(self) -> None:
        self.counts = np.zeros(HIST_NS, np.int64)
        self.over: list[int] = []

    def add(self, values: list[int]) -> None:
        a = np.asarray(values, np.int64)
        big = a >= HIST_NS
        if big.any():
            self.over.extend(a[big].tolist())
            a = a[~big]
        self.counts += np.bincount(a, minlength=HIST_NS)

    def merge(self, other: Latencies) -> None:
        self.counts += other.counts
        self.over.extend(other.over)

    def percentiles(self) -> dict[str, float]:
        over = sorted(self.over)
        below = int(self.counts.sum())
        n = below + len(over)
        cum = np.cumsum(self.counts)

        def at(i: int) -> int:  # the i-th smallest value, 0-based
            if i < below:
                return int(np.searchsorted(cum, i + 1))
            return over[i - below]

        return {
            "n": n,
            "p50_us": at(n // 2) / 1000,
            "p99_us": at(min(n - 1, int(n * 0.99))) / 1000,
            "max_us": at(n - 1) / 1000,
        }


Chunk = list[tuple[Event, tuple[int | None, ...], str]]


class ChunkedEngine:
    """One engine timed chunk by chunk over a session too long to hold in memory.

    Its state carries over from chunk to chunk, so every event runs once, in session order. The
    chunks take turns at what they measure, with no snapshot or rerun: throughput (one call per
    event, no clock per event), for native also the batch call, and latency (a clock around each
    event). Each figure is thus taken over a share of the chunks spread across the whole session.
    """

    def __init__(self, image: Image, data_dir: Path, backend: Backend) -> None:
        t0 = time.perf_counter()
        self.engine = Engine(image, backend)
        self.build_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        self.rows = load_data(self.engine, data_dir)
        self.load_s = time.perf_counter() - t0
        self.backend = backend
        self.modes = ("events", "batch", "latency") if backend == "native" else ("events", "latency")
        self.time = {m: [0, 0.0, 0.0] for m in self.modes if m != "latency"}  # events, cpu s, wall s
        self.chunk_rates: list[float] = []
        self.latencies: dict[str, Latencies] = {}
        self.n_chunks = 0

    def run(self, chunk: Chunk) -> None:
        mode = self.modes[self.n_chunks % len(self.modes)]
        self.n_chunks += 1
        engine = self.engine
        process = engine.process
        if mode == "latency":
            clock = perf_counter_ns
            lat: dict[str, list[int]] = {}
            for e, inp, flow in chunk:
                t = clock()
                process(e, inp)
                lat.setdefault(flow, []).append(clock() - t)
            for flow, values in lat.items():
                self.latencies.setdefault(flow, Latencies()).add(values)
            return
        pairs = [(e, inp) for e, inp, _ in chunk]
        w0, c0 = time.perf_counter(), time.process_time()
        if mode == "batch":
            engine.process_batch(pairs)
        else:
            for e, inp in pairs:
                process(e, inp)
        c1, w1 = time.process_time(), time.perf_counter()
        acc = self.time[mode]
        acc[0] += len(pairs)
        acc[1] += c1 - c0
        acc[2] += w1 - w0
        if mode == "events":
            self.chunk_rates.append(round(len(pairs) / max(c1 - c0, 1e-9)))

    def progress(self) -> str:
        """Running figures, for the log of a run that may be stopped part-way."""
        n, cpu, _ = self.time["events"]
        every = Latencies()
        for h in self.latencies.values():
            every.merge(h)
        p99 = every.percentiles()["p99_us"] if every.over or every.counts.any() else float("nan")
        last = self.chunk_rates[-1] if self.chunk_rates else 0
        return f"{self.backend} {n / max(cpu, 1e-9):,.0f} events/s (last chunk {last:,}), p99 {p99:.1f} us"

    def result(self, chunk_events: int) -> dict[str, Any]:
        n, cpu, wall = self.time["events"]
        out: dict[str, Any] = {
            "backend": self.backend,
            "build_s": round(self.build_s, 3),
            "rows_loaded": self.rows,
            "load_s": round(self.load_s, 3),
            "cpu_events_per_s": n / max(cpu, 1e-9),
            "wall_events_per_s": n / max(wall, 1e-9),
            "runs": 1,
        }
        if "batch" in self.time:
            bn, bcpu, bwall = self.time["batch"]
            out["batch_cpu_events_per_s"] = bn / max(bcpu, 1e-9)
            out["batch_wall_events_per_s"] = bn / max(bwall, 1e-9)
        out["flows"] = {flow: h.percentiles() for flow, h in sorted(self.latencies.items())}
        every = Latencies()
        for h in self.latencies.values():
            every.merge(h)
        out["all"] = every.percentiles()
        out["state_hash"] = self.engine.state_hash()
        out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        out["table_memory"] = _table_memory(self.engine)
        out["chunked"] = {
            "chunk_events": chunk_events,
            "chunks": self.n_chunks,
            "measures": list(self.modes),
            "timed_events": {m: v[0] for m, v in self.time.items()},
            "chunk_cpu_events_per_s": self.chunk_rates,
            "latency": f"exact order statistics: 1 ns histogram below {HIST_NS} ns, values above kept",
        }
        return out


def bench_chunked(
    image: Image,
    data_dir: Path,
    data: DataSet,
    orders_per_account: int,
    backends: list[Backend],
    chunk_events: int,
) -> tuple[int, dict[str, dict[str, Any]]]:
    """Record the session and time it chunk by chunk, never holding more than one chunk of events.

    The session keeps none of its rows (`keep=False`): at 1,000,000 orders per account they would
    take several GB. The engines' state hashes equal an unchunked run's (tests/test_bench_engine.py).
    """
    recorder = Engine(image, "native" if compiler() is not None else "fast")
    load_data(recorder, data_dir)
    engines = [ChunkedEngine(image, data_dir, b) for b in backends]
    gc.collect()
    gc.freeze()
    chunk: Chunk = []
    total = 0

    def flush() -> None:
        nonlocal chunk, total
        total += len(chunk)
        for ce in engines:
            ce.run(chunk)
        chunk = []
        gc.freeze()  # what the session and the engines keep is long-lived: no full collections over it
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        running = "; ".join(ce.progress() for ce in engines)
        print(f"  {total:,} events: {running}; peak RSS {rss:,.0f} MB", file=sys.stderr, flush=True)

    def decide(row: Row) -> bool:
        event = EVENT_NAMES[str(row[0])]
        inputs = event_inputs(_fields(row))
        accepted = recorder.process(event, inputs).accepted
        chunk.append((event, inputs, FLOWS[(row[4] == 0, event)]))
        if len(chunk) >= chunk_events:
            flush()
        return accepted

    Session(data=data, n_orders=orders_per_account * data.n_accounts, seed=1).run(decide, keep=False)
    if chunk:
        flush()
    results: dict[str, dict[str, Any]] = {ce.backend: ce.result(chunk_events) for ce in engines}
    gc.unfreeze()
    return total, results


def bench_sqlite(
    rule_files: list[Path], data_dir: Path, events: Recorded, prepare: Callable[[Any], None] | None = None
) -> dict[str, Any]:
    """`prepare`, when given, fills the oracle's tables further after the data load (bench.history)."""
    sys.path.insert(0, str(ROOT / "tests"))
    try:
        from oracle.replay import Oracle, compile_rules, read_table_csv  # type: ignore[import-not-found]
    except ImportError as exc:  # a release without tests/: no baseline
        return {"skipped": f"tests/oracle not importable: {exc}"}
    program, keys = compile_rules(rule_files)
    oracle = Oracle(program, keys)
    for table in program.tables:
        path = data_dir / f"{table.name}.csv"
        if path.exists():
            oracle.load(table.name, read_table_csv(path, table))
    history_s = None
    if prepare is not None:
        t0 = time.perf_counter()
        prepare(oracle)
        history_s = round(time.perf_counter() - t0, 3)
    decoded = [(str(row[0]), {n: v for n, v in _fields(row).items()}, flow) for _, _, flow, row in events]
    clock = time.perf_counter_ns
    latencies: dict[str, list[int]] = {}
    c0, w0 = time.process_time(), time.perf_counter()
    for kind, fields, flow in decoded:
        t = clock()
        oracle.event(kind, fields)
        latencies.setdefault(flow, []).append(clock() - t)
    c1, w1 = time.process_time(), time.perf_counter()
    return {
        **({"history_install_s": history_s} if history_s is not None else {}),
        "cpu_events_per_s": len(decoded) / max(c1 - c0, 1e-9),
        "wall_events_per_s": len(decoded) / max(w1 - w0, 1e-9),
        "flows": {flow: _percentiles(v) for flow, v in sorted(latencies.items())},
        "all": _percentiles([x for v in latencies.values() for x in v]),
    }


# (orders per account, runs, how): "replay" records the whole session and replays it; "history"
# builds the order history of the session in bulk (bench.history) and replays a sample session of
# SAMPLE_PER_ACCOUNT orders per account on top. `--replay` replays every level instead ("chunked"
# at 1,000,000: recorded and timed in chunks, about 34M events, without SQLite).
LEVELS = [
    (1_000, 5, "replay"),
    (10_000, 3, "replay"),
    (100_000, 3, "history"),
    (1_000_000, 1, "history"),
]
QUICK_LEVELS = 2
CHUNK_EVENTS = 500_000
SAMPLE_PER_ACCOUNT = 2_000
# The fast path keeps a Python list per column beside the arrays (about 500 bytes a row with the
# index): at 1,000,000 orders per account (21M order_info rows) that is more than 10 GB, too much
# for a shared machine. Above this level only the native backend and SQLite run.
FAST_PATH_MAX = 100_000


def _report(level: dict[str, Any]) -> None:
    for key in ("engine", "engine_native"):
        if "all" not in level.get(key, {}):  # not run, or skipped (its reason is in the JSON)
            continue
        eng = level[key]
        batch = eng.get("batch_cpu_events_per_s")
        print(
            f"  {eng['backend']}: {eng['cpu_events_per_s']:,.0f} events/s (CPU), "
            f"{eng['wall_events_per_s']:,.0f} (wall); "
            f"p50 {eng['all']['p50_us']:.1f} us, p99 {eng['all']['p99_us']:.1f} us"
            + (f"; batch {batch:,.0f} events/s (CPU)" if batch else "")
            + f"; tables {eng['table_memory']['total_mb']:,.1f} MB, peak RSS {eng['peak_rss_mb']:,.0f} MB",
            file=sys.stderr,
        )
    if "sqlite" in level and "all" in level["sqlite"]:
        sq = level["sqlite"]
        print(
            f"  sqlite: {sq['cpu_events_per_s']:,.0f} events/s (CPU); "
            f"p50 {sq['all']['p50_us']:.1f} us, p99 {sq['all']['p99_us']:.1f} us",
            file=sys.stderr,
        )


def run(
    quick: bool,
    only: list[int] | None = None,
    chunk_events: int = CHUNK_EVENTS,
    out: Path | None = None,
    replay_all: bool = False,
) -> dict[str, Any]:
    """Every level's figures; with `out`, written there after each level, so a long run that is
    stopped keeps the levels it finished."""
    image = compile_files(RULES).image
    data = DataSet()
    levels = LEVELS[:QUICK_LEVELS] if quick else LEVELS
    if only:
        levels = [lv for lv in LEVELS if lv[0] in only]
    results: dict[str, Any] = {
        "scenario": {
            "accounts": data.n_accounts,
            "securities": data.n_securities,
            "holdings_per_account": data.holdings_per_account,
            "rules": [p.name for p in RULES],
        },
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "quick": quick,
        "levels": {},
    }
    with tempfile.TemporaryDirectory(prefix="riskgw-bench-") as tmp:
        data_dir = data.write(Path(tmp) / "data")
        for per_account, full_reps, how in levels:
            reps = 1 if quick else full_reps  # CI keeps the scripts working; medians need the full run
            if replay_all and how == "history":
                how, reps = ("chunked" if per_account >= 1_000_000 else "replay"), 1
            level: dict[str, Any]
            if how == "chunked":
                backends: list[Backend] = ["fast", "native"] if compiler() is not None else ["fast"]
                print(
                    f"engine bench: {per_account} orders per account: recording and timing "
                    f"in chunks of {chunk_events:,} events ({', '.join(backends)})",
                    file=sys.stderr,
                )
                n_events, timed = bench_chunked(image, data_dir, data, per_account, backends, chunk_events)
                level = {"events": n_events, "method": "replay, chunked", "engine": timed["fast"]}
                if "native" in timed:
                    level["engine_native"] = timed["native"]
                level["sqlite"] = {"skipped": "SQLite is too slow for this level's session (hours)"}
            elif how == "history":
                level = bench_history(image, data_dir, data, per_account, reps)
            else:
                print(
                    f"engine bench: {per_account} orders per account: recording the session", file=sys.stderr
                )
                events = record_session(image, data_dir, data, per_account)
                print(f"  {len(events)} events; timing the engine ({reps} runs)", file=sys.stderr)
                level = {
                    "events": len(events),
                    "method": "replay",
                    "engine": bench_engine(image, data_dir, events, reps),
                }
                if compiler() is not None:
                    print(f"  timing the native backend ({reps} runs)", file=sys.stderr)
                    level["engine_native"] = bench_engine(image, data_dir, events, reps, "native")
                if per_account <= 10_000:
                    print("  timing SQLite", file=sys.stderr)
                    level["sqlite"] = bench_sqlite(RULES, data_dir, events)
                else:
                    level["sqlite"] = {"skipped": "SQLite is too slow for this level's session (hours)"}
                del events
            results["levels"][str(per_account)] = level
            if out is not None:
                _write(out, results)
            _report(level)
    return results


def bench_history(image: Image, data_dir: Path, data: DataSet, per_account: int, reps: int) -> dict[str, Any]:
    """A level built in bulk: the order history a session of `per_account` orders per account
    leaves in order_info (bench.history), then a sample session replayed and timed on top of it,
    through the engine's backends and SQLite."""
    from bench import history

    sample = min(SAMPLE_PER_ACCOUNT, per_account)
    print(
        f"engine bench: {per_account} orders per account: order history in bulk, then a "
        f"{sample}-orders-per-account session on top",
        file=sys.stderr,
    )
    events = record_session(image, data_dir, data, sample)
    # how many order_info rows a session leaves per order sent: the sample session's own share
    counter = Engine(image, "native" if compiler() is not None else "fast")
    load_data(counter, data_dir)
    for e, inp, _, _ in events:
        counter.process(e, inp)
    sample_rows = counter.state.by_name(history.TABLE).n_rows
    del counter
    orders = sample * data.n_accounts
    n_history = round(sample_rows / orders * (per_account - sample) * data.n_accounts)
    t0 = time.perf_counter()
    h = history.history(data, n_history)
    print(
        f"  {n_history:,} history rows ({sample_rows / orders:.3f} per order sent) built in "
        f"{time.perf_counter() - t0:.0f} s; {len(events):,} sample events",
        file=sys.stderr,
        flush=True,
    )

    def install(engine: Engine) -> None:
        history.install(engine, history.table_state(image, data, h))

    level: dict[str, Any] = {
        "events": len(events),
        "method": "history",
        "history": {
            "what": (
                "order_info filled in bulk with the finished orders (open_quantity 0) a session of "
                f"{per_account:,} orders per account leaves, through the engine's table API "
                "(ColumnTable.load) and SQLite executemany; then a real session of "
                f"{sample:,} orders per account replayed on top: its events are the ones timed. "
                "Every other table has the same rows at any session length."
            ),
            "order_info_history_rows": n_history,
            "order_info_rows_per_order_sent": round(sample_rows / orders, 4),
            "sample_orders_per_account": sample,
            "sample_events": len(events),
        },
    }
    backends: list[Backend] = ["fast", "native"] if compiler() is not None else ["fast"]
    if per_account > FAST_PATH_MAX and "native" in backends:
        backends.remove("fast")
        level["engine"] = {
            "skipped": f"the fast path's Python column lists of {n_history:,} rows need more than 10 GB "
            f"(it runs up to {FAST_PATH_MAX:,} orders per account)"
        }
    for b in backends:
        print(f"  timing the {b} backend ({reps} runs)", file=sys.stderr, flush=True)
        level["engine" if b == "fast" else "engine_native"] = bench_engine(
            image, data_dir, events, reps, b, prepare=install
        )
        gc.collect()
    print("  timing SQLite", file=sys.stderr, flush=True)
    level["sqlite"] = bench_sqlite(
        RULES, data_dir, events, prepare=lambda oracle: history.into_sqlite(oracle, h)
    )
    return level


def _write(out: Path, results: dict[str, Any]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.engine", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1k and 10k orders per account only")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "engine.json"))
    parser.add_argument(
        "--levels",
        type=lambda v: [int(x) for x in v.split(",")],
        help=f"only these orders-per-account levels, of {','.join(str(lv[0]) for lv in LEVELS)}",
    )
    parser.add_argument(
        "--chunk-events",
        type=int,
        default=CHUNK_EVENTS,
        help="events per chunk at the chunked (1,000,000) level",
    )
    parser.add_argument(
        "--replay",
        action="store_true",
        help="replay every level's whole session (an hour at 1,000,000), not its history built in bulk",
    )
    args = parser.parse_args(argv)
    if args.levels and not set(args.levels) <= {lv[0] for lv in LEVELS}:
        parser.error(f"levels are among {', '.join(str(lv[0]) for lv in LEVELS)}")
    out = Path(args.out)
    run(args.quick, args.levels, args.chunk_events, out, args.replay)
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
