"""Python's cycle collector while a gateway runs (riskgw/gateway/collector.py): no full collection
while orders flow, one when they pause, CPython's settings back at stop; and the order path makes
no reference cycles, which is what lets the full collections wait."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from gateway_support import RULES, run_async, start_stack
from test_gateway_loop import serve_args

from bench import gateway as bench_gateway
from riskgw.errors import UserError
from riskgw.exchange.sim import Behaviour
from riskgw.gateway import collector as collector_mod
from riskgw.gateway.collector import AT_MOST_S, EVERY_S, QUIET_S, Collector
from riskgw.gateway.config import build_config
from riskgw.scenario import DataSet

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(autouse=True)
def cpython_collector() -> Iterator[tuple[int, int, int]]:
    """The process's collector as it was, checked and put back after each test."""
    before = gc.get_threshold()
    yield before
    leaked = gc.get_threshold() != before or gc.get_freeze_count() != 0
    gc.unfreeze()
    gc.set_threshold(*before)
    collector_mod._users, collector_mod._saved = 0, None
    assert not leaked, "a collector was left started"


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def _cycle() -> None:
    a: list[object] = []
    a.append(a)


def test_no_full_collection_while_events_flow_until_the_bound(
    cpython_collector: tuple[int, int, int],
) -> None:
    clock, events, said = Clock(), [0], list[str]()
    c = Collector(lambda: events[0], said.append, clock)
    c.start()
    assert gc.get_threshold()[:2] == cpython_collector[:2] and gc.get_threshold()[2] > 1_000_000
    assert gc.get_freeze_count() > 0  # what start loaded is frozen
    while clock.now < 1_000.0 + AT_MOST_S - 1:
        clock.now += 0.5
        events[0] += 10  # never a quiet second
        assert not c.tick()
    clock.now += 1
    events[0] += 10
    _cycle()
    assert c.tick()  # the bound: a full collection all the same, and said
    assert c.full_collections == 1 and c.forced == 1 and c.last_found >= 1
    assert len(said) == 1 and "while orders flowed" in said[0]
    c.stop()
    assert gc.get_threshold() == cpython_collector and gc.get_freeze_count() == 0


class Node:
    def __init__(self) -> None:
        self.me = self


def test_a_forced_collection_leaves_the_frozen_state_to_a_quiet_one() -> None:
    # A forced collection scans what is not frozen (its pause does not grow with the whole state);
    # a cycle frozen at the last full collection waits for a quiet second's.
    clock, events = Clock(), [0]
    old = Node()
    c = Collector(lambda: events[0], lambda text: None, clock)
    c.start()  # freezes `old`
    gone = weakref.ref(old)
    del old  # now garbage, in a cycle, frozen
    new = weakref.ref(Node())  # garbage in a cycle, not frozen
    clock.now += AT_MOST_S
    events[0] += 1
    assert c.tick() and c.forced == 1
    assert new() is None and gone() is not None
    clock.now += EVERY_S + QUIET_S
    assert c.tick() and c.forced == 1
    assert gone() is None
    c.stop()


def test_a_quiet_second_brings_a_full_collection_at_most_once_a_minute() -> None:
    clock, events, said = Clock(), [0], list[str]()
    c = Collector(lambda: events[0], said.append, clock)
    c.start()
    clock.now += QUIET_S + 1  # quiet, but the start's collection was just now
    assert not c.tick()
    clock.now += EVERY_S
    _cycle()
    assert c.tick() and c.last_found >= 1 and c.forced == 0 and not said
    frozen = gc.get_freeze_count()
    assert frozen > 0  # the survivors are frozen again
    clock.now += 5
    assert not c.tick()  # a minute between two
    clock.now += EVERY_S
    events[0] += 1  # an event just now: not quiet
    assert not c.tick()
    clock.now += QUIET_S
    assert c.tick()
    assert c.status()["full_collections"] == 2
    c.stop()


def test_settings_are_put_back_when_the_last_gateway_of_the_process_stops(
    cpython_collector: tuple[int, int, int],
) -> None:
    first, second = Collector(lambda: 0, print), Collector(lambda: 0, print)
    first.start()
    second.start()
    first.stop()
    assert gc.get_threshold()[2] > 1_000_000 and gc.get_freeze_count() > 0  # the second still runs
    first.stop()  # stopping twice changes nothing
    assert gc.get_threshold()[2] > 1_000_000
    second.stop()
    assert gc.get_threshold() == cpython_collector and gc.get_freeze_count() == 0


def test_the_gateway_runs_its_collector_and_stops_it(
    tmp_path: Path, cpython_collector: tuple[int, int, int]
) -> None:
    async def script() -> tuple[dict[str, object], dict[str, object]]:
        stack = await start_stack(tmp_path, Behaviour())
        idle = stack.running.gateway.status_parts["gc"]()
        assert gc.get_threshold()[2] > 1_000_000
        await stack.close()
        assert gc.get_threshold() == cpython_collector and gc.get_freeze_count() == 0
        stack = await start_stack(tmp_path, Behaviour(), journal="p.journal", gc="python")
        python = stack.running.gateway.status_parts["gc"]()
        assert gc.get_threshold() == cpython_collector and gc.get_freeze_count() == 0
        await stack.close()
        return idle, python

    idle, python = run_async(script())
    assert idle["mode"] == "idle" and isinstance(idle["frozen"], int) and idle["frozen"] > 0
    assert python == {"mode": "python", "thresholds": list(cpython_collector)}


def test_the_order_path_makes_no_reference_cycles(tmp_path: Path) -> None:
    # NEW_ORDERs one at a time and 20 at a time, each accepted order filled: with the collector
    # off, a full collection after them finds what they left in cycles. A cycle per order would
    # be thousands; what is found (asyncio's and the journal's own, about 60) does not grow with
    # the orders.
    DataSet().write(tmp_path / "data")
    found: dict[tuple[int, int], int] = {}

    def before() -> None:
        gc.collect()
        gc.disable()

    def after(key: tuple[int, int]) -> Callable[[], None]:
        def count() -> None:
            found[key] = gc.collect()
            gc.enable()

        return count

    try:
        for batch in (1, 20):
            for n in (200, 2_000):
                asyncio.run(bench_gateway._cpu_per_order(tmp_path, n, batch, (before, after((batch, n)))))
    finally:
        gc.enable()
    for batch in (1, 20):
        assert found[(batch, 2_000)] - found[(batch, 200)] < 100, found


def test_the_gc_setting(tmp_path: Path) -> None:
    assert build_config(serve_args()).gc == "idle"  # the default
    config = tmp_path / "gateway.toml"
    config.write_text(f'rules = ["{RULES[0]}"]\ngc = "python"\n')
    assert build_config(serve_args(config=str(config), rules=None)).gc == "python"
    assert build_config(serve_args(config=str(config), rules=None, gc="idle")).gc == "idle"  # the flag wins
    config.write_text(f'rules = ["{RULES[0]}"]\ngc = "off"\n')
    with pytest.raises(UserError, match=r"^gc must be one of idle, python, not 'off'$"):
        build_config(serve_args(config=str(config), rules=None))
