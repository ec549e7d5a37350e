"""The hot standby against the simulated card itself (rgw_card in Verilator under cocotb, behind
ZeroMQ), killed over and over: a 10,000-event stream of the reference scenario through all eight
flows, the card's whole process group SIGKILLed at 20 points while a batch of events is in flight
on it, each time failed over to the software engine and failed back to a new simulated card (taken
from a pool of cards started ahead) loaded with the software engine's state; then one stall
(SIGSTOP: the heartbeat read gets no answer) and a last failback. Every decision is SQLite's, every
event is answered once, every accepted order forwarded once, and the final state (the software
engine's, and the card's through its state hash) is SQLite's.

Where the events run: a simulated card decides about 20,000 cycles' worth of events a second at
best (~100 cycles an event), and bringing one back costs two read-backs of its tables (the hash
after the snapshot load, the hash at the end of probation), so the card is primary for a window
around each kill (probation in shadow, then two batches in lockstep, then the batch it dies in)
and the software engine decides the rest alone, as it does while an operator has not asked for a
failback. A policy test puts a wrong row into a live card's table (a register write the software
engine does not see) so that the card's answers differ, under each policy.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from failover_support import OracleRun, same_state

from riskgw.card.driver import CardDriver
from riskgw.card.lockstep import LockstepCard, Mode, Policy, Settings
from riskgw.card.simpool import SimCardPool
from riskgw.card.simserver import CardParams, build
from riskgw.card.soft import SoftCard
from riskgw.card.tables import load_data_dir
from riskgw.doe.compiler import compile_files
from riskgw.doe.image import Image
from riskgw.doe.isa import Event
from riskgw.engine.csvdata import EVENT_HEADER, read_table
from riskgw.engine.engine import Decision, event_inputs
from riskgw.engine.table import Value
from riskgw.scenario import DataSet, Session, ref_price, ticket

pytestmark = [pytest.mark.sim, pytest.mark.timeout(1500), pytest.mark.xdist_group("failover_sim")]

RULES = sorted((Path(__file__).resolve().parent.parent / "rules").glob("*.sql"))
# One account: the orders it can afford and hold stop after ~70 accepted, so order_info (one row
# per accepted order) stays far below the card's 256 rows and a read-back stays short.
DATA = DataSet(n_accounts=1, n_securities=4, holdings_per_account=4)
N_ORDERS = 7_200  # about 10,100 events
FLOWS = [(e, d) for e in (Event.NEW, Event.FILL, Event.REJECT, Event.CANCEL) for d in (0, 1)]
KILLS = 20
BATCH = 8  # events per call in lockstep: the batch a kill lands in
WINDOW = 2  # batches the card decides in lockstep before the one it dies in
PROBATION = 4  # events in shadow before a card that came back decides again
SOFT_BATCH = 64
DEADLINE_S = 2.0  # the driver's deadline per call: a stopped card is seen within it
GAP = PROBATION + (WINDOW + 2) * BATCH  # events between two kills at least
TAIL = 3 * GAP  # events after the last kill: the stall, its failback and the card primary again


@dataclass(frozen=True)
class Item:
    event: Event
    inputs: tuple[Value, ...]
    fields: dict[str, int | str | None]

    @property
    def flow(self) -> tuple[Event, int]:
        return self.event, int(self.fields["direction"] or 0)


def flow_name(flow: tuple[Event, int]) -> str:
    return f"{'buy' if flow[1] == 0 else 'sell'} {flow[0].name}"


def make_stream(image: Image, data: Path) -> list[Item]:
    """The scenario's events, the exchange answering what a software engine accepts (the same
    decisions the lockstep run must make: SQLite checks each of them)."""
    ref = SoftCard()
    ref.load_image(image)
    load_data_dir(ref, data)
    items: list[Item] = []

    def decide(row: list[int | str | None]) -> bool:
        fields = dict(zip(EVENT_HEADER[1:], row[1:], strict=True))
        item = Item(Event[str(row[0])], tuple(event_inputs(fields)), fields)
        items.append(item)
        return ref.process(item.event, item.inputs).accepted

    Session(DATA, n_orders=N_ORDERS, seed=3).run(decide, keep=False)
    return items


def kill_points(items: Sequence[Item], n: int) -> list[int]:
    """n event indexes at least GAP apart, at least one of each flow. The scenario's exchange
    answers come early (the account soon has its 16 orders open, and they rest until the end) and
    the rarer flows are a handful, so a random search finds a set that fits."""
    lo, hi = BATCH, len(items) - TAIL  # after the last kill: the stall and a last failback
    by_flow = {f: [i for i, it in enumerate(items) if it.flow == f and lo <= i < hi] for f in FLOWS}
    rnd = random.Random(5)

    def room(flow: tuple[Event, int], chosen: list[int]) -> list[int]:
        return [i for i in by_flow[flow] if all(abs(i - c) >= GAP for c in chosen)]

    for _ in range(5_000):
        chosen: list[int] = []
        for flow in rnd.sample(FLOWS, len(FLOWS)):
            if not room(flow, chosen):
                break
            chosen.append(rnd.choice(room(flow, chosen)))
        else:
            for turn in range(8 * n):  # then the flows in turn, where there is room
                if len(chosen) == n:
                    return sorted(chosen)
                if free := room(FLOWS[turn % len(FLOWS)], chosen):
                    chosen.append(rnd.choice(free))
    raise AssertionError(f"no {n} kill points {GAP} events apart cover every flow")


class Run:
    """The lockstep card over a stream: every decision recorded and checked against SQLite."""

    def __init__(self, lock: LockstepCard, items: Sequence[Item], oracle: OracleRun) -> None:
        self.lock = lock
        self.items = items
        self.oracle = oracle
        self.next = 0
        self.answers = [0] * len(items)  # decisions per event
        self.forwarded: list[int] = []  # order ids of accepted NEWs, as the exchange gets them
        self.on_card = 0  # events sent to a card (primary, or in shadow)

    def decide(self, n: int) -> list[Decision]:
        """The next n events in one call."""
        chunk = self.items[self.next : self.next + n]
        self.on_card += len(chunk) if self.lock.card is not None else 0
        decisions = self.lock.process_many([(it.event, it.inputs) for it in chunk])
        assert len(decisions) == len(chunk)
        for k, (it, decision) in enumerate(zip(chunk, decisions, strict=True)):
            self.answers[self.next + k] += 1
            self.oracle.check(it.event, it.fields, decision)
            if it.event is Event.NEW and decision.accepted:
                self.forwarded.append(int(it.fields["order_id"] or 0))
        self.next += len(chunk)
        return decisions

    def until(self, stop: int, batch: int) -> None:
        while self.next < stop:
            self.decide(min(batch, stop - self.next))


def pid_of(card: CardDriver | None) -> int:
    server = getattr(card, "server", None)
    assert server is not None, "not a simulated card started here"
    return int(server.pid)


@pytest.fixture(scope="module")
def image() -> Image:
    return compile_files(RULES).image


@pytest.fixture(scope="module")
def pool(image: Image, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimCardPool]:
    build(CardParams())  # a cold build takes minutes: before any card is timed
    logs = tmp_path_factory.mktemp("sim-cards")
    pool = SimCardPool(spares=1, timeout=DEADLINE_S, image=image, log_dir=logs)
    yield pool
    pool.close()


def mode_of(lock: LockstepCard) -> Mode:
    """The lock's mode now. Read through a call: mypy would keep `lock.mode` narrowed by an earlier
    assert across the calls (decide, poll, a kill) that change it."""
    return lock.mode


def rejoin(lock: LockstepCard) -> None:
    """An operator's failback onto the next card of the pool, through probation."""
    assert "bringing a card back" in lock.request_failback()
    assert lock.rejoin(), lock.status()
    assert mode_of(lock) is Mode.SHADOW


def test_simulated_card_killed_at_20_points_of_a_10000_event_stream(
    tmp_path: Path, image: Image, pool: SimCardPool
) -> None:
    data = DATA.write(tmp_path / "data")
    items = make_stream(image, data)
    assert len(items) >= 10_000, len(items)
    assert {it.flow for it in items} == set(FLOWS)
    points = kill_points(items, KILLS)
    oracle = OracleRun(RULES, data)
    settings = Settings(
        policy="failover",
        failback="manual",
        hash_every=0,  # the hash is checked at each failback (twice) and at the end
        probation_events=PROBATION,
        heartbeat_timeout_ms=DEADLINE_S * 1e3,
        rejoin_ms=0,
    )
    started = time.monotonic()
    lock = LockstepCard(pool.take(), SoftCard(), settings, pool.take, log=lambda _: None)
    lock.load_image(image)
    load_data_dir(lock, data)
    assert mode_of(lock) is Mode.LOCKSTEP, lock.status()
    run = Run(lock, items, oracle)
    rnd = random.Random(11)
    kills: list[tuple[int, str, int]] = []  # (event index, flow, events in the batch it hit)

    for n, target in enumerate(points):
        at = rnd.randrange(1, BATCH - 1)  # the target's place in the batch the card dies in
        first = target - at
        if n:  # the card is out since the last kill: software alone, then the operator's failback
            run.until(first - WINDOW * BATCH - PROBATION, SOFT_BATCH)
            assert mode_of(lock) is Mode.SOFTWARE
            rejoin(lock)
            run.until(first - WINDOW * BATCH, 1)  # probation: the card in shadow, checked per event
            lock.poll()
            assert mode_of(lock) is Mode.LOCKSTEP, lock.status()
        run.until(first, BATCH)
        assert mode_of(lock) is Mode.LOCKSTEP and run.next == first, lock.status()
        pid = pid_of(lock.card)
        killed: list[int] = []

        def kill(pid: int = pid, killed: list[int] = killed) -> None:
            killed.append(time.perf_counter_ns())
            os.killpg(pid, signal.SIGKILL)  # the server and its simulator: the whole card

        failovers = lock.counters.failovers
        timer = threading.Timer(rnd.uniform(0.001, 0.010), kill)  # a batch takes far longer
        timer.start()
        run.decide(BATCH)
        timer.join()
        assert lock.counters.failovers == failovers + 1, f"kill {n} at {target} was not in flight"
        failover = lock.failovers[-1]
        assert failover.reason.startswith("driver error:"), failover.reason
        assert failover.detected_clock_ns > killed[0]
        assert mode_of(lock) is Mode.SOFTWARE
        kills.append((target, flow_name(items[target].flow), BATCH))
        for card in lock.take_retired():
            card.close()

    # a stall: the card stops (SIGSTOP) between events; the watchdog's heartbeat read gets no answer
    stall_at = points[-1] + GAP
    run.until(stall_at - WINDOW * BATCH - PROBATION, SOFT_BATCH)
    rejoin(lock)
    run.until(stall_at - WINDOW * BATCH, 1)
    lock.poll()
    run.until(stall_at, BATCH)
    assert mode_of(lock) is Mode.LOCKSTEP
    pid = pid_of(lock.card)
    os.killpg(pid, signal.SIGSTOP)
    stopped = time.monotonic()
    try:
        lock.poll()
    finally:
        os.killpg(pid, signal.SIGKILL)
    assert time.monotonic() - stopped < 3 * DEADLINE_S
    assert mode_of(lock) is Mode.SOFTWARE and "heartbeat" in lock.failovers[-1].reason, lock.status()
    for card in lock.take_retired():
        card.close()

    # the last failback, and the rest of the stream with the card primary
    run.until(len(items) - 2 * BATCH - PROBATION, SOFT_BATCH)
    rejoin(lock)
    run.until(len(items) - 2 * BATCH, 1)
    lock.poll()
    assert mode_of(lock) is Mode.LOCKSTEP
    run.until(len(items), BATCH)

    elapsed = time.monotonic() - started
    assert len(kills) >= 20 and len(set(k[0] for k in kills)) == len(kills)
    assert {k[1] for k in kills} == {flow_name(f) for f in FLOWS}, kills
    assert lock.counters.failovers == KILLS + 1 and lock.counters.failbacks == KILLS + 1
    assert lock.counters.mismatches == 0 and lock.counters.hash_mismatches == 0
    assert lock.counters.rejoin_failures == 0
    # nothing lost, nothing twice: one decision per event, each SQLite's, each order forwarded once
    assert run.next == len(items) and set(run.answers) == {1}
    assert oracle.events == len(items)
    assert oracle.differences == [], oracle.differences[:3]
    assert len(run.forwarded) == len(set(run.forwarded)) > 50
    assert same_state(image, lock.snapshot(), oracle) is None
    assert lock.card is not None and lock.card.state_hash() == lock.state_hash()
    lock.close()
    print(
        f"{len(items)} events, {len(kills)} kills at {[k[0] for k in kills]}, 1 stall, "
        f"{run.on_card} events sent to a card, {pool.started} cards started, "
        f"{elapsed:.0f} s; failover ms: {sorted(round(f.duration_ns / 1e6, 3) for f in lock.failovers)}"
    )


@pytest.mark.parametrize("policy", ["failover", "halt", "alarm"])
def test_a_card_that_answers_wrong_is_handled_by_policy(
    tmp_path: Path, image: Image, pool: SimCardPool, policy: Policy
) -> None:
    """The card alone gets a holdings row for a security the account does not hold, so it accepts a
    sell of it that the software engine (and SQLite) reject for want of holdings."""
    data_set = DataSet(n_accounts=1, n_securities=8, holdings_per_account=4)
    data = data_set.write(tmp_path / "data")
    logged: list[str] = []
    settings = Settings(policy=policy, hash_every=0, heartbeat_timeout_ms=DEADLINE_S * 1e3)
    lock = LockstepCard(pool.take(), SoftCard(), settings, log=logged.append)
    lock.load_image(image)
    load_data_dir(lock, data)
    assert lock.card is not None and mode_of(lock) is Mode.LOCKSTEP
    holdings = next(t for t in image.tables if t.name == "account_ticket_info")
    extra = tmp_path / "extra.csv"
    header = (data / "account_ticket_info.csv").read_text().splitlines()[0]
    extra.write_text(f"{header}\n0,{ticket(6)},5000,5000,{ref_price(6)},,\n")
    assert lock.card.load_rows(holdings.id, [row.words for row in read_table(extra, holdings)]) == 1
    oracle = OracleRun(RULES, data)
    count = 0
    wrong_at = 0

    def decide(row: list[int | str | None]) -> bool:
        nonlocal count, wrong_at
        fields = dict(zip(EVENT_HEADER[1:], row[1:], strict=True))
        if count == 20:  # the order the card answers wrongly
            sell: dict[str, int | str | None] = dict.fromkeys(EVENT_HEADER[1:])
            sell.update(order_id=900_000, account_id=0, ticket_id=ticket(6), direction=1)
            sell.update(price=ref_price(6), quantity=100, ts=fields["ts"])
            wrong_at = lock.counters.events + 1
            oracle.check(Event.NEW, sell, lock.process(Event.NEW, event_inputs(sell)))
        count += 1
        event = Event[str(row[0])]
        decision = lock.process(event, event_inputs(fields))
        oracle.check(event, fields, decision)
        return decision.accepted

    Session(data_set, n_orders=30, seed=2).run(decide, keep=False)
    assert lock.counters.mismatches == 1, lock.status()
    mismatch = [line for line in logged if "mismatch at event" in line]
    assert len(mismatch) == 1 and f"event {wrong_at}:" in mismatch[0] and "card ACCEPT" in mismatch[0]
    if policy == "alarm":
        # the card's answer stood, and the software engine took the card's state to go on
        assert mode_of(lock) is Mode.LOCKSTEP and not lock.halted
        assert oracle.differences and "900000" in oracle.differences[0], oracle.differences
        assert lock.card.state_hash() == lock.state_hash()
    else:
        # the software engine's answer stood: every decision is SQLite's
        assert mode_of(lock) is Mode.SOFTWARE and lock.counters.failovers == 1
        assert lock.halted is (policy == "halt")
        assert oracle.differences == [], oracle.differences[:3]
        assert same_state(image, lock.snapshot(), oracle) is None
    for card in lock.take_retired():
        card.close()
    lock.close()
