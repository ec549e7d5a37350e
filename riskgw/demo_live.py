"""`riskgw demo` (what `make demo` runs): the whole gateway on TCP, driven by a scripted broker.

Starts `riskgw demo --serve` in a child process (exchange simulator, card, gateway), waits for its
`ready` line, runs the scripted broker (riskgw.demo_broker) against it over TCP and the control
port, saves the gateway's metrics, stops the child with SIGTERM and prints a summary. Exits 1 with
a one-line reason when a flow or a rule was not exercised, or when anything on the way failed.
"""

from __future__ import annotations

import asyncio
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from riskgw.demo_broker import FLOWS, Tally, run_broker
from riskgw.demo_serve import DEMO_USER, READY, SIM_CARD_START_S, Ports, workdir_lock
from riskgw.errors import UserError

START_S = 60.0  # how long the soft card's gateway may take to come up (compile, load, native build)
LIVE_LOCK = "demo"  # demo.lock: the journal's lock is its child's, so this demo holds one of its own


def _percentile(values: list[float], p: float) -> float:
    return values[min(len(values) - 1, int(p * len(values)))]


def _rule_names() -> list[str]:
    from riskgw.demo_serve import REPO_RULES
    from riskgw.doe.compiler import compile_files

    return [r.name for r in compile_files(sorted(REPO_RULES.glob("*.sql"))).image.rules]


class ServeProcess:
    """`riskgw demo --serve --ports any` as a child; its stderr goes to serve.log in the workdir."""

    def __init__(self, workdir: Path, card: str, seed: int) -> None:
        self.workdir = workdir
        self.log_path = workdir / "serve.log"
        log = self.log_path.open("w", encoding="utf-8")
        cmd = [
            sys.executable,
            "-m",
            "riskgw.cli",
            "demo",
            "--serve",
            "--ports",
            "any",
            "--card",
            card,
            "--seed",
            str(seed),
            "--workdir",
            str(workdir),
        ]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True)
        log.close()
        self.lines: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._pump, daemon=True)
        self._reader.start()

    def last_log_line(self) -> str:
        try:
            lines = [ln for ln in self.log_path.read_text(encoding="utf-8").splitlines() if ln.strip()]
        except OSError:
            return ""
        # the child's one-line error reads "riskgw: error: WHY": the parent says it with its own prefix
        return lines[-1].removeprefix("riskgw: error: ") if lines else ""

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def wait_ready(self, timeout: float) -> Ports:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise UserError(
                    f"the gateway did not come up in {timeout:.0f} s (see {self.log_path})"
                ) from None
            if line is None:
                code = self.proc.wait()
                why = self.last_log_line() or f"exit status {code}"
                raise UserError(f"the gateway did not start: {why}")
            self.lines.append(line)
            if line.startswith(READY):
                return Ports.parse(line)
            print(line, flush=True)

    def stop(self) -> int:
        """SIGTERM, then the exit status; everything it printed is in self.lines."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self._reader.join(timeout=10)
        while True:
            try:
                line = self._lines.get_nowait()
            except queue.Empty:
                break
            if line is not None:
                self.lines.append(line)
        return code


def _scrape(url: str, path: Path) -> str:
    with urllib.request.urlopen(url, timeout=10) as answer:
        text: str = answer.read().decode("utf-8")
    path.write_text(text, encoding="utf-8")
    return text


def _metric(text: str, name: str) -> str:
    """A metric's first sample on the page, as a count ("447", not the exposition's "447.0")."""
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            value = float(line.rsplit(" ", 1)[1])
            return f"{value:.0f}" if value.is_integer() else f"{value:g}"
    return "?"


def _summary(tally: Tally, rules: list[str], ports: Ports, metrics: str, workdir: Path) -> list[str]:
    lat = sorted(tally.latencies_us)
    out = [
        f"orders: {tally.sent} sent in {tally.wall_s:.1f} s, {tally.accepted} accepted, "
        f"{sum(tally.rejected_by_reason.values())} rejected "
        f"({', '.join(f'{n} {r}' for r, n in sorted(tally.rejected_by_reason.items()))})",
        "flows (events the broker saw):",
    ]
    out += [f"  {flow:<14} {tally.flows[flow]:>6}" for flow in FLOWS]
    out.append("rejects by rule (an order can fail several):")
    out += [f"  {name:<18} {tally.rejected_by_rule[i]:>6}" for i, name in enumerate(rules)]
    if lat:
        out.append(
            f"round trip, order sent -> verdict received, µs (loopback, {len(lat)} orders, up to 16 in "
            f"flight, journal fsynced): p50 {_percentile(lat, 0.5):.0f}  p99 {_percentile(lat, 0.99):.0f}  "
            f"p99.9 {_percentile(lat, 0.999):.0f}  max {lat[-1]:.0f}"
        )
    out.append(
        f"cancels: {tally.cancels_sent} requested ({tally.late_cancels} arrived after the order was done)"
    )
    out.append(f"kill switch: {tally.kill_switch}")
    out.append(
        f"metrics: were at http://127.0.0.1:{ports.metrics}/metrics, saved to {workdir / 'metrics.txt'} "
        f"(riskgw_orders_total {_metric(metrics, 'riskgw_orders_total')}, journal commits "
        f"{_metric(metrics, 'riskgw_journal_commits_total')})"
    )
    out.append(ports.fix_line())
    out.append(
        f"files: {workdir} (gateway.journal, audit.sqlite, metrics.txt, serve.log, data/); try\n"
        f'  riskgw log query "SELECT verdict, count(*) FROM decisions GROUP BY verdict" '
        f"--db {workdir / 'audit.sqlite'}"
    )
    return out


def run_live_demo(workdir: Path | None, card: str, n_orders: int, seed: int) -> int:
    workdir = workdir or Path(tempfile.mkdtemp(prefix="riskgw-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    # Its child `riskgw demo --serve` holds the journal's lock, which this process cannot hand it (a
    # POSIX lock is its process's): this demo holds demo.lock against another `riskgw demo`, and
    # tries the journal's before it cuts serve.log, against a `riskgw demo --serve` already there.
    with workdir_lock(workdir, LIVE_LOCK):
        with workdir_lock(workdir):
            pass
        return _run_live_demo(workdir, card, n_orders, seed)


def _run_live_demo(workdir: Path, card: str, n_orders: int, seed: int) -> int:
    print(f"riskgw demo: card {card}, working in {workdir}", flush=True)
    rules = _rule_names()
    start = time.perf_counter()
    serve = ServeProcess(workdir, card, seed)
    try:
        ports = serve.wait_ready(SIM_CARD_START_S if card == "sim" else START_S)
        print(
            f"[1/3] gateway up in {time.perf_counter() - start:.1f} s: brokers 127.0.0.1:{ports.broker}, "
            f"exchange-sim 127.0.0.1:{ports.exchange}, control 127.0.0.1:{ports.control}, "
            f"metrics http://127.0.0.1:{ports.metrics}/metrics",
            flush=True,
        )
        token = (workdir / "control.token").read_text(encoding="utf-8").strip()
        try:
            tally = asyncio.run(
                run_broker(
                    ports.broker, ports.control, token, DEMO_USER.name, DEMO_USER.password, n_orders, seed
                )
            )
        except (OSError, TimeoutError) as exc:
            raise UserError(f"the scripted broker failed: {exc}") from None
        print(f"[2/3] scripted broker: {tally.sent} orders over TCP in {tally.wall_s:.1f} s", flush=True)
        metrics = _scrape(f"http://127.0.0.1:{ports.metrics}/metrics", workdir / "metrics.txt")
    finally:
        code = serve.stop()
    if code != 0:
        raise UserError(f"the gateway exited with status {code}: {serve.last_log_line()}")
    print(f"[3/3] stopped: {serve.lines[-1] if serve.lines else ''}", flush=True)
    print("\n" + "\n".join(_summary(tally, rules, ports, metrics, workdir)), flush=True)
    missing = [flow for flow in FLOWS if not tally.flows[flow]]
    if missing:
        print(f"riskgw demo: flows not exercised: {', '.join(missing)}", file=sys.stderr)
        return 1
    unused = [name for i, name in enumerate(rules) if not tally.rejected_by_rule[i]]
    if unused:
        print(f"riskgw demo: rules that rejected nothing: {', '.join(unused)}", file=sys.stderr)
        return 1
    if not tally.cancels_sent or not tally.kill_switch:
        print("riskgw demo: the cancel or the kill switch was not exercised", file=sys.stderr)
        return 1
    return 0
