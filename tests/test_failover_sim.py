"""The hot standby over the simulated card itself (Verilator + cocotb behind ZeroMQ): the card's
process killed with an event in flight, and stopped (SIGSTOP) so that its heartbeat stalls. Every
decision and the final state are SQLite's. Kills at 20 points of a long stream, each with a failback
onto a new simulated card, are in tests/test_failover_sim_kills.py."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from failover_support import OracleRun, same_state

from riskgw.card.lockstep import LockstepCard, Mode, Settings
from riskgw.card.soft import SoftCard
from riskgw.card.tables import load_data_dir
from riskgw.doe.compiler import compile_files
from riskgw.doe.image import Image
from riskgw.doe.isa import Event
from riskgw.engine.csvdata import EVENT_HEADER
from riskgw.engine.engine import event_inputs
from riskgw.scenario import DataSet, Row, Session

pytestmark = [pytest.mark.sim, pytest.mark.timeout(600), pytest.mark.xdist_group("failover_sim")]

RULES = sorted((Path(__file__).resolve().parent.parent / "rules").glob("*.sql"))
DATA = DataSet(n_accounts=6, n_securities=32, holdings_per_account=4)
DEADLINE_S = 2.0  # the driver's deadline per call: a stopped card is seen within it


def start_sim(log: Path) -> tuple[LockstepCard, int]:
    """On the main thread: the card's process gets SIGTERM when the thread that started it ends."""
    from riskgw.card.simcard import SimCard

    card = SimCard.start(timeout=DEADLINE_S, log=log)
    assert card.server is not None
    lock = LockstepCard(card, SoftCard(), Settings(hash_every=0, heartbeat_timeout_ms=DEADLINE_S * 1e3))
    return lock, card.server.pid


def load(lock: LockstepCard, image: Image, data: Path) -> None:
    lock.load_image(image)
    load_data_dir(lock, data)
    assert lock.mode is Mode.LOCKSTEP, lock.status()


def run(lock: LockstepCard, oracle: OracleRun, at: int, fault: Callable[[], None]) -> int:
    count = 0

    def decide(row: Row) -> bool:
        nonlocal count
        if count == at:
            fault()
        count += 1
        fields = dict(zip(EVENT_HEADER[1:], row[1:], strict=True))
        event = Event[str(row[0])]
        decision = lock.process(event, event_inputs(fields))
        oracle.check(event, fields, decision)
        return decision.accepted

    Session(DATA, n_orders=40, seed=2).run(decide, keep=False)
    return count


def test_simulated_card_killed_in_flight_and_stopped(tmp_path: Path) -> None:
    image = compile_files(RULES).image
    data = DATA.write(tmp_path / "data")
    made = {name: start_sim(tmp_path / f"{name}.log") for name in ("kill", "stop")}
    failed: dict[str, BaseException] = {}

    def load_one(name: str) -> None:
        try:
            load(made[name][0], image, data)
        except BaseException as exc:  # reported below, with the card's name
            failed[name] = exc

    threads = [threading.Thread(target=load_one, args=(n,)) for n in made]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for name, exc in failed.items():
        raise AssertionError(f"the {name} card did not load: {exc}") from exc

    # SIGKILL a few milliseconds into an event: the driver sees the exit, software decides it
    lock, pid = made["kill"]
    oracle = OracleRun(RULES, data)
    killed_at: list[int] = []

    def kill() -> None:
        killed_at.append(time.perf_counter_ns())
        os.kill(pid, signal.SIGKILL)

    timer = threading.Timer(0.005, kill)
    n = run(lock, oracle, 30, timer.start)
    timer.join()
    assert lock.mode is Mode.SOFTWARE and lock.counters.failovers == 1, lock.status()
    assert lock.failovers[0].detected_clock_ns > killed_at[0], "the card failed before it was killed"
    assert lock.counters.card_errors == 1
    assert oracle.events == n > 60 and oracle.differences == [], oracle.differences[:3]
    assert same_state(image, lock.snapshot(), oracle) is None
    assert lock.failovers[0].duration_ns < 50e6
    lock.close()

    # SIGSTOP between events: the watchdog's heartbeat read gets no answer within the deadline
    lock, pid = made["stop"]
    oracle = OracleRun(RULES, data)
    stopped_at: list[float] = []

    def stop() -> None:
        os.killpg(pid, signal.SIGSTOP)  # the card's process group: the simulator runs in a child
        stopped_at.append(time.monotonic())
        lock.poll()

    try:
        n = run(lock, oracle, 30, stop)
        detected = time.monotonic()
    finally:
        os.killpg(pid, signal.SIGKILL)
    assert lock.mode is Mode.SOFTWARE and lock.counters.failovers == 1, lock.status()
    assert "heartbeat" in lock.failovers[0].reason
    assert detected - stopped_at[0] < 4 * DEADLINE_S + 60  # the deadline, then 40 orders by software
    assert oracle.events == n and oracle.differences == [], oracle.differences[:3]
    assert same_state(image, lock.snapshot(), oracle) is None
    lock.close()
