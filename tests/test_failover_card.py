"""LockstepCard: the software engine takes over from a failing card, decision by decision, and the
card comes back from a snapshot; every decision and the final state are checked against SQLite."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import pytest
from failover_support import OracleRun, same_state

from riskgw.card.driver import CardDriver, CardError
from riskgw.card.faulty import FaultyCard
from riskgw.card.lockstep import LockstepCard, Mode, Policy, Settings
from riskgw.card.soft import SoftCard
from riskgw.card.tables import load_data_dir
from riskgw.doe.compiler import compile_files
from riskgw.doe.image import Image
from riskgw.doe.isa import Event
from riskgw.engine.csvdata import EVENT_HEADER
from riskgw.engine.engine import Decision, event_inputs
from riskgw.engine.state import Snapshot
from riskgw.engine.table import Value
from riskgw.scenario import DataSet, Row, Session

pytestmark = pytest.mark.timeout(300)

RULES = sorted((Path(__file__).resolve().parent.parent / "rules").glob("*.sql"))
DATA = DataSet(n_accounts=20, n_securities=64, holdings_per_account=16)
FLOWS = [(e, d) for e in (Event.NEW, Event.FILL, Event.REJECT, Event.CANCEL) for d in (0, 1)]


class LoadOnlyCard(CardDriver):
    """A card that takes tables only through LOAD sections (no `restore`), like the simulated card."""

    def __init__(self, inner: FaultyCard) -> None:
        self.inner = inner

    def heartbeat(self) -> int:
        return self.inner.heartbeat()

    def load_image(self, image: Image) -> None:
        self.inner.load_image(image)

    def load_rows(self, table_id: int, rows: Iterable[Sequence[Value]]) -> int:
        return self.inner.load_rows(table_id, rows)

    def process(self, event: Event, inputs: Sequence[Value]) -> Decision:
        return self.inner.process(event, inputs)

    def state_hash(self) -> str:
        return self.inner.state_hash()

    def snapshot(self) -> Snapshot:
        return self.inner.snapshot()

    def close(self) -> None:
        self.inner.close()

    @property
    def image(self) -> Image:
        return self.inner.image


class Clock:
    """A clock the test moves: heartbeat timeouts without waiting."""

    def __init__(self) -> None:
        self.ns = 0

    def __call__(self) -> int:
        return self.ns


def build(
    tmp_path: Path, settings: Settings, clock: Clock | None = None, load_only: bool = False
) -> tuple[LockstepCard, list[FaultyCard], OracleRun]:
    data_dir = DATA.write(tmp_path / "data")
    image = compile_files(RULES).image
    cards: list[FaultyCard] = []

    def new_card() -> CardDriver:
        card = FaultyCard()
        cards.append(card)
        return LoadOnlyCard(card) if load_only else card

    first = new_card()
    lock = LockstepCard(first, SoftCard(), settings, new_card, log=lambda _: None, clock=clock or Clock())
    lock.load_image(image)
    load_data_dir(lock, data_dir)
    return lock, cards, OracleRun(RULES, data_dir)


def run_session(
    lock: LockstepCard, oracle: OracleRun, n_orders: int, before: Callable[[int, Event, int], None]
) -> int:
    """The scripted session through the lockstep card; `before(i, event, direction)` may inject a
    fault before event i. Every decision is checked against SQLite; returns the number of events."""
    count = 0

    def decide(row: Row) -> bool:
        nonlocal count
        fields = dict(zip(EVENT_HEADER[1:], row[1:], strict=True))
        event = Event[str(row[0])]
        before(count, event, int(fields["direction"] or 0))
        count += 1
        decision = lock.process(event, event_inputs(fields))
        oracle.check(event, fields, decision)
        return decision.accepted

    Session(DATA, n_orders=n_orders, seed=7).run(decide, keep=False)
    return count


@pytest.mark.parametrize("load_only", [False, True], ids=["restore", "load-sections"])
def test_card_killed_at_24_points_of_a_10000_event_stream_loses_nothing(
    tmp_path: Path, load_only: bool
) -> None:
    clock = Clock()
    settings = Settings(
        failback="auto", probation_events=40, hash_every=97, heartbeat_timeout_ms=5, rejoin_ms=0
    )
    lock, cards, oracle = build(tmp_path, settings, clock, load_only)
    kills: list[tuple[int, str, str]] = []  # (event index, flow, how)
    hows = ("before", "after", "heartbeat")

    def before(i: int, event: Event, direction: int) -> None:
        clock.ns += 1_000  # 1 us per event
        lock.poll()
        if lock.wants_rejoin():
            assert lock.rejoin()
        if lock.mode is not Mode.LOCKSTEP or i < 200 or len(kills) >= 24:
            return
        if kills and i - kills[-1][0] < 300:
            return
        flow = FLOWS[len(kills) % len(FLOWS)]
        if (event, direction) != flow:
            return
        how = hows[len(kills) % len(hows)]
        card = cards[-1]
        failovers = lock.counters.failovers
        if how == "heartbeat":
            card.stall()  # the card stops; the watchdog notices before the event is sent
            clock.ns += 6_000_000
            lock.poll()
            assert lock.counters.failovers == failovers + 1 and lock.status()["mode"] == "software"
        else:
            card.kill(after=how == "after")
        kills.append((i, f"{'buy' if direction == 0 else 'sell'} {event.name}", how))

    n = run_session(lock, oracle, 3_900, before)
    assert n >= 10_000, n
    assert len(kills) == 24, kills
    assert {flow for _, flow, _ in kills} == {f"{'buy' if d == 0 else 'sell'} {e.name}" for e, d in FLOWS}
    assert lock.counters.failovers == 24
    assert lock.counters.failbacks >= 23  # the last kill may be too near the end to finish probation
    assert lock.counters.mismatches == 0 and lock.counters.hash_mismatches == 0
    assert lock.counters.hash_checks > 50
    assert oracle.events == n
    assert oracle.differences == [], oracle.differences[:3]
    assert same_state(lock.image, lock.snapshot(), oracle) is None
    assert all(f.duration_ns >= 0 for f in lock.failovers)
    if lock.card is not None:
        assert lock.card.state_hash() == lock.state_hash()


@pytest.mark.parametrize("policy", ["failover", "halt", "alarm"])
def test_a_wrong_answer_is_handled_by_policy(tmp_path: Path, policy: Policy) -> None:
    logged: list[str] = []
    settings = Settings(policy=policy, hash_every=0)
    lock, cards, oracle = build(tmp_path, settings)
    lock.log = logged.append
    corrupted_at = 0

    def before(i: int, event: Event, direction: int) -> None:
        nonlocal corrupted_at
        if i == 500:
            cards[-1].corrupt_next()
            corrupted_at = i + 1

    run_session(lock, oracle, 300, before)
    assert lock.counters.mismatches == 1
    mismatch = [line for line in logged if "mismatch at event" in line]
    assert len(mismatch) == 1 and f"event {corrupted_at}:" in mismatch[0] and "inputs [" in mismatch[0]
    if policy == "alarm":
        # the card's wrong answer stood, and the software engine took the card's state to go on
        assert lock.mode is Mode.LOCKSTEP and not lock.halted
        assert len(oracle.differences) == 1
        assert lock.card is not None and lock.card.state_hash() == lock.state_hash()
    else:
        # the software engine's answer stood: every decision is SQLite's
        assert lock.mode is Mode.SOFTWARE and lock.counters.failovers == 1
        assert lock.halted is (policy == "halt")
        assert oracle.differences == []
        assert same_state(lock.image, lock.snapshot(), oracle) is None


def test_manual_failback_waits_for_the_operator_and_a_bad_card_is_not_taken_back(tmp_path: Path) -> None:
    settings = Settings(failback="manual", probation_events=20, hash_every=0, rejoin_ms=0)
    lock, cards, oracle = build(tmp_path, settings)

    def before(i: int, event: Event, direction: int) -> None:
        if i == 100:
            cards[-1].kill()
        elif i == 200:
            assert not lock.wants_rejoin()  # manual: nothing happens on its own
            assert "bringing a card back" in lock.request_failback()
            assert lock.wants_rejoin() and lock.rejoin() and lock.mode is Mode.SHADOW
        elif i == 210:
            lock.poll()
            assert lock.mode is Mode.SHADOW  # 10 events on probation of 20
        elif i == 230:
            lock.poll()
            assert lock.mode is Mode.LOCKSTEP and lock.card is cards[-1]
        elif i == 300:
            lock.request_failover("maintenance")
            assert lock.mode is Mode.SOFTWARE
            lock.request_failback()
            assert lock.rejoin()
            cards[-1].corrupt_next()  # a card that answers wrong on probation goes out again
        elif i == 302:
            assert lock.mode is Mode.SOFTWARE and lock.counters.rejoin_failures == 1

    run_session(lock, oracle, 200, before)
    assert len(cards) == 3
    assert oracle.differences == []
    assert same_state(lock.image, lock.snapshot(), oracle) is None


def test_a_card_that_cannot_take_the_state_does_not_rejoin(tmp_path: Path) -> None:
    settings = Settings(failback="auto", hash_every=0, rejoin_ms=0)
    lock, cards, _ = build(tmp_path, settings)
    cards[-1].kill()
    lock.process(Event.CANCEL, event_inputs({"order_id": 1, "account_id": 1}))
    assert lock.mode is Mode.SOFTWARE

    def broken() -> CardDriver:
        card = FaultyCard()
        card.kill()
        return card

    lock.new_card = broken
    assert lock.wants_rejoin()
    assert not lock.rejoin()
    assert lock.mode is Mode.SOFTWARE and lock.counters.rejoin_failures == 1
    with pytest.raises(CardError):
        broken().process(Event.NEW, event_inputs({}))


@pytest.mark.parametrize("fault", ["kill", "corrupt", "corrupt-alarm"])
def test_batches_fail_over_as_single_events_do(tmp_path: Path, fault: str) -> None:
    policy: Policy = "alarm" if fault == "corrupt-alarm" else "failover"
    lock, cards, oracle = build(tmp_path, Settings(policy=policy, hash_every=50))
    rows = Session(DATA, n_orders=300, seed=3).run(lambda row: True)  # every order taken as accepted
    items = []
    for row in rows:
        fields = dict(zip(EVENT_HEADER[1:], row[1:], strict=True))
        items.append((Event[str(row[0])], event_inputs(fields), fields))
    decided: list[Decision] = []
    for start in range(0, len(items), 64):
        if start == 256:
            if fault == "kill":
                cards[-1].kill(after=True)
            else:
                cards[-1].corrupt_next()
        batch = items[start : start + 64]
        decided += lock.process_many([(e, i) for e, i, _ in batch])
    assert len(decided) == len(items)
    for (event, _, fields), decision in zip(items, decided, strict=True):
        oracle.check(event, fields, decision)
    if fault == "corrupt-alarm":
        assert lock.mode is Mode.LOCKSTEP and lock.counters.mismatches == 1
        assert len(oracle.differences) == 1  # the card's wrong answer stood
        assert lock.card is not None and lock.card.state_hash() == lock.state_hash()
    else:
        assert lock.mode is Mode.SOFTWARE and lock.counters.failovers == 1
        assert oracle.differences == []
    assert same_state(lock.image, lock.snapshot(), oracle) is None
