"""The gateway benchmark's floor: what its loopback round trip costs on this machine with no work in it.

    python -m bench.floor [--quick] [--seconds S]

bench/floor.c (compiled here with the C compiler the native engine uses) stands in for the
gateway with a relay that checks nothing, in C: LOGON answered, each NEW_ORDER forwarded to the
exchange and answered ACCEPTED, each FILL passed back. Two harnesses around it, at the soft card's
rates: `native`, whose load generator and exchange are C too (the lowest latency this machine's
loopback allows three processes), and `bench`, the gateway benchmark's own (bench.gateway_load and
`riskgw exchange-sim`), so the gateway's figures minus these are the gateway's own work. Prints
one line per run; `bench.gateway` adds the same figures to gateway.json as `floor`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.gateway_load import orders
from riskgw.engine.cbuild import compiler
from riskgw.gateway.protocol import MsgType, encode
from riskgw.scenario import DataSet

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "bench" / "floor.c"
CFLAGS = ("-O2", "-Wall", "-Werror")
FLOOR_RATES = (1_000, 5_000, 20_000)  # the soft card's lowest, a middle one, and the target's


def build() -> Path:
    """The floor program, compiled once per source and compiler into build/floor/."""
    cc = compiler()
    if cc is None:
        raise SystemExit("bench.floor needs a C compiler (cc, or $CC)")
    text = SOURCE.read_bytes()
    digest = hashlib.sha256(b"\0".join((text, cc.encode(), *(f.encode() for f in CFLAGS)))).hexdigest()[:16]
    target = ROOT / "build" / "floor" / f"floor-{digest}"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".tmp")
        done = subprocess.run([cc, *CFLAGS, "-o", str(tmp), str(SOURCE)], capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"bench.floor: {cc} failed on {SOURCE}: {done.stderr.strip()}")
        tmp.replace(target)
    return target


def _listener(argv: list[str]) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.strip().isdigit():
        proc.kill()
        raise SystemExit(f"{' '.join(argv)} did not start (exit {proc.wait()})")
    return proc, int(line)


def _frames(path: Path, n: int, first_id: int) -> Path:
    """The load generator's input: the bench's LOGON and its first n orders from first_id."""
    logon = encode(MsgType.LOGON, 1, username="bench", password="bench")
    path.write_bytes(logon + b"".join(orders(n, first_id, DataSet())))
    return path


def native_exchange(program: Path) -> tuple[subprocess.Popen[str], int]:
    """floor.c's exchange, which fills every NEW_ORDER in full at its price; and its port."""
    return _listener([str(program), "exchange", "0"])


def native_load(
    program: Path, port: int, rate: float, seconds: float, first_id: int, workdir: Path, pids: dict[str, int]
) -> dict[str, Any]:
    """floor.c's load generator against `port` (the open loop of bench.gateway_load, in C), as
    bench.gateway's `measure` reports it with the CPU per order of the processes in `pids`."""
    from bench.gateway import measure

    n = max(1, int(rate * seconds))
    frames = _frames(workdir / "native-orders.bin", n, first_id)
    return measure([str(program), "load", str(port), str(int(rate)), str(seconds), str(frames)], pids)


def run_harness(
    program: Path, harness: str, rates: tuple[int, ...], seconds: float, workdir: Path, say: Any
) -> dict[str, Any]:
    """The relay at each rate, with the `native` or the `bench` load generator and exchange."""
    from bench.gateway import _load, _spawn, _stop  # the gateway benchmark's own harness

    if harness == "native":
        exch, exch_port = native_exchange(program)
    else:
        exch, exch_port, _ = _spawn(
            ["exchange-sim", "--listen", "127.0.0.1:0", "--fill", "1", "--partial", "0", "--reject", "0"],
            workdir / "exchange-floor.log",
        )
    runs: list[dict[str, Any]] = []
    try:
        relay, port = _listener([str(program), "relay", "0", str(exch_port)])
        try:
            first_id = 1
            for rate in rates:
                pids = {"relay": relay.pid, "exchange": exch.pid}
                if harness == "native":
                    result = native_load(program, port, rate, seconds, first_id, workdir, pids)
                else:
                    result = _load(port, rate, seconds, first_id, pids)
                first_id += result["orders"] + 1_000
                lat = result["latency_us"]
                say(
                    f"  floor ({harness} harness) {rate:>6}/s: {result['answered']}/{result['orders']} "
                    f"answered, p50 {lat.get('p50')} p99 {lat.get('p99')} p99.9 {lat.get('p99_9')} "
                    f"max {lat.get('max')} µs, relay CPU {result['relay_cpu_us_per_order']} µs/order "
                    f"(load {result['loadavg_1m']:.1f})"
                )
                runs.append(result)
        finally:
            _stop(relay)
    finally:
        _stop(exch)
    return {"harness": harness, "runs": runs}


def floor_figures(rates: tuple[int, ...], seconds: float, workdir: Path, say: Any) -> dict[str, Any]:
    program = build()
    return {
        "what": "bench/floor.c's relay in the gateway's place: the loopback round trip with no work",
        "harnesses": [run_harness(program, h, rates, seconds, workdir, say) for h in ("native", "bench")],
    }


def main(argv: list[str] | None = None) -> int:
    from bench.gateway import QUICK_RATES

    parser = argparse.ArgumentParser(prog="python -m bench.floor", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="three rates, two seconds each")
    parser.add_argument("--seconds", type=float, help="seconds per rate (default 5, quick 2)")
    args = parser.parse_args(argv)
    rates = QUICK_RATES if args.quick else FLOOR_RATES
    seconds = args.seconds or (2.0 if args.quick else 5.0)
    with tempfile.TemporaryDirectory(prefix="riskgw-bench-floor-") as tmp:
        doc = floor_figures(rates, seconds, Path(tmp), lambda text: print(text, file=sys.stderr, flush=True))
    print(json.dumps(doc, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
