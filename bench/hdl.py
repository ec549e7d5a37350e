"""DOE cycle counts in Verilator: latency per flow and table size, rule count and nesting sweeps, and
the initiation interval of back-to-back orders -> bench/results/hdl.json.

Cycle counts from Verilator are exact for this RTL; nanoseconds assume a 250 MHz clock (4 ns), a
clock the design has not been shown to close timing at. The cocotb side is bench/hdl_tb.py.

The reference rows reach the DOE as LOAD events through its event port, offered back to back by a
row streamer in the bench's wrapper (bench/bench_rgw_doe.sv) rather than one cocotb transaction
per row (an hour for 1M rows). The smallest size and the sweeps run on a build sized for it; the
larger sizes on one build sized for the largest, its tables grown from size to size. The Verilator
model runs about 50,000 cycles per CPU second: the 1M-row build's reset clear (2^21 buckets x 8
tables) and load (about 17 cycles a row) are some 35M cycles, ten-odd CPU minutes, 2.7 GB.
`--quick` runs 100 orders on the DOE suite's default build, which `make test` builds.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from riskgw.card.doeport import DoeParams

if TYPE_CHECKING:
    # the cocotb side is imported only where it runs (write_rows): bench.hdl itself needs no cocotb
    from bench.hdl_tb import BenchSpec, Job

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
RULES = REPO / "rules"
REFERENCE_RULES = [
    RULES / f
    for f in ("00_schema.sql", "10_funds.sql", "20_holdings.sql", "30_self_trade.sql", "90_flows.sql")
]
SIZES = (1_000, 10_000, 100_000, 1_000_000)
# --quick: the DOE suite's default build (sim/doe/test_doe.py PARAM_SETS["default"]), which `make
# test` has built, so CI runs no Verilator build of its own; orders and samples that fit its rows
QUICK_PARAMS = DoeParams(rows=256)
QUICK_SIZES = (100,)
QUICK_SAMPLES = 16
STREAM_TOP = "bench_rgw_doe"
TEST_TOP = "test_rgw_doe"
RULE_COUNTS = (4, 8, 16, 32, 64, 128)
DEPTHS = (2, 5, 10, 20)
TARGETS = {
    "latency_cycles_doe": 24,
    "jitter_cycles": 1,
    "rules_4_to_128_extra_cycles": 2,
    "nesting_2_to_20_extra_cycles": 5,
    "initiation_interval_cycles": 2,
}


def rule_file(n: int) -> str:
    """n price / quantity limit rules over one keyed lookup (the same lookup: computed once)."""
    lookup = (
        "(select avail_quantity from account_ticket_info"
        " where account_id = trade_order.account_id and ticket_id = trade_order.ticket_id)"
    )
    out = []
    for i in range(n):
        lhs = f"trade_order.quantity * {i + 1}" if i % 2 == 0 else f"trade_order.price + {i}"
        out.append(f"Rule Limit{i} (\n    {lhs} <= {lookup}\n)\n")
    return "\n".join(out)


def nesting_file(depth: int) -> str:
    """One rule whose left side nests `depth` operations deep, over the same keyed lookup."""
    expr = "trade_order.quantity"
    for level in range(1, depth):
        expr = f"({expr} + trade_order.price)" if level % 2 else f"({expr} - {level})"
    lookup = (
        "(select avail_quantity from account_ticket_info"
        " where account_id = trade_order.account_id and ticket_id = trade_order.ticket_id)"
    )
    return f"Rule Nested{depth} (\n    {expr} <= {lookup}\n)\n"


def generated_rules(root: Path) -> dict[str, dict[str, list[str]]]:
    root.mkdir(parents=True, exist_ok=True)
    schema = str(RULES / "00_schema.sql")
    cases: dict[str, dict[str, list[str]]] = {"rules": {}, "nesting": {}}
    for n in RULE_COUNTS:
        p = root / f"50_limits_{n}.sql"
        p.write_text(rule_file(n))
        cases["rules"][str(n)] = [schema, str(p)]
    for d in DEPTHS:
        p = root / f"50_nesting_{d}.sql"
        p.write_text(nesting_file(d))
        cases["nesting"][str(d)] = [schema, str(p)]
    return cases


def rows_param(orders: int, samples: int) -> int:
    """The ROWS parameter: a power of two holding the preloaded orders and those the flows open."""
    need = orders + 2 * samples + 64
    return 1 << (need - 1).bit_length()


def machine() -> dict[str, Any]:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    verilator = subprocess.run(["verilator", "--version"], capture_output=True, text=True).stdout.strip()
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "verilator": verilator}


def _sim_on_path() -> None:
    """sim/simrun.py (the suite's cocotb runner) and sim/doe importable: sim/ is not a package.
    (pyproject's mypy_path names sim/ so that mypy finds simrun too.)"""
    sys.path.insert(0, str(REPO / "sim"))
    sys.path.insert(0, str(REPO / "sim" / "doe"))


def write_rows(params: DoeParams, jobs: list[Job]) -> None:
    """bench_rgw_doe's rows file in its build directory: the flows job's reference rows, which its
    streamer loads at full simulation speed (see bench/bench_rgw_doe.sv)."""
    from bench.hdl_tb import ROWS_FILE, _compile, reference_rows, stage_sizes, write_rows_file

    _sim_on_path()
    import simrun

    bdir = simrun.build_dir(STREAM_TOP, params.hdl())
    bdir.mkdir(parents=True, exist_ok=True)
    path = bdir / ROWS_FILE
    path.unlink(missing_ok=True)
    for job in jobs:
        if job["kind"] == "flows":  # the first flows job's rows
            image = _compile(job["rules"], params.lanes)
            sizes = stage_sizes(job)
            stages = itertools.chain.from_iterable(
                reference_rows(image, n, after) for n, after in zip(sizes, [0, *sizes[:-1]], strict=True)
            )
            write_rows_file(path, stages, min(params.cols, params.in_words))
            break


def sources_digest(top: str) -> str:
    """SHA-256 of what decides a simulation's counts: the RTL, the wrapper, the cocotb side and the
    compiler (a cached result is reused only when none of them changed)."""
    from riskgw import hdl_lint

    files = [*hdl_lint.filelist("rgw_doe"), REPO / "bench" / f"{top}.sv", REPO / "sim" / "doe" / f"{top}.sv"]
    files += [*sorted((REPO / "riskgw" / "doe").glob("*.py")), REPO / "bench" / "hdl_tb.py"]
    h = hashlib.sha256()
    for f in files:
        if f.exists():
            h.update(f.read_bytes())
    return h.hexdigest()


def run_sim(tag: str, params: DoeParams, jobs: list[Job], reuse: bool, stream: bool) -> dict[str, Any]:
    """One simulation running `jobs`. stream: on bench/bench_rgw_doe.sv, whose streamer loads the
    flows job's rows; otherwise on the DOE suite's own wrapper, sim/doe/test_rgw_doe.sv, so a
    model `make test` built is reused (rows loaded by cocotb, one event at a time)."""
    _sim_on_path()
    import simrun

    spec_dir = simrun.SIM_BUILD / "bench_hdl"
    spec_dir.mkdir(parents=True, exist_ok=True)
    out = spec_dir / f"{tag}.out.json"
    spec = spec_dir / f"{tag}.json"
    top = STREAM_TOP if stream else TEST_TOP
    job_spec: BenchSpec = {
        "top": top,
        "params": asdict(params),
        "jobs": jobs,
        "out": str(out),
        "sources": sources_digest(top),
    }
    text = json.dumps(job_spec)
    if reuse and out.exists() and spec.exists() and spec.read_text() == text:
        # the same simulation ran before (same parameters, rules and jobs): its counts are exact
        cached: dict[str, Any] = json.loads(out.read_text())
        return cached | {"reused": True}
    out.unlink(missing_ok=True)
    spec.write_text(text)
    if stream:
        write_rows(params, jobs)
    simrun.run(
        "rgw_doe",
        "bench.hdl_tb",
        REPO / "bench" if stream else REPO / "sim" / "doe",
        parameters=params.hdl(),
        hdl_toplevel=top,
        extra_env={"RGW_BENCH_JOB": str(spec)},
    )
    if not out.exists():
        raise RuntimeError(f"the {tag} simulation wrote no results; see its log above")
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.hdl", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="100 orders, fewer samples, on the model `make test` builds (sim/doe/test_doe.py default)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "hdl.json")
    parser.add_argument(
        "--sizes",
        help=f"order_info rows, comma-separated (default {','.join(map(str, SIZES))}; --quick: "
        f"{','.join(map(str, QUICK_SIZES))})",
    )
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="reuse a cached result of the same simulation (same RTL, compiler, parameters and jobs)",
    )
    args = parser.parse_args(argv)

    default = QUICK_SIZES if args.quick else SIZES
    sizes = tuple(int(n) for n in args.sizes.split(",")) if args.sizes else default
    samples = QUICK_SAMPLES if args.quick else 250
    sweep_samples = 8 if args.quick else 50
    # a U200-like configuration the reference rules fit: 8 lanes; 8 tables of 8 columns (the widest
    # table has 8 words); 3 key words (account, 2-word CHAR(16) security); 128 rules for the sweep
    base = DoeParams(
        lanes=8,
        regs=256,
        prog_rows=256,
        tables=8,
        cols=8,
        rows=1024,
        key_words=3,
        ways=4,
        scans=16,
        rules=128,
        in_words=16,
    )
    # The quick form runs on the DOE suite's default parameters, so CI reuses the model `make test`
    # built (a Verilator build is minutes on a shared machine): 256 rows, 64 rules.
    if args.quick:
        base = QUICK_PARAMS
        too_big = [n for n in sizes if rows_param(n, samples) > base.rows]
        if too_big:
            most = base.rows - 2 * samples - 64
            parser.error(f"--quick runs on a {base.rows}-row DOE: at most {most} orders")
    cases = generated_rules(simrun_build() / "bench_hdl" / "rules")
    for kind in cases:
        cases[kind] = {k: v for k, v in cases[kind].items() if kind != "rules" or int(k) <= base.rules}
    counts = sorted(map(int, cases["rules"]))
    ref = [str(p) for p in REFERENCE_RULES]
    started = time.perf_counter()
    by_size: dict[str, Any] = {}
    sweeps: dict[str, Any] = {}
    throughput: dict[str, Any] = {}
    # Two simulations: the smallest table size with the rule and nesting sweeps and the throughput
    # (each sweep case reloads the program, and a reload clears the tables: 2^CL_BUCKETS * TABLES
    # cycles, cheap only on a small build); then one build sized for the largest table, whose
    # tables grow through the other sizes in stages, measured at each. One reset clear and one
    # load in all, instead of a Verilator build, a clear and a load per size.
    sizes = tuple(sorted(set(sizes)))
    plan: list[tuple[str, DoeParams, list[int], bool]] = [
        (
            f"rows{sizes[0]}",
            base if args.quick else replace(base, rows=rows_param(sizes[0], samples)),
            [sizes[0]],
            True,
        )
    ]
    if len(sizes) > 1:
        rest = list(sizes[1:])
        grown = base if args.quick else replace(base, rows=rows_param(rest[-1], samples * len(rest)))
        plan.append((f"rows{'-'.join(map(str, rest))}", grown, rest, False))
    rows_by_size: dict[str, int] = {}
    for tag, params, stage_sizes, first in plan:
        jobs: list[Job] = [
            {"name": "flows", "kind": "flows", "rules": ref, "orders": stage_sizes, "samples": samples}
        ]
        if first:
            jobs += [
                {"name": "rules", "kind": "sweep", "cases": cases["rules"], "samples": sweep_samples},
                {"name": "nesting", "kind": "sweep", "cases": cases["nesting"], "samples": sweep_samples},
                {
                    "name": "throughput",
                    "kind": "throughput",
                    "rules": ref,
                    "orders": 32 if args.quick else 256,
                },
            ]
        t0 = time.perf_counter()
        res = run_sim(tag, params, jobs, reuse=args.reuse, stream=not args.quick)
        print(f"bench.hdl: {tag} done in {time.perf_counter() - t0:.0f} s", flush=True)
        for n in stage_sizes:
            rows_by_size[str(n)] = params.rows
            by_size[str(n)] = res["flows"][str(n)] | {
                "simulation": tag,
                "simulation_seconds": round(time.perf_counter() - t0, 1),
                "reused_earlier_run": res.get("reused", False),
            }
        if first:
            sweeps = {"rules": res["rules"], "nesting": res["nesting"]}
            throughput = res["throughput"]

    def med(d: dict[str, Any]) -> float:
        return float(d["latency_cycles"]["median"])

    rules = sweeps["rules"]
    nest = sweeps["nesting"]
    largest = by_size[str(sizes[-1])]
    worst = max(med(f) for s in by_size.values() for f in s["flows"].values())
    report = {
        # the quick form's build has 64 rules: its sweep stops there (key rules_swept says so)
        "rules_4_to_128_extra_cycles": med(rules[str(counts[-1])]) - med(rules[str(counts[0])]),
        "rules_swept": [counts[0], counts[-1]],
        "nesting_2_to_20_extra_cycles": med(nest[str(DEPTHS[-1])]) - med(nest[str(DEPTHS[0])]),
        "worst_flow_median_latency_cycles": worst,
        f"jitter_over_all_flows_at_{sizes[-1]}_rows_cycles": largest["jitter_over_all_flows_cycles"],
        f"max_jitter_within_a_flow_at_{sizes[-1]}_rows_cycles": largest["max_jitter_within_a_flow_cycles"],
        "initiation_interval_cycles": {
            k: v["initiation_interval_cycles"]["mean"] for k, v in throughput.items()
        },
    }
    met = {
        "latency_cycles_doe": worst <= TARGETS["latency_cycles_doe"],
        "jitter_cycles": largest["max_jitter_within_a_flow_cycles"] <= TARGETS["jitter_cycles"],
        "rules_4_to_128_extra_cycles": report["rules_4_to_128_extra_cycles"]
        <= TARGETS["rules_4_to_128_extra_cycles"],
        "nesting_2_to_20_extra_cycles": report["nesting_2_to_20_extra_cycles"]
        <= TARGETS["nesting_2_to_20_extra_cycles"],
        "initiation_interval_cycles": all(
            v <= TARGETS["initiation_interval_cycles"] for v in report["initiation_interval_cycles"].values()
        ),
    }
    doc = {
        "bench": "hdl",
        "quick": args.quick,
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine(),
        "notes": [
            "Cycle counts are exact: Verilator simulates the RTL cycle by cycle. ns_at_250mhz assumes a "
            "250 MHz clock (4 ns per cycle); the design's real clock on a U200 is not known yet.",
            "latency_cycles: rising clock edges from the edge that accepts an event on s_evt to the edge "
            "after which its decision is valid on m_dec; the DOE alone, no TOE or parsing.",
            "doe_cycle_register: the DOE's own count (load-port register 0x0/4) for comparison.",
            "busy_cycles: from the same edge to the edge after which s_evt is ready for the next event. "
            "An accepted NEW's decision leaves when its NEW section ends; its ACCEPT section (the "
            "trigger updates) runs after that, and only the busy figure counts it.",
            "Table size = rows of order_info (the reference's orders per account); account_ticket_info "
            "holds up to 20 x 1024 holdings and account_info 20 accounts.",
            "The smallest size runs on a build sized for it (with the sweeps and the throughput); the "
            "larger sizes run on one build sized for the largest (key simulation), whose tables grow "
            "from one size to the next by LOAD events, the flows measured at each (their own accepted "
            "orders stay in order_info, as on a card that keeps trading). ROWS gives each size's build.",
            "Table loading (full run): the reference rows go through the DOE's event port as LOAD "
            "events, the same path and handshake as a cocotb driver, but offered back to back by a "
            "streamer in the bench's wrapper (bench/bench_rgw_doe.sv) that reads them from a file "
            "at time 0, so a million rows cost simulated cycles rather than one cocotb transaction "
            "each. rows_held_by_the_doe is the DOE's own row count after the load. Quick run: cocotb "
            "offers the rows one at a time on the DOE suite's own wrapper.",
            "Rule and nesting sweeps: NEW events on generated rule files (00_schema.sql + N rules / one "
            "rule of the given depth over one keyed lookup), at the smallest table size.",
            "Throughput: NEW orders offered back to back (valid held high), all accepted, so each runs "
            "the NEW and the ACCEPT sections; the interval is between successive accepts on s_evt.",
        ],
        "hdl_parameters": {k.upper(): v for k, v in asdict(base).items() if k != "rows"}
        | {
            "ROWS": rows_by_size,
            "CL_BUCKETS": "log2(ROWS) + 1",
        },
        "model": f"{TEST_TOP} (sim/doe, the DOE suite's default build)"
        if args.quick
        else f"{STREAM_TOP} (bench/bench_rgw_doe.sv: test_rgw_doe's ports and a row streamer)",
        "lanes": base.lanes,
        "compiler_lanes": base.lanes,
        "reference_rules": [str(p.relative_to(REPO)) for p in REFERENCE_RULES],
        "sizes_run": list(sizes),
        "sizes_skipped": [n for n in SIZES if n not in sizes],
        "why_sizes_are_skipped": (
            "a quick run: 100 orders per account on the DOE suite's 256-row build, which `make test` "
            "has built already"
            if args.quick
            else "sizes chosen with --sizes"
        ),
        "flows_by_table_rows": by_size,
        "rules_sweep": rules,
        "nesting_sweep": nest,
        "throughput": throughput,
        "targets": TARGETS,
        "measured": report,
        "target_met": met,
        "wall_seconds": round(time.perf_counter() - started),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    print(json.dumps({"measured": report, "target_met": met}, indent=1))
    print(f"bench.hdl: wrote {args.out}")
    return 0


def simrun_build() -> Path:
    return REPO / "sim_build"


if __name__ == "__main__":
    sys.exit(main())
