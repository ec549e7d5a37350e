"""`riskgw demo`: the example rules end to end on the reference data set.

`riskgw demo` runs the gateway on TCP with a scripted broker (riskgw.demo_live); `--serve` runs the
gateway's processes alone (riskgw.demo_serve); `--offline`, below, runs in one process without
TCP: it checks and compiles rules/, loads the reference data set (20 accounts, 2048 securities, 1024
holdings each), runs a scripted broker and exchange through all eight flows, replays the recorded
events with `riskgw replay` and checks that it reaches the same verdicts, then prints a summary.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from riskgw.doe.compiler import compile_files
from riskgw.doe.isa import Event
from riskgw.engine.csvdata import EVENT_HEADER
from riskgw.engine.engine import Engine, event_inputs
from riskgw.engine.replay import load_data
from riskgw.errors import UserError
from riskgw.scenario import DataSet, Row, Session, write_events

REPO_RULES = Path(__file__).resolve().parent.parent / "rules"


def _flow(row: Row, accepted: bool) -> str:
    side = "buy" if row[4] == 0 else "sell"
    event = str(row[0])
    if event == "NEW":
        return f"{side} order {'accepted' if accepted else 'rejected'}"
    return f"{side} {event.lower()}"


def _percentile(sorted_values: list[float], p: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(p * len(sorted_values)))]


def run_demo(args: argparse.Namespace) -> int:
    """`riskgw demo`: the gateway on TCP (default), `--serve` its processes alone, `--offline` in-process,
    `--prepare` the card's build alone."""
    from riskgw.demo_serve import default_card

    card = args.card or default_card()
    if args.orders < 1:
        raise UserError(f"--orders {args.orders}: the scripted broker needs at least one order")
    if args.prepare:
        from riskgw.demo_serve import prepare

        return prepare(card)
    if args.workdir:
        _make_workdir(Path(args.workdir))
    if args.serve:
        from riskgw.demo_serve import run_serve_demo

        workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="riskgw-demo-"))
        return run_serve_demo(workdir, card, args.ports == "any", args.seed, fsync=True)
    if args.offline:
        return run_offline(args)
    from riskgw.demo_live import run_live_demo

    return run_live_demo(Path(args.workdir) if args.workdir else None, card, args.orders, args.seed)


def _make_workdir(workdir: Path) -> None:
    """UserError (one line) when `--workdir` cannot be a directory: a file there, no permission."""
    try:
        workdir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"--workdir {workdir}: cannot make it a directory: {exc.strerror}") from None


def run_offline(args: argparse.Namespace) -> int:
    from riskgw.demo_serve import workdir_lock

    rules = sorted(REPO_RULES.glob("*.sql"))
    if not rules:
        raise UserError(f"no example rules in {REPO_RULES}: run the demo from a riskgw checkout")
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="riskgw-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    with workdir_lock(workdir):  # it rewrites data/, which a `riskgw demo --serve` there has loaded
        return _run_offline(args, workdir, rules)


def _run_offline(args: argparse.Namespace, workdir: Path, rules: list[Path]) -> int:
    def say(text: str) -> None:
        print(text, flush=True)

    say(f"riskgw demo: working in {workdir}")
    result = compile_files(rules)
    image = result.image
    prog = workdir / "prog.bin"
    prog.write_bytes(image.encode())
    new_bundles = len(image.section(Event.NEW))
    say(
        f"[1/4] checked and compiled {len(rules)} rule files: {len(image.rules)} rules, "
        f"{len(result.program.triggers)} triggers, {len(image.tables)} tables "
        f"({sum(t.hidden for t in image.tables)} maintained aggregates) -> {prog.name}, "
        f"{len(image.encode())} bytes; the order check is {new_bundles} bundles deep"
    )

    data = DataSet()
    data_dir = data.write(workdir / "data")
    engine = Engine(image)
    t0 = time.perf_counter()
    rows = load_data(engine, data_dir)
    say(
        f"[2/4] loaded the reference data set: {data.n_accounts} accounts, {data.n_securities} securities, "
        f"{data.holdings_per_account} holdings each ({rows} rows in {time.perf_counter() - t0:.1f} s)"
    )

    latencies: dict[str, list[float]] = {}
    verdicts: list[bool] = []
    flows: Counter[str] = Counter()
    rejects: Counter[str] = Counter()
    names = [r.name for r in image.rules]

    def decide(row: Row) -> bool:
        fields = dict(zip(EVENT_HEADER[1:], row[1:], strict=True))
        inputs = event_inputs(fields)
        event = Event[str(row[0])]
        start = time.perf_counter_ns()
        decision = engine.process(event, inputs)
        elapsed = (time.perf_counter_ns() - start) / 1_000
        flow = _flow(row, decision.accepted)
        flows[flow] += 1
        latencies.setdefault(str(row[0]), []).append(elapsed)
        for rid in decision.failed:
            rejects[names[rid]] += 1
        verdicts.append(decision.accepted)
        return decision.accepted

    t0 = time.perf_counter()
    events = Session(data, n_orders=args.orders).run(decide)
    wall = time.perf_counter() - t0
    events_csv = write_events(workdir / "events.csv", events)
    say(f"[3/4] scripted session: {len(events)} events through the software engine in {wall:.2f} s")

    out = workdir / "out.csv"
    from riskgw.cli import main as cli_main

    code = cli_main(
        [
            "replay",
            *map(str, rules),
            "--data",
            str(data_dir),
            "--events",
            str(events_csv),
            "--out",
            str(out),
            "--dump-state",
            str(workdir / "state"),
        ]
    )
    if code != 0:
        raise UserError("riskgw replay failed on the demo's own events")
    with out.open(newline="", encoding="utf-8") as f:
        replayed = [row["verdict"] != "REJECT" for row in csv.DictReader(f)]
    if replayed != verdicts:
        first = next(i for i, (a, b) in enumerate(zip(replayed, verdicts, strict=True)) if a != b)
        raise UserError(f"replay disagrees with the live session at event {first + 1}: this is a bug")
    say(f"[4/4] riskgw replay of {events_csv.name} reached the same {len(verdicts)} verdicts -> {out.name}")

    say("\nflows:")
    for flow, n in sorted(flows.items()):
        say(f"  {flow:<24} {n:>6}")
    say("rejects by rule (an order can fail several):")
    for name in names:
        say(f"  {name:<24} {rejects[name]:>6}")
    say("software engine latency per event (µs, this machine, one core):")
    for event, values in sorted(latencies.items()):
        values.sort()
        say(
            f"  {event:<7} n={len(values):<6} p50={statistics.median(values):7.1f} "
            f"p99={_percentile(values, 0.99):7.1f} max={values[-1]:8.1f}"
        )
    total = sum(len(v) for v in latencies.values())
    say(f"  {total / wall:,.0f} events/s including the scripted broker and exchange")
    missing = [
        f for f in ("buy fill", "sell fill", "buy reject", "sell reject", "buy cancel") if f not in flows
    ]
    if missing:
        print(f"riskgw demo: flows not exercised: {', '.join(missing)}", file=sys.stderr)
        return 1
    unused = [n for n in names if not rejects[n]]
    if unused:
        print(f"riskgw demo: rules that rejected nothing: {', '.join(unused)}", file=sys.stderr)
        return 1
    say(f"\nfiles: {workdir} (prog.bin, data/, events.csv, out.csv, state/)")
    say("the same rules through the gateway on TCP: riskgw demo (without --offline)")
    return 0
