"""SimCardPool without Verilator: cards come from a stand-in start function, so what is checked is
the pool's own work: a spare started ahead on the pool's thread, loaded with the program and its
clock at rest, the next one started when one is taken, a new program reaching the spares, a failed
start counted and tried again (the taker gets the next good card), spares closed at the end, and a
close that does not wait for a start under way yet leaves no card running."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import pytest

from riskgw.card.driver import CardError
from riskgw.card.simcard import SimCard
from riskgw.card.simgw import take_first
from riskgw.card.simlink import SimProcess
from riskgw.card.simpool import SimCardPool, retry_delay
from riskgw.doe.compiler import compile_files
from riskgw.doe.image import Image
from riskgw.errors import UserError

RULES = sorted((Path(__file__).resolve().parent.parent / "rules").glob("*.sql"))


class FakeProcess:
    """Stands in for a card's SimProcess: `proc.terminate()` is what the pool does to stop a start."""

    def __init__(self) -> None:
        self.proc = self
        self.terminated = threading.Event()

    def terminate(self) -> None:
        self.terminated.set()


class StubCard(SimCard):
    """Stands in for a started simulated card: records what the pool does to it."""

    def __init__(self, n: int, fail_load: bool = False) -> None:  # no server, no link
        self.n = n
        self.fail_load = fail_load
        self.loaded: list[Image] = []
        self.closed = False
        self.thread = threading.current_thread().name
        self.rested: list[int] = []  # the number of programs loaded at each rest
        self.fake = FakeProcess()
        self.server = cast(SimProcess, self.fake)
        self.slow_load = False  # a load that lasts until the process is stopped

    def rest(self) -> None:
        self.rested.append(len(self.loaded))

    def load_image(self, image: Image) -> None:
        if self.slow_load and self.fake.terminated.wait(10.0):
            raise CardError("the simulated card was killed by signal 15")
        if self.fail_load:
            raise CardError("load failed")
        self.loaded.append(image)

    def close(self) -> None:
        self.closed = True


class Starts:
    """The pool's `start`: start n fails when n is in `fail` (or `fail_all`), waits for `hold[n]`
    when it is there (or for its process to be stopped, when `stoppable`)."""

    def __init__(
        self,
        fail: frozenset[int] = frozenset(),
        fail_load: frozenset[int] = frozenset(),
        fail_all: bool = False,
        hold: dict[int, threading.Event] | None = None,
        stoppable: bool = False,
    ) -> None:
        self.cards: list[StubCard] = []
        self.times: list[float] = []
        self.fail = fail
        self.fail_load = fail_load
        self.fail_all = fail_all
        self.hold = hold or {}
        self.stoppable = stoppable

    def __call__(
        self,
        params: Any,
        timeout: float = 0.0,
        log: Path | None = None,
        on_process: Callable[[SimProcess], None] | None = None,
    ) -> SimCard:
        n = len(self.cards)
        card = StubCard(n, fail_load=n in self.fail_load)
        self.cards.append(card)
        self.times.append(time.monotonic())
        if on_process is not None:
            on_process(cast(SimProcess, card.fake))
        if n in self.hold:
            if self.stoppable:
                if card.fake.terminated.wait(10.0):
                    raise CardError("the simulated card was killed by signal 15")
            else:
                self.hold[n].wait(10.0)
        if self.fail_all or n in self.fail:
            raise CardError(f"start {n} failed")
        return card


def wait_for(cond: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_a_spare_is_started_ahead_loaded_and_replaced_when_taken() -> None:
    image = compile_files(RULES).image
    starts = Starts()
    pool = SimCardPool(spares=1, image=image, start=starts)
    wait_for(lambda: len(starts.cards) == 1)
    card = pool.take()
    assert card is starts.cards[0] and isinstance(card, StubCard)
    assert card.loaded == [image] and card.thread == "sim-card pool"
    assert card.rested == [1], "a spare's clock rests once its program is loaded"
    wait_for(lambda: len(starts.cards) == 2)  # the next one, in the background
    assert pool.take() is starts.cards[1]
    wait_for(lambda: len(starts.cards) == 3)
    pool.close()
    assert starts.cards[2].closed, "a spare nobody took is closed with the pool"
    assert not starts.cards[0].closed and not starts.cards[1].closed  # taken cards are the taker's
    with pytest.raises(CardError, match="closed"):
        pool.take()


def test_a_pool_without_a_spare_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one"):
        SimCardPool(spares=0, start=Starts())


def test_a_new_program_reaches_the_spares_started_and_those_to_come() -> None:
    rules = compile_files(RULES).image
    fewer = compile_files(RULES[:1]).image
    assert rules.digest() != fewer.digest()
    starts = Starts()
    pool = SimCardPool(spares=1, image=rules, start=starts)
    wait_for(lambda: pool.status()["ready"] == 1)
    pool.program(fewer)  # a deployment: the ready spare loads it in the background
    wait_for(lambda: starts.cards[0].loaded[-1:] == [fewer])
    assert starts.cards[0].loaded == [rules, fewer] and starts.cards[0].thread == "sim-card pool"
    wait_for(lambda: starts.cards[0].rested == [1, 2])  # and rests again after the reload
    assert pool.take() is starts.cards[0]
    wait_for(lambda: len(starts.cards) == 2 and starts.cards[1].loaded != [])
    assert starts.cards[1].loaded == [fewer], "the next spare starts with the current program"
    assert pool.status() == {
        "image": fewer.digest()[:12],
        "spares": 1,
        "ready": 1,
        "started": 2,
        "failed": 0,
        "error": None,
        "taken": 1,
    }
    pool.close()


def one_spare_loaded() -> tuple[Image, Image, Starts, SimCardPool]:
    """The example rules, a smaller program, and a pool of one spare started with the rules."""
    rules = compile_files(RULES).image
    starts = Starts()
    pool = SimCardPool(spares=1, image=rules, start=starts)
    wait_for(lambda: pool.status()["ready"] == 1)
    return rules, compile_files(RULES[:1]).image, starts, pool


def test_a_spare_that_cannot_load_a_new_program_is_replaced() -> None:
    _, fewer, starts, pool = one_spare_loaded()
    starts.cards[0].fail_load = True
    pool.program(fewer)
    wait_for(lambda: len(starts.cards) == 2 and pool.status()["ready"] == 1)
    assert starts.cards[0].closed
    assert pool.take() is starts.cards[1] and starts.cards[1].loaded == [fewer]
    pool.close()


def test_a_failed_start_is_counted_and_logged_at_once_then_tried_again() -> None:
    image = compile_files(RULES).image
    retry = threading.Event()
    starts = Starts(fail=frozenset({0}), hold={1: retry})
    logged: list[str] = []
    pool = SimCardPool(spares=1, image=image, start=starts, log=logged.append, retry_first_s=0.05)
    try:
        wait_for(lambda: pool.status()["failed"] == 1)
        status = pool.status()
        assert status["ready"] == 0, "a start that failed is no card ready"
        assert status["error"] == "start 0 failed"
        failed = [line for line in logged if "start 0 failed" in line]
        assert failed == [
            "card: a spare simulated card did not start (1 in a row): start 0 failed; trying again in 0.05 s"
        ]
        wait_for(lambda: len(starts.cards) == 2)  # the pool tries again by itself, after the pause
        assert starts.times[1] - starts.times[0] >= 0.05
        assert pool.status()["ready"] == 0
        retry.set()
        card = pool.take(timeout=10.0)
        assert card is starts.cards[1] and card.loaded == [image] and card.rested == [1]
        status = pool.status()
        assert (status["failed"], status["error"], status["started"], status["taken"]) == (1, None, 2, 1)
        wait_for(lambda: logged[-1] == "card: a spare simulated card started after 1 failed starts")
        assert len([line for line in logged if "start 0 failed" in line]) == 1, "logged once"
    finally:
        retry.set()
        pool.close()


def test_a_taker_waits_through_failed_starts_and_loads_for_the_next_good_card() -> None:
    image = compile_files(RULES).image
    starts = Starts(fail=frozenset({0}), fail_load=frozenset({1}))
    pool = SimCardPool(spares=1, image=image, start=starts, retry_first_s=0.01)
    card = pool.take(timeout=10.0)
    assert card is starts.cards[2]
    assert starts.cards[1].closed, "a card that could not load its program is closed"
    assert pool.status()["failed"] == 2
    pool.close()


def test_failed_starts_are_tried_again_after_a_pause_doubling_up_to_the_most() -> None:
    assert [retry_delay(n) for n in range(1, 8)] == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert retry_delay(10_000) == 30.0
    starts = Starts(fail=frozenset({0, 1, 2, 3}))
    pool = SimCardPool(spares=1, start=starts, retry_first_s=0.05, retry_most_s=0.12)
    card = pool.take(timeout=10.0, tries=5)
    assert card is starts.cards[4]
    gaps = [b - a for a, b in zip(starts.times, starts.times[1:], strict=False)]
    for gap, pause in zip(gaps, [0.05, 0.1, 0.12, 0.12], strict=True):
        assert gap >= pause, (gaps, pause)
    pool.close()


def test_a_taker_gets_the_error_after_tries_fresh_failures_or_its_timeout() -> None:
    starts = Starts(fail_all=True)
    pool = SimCardPool(spares=1, start=starts, retry_first_s=0.01, retry_most_s=0.01)
    wait_for(lambda: pool.failed >= 1)
    before = pool.failed
    with pytest.raises(
        CardError, match=r"no simulated card could start \(2 starts failed\): start \d+ failed"
    ):
        pool.take(timeout=30.0, tries=2)
    assert pool.failed >= before + 2, "failures before the take do not count"
    pool.close()

    hold = threading.Event()
    slow = Starts(hold={0: hold})
    pool = SimCardPool(spares=1, start=slow)
    try:
        with pytest.raises(CardError, match="no simulated card started within 0 s"):
            pool.take(timeout=0.2)
    finally:
        hold.set()
        pool.close()


def closing(pool: SimCardPool) -> tuple[threading.Thread, list[float]]:
    """close() on another thread, so that a close that waits cannot hang the test."""
    took: list[float] = []

    def close() -> None:
        t0 = time.monotonic()
        pool.close()
        took.append(time.monotonic() - t0)

    thread = threading.Thread(target=close, daemon=True)
    thread.start()
    return thread, took


def test_close_does_not_wait_for_a_slow_start_whose_card_is_closed_when_it_ends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("riskgw.card.simpool.CLOSE_WAIT_S", 0.3)
    hold = threading.Event()
    starts = Starts(hold={0: hold})  # a start that does not stop when its process is told to
    pool = SimCardPool(spares=1, start=starts)
    try:
        wait_for(lambda: len(starts.cards) == 1)
        thread, took = closing(pool)
        thread.join(5.0)
        assert not thread.is_alive(), "close() waited for the start under way"
        assert took[0] < 3.0
        card = starts.cards[0]
        assert card.fake.terminated.is_set(), "the process being started is told to stop"
        assert not card.closed  # its start has not ended
    finally:
        hold.set()
    wait_for(lambda: card.closed)  # the start ended after close(): the pool's thread closes the card
    pool._worker.join(5.0)
    assert not pool._worker.is_alive()
    assert pool.status()["ready"] == 0 and pool.status()["failed"] == 0


def test_close_stops_the_process_being_started_and_the_pool_thread_ends() -> None:
    starts = Starts(hold={0: threading.Event()}, stoppable=True)
    logged: list[str] = []
    pool = SimCardPool(spares=1, start=starts, log=logged.append)
    wait_for(lambda: len(starts.cards) == 1)
    thread, took = closing(pool)
    thread.join(5.0)
    assert not thread.is_alive() and took[0] < 3.0
    assert starts.cards[0].fake.terminated.is_set()
    assert not pool._worker.is_alive(), "the interrupted start ended and the thread with it"
    assert pool.status()["failed"] == 0 and logged == [], "a start close() stopped is no failure"
    assert len(starts.cards) == 1, "nothing is started after close()"


def test_close_stops_a_spare_loading_a_new_program() -> None:
    rules, fewer, starts, pool = one_spare_loaded()
    spare = starts.cards[0]
    spare.slow_load = True
    pool.program(fewer)
    wait_for(lambda: pool.status()["ready"] == 0)  # out of the pool while it loads
    thread, took = closing(pool)
    thread.join(5.0)
    assert not thread.is_alive() and took[0] < 3.0
    assert spare.fake.terminated.is_set() and spare.closed
    assert spare.loaded == [rules]  # the new program's load never finished


def test_the_gateways_first_card_is_a_one_line_error_after_three_failed_starts() -> None:
    starts = Starts(fail_all=True)
    logged: list[str] = []
    pool = SimCardPool(spares=1, start=starts, log=logged.append, retry_first_s=0.01)
    with pytest.raises(UserError) as info:
        take_first(pool)
    assert str(info.value) == "--card sim: no simulated card could start (3 starts failed): start 2 failed"
    assert [line.split(": ", 2)[2] for line in logged] == [
        "start 0 failed; trying again in 0.01 s",
        "start 1 failed; trying again in 0.02 s",
        "start 2 failed; trying again in 0.04 s",
    ]
    assert not pool._worker.is_alive(), "the gateway that cannot start closes its pool"
