"""SimCardPool without Verilator: cards come from a stand-in start function, so what is checked is
the pool's own work: a spare started ahead on the pool's thread, loaded with the program and its
clock at rest, the next one started when one is taken, a new program reaching the spares, a failed
start reported to the taker, spares closed at the end."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from riskgw.card.driver import CardError
from riskgw.card.simcard import SimCard
from riskgw.card.simpool import SimCardPool
from riskgw.doe.compiler import compile_files
from riskgw.doe.image import Image

RULES = sorted((Path(__file__).resolve().parent.parent / "rules").glob("*.sql"))


class StubCard(SimCard):
    """Stands in for a started simulated card: records what the pool does to it."""

    def __init__(self, n: int, fail_load: bool = False) -> None:  # no server, no link
        self.n = n
        self.fail_load = fail_load
        self.loaded: list[Image] = []
        self.closed = False
        self.thread = threading.current_thread().name
        self.rested: list[int] = []  # the number of programs loaded at each rest

    def rest(self) -> None:
        self.rested.append(len(self.loaded))

    def load_image(self, image: Image) -> None:
        if self.fail_load:
            raise CardError("load failed")
        self.loaded.append(image)

    def close(self) -> None:
        self.closed = True


class Starts:
    def __init__(self, fail: frozenset[int] = frozenset(), fail_load: frozenset[int] = frozenset()) -> None:
        self.cards: list[StubCard] = []
        self.fail = fail
        self.fail_load = fail_load

    def __call__(self, params: Any, timeout: float = 0.0, log: Path | None = None) -> SimCard:
        n = len(self.cards)
        card = StubCard(n, fail_load=n in self.fail_load)
        self.cards.append(card)
        if n in self.fail:
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


def test_a_card_that_fails_to_start_or_load_is_an_error_for_the_taker_only() -> None:
    image = compile_files(RULES).image
    starts = Starts(fail=frozenset({0}), fail_load=frozenset({1}))
    pool = SimCardPool(spares=1, image=image, start=starts)
    with pytest.raises(CardError, match="start 0 failed"):
        pool.take()
    with pytest.raises(CardError, match="load failed"):
        pool.take()
    assert starts.cards[1].closed, "a card that could not load its program is closed"
    card = pool.take()
    assert card is starts.cards[2]
    pool.close()


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
    assert pool.status() == {"image": fewer.digest()[:12], "spares": 1, "ready": 1, "started": 2, "taken": 1}
    pool.close()


def test_a_spare_that_cannot_load_a_new_program_is_replaced() -> None:
    rules = compile_files(RULES).image
    fewer = compile_files(RULES[:1]).image
    starts = Starts()
    pool = SimCardPool(spares=1, image=rules, start=starts)
    wait_for(lambda: pool.status()["ready"] == 1)
    starts.cards[0].fail_load = True
    pool.program(fewer)
    wait_for(lambda: len(starts.cards) == 2 and pool.status()["ready"] == 1)
    assert starts.cards[0].closed
    assert pool.take() is starts.cards[1] and starts.cards[1].loaded == [fewer]
    pool.close()
