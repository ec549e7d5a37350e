"""Gateway benchmark: `riskgw serve` on loopback under open-loop load, from order sent to verdict.

    python -m bench.gateway [--quick] [--card soft|sim] [--modes none,interval,commit] [--out FILE]

Three processes besides this one: `riskgw exchange-sim` (fills every order in full, so orders do
not pile up against the open-order limit), `riskgw serve` with the example rules on the reference
data set (20 accounts, 2048 securities, 1024 holdings each), and the load generator
(bench.gateway_load: intended send times, latency from the intended time, no coordinated
omission). Every order's verdict goes through the card, the journal and the loop; each accepted
order also comes back as a FILL that runs through the card.

First, the order path's CPU time per order, in this process without sockets (a stand-in exchange
fills every order; the stand-in's work is not counted): batches of 1 and of 20 orders, the median
of three runs each. CPU time is what a shared, busy machine disturbs least, so it is the figure to
compare between versions; the loopback figures below depend on what else the machine runs.

Then, for each journal mode (the `journal_sync` setting: `commit` fsyncs every group commit,
`interval` fsyncs in the background, `none` never), the rates go up until one is not held. A rate
is held when every order was answered, the last answer came within HELD_MS of the last order's
intended send time and the p99 is within HELD_MS too (the gateway kept up instead of building a
queue: one that falls behind sees the fills late, rejects orders for the cash they hold, and
catches up by the end on cheap rejects, so the last answer alone can look on time). Figures per
rate: p50 / p90 / p99 / p99.9 / max in µs, and how late the generator sent the orders (`send_late_us`, its own
share of those figures); rejects by reason and failed-rule mask (a gateway that falls behind sees
the exchange's fills late, so orders pile up against the open-order limit); the gateway's and the
exchange's CPU per order; the 1-minute load average. The target on the soft card is p99
<= 200 µs at 20,000 orders/s. Compare medians of several runs.

On the soft card, journal none once more with bench/floor.c's C load generator and exchange in
place of this benchmark's Python ones (`harness` "native" in the mode; the others are "bench"):
the same orders and figures, with the machine's 2 cores less taken by the harness, so nearer to
what the gateway alone can do here.

Last, on the soft card, the floor (bench/floor.py): the same round trip with a C relay that checks
nothing in the gateway's place, at 1,000, 5,000 and 20,000 orders/s, with a C load generator and
exchange and with this benchmark's own: what the machine's loopback costs before any gateway work.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from bench.floor import FLOOR_RATES, floor_figures, native_exchange, native_load
from bench.floor import build as floor_program
from riskgw.demo_serve import sim_card_available
from riskgw.scenario import DataSet

ROOT = Path(__file__).resolve().parent.parent
HELD_MS = 50.0
FULL_RATES = (1_000, 2_000, 5_000, 10_000, 15_000, 20_000, 25_000, 30_000, 40_000)
QUICK_RATES = (1_000, 5_000, 20_000)
SIM_RATES = (10, 50, 200)  # the simulated card runs a few to 20,000 cycles a second, ~100 an order


def _spawn(argv: list[str], log: Path) -> tuple[subprocess.Popen[str], int, str]:
    """Start a riskgw command; returns it, the port from its `listening on HOST:PORT` line and the
    event loop that line names."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "riskgw.cli", *argv],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stderr is not None
    seen: list[str] = []
    while True:
        line = proc.stderr.readline()
        if not line:
            proc.wait()
            log.write_text("".join(seen))
            raise SystemExit(f"riskgw {argv[0]} exited: {seen[-1].strip() if seen else proc.returncode}")
        seen.append(line)
        found = re.search(r"listening on [\d.]+:(\d+)", line)
        if found:
            # its later output goes to the log from a thread, so it never blocks on a full pipe
            threading.Thread(target=_copy, args=(proc.stderr, seen, log), daemon=True).start()
            loop = re.search(r"event loop (\w+)", line)
            return proc, int(found.group(1)), loop.group(1) if loop else "?"


def _copy(stream: IO[str], seen: list[str], log: Path) -> None:
    with log.open("w", encoding="utf-8") as out:
        out.writelines(seen)
        for line in stream:
            out.write(line)


def _stop(proc: subprocess.Popen[str]) -> int:
    if proc.poll() is None:
        proc.terminate()
        try:
            return proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.wait()


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds a process has used (Linux /proc), robust to a busy machine."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _load(port: int, rate: float, seconds: float, first_id: int, pids: dict[str, int]) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "bench.gateway_load", "--port", str(port), "--rate", str(rate)]
    return measure([*cmd, "--seconds", str(seconds), "--first-id", str(first_id)], pids)


def measure(cmd: list[str], pids: dict[str, int]) -> dict[str, Any]:
    """Run a load generator that prints bench.gateway_load's JSON; add the CPU per order of the
    processes in `pids`, whether the rate was held, and the load average."""
    before = {name: _cpu_s(pid) for name, pid in pids.items()}
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=False)
    if done.returncode != 0:
        raise SystemExit(f"the load generator failed: {done.stderr.strip().splitlines()[-1:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    # CPU per order answered: what the gateway (and the exchange) cost, whatever else the machine ran
    for name, pid in pids.items():
        spent = _cpu_s(pid) - before[name]
        result[f"{name}_cpu_us_per_order"] = round(1e6 * spent / max(1, result["answered"]), 1)
    on_time = (result["last_answer_after_last_due_ms"] or 0) <= HELD_MS
    p99_ms = result.get("latency_us", {}).get("p99", 0.0) / 1e3
    result["held"] = result["lost"] == 0 and on_time and p99_ms <= HELD_MS
    result["loadavg_1m"] = os.getloadavg()[0]
    return result


def run_mode(
    workdir: Path,
    card: str,
    journal_sync: str,
    rates: tuple[int, ...],
    seconds: float,
    say: Any,
    harness: str = "bench",
) -> dict[str, Any]:
    """`riskgw serve` at rising rates until one is not held. `harness`: "bench", this benchmark's
    load generator (bench.gateway_load) and `riskgw exchange-sim`; "native", bench/floor.c's C load
    generator and exchange, which leave the gateway more of the machine's 2 cores (the same open
    loop, orders and figures)."""
    rules = sorted(str(p) for p in (ROOT / "rules").glob("*.sql"))
    tag = f"{card}-{journal_sync}" + ("-native" if harness == "native" else "")
    program = None
    if harness == "native":
        program = floor_program()
        exch, exch_port = native_exchange(program)
        exch_loop = "C (bench/floor.c)"
    else:
        exch, exch_port, exch_loop = _spawn(
            ["exchange-sim", "--listen", "127.0.0.1:0", "--fill", "1", "--partial", "0", "--reject", "0"],
            workdir / f"exchange-{tag}.log",
        )
    argv = ["serve", "--rules", *rules, "--data", str(workdir / "data"), "--listen", "127.0.0.1:0"]
    argv += ["--exchange", f"127.0.0.1:{exch_port}", "--journal", str(workdir / f"{tag}.journal")]
    argv += ["--user", "bench:bench:*", "--heartbeat-ms", "60000", "--card", card]
    argv += ["--journal-sync", journal_sync]
    try:
        gw, port, gw_loop = _spawn(argv, workdir / f"serve-{tag}.log")
    except BaseException:
        _stop(exch)
        raise
    runs: list[dict[str, Any]] = []
    first_id = 1
    try:
        for rate in rates:
            pids = {"gateway": gw.pid, "exchange": exch.pid}
            if program is not None:
                result = native_load(program, port, rate, seconds, first_id, workdir, pids)
            else:
                result = _load(port, rate, seconds, first_id, pids)
            first_id += result["orders"] + 1_000
            lat = result["latency_us"]
            say(
                f"  {tag} {rate:>6}/s: {result['answered']}/{result['orders']} answered "
                f"({result['rejected']} rejected), p50 {lat.get('p50')} p99 {lat.get('p99')} "
                f"p99.9 {lat.get('p99_9')} max {lat.get('max')} µs (sent late: p50 "
                f"{result['send_late_us'].get('p50')} µs), gateway CPU "
                f"{result['gateway_cpu_us_per_order']} µs/order, "
                f"{'held' if result['held'] else 'NOT held'} (load {result['loadavg_1m']:.1f})"
            )
            runs.append(result)
            if not result["held"]:
                break
    finally:
        code = _stop(gw)
        _stop(exch)
    if code != 0:
        raise SystemExit(f"riskgw serve exited with status {code}: see {workdir}/serve-{tag}.log")
    held = [r["rate"] for r in runs if r["held"]]
    return {
        "card": card,
        "journal_sync": journal_sync,
        "harness": harness,
        "event_loop": {"gateway": gw_loop, "exchange": exch_loop},
        "runs": runs,
        "highest_rate_held": max(held, default=0),
    }


async def _cpu_per_order(
    workdir: Path, n: int, batch: int, around: tuple[Callable[[], None], Callable[[], None]] | None = None
) -> float:
    """CPU µs per order of the gateway's Python order path: NEW_ORDERs in batches of `batch`, each
    accepted order filled by a stand-in exchange in the same process; no sockets, no fsync.
    `around`: called just before the first order and just after the last, the gateway still alive."""
    from bench.gateway_load import orders
    from riskgw.card.tables import load_data_dir
    from riskgw.doe.compiler import compile_files
    from riskgw.gateway.config import User
    from riskgw.gateway.journal import JournalHeader, open_journal
    from riskgw.gateway.link import MemoryTransport
    from riskgw.gateway.protocol import Frame, FrameReader, MsgType, encode
    from riskgw.gateway.serve import make_card
    from riskgw.gateway.server import BrokerSession, ExchangeUplink, Gateway

    image = compile_files(sorted((ROOT / "rules").glob("*.sql"))).image
    card = make_card("soft")
    card.load_image(image)
    load_data_dir(card, workdir / "data")
    journal = workdir / "cpu.journal"
    journal.unlink(missing_ok=True)
    opened = open_journal(journal, JournalHeader(image.digest(), card.state_hash()), fsync=False)
    gw = Gateway(card, opened.journal, {"b": User("b", "b", None)}, 60_000, lambda text: None)
    exchange, exchange_out = ExchangeUplink(gw), MemoryTransport()
    exchange.connection_made(exchange_out)
    gw.exchange = exchange
    broker = BrokerSession(gw)
    broker.connection_made(MemoryTransport())
    broker.data_received(encode(MsgType.LOGON, 1, username="b", password="b"))
    gw.flush()
    frames = orders(n, 1, DataSet())
    if around is not None:
        around[0]()
    spent = 0.0
    for k in range(0, n, batch):
        start = time.process_time()
        broker.data_received(b"".join(frames[k : k + batch]))
        gw.flush()
        spent += time.process_time() - start
        fills = []
        for frame in FrameReader().feed(b"".join(exchange_out.out)):  # the stand-in's work is not counted
            assert isinstance(frame, Frame)
            v = frame.values
            fills.append(encode(MsgType.FILL, 0, **v, exec_price=v["price"], exec_quantity=v["quantity"]))
        exchange_out.out.clear()
        start = time.process_time()
        exchange.data_received(b"".join(fills))
        gw.flush()
        spent += time.process_time() - start
    if around is not None:
        around[1]()
    opened.journal.close()
    card.close()
    if gw.counters.accepted != n:
        raise SystemExit(f"the CPU run expected every order accepted, got {gw.counters.accepted} of {n}")
    return 1e6 * spent / n


def cpu_figures(workdir: Path, n: int, say: Any) -> dict[str, Any]:
    """Median of three runs per batch size: the figure a busy machine disturbs least."""
    out: dict[str, Any] = {
        "orders": n,
        "what": "CPU µs per order of the order path in process (NEW + FILL)",
    }
    for batch in (1, 20):
        runs = [asyncio.run(_cpu_per_order(workdir, n, batch)) for _ in range(3)]
        out[f"batch_{batch}_us_per_order"] = round(statistics.median(runs), 1)
        out[f"batch_{batch}_runs"] = [round(r, 1) for r in runs]
        say(
            f"  in-process CPU per order, batches of {batch}: "
            f"median {statistics.median(runs):.1f} µs of {[round(r, 1) for r in runs]}"
        )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gateway", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="three rates, two seconds each")
    parser.add_argument("--card", choices=["soft", "sim"], default="soft")
    parser.add_argument("--seconds", type=float, help="seconds per rate (default 5, quick 2)")
    parser.add_argument("--modes", default="none,interval,commit", help="journal_sync modes to run")
    parser.add_argument("--out", help="default bench/results/gateway.json (gateway_sim.json with --card sim)")
    args = parser.parse_args(argv)
    seconds = args.seconds or (2.0 if args.quick else 5.0)
    rates = SIM_RATES if args.card == "sim" else QUICK_RATES if args.quick else FULL_RATES
    modes = [m for m in args.modes.split(",") if m]

    def say(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    started = time.time()
    with tempfile.TemporaryDirectory(prefix="riskgw-bench-gw-") as tmp:
        workdir = Path(tmp)
        DataSet().write(workdir / "data")
        say("bench.gateway: the order path's CPU per order, in process")
        cpu = cpu_figures(workdir, 5_000 if args.quick else 20_000, say)
        results = []
        for mode in modes:
            say(f"bench.gateway: card {args.card}, journal_sync {mode}")
            results.append(run_mode(workdir, args.card, mode, rates, seconds, say))
        floor = None
        if args.card == "soft" and "none" in modes:
            say("bench.gateway: card soft, journal_sync none, bench/floor.c's C load generator and exchange")
            results.append(run_mode(workdir, "soft", "none", rates, seconds, say, harness="native"))
        if args.card == "soft":
            say("bench.gateway: the floor, a relay that checks nothing in the gateway's place")
            floor = floor_figures(FLOOR_RATES, seconds, workdir, say)
        sim_note = "not run: --quick, or --card sim given"
        if args.card == "soft" and not args.quick:
            # the same at a low rate on the simulated card, when `riskgw serve` can run it
            if sim_card_available():
                say("bench.gateway: card sim, journal_sync interval")
                results.append(run_mode(workdir, "sim", "interval", SIM_RATES, seconds, say))
                sim_note = "run"
            else:
                sim_note = "not run: riskgw serve cannot select the simulated card in this checkout"
    name = "gateway_sim.json" if args.card == "sim" else "gateway.json"
    out = Path(args.out) if args.out else ROOT / "bench" / "results" / name
    out.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "bench": "gateway",
        "quick": args.quick,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "held_ms": HELD_MS,
        "seconds_per_rate": seconds,
        "target": "soft card: p99 <= 200 µs at 20,000 orders/s",
        "cpu_in_process": cpu,
        "modes": results,
        "floor": floor,
        "sim_card": sim_note,
    }
    out.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    say(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
