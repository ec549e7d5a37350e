"""The gateway's hot standby: the `[failover]` settings, the card it builds and the watchdog task.

    [failover]
    standby = true                 # the software engine beside the card (default: on unless card = "soft")
    policy = "failover"            # on a mismatch: failover | halt | alarm
    heartbeat_timeout_ms = 2000    # a card heartbeat that stops for longer is a dead card
    failback = "manual"            # auto: a recovered card decides again after probation;
                                   # manual: when an operator runs `riskgw ctl failback`
    hash_every = 10000             # events between state-hash comparisons (0: never)
    probation_events = 1000        # events without a difference before a card decides again
    rejoin_ms = 1000               # between attempts to bring a card back
    spares = 1                     # card = "sim": simulated cards kept started with the program
                                   # loaded, so a failback takes one at once (each a process and
                                   # its memory); 0: a failback starts a new one (seconds)

The watchdog runs on the gateway's loop between events: it reads the heartbeat, closes failed
cards, and brings a card back, with the slow part (starting a card, loading the program and the
snapshot) on a worker thread so that orders go on being decided by software meanwhile.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from riskgw.card.driver import CardDriver
from riskgw.card.lockstep import FAILBACKS, POLICIES, LockstepCard, Settings, close_cards
from riskgw.card.soft import SoftCard
from riskgw.doe.image import Image
from riskgw.engine.cbuild import compiler
from riskgw.errors import UserError

_INT_KEYS = {"heartbeat_timeout_ms": 1, "hash_every": 0, "probation_events": 0, "rejoin_ms": 0}
MAX_SPARES = 8


@dataclass(frozen=True)
class FailoverConfig:
    standby: bool | None = None  # None: on unless the card is the software engine itself
    settings: Settings = field(default_factory=Settings)
    spares: int = 1  # simulated cards started ahead for `card = "sim"` (0: started on demand)

    def wanted(self, card: str) -> bool:
        return self.standby if self.standby is not None else card != "soft"


def parse_failover(table: Any) -> FailoverConfig:
    """The `[failover]` table of the config file; UserError naming the bad setting."""
    if not isinstance(table, dict):
        raise UserError("failover must be a [failover] table")
    known = {"standby", "policy", "failback", "spares", *_INT_KEYS}
    unknown = sorted(set(table) - known)
    if unknown:
        raise UserError(f"failover: unknown setting {unknown[0]!r} (settings: {', '.join(sorted(known))})")
    standby = table.get("standby")
    if standby is not None and not isinstance(standby, bool):
        raise UserError("failover.standby must be true or false")
    policy = table.get("policy", "failover")
    if policy not in POLICIES:
        raise UserError(f"failover.policy must be one of {', '.join(POLICIES)}, not {policy!r}")
    failback = table.get("failback", "manual")
    if failback not in FAILBACKS:
        raise UserError(f"failover.failback must be one of {', '.join(FAILBACKS)}, not {failback!r}")
    numbers: dict[str, int] = {}
    for key, least in _INT_KEYS.items():
        if key in table:
            value = table[key]
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                raise UserError(f"failover.{key} must be a whole number >= {least}")
            numbers[key] = value
    spares = table.get("spares", 1)
    if not isinstance(spares, int) or isinstance(spares, bool) or not 0 <= spares <= MAX_SPARES:
        raise UserError(f"failover.spares must be a whole number from 0 to {MAX_SPARES}")
    return FailoverConfig(standby, Settings(policy=policy, failback=failback, **numbers), spares)


def standby_card() -> SoftCard:
    """The software engine that stands by: the native backend when a C compiler is there."""
    return SoftCard("native" if compiler() is not None else "fast")


def with_standby(
    card: CardDriver,
    new_card: Callable[[], CardDriver],
    settings: Settings,
    log: Callable[[str], None],
    on_program: Callable[[Image], None] | None = None,
) -> LockstepCard:
    return LockstepCard(card, standby_card(), settings, new_card, log, on_program=on_program)


def poll_interval(settings: Settings) -> float:
    """Seconds between watchdog rounds: a fifth of the heartbeat timeout, between 1 and 100 ms."""
    return min(max(settings.heartbeat_timeout_ms / 5_000, 0.001), 0.1)


async def watch(lock: LockstepCard) -> None:
    """The watchdog; runs until cancelled."""
    interval = poll_interval(lock.settings)
    loop = asyncio.get_running_loop()
    # One long-lived thread starts the cards: a simulated card's process is stopped when the thread
    # that started it ends (PR_SET_PDEATHSIG), so not a thread that may come and go.
    starter = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="card-rejoin")
    try:
        await _watch(lock, loop, interval, starter)
    finally:
        starter.shutdown(wait=False)


async def _watch(
    lock: LockstepCard,
    loop: asyncio.AbstractEventLoop,
    interval: float,
    starter: concurrent.futures.ThreadPoolExecutor,
) -> None:
    while True:
        await asyncio.sleep(interval)
        lock.poll()
        retired = lock.take_retired()
        if retired:  # closing a stopped simulator waits for it: not on the order path
            loop.run_in_executor(None, close_cards, retired, lock.log)
        if not lock.wants_rejoin():
            continue
        rejoin = lock.begin_rejoin()
        try:
            card = await loop.run_in_executor(starter, lock.prepare_card, rejoin)
        except Exception as exc:  # a card that cannot start must not stop the watchdog
            lock.rejoin_failed(str(exc) or type(exc).__name__)
            continue
        lock.finish_rejoin(rejoin, card)
