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
- baseline: the same events through SQLite with a unique index on every table key, running the
  rules as queries and the flows as triggers (the test suite's SQLite translation, tests/oracle).

`--quick` runs 1,000 and 10,000 orders per account; the full run adds 100,000 (one run, no SQLite).
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
from typing import Any

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
    run: Callable[[], None], n_events: int, reps: int, reset: Callable[[], None]
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
    image: Image, data_dir: Path, events: Recorded, reps: int, backend: Backend = "fast"
) -> dict[str, Any]:
    t0 = time.perf_counter()
    engine = Engine(image, backend)
    build_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    rows = load_data(engine, data_dir)
    load_s = time.perf_counter() - t0
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
    gc.unfreeze()
    return result


def bench_sqlite(rule_files: list[Path], data_dir: Path, events: Recorded) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT / "tests"))
    try:
        from oracle.replay import Oracle, compile_rules, read_table_csv  # type: ignore[import-not-found]
    except ImportError as exc:  # a release without tests/: no baseline
        return {"skipped": f"tests/oracle not importable: {exc}"}
    program, keys = compile_rules(rule_files)
    oracle = Oracle(program, keys)
    for t in program.tables:
        path = data_dir / f"{t.name}.csv"
        if path.exists():
            oracle.load(t.name, read_table_csv(path, t))
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
        "cpu_events_per_s": len(decoded) / max(c1 - c0, 1e-9),
        "wall_events_per_s": len(decoded) / max(w1 - w0, 1e-9),
        "flows": {flow: _percentiles(v) for flow, v in sorted(latencies.items())},
        "all": _percentiles([x for v in latencies.values() for x in v]),
    }


def run(quick: bool) -> dict[str, Any]:
    image = compile_files(RULES).image
    data = DataSet()
    levels = [(1_000, 5, True), (10_000, 3, True)]
    if not quick:
        levels.append((100_000, 1, False))
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
        for per_account, reps, with_sqlite in levels:
            print(f"engine bench: {per_account} orders per account: recording the session", file=sys.stderr)
            events = record_session(image, data_dir, data, per_account)
            print(f"  {len(events)} events; timing the engine ({reps} runs)", file=sys.stderr)
            level: dict[str, Any] = {
                "events": len(events),
                "engine": bench_engine(image, data_dir, events, reps),
            }
            if compiler() is not None:
                print(f"  timing the native backend ({reps} runs)", file=sys.stderr)
                level["engine_native"] = bench_engine(image, data_dir, events, reps, "native")
            if with_sqlite:
                print("  timing SQLite", file=sys.stderr)
                level["sqlite"] = bench_sqlite(RULES, data_dir, events)
            results["levels"][str(per_account)] = level
            for key in ("engine", "engine_native"):
                if key not in level:
                    continue
                eng = level[key]
                batch = eng.get("batch_cpu_events_per_s")
                print(
                    f"  {eng['backend']}: {eng['cpu_events_per_s']:,.0f} events/s (CPU), "
                    f"{eng['wall_events_per_s']:,.0f} (wall); "
                    f"p50 {eng['all']['p50_us']:.1f} us, p99 {eng['all']['p99_us']:.1f} us"
                    + (f"; batch {batch:,.0f} events/s (CPU)" if batch else ""),
                    file=sys.stderr,
                )
            if "sqlite" in level and "all" in level["sqlite"]:
                sq = level["sqlite"]
                print(
                    f"  sqlite: {sq['cpu_events_per_s']:,.0f} events/s (CPU); "
                    f"p50 {sq['all']['p50_us']:.1f} us, p99 {sq['all']['p99_us']:.1f} us",
                    file=sys.stderr,
                )
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.engine", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1k and 10k orders per account only")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "engine.json"))
    args = parser.parse_args(argv)
    results = run(args.quick)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
