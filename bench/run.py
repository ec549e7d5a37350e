"""`make bench` / `make bench-quick`: run every benchmark; each writes its figures to bench/results/,
then bench/report.py writes bench/report.md and its plots.

Benchmarks measure; they never pass or fail on a figure. Compare runs by their medians: the
machines these run on are shared, so the load average before and after each step is recorded in
bench/results/machine.json and shown in the report. Progress goes to stderr, one line per step with
the time since the start, and a line every minute while a long step runs.

The run fails (exit 1) when a benchmark fails, when one leaves no fresh bench/results/<name>.json,
or, after a full run of every benchmark, when one of the report's six figures is missing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
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
    if code < 0:
        say(f"bench.{name}: killed by signal {-code}")
        return 1
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the short form of every benchmark (for CI)")
    parser.add_argument("--no-report", action="store_true", help="measure only; no bench/report.md")
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
    try:
        for name in names:
            bench_argv = ["--quick", *QUICK_ARGS.get(name, [])] if args.quick else []
            progress.step(f"bench.{name} {' '.join(bench_argv)}".rstrip())
            t0, load0 = time.perf_counter(), list(os.getloadavg())
            code = run_bench(name, bench_argv, progress.say)
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
            }
            progress.say(f"bench.{name}: exit {code} after {time.perf_counter() - t0:.0f} s (load {_load()})")
            status = status or code
            doc["finished_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            (RESULTS / "machine.json").write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
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
        progress.close()
    progress.say(f"bench: {'done' if status == 0 else 'FAILED'} (exit {status})")
    return status


if __name__ == "__main__":
    sys.exit(main())
