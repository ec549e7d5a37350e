"""Baselines: the checks openpit supports, on the same session, through riskgw, SQLite and openpit
-> bench/results/baselines.json.

    python -m bench.baselines [--quick] [--out bench/results/baselines.json]

The checks: the funds check for buys and the holdings check for sells (rules/10_funds.sql,
20_holdings.sql) with the flows that freeze and release amounts (90_flows.sql): what openpit's
SpotFunds policy does. One scripted session per level (riskgw.scenario, seed 1) is recorded once
and replayed through

- riskgw's software engine, the fast path and, with a C compiler, the native backend;
- an indexed SQLite (the "software database" approach): the rules as SQL queries and the flows as
  triggers against tables with a unique index on every key, per event (tests/oracle's translation);
- openpit's SpotFunds (bench/baselines/openpit_risk.py).

Throughput is events per second of CPU time, median of several runs; latency is the wall time of
each event, p50 / p99 / max per flow. `ratios` divides each baseline's figure by riskgw native's.
The three do not model everything alike (openpit also validates price > 0 and knows no CHAR key
width), so `verdict_agreement` says on how many orders openpit and riskgw agree.
`--quick` runs 250 orders per account once (CI: the script works); a full run, 1,000 thrice and 10,000.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.engine import ROOT, bench_engine, bench_sqlite, record_session
from riskgw.doe.compiler import compile_files
from riskgw.doe.isa import Event
from riskgw.engine.cbuild import compiler
from riskgw.engine.engine import Backend, Engine
from riskgw.engine.replay import load_data
from riskgw.scenario import DataSet

CHECK_RULES = [
    ROOT / "rules" / n for n in ("00_schema.sql", "10_funds.sql", "20_holdings.sql", "90_flows.sql")
]
LEVELS = [(1_000, 3), (10_000, 1)]  # (orders per account, runs)
QUICK_LEVELS = [(250, 1)]


def _ratio(num: float, den: float) -> float | None:
    return round(num / den, 2) if den else None


def run_level(per_account: int, reps: int, data: DataSet, data_dir: Path) -> dict[str, Any]:
    from bench.baselines.openpit_risk import bench_openpit

    image = compile_files(CHECK_RULES).image
    t0 = time.perf_counter()
    events = record_session(image, data_dir, data, per_account)
    print(
        f"  baselines {per_account:,}/account: {len(events):,} events recorded in "
        f"{time.perf_counter() - t0:.0f} s",
        file=sys.stderr,
        flush=True,
    )
    backend: Backend = "native" if compiler() is not None else "fast"
    judge = Engine(image, backend)
    load_data(judge, data_dir)
    ours: list[bool] = []
    for e, inp, _, _ in events:
        accepted = judge.process(e, inp).accepted  # every event: fills and cancels release amounts
        if e == Event.NEW:
            ours.append(accepted)
    del judge

    level: dict[str, Any] = {"events": len(events), "orders": len(ours), "riskgw_accepted_orders": sum(ours)}
    pairs: tuple[tuple[str, Backend], ...] = (("riskgw_fast", "fast"), ("riskgw_native", "native"))
    for key, b in pairs:
        if b == "native" and compiler() is None:
            level[key] = {"skipped": "no C compiler for the native backend"}
            continue
        print(f"  baselines {per_account:,}/account: riskgw {b} ({reps} runs)", file=sys.stderr, flush=True)
        level[key] = bench_engine(image, data_dir, events, reps, b)
    print(f"  baselines {per_account:,}/account: SQLite", file=sys.stderr, flush=True)
    level["sqlite"] = bench_sqlite(CHECK_RULES, data_dir, events)
    print(f"  baselines {per_account:,}/account: openpit ({reps} runs)", file=sys.stderr, flush=True)
    try:
        pit = bench_openpit(data, [(row, flow) for _, _, flow, row in events], reps)
    except ImportError as exc:
        level["openpit"] = {"skipped": f"openpit is not installed ({exc}); `make bench` installs it"}
    else:
        theirs = pit.pop("verdicts")
        same = sum(a == b for a, b in zip(ours, theirs, strict=True))
        level["openpit"] = pit
        level["verdict_agreement"] = {
            "orders": len(ours),
            "same_verdict": same,
            "share": round(same / max(len(ours), 1), 4),
            "both_accept": sum(a and b for a, b in zip(ours, theirs, strict=True)),
            "only_riskgw_accepts": sum(a and not b for a, b in zip(ours, theirs, strict=True)),
            "only_openpit_accepts": sum(b and not a for a, b in zip(ours, theirs, strict=True)),
        }
    ref_key = "riskgw_native" if "all" in level.get("riskgw_native", {}) else "riskgw_fast"
    ref = level[ref_key]
    ratios: dict[str, Any] = {"against": ref_key}
    for key in ("riskgw_fast", "sqlite", "openpit"):
        other = level.get(key, {})
        if key == ref_key or "all" not in other:
            continue
        ratios[key] = {
            "p50_latency_x": _ratio(other["all"]["p50_us"], ref["all"]["p50_us"]),
            "p99_latency_x": _ratio(other["all"]["p99_us"], ref["all"]["p99_us"]),
            "cpu_throughput_x": _ratio(ref["cpu_events_per_s"], other["cpu_events_per_s"]),
        }
    level["ratios"] = ratios
    return level


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.baselines", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="250 orders per account only")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "baselines.json")
    args = parser.parse_args(argv)
    data = DataSet()
    doc: dict[str, Any] = {
        "bench": "baselines",
        "quick": args.quick,
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "rules": [p.name for p in CHECK_RULES],
        "scenario": {
            "accounts": data.n_accounts,
            "securities": data.n_securities,
            "holdings_per_account": data.holdings_per_account,
            "session_seed": 1,
        },
        "notes": [
            "Same events, same checks (funds for buys, holdings for sells, frozen amounts): riskgw's "
            "engine, SQLite with indexed tables (rules as queries, flows as triggers) and openpit's "
            "SpotFunds policy.",
            "Throughput: events per CPU second, median of the runs; latency: wall time of each event.",
            "ratios: the baseline's latency over riskgw's, and riskgw's throughput over the baseline's "
            "(above 1: riskgw is faster).",
        ],
        "levels": {},
    }
    with tempfile.TemporaryDirectory(prefix="riskgw-baselines-") as tmp:
        data_dir = data.write(Path(tmp) / "data")
        for per_account, reps in QUICK_LEVELS if args.quick else LEVELS:
            doc["levels"][str(per_account)] = run_level(per_account, reps, data, data_dir)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    print(f"bench.baselines: wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
