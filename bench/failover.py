"""Failover benchmark: a soak of the reference scenario through the card with its hot standby, the
card killed and stalled at random points, each time brought back from the software engine's state.

    python -m bench.failover [--quick] [--card auto|sim|faulty] [--out bench/results/failover.json]

The card is the simulated card (`riskgw sim-card`, Verilator + cocotb behind ZeroMQ), each new
one taken from a pool that starts the next in the background with the program loaded: a kill is
SIGKILL of its process group (server and simulator) at a random moment (often while an event is
in flight), a stall is SIGSTOP (the driver's deadline, `--timeout-ms`, sees it). With
`--card faulty` (or `auto` when the simulated card cannot start) the same soak runs on FaultyCard,
the in-process software double, and the JSON says so.

Figures (bench/results/failover.json):

- `failover_ms` {p50, p99, max}: detection (the driver's error, the watchdog's missed heartbeat)
  to the first order decided by the software engine;
- `detect_ms` {kill, stall}: the fault (the signal sent) to its detection;
- `rejoin_s`: starting a new card, loading the program and the snapshot, catching up;
- `lost`: orders the reference engine accepts that the soak did not forward, and events that got
  no decision; `duplicated`: orders forwarded, or events decided, more than once; `wrong`: orders
  forwarded that the reference rejects. The reference is an independent software engine fed the
  same events; the final state hashes are compared too (`state_equal`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import random
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from riskgw.card.driver import CardDriver, CardError
from riskgw.card.faulty import FaultyCard
from riskgw.card.lockstep import LockstepCard, Mode, Settings
from riskgw.card.soft import SoftCard
from riskgw.card.tables import load_data_dir
from riskgw.doe.compiler import compile_files
from riskgw.doe.isa import Event
from riskgw.engine.csvdata import EVENT_HEADER
from riskgw.engine.engine import event_inputs
from riskgw.gateway.failover import standby_card
from riskgw.scenario import DataSet, Row, Session

ROOT = Path(__file__).resolve().parent.parent
RULES = sorted((ROOT / "rules").glob("*.sql"))
DATA = DataSet(n_accounts=20, n_securities=64, holdings_per_account=16)
# The simulated card reads its tables back register by register (the state hash, twice per
# failback): one account keeps its tables small (order_info, a row per accepted order, stops at
# about 70 rows: the account can afford no more), so a read-back costs about 15,000 cycles.
SIM_DATA = DataSet(n_accounts=1, n_securities=4, holdings_per_account=4)


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"p50": 0.0, "p99": 0.0, "max": 0.0, "n": 0}
    ordered = sorted(values)

    def at(q: float) -> float:  # nearest rank
        return ordered[max(0, math.ceil(q * len(ordered)) - 1)]

    return {
        "p50": round(at(0.50), 4),
        "p99": round(at(0.99), 4),
        "max": round(ordered[-1], 4),
        "n": len(values),
    }


class SimFaults:
    """The simulated card: a new process per card, started ahead by a pool with the program
    loaded (a failback does not wait for a process start); kill and stall by signal."""

    name = "sim"

    def __init__(self, timeout_s: float) -> None:
        from riskgw.card.simpool import SimCardPool

        self.timeout_s = timeout_s
        self.pool = SimCardPool(spares=1, timeout=timeout_s, image=compile_files(RULES).image)

    def new_card(self) -> CardDriver:
        return self.pool.take()

    @staticmethod
    def _pid(card: CardDriver) -> int:
        server = getattr(card, "server", None)
        assert server is not None
        return int(server.pid)

    def kill(self, card: CardDriver) -> None:
        os.killpg(self._pid(card), signal.SIGKILL)  # the server and its simulator: the whole card

    def stall(self, card: CardDriver) -> None:
        os.killpg(self._pid(card), signal.SIGSTOP)  # the group: the simulator runs in a child

    def cleanup(self, card: CardDriver) -> None:
        """A stalled card is ended before it is closed (closing a stopped process waits)."""
        with contextlib.suppress(ProcessLookupError, AssertionError):
            os.killpg(self._pid(card), signal.SIGKILL)

    def close(self) -> None:
        self.pool.close()


class DoubleFaults:
    """FaultyCard, the in-process software double."""

    name = "faulty"

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s

    def new_card(self) -> CardDriver:
        return FaultyCard(stall_timeout_s=self.timeout_s)

    def kill(self, card: CardDriver) -> None:
        assert isinstance(card, FaultyCard)
        card.kill()

    def stall(self, card: CardDriver) -> None:
        assert isinstance(card, FaultyCard)
        card.stall()

    def cleanup(self, card: CardDriver) -> None:
        pass

    def close(self) -> None:
        pass


def soak(
    faults: SimFaults | DoubleFaults,
    first: CardDriver,
    n_orders: int,
    n_kills: int,
    n_stalls: int,
    seed: int,
    last_failback: bool = True,
) -> dict[str, Any]:
    """The soak; with last_failback False no card comes back after the last fault (a shorter run)."""
    image = compile_files(RULES).image
    data = SIM_DATA if faults.name == "sim" else DATA
    data_dir = data.write(Path(tempfile.mkdtemp(prefix="rgw-failover-")) / "data")
    hash_every = 0 if faults.name == "sim" else 500  # a read-back of the simulated card takes seconds
    settings = Settings(
        policy="failover", failback="auto", probation_events=50, hash_every=hash_every, rejoin_ms=0
    )
    log: list[str] = []
    lock = LockstepCard(first, standby_card(), settings, faults.new_card, log.append)
    lock.load_image(image)
    load_data_dir(lock, data_dir)
    reference = SoftCard()
    reference.load_image(image)
    load_data_dir(reference, data_dir)
    start_state = reference.snapshot()

    # Faults at event indexes spread over the session; kills land at a random moment inside the
    # gap before their event, so some hit an event in flight.
    rnd = random.Random(seed)
    n_events = count_events(data, n_orders, seed, reference)
    reference.restore(start_state)
    margin = min(200, n_events // 6)
    points = sorted(rnd.sample(range(margin, n_events - margin), n_kills + n_stalls))
    kinds = ["stall"] * n_stalls + ["kill"] * n_kills
    rnd.shuffle(kinds)
    plan = dict(zip(points, kinds, strict=True))
    fault_at: list[tuple[str, int]] = []  # (kind, perf_counter_ns when the fault was injected)
    rejoin_s: list[float] = []
    decisions: list[int] = []  # per event: decisions returned
    forwarded: list[int] = []  # event indexes of accepted NEWs
    ref_accepted: set[int] = set()
    count = 0
    timer: threading.Timer | None = None

    def inject(kind: str, card: CardDriver) -> None:
        fault_at.append((kind, time.perf_counter_ns()))
        (faults.kill if kind == "kill" else faults.stall)(card)

    def decide(row: Row) -> bool:
        nonlocal count, timer
        i = count
        count += 1
        fields = dict(zip(EVENT_HEADER[1:], row[1:], strict=True))
        event = Event[str(row[0])]
        inputs = event_inputs(fields)
        lock.poll()
        if lock.wants_rejoin() and (last_failback or any(p >= i for p in plan)):
            for card in lock.take_retired():
                faults.cleanup(card)
                with contextlib.suppress(CardError, OSError):
                    card.close()
            start = time.perf_counter()
            if lock.rejoin():
                rejoin_s.append(time.perf_counter() - start)
        kind = plan.get(i)
        if kind is not None:
            if lock.mode is Mode.LOCKSTEP and lock.card is not None:
                if kind == "kill":  # from another thread, a moment from now: maybe mid-event
                    timer = threading.Timer(rnd.random() * 0.002, inject, (kind, lock.card))
                    timer.start()
                else:
                    inject(kind, lock.card)
            else:
                plan[i + 97] = kind  # the card is not back yet: a little later
        decision = lock.process(event, inputs)
        decisions.append(1)
        if timer is not None:
            timer.join()
            timer = None
        if event is Event.NEW and decision.accepted:
            forwarded.append(i)
        if reference.process(event, inputs).accepted and event is Event.NEW:
            ref_accepted.add(i)
        return decision.accepted

    start = time.perf_counter()
    Session(data, n_orders=n_orders, seed=seed).run(decide, keep=False)
    elapsed = time.perf_counter() - start
    # the kill at the very end may not have been noticed yet
    lock.poll()
    detect_ms: dict[str, list[float]] = {"kill": [], "stall": []}
    failovers = list(lock.failovers)
    for kind, t in fault_at:
        later = [f.detected_clock_ns for f in failovers if f.detected_clock_ns >= t]
        if later:
            detect_ms[kind].append((min(later) - t) / 1e6)
    state_equal = lock.state_hash() == reference.state_hash()
    for card in lock.take_retired():
        faults.cleanup(card)
    lock.close()
    faults.close()
    forwarded_set = set(forwarded)
    return {
        "card": faults.name,
        "events": count,
        "orders": n_orders,
        "seconds": round(elapsed, 2),
        "faults": {"kill": kinds.count("kill"), "stall": kinds.count("stall"), "injected": len(fault_at)},
        "failovers": lock.counters.failovers,
        "failbacks": lock.counters.failbacks,
        "rejoin_failures": lock.counters.rejoin_failures,
        "mismatches": lock.counters.mismatches + lock.counters.hash_mismatches,
        "failover_ms": percentiles([f.duration_ns / 1e6 for f in failovers]),
        "detect_ms": {k: percentiles(v) for k, v in detect_ms.items()},
        "rejoin_s": percentiles(rejoin_s),
        "lost": len(ref_accepted - forwarded_set) + (count - len(decisions)),
        "duplicated": len(forwarded) - len(forwarded_set) + max(0, len(decisions) - count),
        "wrong": len(forwarded_set - ref_accepted),
        "state_equal": state_equal,
        "failover_log": [line for line in log if "FAILOVER" in line][:50],
        "rejoin_log": [line for line in log if "could not rejoin" in line or "out of shadow" in line][:20],
    }


def count_events(data: DataSet, n_orders: int, seed: int, engine: SoftCard) -> int:
    """The session's events, run once through `engine` (the exchange answers what it accepts,
    as it will in the soak: the decisions are the same), so that faults spread over all of them."""
    n = 0

    def decide(row: Row) -> bool:
        nonlocal n
        n += 1
        fields = dict(zip(EVENT_HEADER[1:], row[1:], strict=True))
        return engine.process(Event[str(row[0])], event_inputs(fields)).accepted

    Session(data, n_orders=n_orders, seed=seed).run(decide, keep=False)
    return n


def pick(
    card: str, timeout_s: float, say: Callable[[str], None]
) -> tuple[SimFaults | DoubleFaults, CardDriver, str | None]:
    """The faults to inject, the first card, and why it is not the simulated card (if it is not)."""
    if card != "faulty":
        sim: SimFaults | None = None
        try:
            sim = SimFaults(timeout_s)
            return sim, sim.new_card(), None
        except (CardError, OSError, ImportError) as exc:
            if sim is not None:
                sim.close()
            if card == "sim":
                raise
            say(f"the simulated card cannot run here ({exc}); the soak uses the software double")
            why: str | None = str(exc)
    else:
        why = None
    double = DoubleFaults(timeout_s)
    return double, double.new_card(), why


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.failover", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short soak (CI)")
    parser.add_argument("--card", choices=["auto", "sim", "faulty"], default="auto")
    parser.add_argument(
        "--timeout-ms", type=float, default=1000.0, help="the card driver's deadline per call"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--orders", type=int, help="orders in the soak (default: by card and --quick)")
    parser.add_argument("--kills", type=int, help="kills to inject (default: by card and --quick)")
    parser.add_argument("--stalls", type=int, help="stalls to inject (default: by card and --quick)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "failover.json"))
    args = parser.parse_args(argv)

    def say(text: str) -> None:
        print(f"bench.failover: {text}", file=sys.stderr, flush=True)

    faults, first, why = pick(args.card, args.timeout_ms / 1e3, say)
    if faults.name == "sim":  # each fault costs a failback: two read-backs and 50 events on probation
        n_orders, n_kills, n_stalls = (120, 1, 1) if args.quick else (2_000, 20, 2)
    else:
        n_orders, n_kills, n_stalls = (600, 4, 1) if args.quick else (4_000, 20, 4)
    n_orders = args.orders or n_orders
    n_kills = n_kills if args.kills is None else args.kills
    n_stalls = n_stalls if args.stalls is None else args.stalls
    say(f"{faults.name} card, {n_orders} orders, {n_kills} kills, {n_stalls} stalls")
    result = soak(faults, first, n_orders, n_kills, n_stalls, args.seed, last_failback=not args.quick)
    result["sim_unavailable"] = why
    result["quick"] = args.quick
    result["timeout_ms"] = args.timeout_ms
    result["machine"] = {"python": platform.python_version(), "cpus": os.cpu_count()}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    f = result["failover_ms"]
    say(
        f"{result['events']} events, {result['failovers']} failovers, failover p50 {f['p50']} ms "
        f"p99 {f['p99']} ms max {f['max']} ms, lost {result['lost']}, duplicated {result['duplicated']}, "
        f"wrong {result['wrong']}, state equal {result['state_equal']}; wrote {out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
