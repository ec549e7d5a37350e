"""The software engine against the number of rules and the nesting depth: the DOE's sweeps of
bench/hdl.py (figures 3 and 4) on the same generated rule files -> bench/results/sweeps.json.

    python -m bench.sweeps [--quick] [--orders N] [--out bench/results/sweeps.json]

Each case compiles rules/00_schema.sql with one generated file (bench.hdl.rule_file: N limit rules
over one keyed holdings lookup; bench.hdl.nesting_file: one rule nested D operations deep), loads
the reference data set and times NEW orders on held securities, one perf_counter_ns pair around
each call: p50 / p99 / max in µs, and events per CPU second over all of them. The rule files have
no flows, so an order changes no state and every case sees the same orders. Native backend when a
C compiler is there (the fast path otherwise).
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.engine import ROOT, _percentiles
from bench.hdl import DEPTHS, RULE_COUNTS, generated_rules
from riskgw.doe.compiler import compile_files
from riskgw.doe.isa import Event
from riskgw.engine.cbuild import compiler
from riskgw.engine.engine import Backend, Engine, event_inputs
from riskgw.engine.replay import load_data
from riskgw.scenario import DataSet, ref_price, ticket

ORDERS = 20_000
QUICK_ORDERS = 2_000


def orders(data: DataSet, n: int, seed: int = 3) -> list[tuple[int | None, ...]]:
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        account = rnd.randrange(data.n_accounts)
        sec = data.held(account, rnd.randrange(data.holdings_per_account))
        fields: dict[str, int | str | None] = {
            "order_id": 1_000 + i,
            "account_id": account,
            "ticket_id": ticket(sec),
            "direction": rnd.randrange(2),
            "price": ref_price(sec),
            "quantity": rnd.randrange(1, 10) * 100,
            "ts": 34_200_000_000_000 + i * 1_000_000,
        }
        out.append(tuple(event_inputs(fields)))
    return out


def time_case(
    files: list[str], data_dir: Path, inputs: list[tuple[int | None, ...]], backend: Backend
) -> dict[str, Any]:
    image = compile_files([Path(f) for f in files]).image
    engine = Engine(image, backend)
    load_data(engine, data_dir)
    process = engine.process
    for inp in inputs[:200]:  # warm-up: caches and branch predictors, as in a running gateway
        process(Event.NEW, inp)
    gc.collect()
    gc.freeze()
    clock = time.perf_counter_ns
    lat: list[int] = []
    accepted = 0
    c0 = time.process_time()
    for inp in inputs:
        t = clock()
        d = process(Event.NEW, inp)
        lat.append(clock() - t)
        accepted += d.accepted
    cpu = time.process_time() - c0
    gc.unfreeze()
    return _percentiles(lat) | {
        "cpu_events_per_s": round(len(inputs) / max(cpu, 1e-9)),
        "accepted": accepted,
        "rules": len(image.rules),
        "new_section_bundles": len(image.section(Event.NEW)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sweeps", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"the end points only, {QUICK_ORDERS:,} orders")
    parser.add_argument("--orders", type=int, help=f"orders per case (default {ORDERS:,})")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "sweeps.json")
    args = parser.parse_args(argv)
    n = args.orders or (QUICK_ORDERS if args.quick else ORDERS)
    backend: Backend = "native" if compiler() is not None else "fast"
    counts = (RULE_COUNTS[0], RULE_COUNTS[-1]) if args.quick else RULE_COUNTS
    depths = (DEPTHS[0], DEPTHS[-1]) if args.quick else DEPTHS
    data = DataSet()
    doc: dict[str, Any] = {
        "bench": "sweeps",
        "quick": args.quick,
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "backend": backend,
        "orders_per_case": n,
        "notes": [
            "Software engine, NEW orders only, on bench.hdl's generated rule files: wall time per call "
            "(perf_counter_ns), after a 200-order warm-up; the rule files have no flows, so no state "
            "changes between orders."
        ],
        "rules_sweep": {},
        "nesting_sweep": {},
    }
    with tempfile.TemporaryDirectory(prefix="riskgw-sweeps-") as tmp:
        data_dir = data.write(Path(tmp) / "data")
        cases = generated_rules(Path(tmp) / "rules")
        inputs = orders(data, n)
        for key, sweep, points in (("rules_sweep", "rules", counts), ("nesting_sweep", "nesting", depths)):
            for p in points:
                t0 = time.perf_counter()
                doc[key][str(p)] = time_case(cases[sweep][str(p)], data_dir, inputs, backend)
                r = doc[key][str(p)]
                print(
                    f"  sweeps {sweep} {p}: p50 {r['p50_us']:.2f} us, p99 {r['p99_us']:.2f} us "
                    f"({time.perf_counter() - t0:.0f} s)",
                    file=sys.stderr,
                    flush=True,
                )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    print(f"bench.sweeps: wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
