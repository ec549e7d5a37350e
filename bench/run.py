"""`make bench` / `make bench-quick`: run every benchmark; each writes its figures to bench/results/,
then bench/report.py writes bench/report.md and its plots.

Benchmarks measure; they never pass or fail on a figure. Compare runs by their medians: the
machines these run on are shared, so the load average before and after each step is recorded in
bench/results/machine.json and shown in the report. Progress goes to stderr, one line per step with
the time since the start, and a line every minute while a long step runs.

bench.hdl's figures are simulated cycle counts, which no machine load changes: it runs in a process
of its own beside the timed benchmarks (its output in bench/results/hdl.log), so a 2-core machine
does the two at once; machine.json marks such a step `ran_beside_the_others`. It runs at the lowest
CPU priority (nice 19): at an equal priority it took a whole core from the gateway benchmark's three
processes (gateway, exchange, load generator), whose latencies then measured the sharing. --serial
runs it in turn.

The run fails (exit 1) when a benchmark fails, when one leaves no fresh bench/results/<name>.json,
or, after a full run of every benchmark, when one of the report's six figures is missing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"

# Each is a module with main(argv) -> int that accepts --quick and writes bench/results/<name>.json,
# or a variant in VARIANTS: another module run with extra arguments.
BENCHES = ("engine", "hdl", "sweeps", "baselines", "fix", "gateway", "failover")
# Extra arguments in a quick run, to keep `make bench-quick` (CI) within about 3 minutes: the
# engine's quick form also runs 10,000 orders per account (about 4 minutes alone on 2 shared cores).
# bench.hdl --quick runs on the DOE suite's default build, which `make test` has built already.
QUICK_ARGS: dict[str, list[str]] = {
    "engine": ["--levels", "1000"],
    "gateway": ["--modes", "interval"],
}
# name -> (module, arguments): the same benchmark in another configuration, with its own result file
VARIANTS: dict[str, tuple[str, list[str]]] = {}
# Benchmarks whose figures are simulated cycle counts, which no machine load changes: they run in a
# process of their own beside the timed ones (on the other core of a 2-core machine) instead of
# adding their time to the run's; their output goes to bench/results/<name>.log. --serial: in turn.
BESIDE = ("hdl",)
TICK_S = 60.0


class Progress:
    """One line per step on stderr, with the time since the start; a heartbeat during long steps."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self._step = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._tick, daemon=True)
        self._thread.start()

    def elapsed(self) -> str:
        s = int(time.perf_counter() - self.start)
        return f"{s // 60:3d}:{s % 60:02d}"

    def say(self, text: str) -> None:
        print(f"[{self.elapsed()}] {text}", file=sys.stderr, flush=True)

    def step(self, name: str) -> None:
        self._step = name
        self.say(f"{name}: started (load {_load()})")

    def _tick(self) -> None:
        while not self._stop.wait(TICK_S):
            if self._step:
                self.say(f"{self._step}: still running (load {_load()})")

    def close(self) -> None:
        self._step = ""
        self._stop.set()


def _load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def machine() -> dict[str, Any]:
    cpu = platform.processor() or "unknown"
    memory_gb = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_gb = round(int(line.split()[1]) / 2**20, 1)
                break
    except OSError:
        pass
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": memory_gb,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "git_commit": commit or None,
    }


def command(module: str, argv: list[str]) -> list[str]:
    return [sys.executable, "-m", f"bench.{module}", *argv]


def run_bench(name: str, argv: list[str], say: Any) -> int:
    """One benchmark in a process of its own: a crash (a segfault in a native extension, an
    exhausted memory) ends that step, not the run, and no state leaks from one step to the next."""
    module, extra = VARIANTS.get(name, (name, []))
    code = subprocess.run(command(module, [*extra, *argv]), cwd=ROOT, check=False).returncode
    return _exit(name, code, say)


def _exit(name: str, code: int, say: Any) -> int:
    if code < 0:
        say(f"bench.{name}: killed by signal {-code}")
        return 1
    return code


def start_beside(name: str, argv: list[str]) -> tuple[subprocess.Popen[bytes], Path]:
    module, extra = VARIANTS.get(name, (name, []))
    log = RESULTS / f"{name}.log"
    # the lowest priority: the timed benchmarks get the CPU whenever they want it
    nice = ["nice", "-n", "19"] if shutil.which("nice") else []
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*nice, *command(module, [*extra, *argv])], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT
        )
    return proc, log


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the short form of every benchmark (for CI)")
    parser.add_argument("--no-report", action="store_true", help="measure only; no bench/report.md")
    parser.add_argument(
        "--serial", action="store_true", help=f"run {', '.join(BESIDE)} in turn, not beside the others"
    )
    parser.add_argument("only", nargs="*", metavar="NAME", help=f"run only these, of {', '.join(BENCHES)}")
    args = parser.parse_args(argv)
    unknown = [n for n in args.only if n not in BENCHES]
    if unknown:
        parser.error(f"no benchmark {unknown[0]}; there are {', '.join(BENCHES)}")
    names = list(args.only or BENCHES)
    started = time.time()
    doc: dict[str, Any] = machine() | {
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "quick": args.quick,
        "benches": names,
        "steps": {},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    progress = Progress()
    progress.say(f"bench: {'quick' if args.quick else 'full'} run of {', '.join(names)} on {doc['cpu']}")
    status = 0
    beside: dict[str, tuple[subprocess.Popen[bytes], Path, float, list[float]]] = {}

    def record(name: str, code: int, t0: float, load0: list[float], ran_beside: bool) -> None:
        nonlocal status
        out = RESULTS / f"{name}.json"
        fresh = out.exists() and out.stat().st_mtime >= started
        if code == 0 and not fresh:
            progress.say(f"bench.{name}: exited 0 but wrote no fresh {out}")
            code = 1
        doc["steps"][name] = {
            "exit": code,
            "seconds": round(time.perf_counter() - t0, 1),
            "load_before": load0,
            "load_after": list(os.getloadavg()),
        } | ({"ran_beside_the_others": True} if ran_beside else {})
        progress.say(f"bench.{name}: exit {code} after {time.perf_counter() - t0:.0f} s (load {_load()})")
        status = status or code
        doc["finished_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        (RESULTS / "machine.json").write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")

    def bench_argv(name: str) -> list[str]:
        return ["--quick", *QUICK_ARGS.get(name, [])] if args.quick else []

    try:
        for name in names:
            if name in BESIDE and not args.serial and len(names) > 1:
                proc, log = start_beside(name, bench_argv(name))
                beside[name] = (proc, log, time.perf_counter(), list(os.getloadavg()))
                progress.say(
                    f"{' '.join([f'bench.{name}', *bench_argv(name)])}: started beside the others (simulated "
                    f"cycles, which no load changes); its output goes to {log.relative_to(ROOT)}"
                )
        for name in names:
            if name in beside:
                continue
            progress.step(f"bench.{name} {' '.join(bench_argv(name))}".rstrip())
            t0, load0 = time.perf_counter(), list(os.getloadavg())
            record(name, run_bench(name, bench_argv(name), progress.say), t0, load0, False)
        for name, (proc, log, t0, load0) in beside.items():
            progress.step(f"bench.{name}: waiting for it (output in {log.relative_to(ROOT)})")
            code = _exit(name, proc.wait(), progress.say)
            if code:
                tail = log.read_text(encoding="utf-8", errors="replace").splitlines()[-20:]
                progress.say(f"bench.{name} failed; the end of {log.relative_to(ROOT)}:\n" + "\n".join(tail))
            record(name, code, t0, load0, True)
        if not args.no_report:
            progress.step("bench.report")
            from bench import report

            # A full run of every benchmark must give all six figures; a partial or quick run
            # reports what it has (the benchmarks that ran were checked above).
            require = ["--require", "all"] if not args.quick and not args.only else []
            code = report.main(["--since", str(started), *require])
            progress.say(f"bench.report: exit {code}; see bench/report.md")
            status = status or code
    finally:
        for proc, *_ in beside.values():
            if proc.poll() is None:  # the run was interrupted: do not leave a simulation behind
                proc.terminate()
        progress.close()
    progress.say(f"bench: {'done' if status == 0 else 'FAILED'} (exit {status})")
    return status


if __name__ == "__main__":
    sys.exit(main())
