"""`LockstepCard`: the card with the software engine as its hot standby, behind one CardDriver.

Every event goes to both executors in the same order. The card's answer (verdict and failed-rule
mask) is compared with the software engine's on every event, and the two state hashes every
`hash_every` events. Three modes:

    LOCKSTEP   the card decides; the software engine checks every answer
    SOFTWARE   the software engine decides alone; the card is out (failed, or never joined)
    SHADOW     the software engine decides; a card loaded with its state runs beside it on
               probation, compared like in LOCKSTEP, until it becomes primary again

Failover (LOCKSTEP -> SOFTWARE) on a driver error (CardError: a timeout, a disconnect, the
simulator's exit), a heartbeat that stops advancing for longer than `heartbeat_timeout_ms`
(`poll`), or a mismatch under the `failover` policy. The event that was in flight when the card
failed is decided by the software engine, which has seen every earlier event, so each event gets
exactly one decision, in order, and the caller never learns which executor made it. Under the
`halt` policy a mismatch also sets `halted` (the gateway then rejects new orders until an operator
acts); under `alarm` it is logged and counted, the card stays primary and the software engine is
re-synchronised from the card so that later comparisons still mean something.

Failback (SOFTWARE -> SHADOW -> LOCKSTEP): a new card (from `new_card`: a new simulator process,
a spare started ahead, or the same card after a reset; `on_program` hears of every program
loaded, so that spares can carry the current one) is loaded with the program and a snapshot of
the software engine's state, its hash checked, and the events decided while it was loading
replayed into it; it then runs in SHADOW for `probation_events` events without a difference before
it decides again, automatically (`failback = "auto"`) or when an operator asks (`request_failback`).

The failover time is measured from detection to the first decision the software engine makes (to
the end of the switch when nothing was in flight).
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from riskgw.card.driver import CardDriver, CardError
from riskgw.card.regs import CardRegs
from riskgw.doe.image import Image
from riskgw.doe.isa import Event
from riskgw.engine.engine import Decision
from riskgw.engine.state import Snapshot
from riskgw.engine.table import Value

Policy = Literal["failover", "halt", "alarm"]
Failback = Literal["auto", "manual"]
POLICIES: tuple[Policy, ...] = ("failover", "halt", "alarm")
FAILBACKS: tuple[Failback, ...] = ("auto", "manual")


class Mode(enum.Enum):
    LOCKSTEP = "lockstep"
    SOFTWARE = "software"
    SHADOW = "shadow"


@runtime_checkable
class Restorable(Protocol):
    """A card that can take a snapshot's contents (what failback needs)."""

    def restore(self, snap: Snapshot) -> None: ...


@runtime_checkable
class Beating(Protocol):
    """A card with a liveness counter (the HEARTBEAT register) that advances while it runs."""

    def heartbeat(self) -> int: ...


@dataclass(frozen=True)
class Settings:
    policy: Policy = "failover"
    # a HEARTBEAT that does not move for longer is a dead card; the simulated card, running far below
    # 250 MHz, steps it only a few times a second
    heartbeat_timeout_ms: float = 2_000.0
    failback: Failback = "manual"
    hash_every: int = 10_000  # events between state-hash comparisons (0: never)
    probation_events: int = 1_000  # clean events in SHADOW before a card may decide again
    rejoin_ms: float = 1_000.0  # between attempts to bring a card back (failback = auto)


@dataclass
class Counters:
    events: int = 0
    mismatches: int = 0  # verdicts or masks that differed
    hash_checks: int = 0
    hash_mismatches: int = 0
    card_errors: int = 0
    heartbeat_misses: int = 0
    failovers: int = 0
    failbacks: int = 0  # cards that became primary again
    rejoins: int = 0  # cards loaded and put in SHADOW
    rejoin_failures: int = 0


@dataclass(frozen=True)
class Failover:
    reason: str
    detected_ns: int  # wall clock (time.time_ns), for the operator
    duration_ns: int  # detection to the first software decision (or the end of the switch)
    detected_clock_ns: int = 0  # detection on the card's clock (perf_counter_ns by default)


@dataclass
class _Rejoin:
    """A failback in progress: the snapshot the card is loaded from, and the events after it."""

    snapshot: Snapshot
    image: Image
    generation: int
    events: list[tuple[Event, tuple[Value, ...], Decision]] = field(default_factory=list)


class LockstepCard(CardDriver):
    def __init__(
        self,
        card: CardDriver | None,
        standby: CardDriver,
        settings: Settings | None = None,
        new_card: Callable[[], CardDriver] | None = None,
        log: Callable[[str], None] | None = None,
        clock: Callable[[], int] = time.perf_counter_ns,
        on_program: Callable[[Image], None] | None = None,
    ) -> None:
        if not isinstance(standby, Restorable):
            raise TypeError("the standby must be able to restore a snapshot")
        self._restore_standby = standby.restore
        self.card = card
        self.standby = standby
        self.settings = settings or Settings()
        self.new_card = new_card
        # told of every program loaded, so that cards `new_card` prepares ahead carry the current one
        self.on_program = on_program
        self.mode = Mode.LOCKSTEP if card is not None else Mode.SOFTWARE
        self.halted = False
        self.counters = Counters()
        self.failovers: list[Failover] = []
        self.last_mismatch: str | None = None
        self.failback_requested = False
        self.log = log or (lambda text: None)
        self._clock = clock
        self._probation = 0  # clean events the card has had in SHADOW
        self._since_hash = 0
        self._last_beat: int | None = None
        self._last_beat_ns = clock()
        self._next_rejoin_ns = 0
        self._retired: list[CardDriver] = []  # failed cards, closed outside the order path
        self._rejoin: _Rejoin | None = None
        self._generation = 0  # bumped by every program or table load: a rejoin across one is void
        self._pending_failover: tuple[str, int, int] | None = None  # reason, detected, wall

    # ------------------------------------------------------------------ CardDriver

    def load_image(self, image: Image) -> None:
        self._generation += 1
        self.standby.load_image(image)
        if self.on_program is not None:
            self.on_program(image)
        if self.card is not None:
            try:
                self.card.load_image(image)
            except CardError as exc:
                self._card_fault(f"driver error while loading a program: {exc}", self._clock())
                self._finish_switch()
        self._since_hash = 0

    def load_rows(self, table_id: int, rows: Iterable[Sequence[Value]]) -> int:
        self._generation += 1
        rows = [tuple(r) for r in rows]
        n = self.standby.load_rows(table_id, rows)
        if self.card is not None:
            try:
                self.card.load_rows(table_id, rows)
            except CardError as exc:
                self._card_fault(f"driver error while loading rows: {exc}", self._clock())
                self._finish_switch()
        return n

    @property
    def image(self) -> Image:
        return self.standby.image

    def process(self, event: Event, inputs: Sequence[Value]) -> Decision:
        self.counters.events += 1
        card = self.card
        if card is None:
            decision = self.standby.process(event, inputs)
        elif self.mode is Mode.LOCKSTEP:
            try:
                answer = card.process(event, inputs)
            except CardError as exc:
                self._card_fault(f"driver error: {exc}", self._clock())
                decision = self.standby.process(event, inputs)
                self._finish_switch()
                return self._record(event, inputs, decision)
            decision = self.standby.process(event, inputs)
            decision = answer if answer == decision else self._mismatch(event, inputs, answer, decision)
        else:  # SHADOW: the software engine decides, the card is checked
            decision = self.standby.process(event, inputs)
            try:
                answer = card.process(event, inputs)
            except CardError as exc:
                self._drop_shadow(f"driver error on probation: {exc}")
                return self._record(event, inputs, decision)
            if answer != decision:
                self.counters.mismatches += 1
                self._drop_shadow(self._describe(event, inputs, answer, decision))
            else:
                self._probation += 1
        self._count_for_hash()
        return self._record(event, inputs, decision)

    def process_many(self, items: Sequence[tuple[Event, Sequence[Value]]]) -> list[Decision]:
        """`process` on each item in order, the card's share in one call (one round trip). When the
        card fails during the call, none of its answers came back: software decides every item."""
        card = self.card
        if card is None or self.mode is not Mode.LOCKSTEP or len(items) < 2:
            return [self.process(event, inputs) for event, inputs in items]
        try:
            answers: list[Decision] | None = card.process_many(items)
        except CardError as exc:
            self._card_fault(f"driver error: {exc}", self._clock())
            answers = None
        out: list[Decision] = []
        resync = False
        for i, (event, inputs) in enumerate(items):
            self.counters.events += 1
            decision = self.standby.process(event, inputs)
            self._finish_switch()  # after the first software decision, when the card failed
            if answers is not None and self.mode is Mode.LOCKSTEP and not resync:
                answer = answers[i]
                if answer != decision:
                    self.counters.mismatches += 1
                    text = self._describe(event, inputs, answer, decision)
                    self.last_mismatch = text
                    if self.settings.policy == "alarm":
                        # the card is ahead by the rest of the batch: take its state after the batch
                        self.log(f"card: ALARM {text}; policy alarm: the card stays primary")
                        resync = True
                        decision = answer
                    else:
                        decision = self._apply_policy(text, answer, decision)
                else:
                    decision = answer
            elif resync:
                decision = answers[i] if answers is not None else decision
            out.append(self._record(event, inputs, decision))
        if resync and self.card is not None:
            try:
                self._restore_standby(self.card.snapshot())
            except CardError as exc:
                self._card_gone(f"driver error reading the card's state: {exc}", self._clock())
        for _ in items:
            self._count_for_hash()
        return out

    def state_hash(self) -> str:
        return self.standby.state_hash()

    def snapshot(self) -> Snapshot:
        return self.standby.snapshot()

    def restore(self, snap: Snapshot) -> None:
        self._generation += 1
        self._restore_standby(snap)
        if self.card is not None:
            self._retire(self.card)
            self.card = None
            self.mode = Mode.SOFTWARE
            self.log("card: state replaced by a snapshot; the card rejoins from it")

    def close(self) -> None:
        self._rejoin = None
        if self.card is not None:
            self._retire(self.card)
            self.card = None
        close_cards(self.take_retired(), self.log)
        self.standby.close()

    # ------------------------------------------------------------------ what the gateway asks

    @property
    def primary(self) -> str:
        return "card" if self.mode is Mode.LOCKSTEP else "software"

    def status(self) -> dict[str, Any]:
        last = self.failovers[-1] if self.failovers else None
        return {
            "primary": self.primary,
            "mode": self.mode.value,
            "halted": self.halted,
            "policy": self.settings.policy,
            "failback": self.settings.failback,
            "probation": f"{self._probation}/{self.settings.probation_events}"
            if self.mode is Mode.SHADOW
            else None,
            "counters": vars(self.counters).copy(),
            "last_failover": None
            if last is None
            else {"reason": last.reason, "at_ns": last.detected_ns, "ms": last.duration_ns / 1e6},
            "last_mismatch": self.last_mismatch,
        }

    def _heartbeat(self, card: CardDriver) -> Callable[[], int] | None:
        if isinstance(card, Beating):
            return card.heartbeat
        regs = getattr(card, "regs", None)  # the register-level driver of the sim card and the U200
        if isinstance(regs, CardRegs):
            return regs.heartbeat
        return None

    def poll(self) -> None:
        """The watchdog, called every few milliseconds between events: the heartbeat, and moving a
        card on probation to primary when its time has come. Failed cards wait in `take_retired`."""
        card = self.card
        heartbeat = self._heartbeat(card) if card is not None else None
        if heartbeat is not None:
            try:
                beat = heartbeat()
            except CardError as exc:  # detected when the read fails, which can take a while
                self._card_gone(f"driver error reading the heartbeat: {exc}", self._clock())
                return
            now = self._clock()
            if beat != self._last_beat:
                self._last_beat, self._last_beat_ns = beat, now
            elif now - self._last_beat_ns > self.settings.heartbeat_timeout_ms * 1e6:
                self.counters.heartbeat_misses += 1
                missed = (now - self._last_beat_ns) / 1e6
                self._card_gone(f"heartbeat missed for {missed:.0f} ms (at {beat})", now)
                return
        due = self.mode is Mode.SHADOW and self._probation >= self.settings.probation_events
        if due and (self.settings.failback == "auto" or self.failback_requested):
            self.switch_back()

    def wants_rejoin(self) -> bool:
        """A card should be brought back now (a failback, asked for or automatic, is due)."""
        if self.mode is not Mode.SOFTWARE or self._rejoin is not None or self.new_card is None:
            return False
        if self.failback_requested:
            return True
        return self.settings.failback == "auto" and not self.halted and self._clock() >= self._next_rejoin_ns

    def request_failback(self) -> str:
        """The operator's `riskgw ctl failback`: bring a card back and make it primary after probation.
        Clears a halt: the operator has acted."""
        if self.mode is Mode.LOCKSTEP:
            return "the card is already primary"
        self.failback_requested = True
        if self.halted:
            self.halted = False
            self.log("card: halt cleared by the operator (failback requested)")
        if self.mode is Mode.SHADOW:
            left = self.settings.probation_events - self._probation
            if left <= 0:
                self.switch_back()
                return "the card is primary again"
            return f"the card is on probation: primary after {left} more events without a difference"
        return "bringing a card back: it runs in shadow on probation, then becomes primary"

    def request_failover(self, why: str = "operator request") -> str:
        """The operator's `riskgw ctl failover`: the software engine decides from now on (and a halt
        is lifted: orders are decided by software)."""
        was_halted, self.halted = self.halted, False
        if was_halted:
            self.log("card: halt cleared by the operator: the software engine decides")
        self.failback_requested = False
        if self.mode is Mode.SOFTWARE:
            return "the software engine is primary"
        now = self._clock()
        if self.mode is Mode.SHADOW:
            self._drop_shadow(why)
        else:
            self._card_gone(why, now)
        return "the software engine is primary"

    # ------------------------------------------------------------------ failback

    def begin_rejoin(self) -> _Rejoin:
        """The first step of a failback, on the order path's thread: the snapshot to load."""
        self._rejoin = _Rejoin(self.standby.snapshot(), self.standby.image, self._generation)
        return self._rejoin

    def prepare_card(self, rejoin: _Rejoin) -> CardDriver:
        """The slow step, safe on another thread (it touches only the new card): a card from
        `new_card`, loaded with the program and the snapshot, its hash checked."""
        if self.new_card is None:
            raise CardError("no way to start a new card")
        card = self.new_card()
        try:
            card.load_image(rejoin.image)
            if isinstance(card, Restorable):
                card.restore(rejoin.snapshot)
            else:
                load_snapshot(card, rejoin.image, rejoin.snapshot)
            got = card.state_hash()
            if got != rejoin.snapshot.hash:
                raise CardError(f"state hash {got[:12]} after loading snapshot {rejoin.snapshot.hash[:12]}")
        except BaseException:
            card.close()
            raise
        return card

    def finish_rejoin(self, rejoin: _Rejoin, card: CardDriver) -> bool:
        """The last step, on the order path's thread: replay the events decided since the snapshot,
        compare, and put the card in SHADOW. False (the card closed) when that fails."""
        if (
            self._rejoin is not rejoin
            or rejoin.generation != self._generation
            or self.mode is not Mode.SOFTWARE
        ):
            self._rejoin = None
            card.close()
            self.log("card: rejoin abandoned (a program or tables were loaded meanwhile)")
            return False
        self._rejoin = None
        try:
            # in one call: the simulated card takes a batch in one round trip
            answers = card.process_many([(event, inputs) for event, inputs, _ in rejoin.events])
            for (event, inputs, decision), answer in zip(rejoin.events, answers, strict=True):
                if answer != decision:
                    raise CardError(self._describe(event, inputs, answer, decision))
            # with nothing to catch up, prepare_card's check stands (a read-back takes seconds)
            if rejoin.events and card.state_hash() != self.standby.state_hash():
                raise CardError("state hash differs after catching up")
        except CardError as exc:
            card.close()
            self._rejoin_failed(str(exc))
            return False
        self.card = card
        self.mode = Mode.SHADOW
        self._probation = 0
        self._since_hash = 0
        self._last_beat, self._last_beat_ns = None, self._clock()
        self.counters.rejoins += 1
        self.log(
            f"card: rejoined from a snapshot ({len(rejoin.events)} events caught up), state "
            f"{self.standby.state_hash()[:12]}; in shadow for {self.settings.probation_events} events"
        )
        return True

    def rejoin_failed(self, why: str) -> None:
        self._rejoin = None
        self._rejoin_failed(why)

    def rejoin(self) -> bool:
        """A whole failback step on this thread (tests, benchmarks): SOFTWARE -> SHADOW."""
        close_cards(self.take_retired(), self.log)
        rejoin = self.begin_rejoin()
        try:
            card = self.prepare_card(rejoin)
        except (CardError, OSError) as exc:
            self.rejoin_failed(str(exc))
            return False
        return self.finish_rejoin(rejoin, card)

    def switch_back(self) -> None:
        """SHADOW -> LOCKSTEP: the card decides again (both executors hold the same state)."""
        assert self.card is not None and self.mode is Mode.SHADOW
        try:
            same = self.card.state_hash() == self.standby.state_hash()
        except CardError as exc:
            self._drop_shadow(f"driver error: {exc}")
            return
        if not same:
            self.counters.hash_mismatches += 1
            self._drop_shadow("state hash differs at the end of probation")
            return
        self.mode = Mode.LOCKSTEP
        self.failback_requested = False
        self.counters.failbacks += 1
        self.log(f"card: primary again after {self._probation} events on probation")

    # ------------------------------------------------------------------ internals

    def _record(self, event: Event, inputs: Sequence[Value], decision: Decision) -> Decision:
        if self._rejoin is not None:
            self._rejoin.events.append((event, tuple(inputs), decision))
        return decision

    def _describe(self, event: Event, inputs: Sequence[Value], card: Decision, soft: Decision) -> str:
        return (
            f"mismatch at event {self.counters.events}: {event.name} inputs {list(inputs)}: "
            f"card {_answer(card)}, software {_answer(soft)}"
        )

    def _mismatch(
        self, event: Event, inputs: Sequence[Value], answer: Decision, decision: Decision
    ) -> Decision:
        """A differing answer in LOCKSTEP; returns the decision that stands."""
        self.counters.mismatches += 1
        text = self._describe(event, inputs, answer, decision)
        self.last_mismatch = text
        return self._apply_policy(text, answer, decision)

    def _apply_policy(self, text: str, answer: Decision | None, decision: Decision | None) -> Decision:
        policy = self.settings.policy
        if policy == "alarm":
            self.log(f"card: ALARM {text}; policy alarm: the card stays primary, software re-synchronised")
            assert self.card is not None
            try:
                self._restore_standby(self.card.snapshot())
            except CardError as exc:
                self._card_fault(f"driver error reading the card's state: {exc}", self._clock())
                self._finish_switch()
                return decision if decision is not None else Decision(True)
            return answer if answer is not None else Decision(True)
        self._card_fault(text, self._clock())
        self._finish_switch()
        if policy == "halt":
            self.halted = True
            self.log("card: HALT: new orders are rejected until an operator runs failback or failover")
        # The software engine's state already holds this event as it decided it; its decision stands
        # so the decision and the state agree.
        return decision if decision is not None else Decision(True)

    def _count_for_hash(self) -> None:
        every = self.settings.hash_every
        if not every or self.card is None:
            return
        self._since_hash += 1
        if self._since_hash < every:
            return
        self._since_hash = 0
        self.counters.hash_checks += 1
        try:
            card_hash = self.card.state_hash()
        except CardError as exc:
            if self.mode is Mode.LOCKSTEP:
                self._card_gone(f"driver error reading the state hash: {exc}", self._clock())
            else:
                self._drop_shadow(f"driver error reading the state hash: {exc}")
            return
        soft_hash = self.standby.state_hash()
        if card_hash == soft_hash:
            return
        self.counters.hash_mismatches += 1
        text = (
            f"state hash differs after event {self.counters.events}: "
            f"card {card_hash[:12]}, software {soft_hash[:12]}"
        )
        self.last_mismatch = text
        if self.mode is Mode.SHADOW:
            self._drop_shadow(text)
        else:
            self._apply_policy(text, None, None)

    def _card_fault(self, reason: str, detected: int) -> None:
        """The card is out; the switch completes in `_finish_switch` once software has decided."""
        if self.card is None:
            return
        if reason.startswith("driver error"):
            self.counters.card_errors += 1
        self._retire(self.card)
        self.card = None
        self.mode = Mode.SOFTWARE
        self.failback_requested = False
        self._rejoin = None
        self._next_rejoin_ns = detected + int(self.settings.rejoin_ms * 1e6)
        self._pending_failover = (reason, detected, time.time_ns())

    def _finish_switch(self) -> None:
        pending = self._pending_failover
        if pending is None:
            return
        self._pending_failover = None
        reason, detected, wall = pending
        failover = Failover(reason, wall, self._clock() - detected, detected)
        self.failovers.append(failover)
        self.counters.failovers += 1
        self.log(f"card: FAILOVER to the software engine after {failover.duration_ns / 1e6:.3f} ms: {reason}")

    def _card_gone(self, reason: str, detected: int) -> None:
        self._card_fault(reason, detected)
        self._finish_switch()

    def _drop_shadow(self, why: str) -> None:
        assert self.card is not None
        self.counters.rejoin_failures += 1
        self._retire(self.card)
        self.card = None
        self.mode = Mode.SOFTWARE
        self._next_rejoin_ns = self._clock() + int(self.settings.rejoin_ms * 1e6)
        self.log(f"card: out of shadow ({why}); the software engine stays primary")

    def _rejoin_failed(self, why: str) -> None:
        self.counters.rejoin_failures += 1
        self._next_rejoin_ns = self._clock() + int(self.settings.rejoin_ms * 1e6)
        self.log(f"card: could not rejoin: {why}")

    def _retire(self, card: CardDriver) -> None:
        self._retired.append(card)

    def take_retired(self) -> list[CardDriver]:
        """The failed cards, to close off the order path (closing a stopped simulator waits)."""
        retired, self._retired = self._retired, []
        return retired


def close_cards(cards: Sequence[CardDriver], log: Callable[[str], None]) -> None:
    for card in cards:
        try:
            card.close()
        except (CardError, OSError) as exc:
            log(f"card: closing a failed card: {exc}")


def load_snapshot(card: CardDriver, image: Image, snap: Snapshot) -> None:
    """A snapshot into a card that has only LOAD sections: the user tables' rows in their order.

    The tables the compiler added (incremental aggregates) are rebuilt by the LOAD sections of the
    tables they summarise; the caller checks the state hash, which says whether that gave the same
    state (it does not when an aggregate kept a group whose rows were all deleted).
    """
    for config, saved in zip(image.tables, snap.tables, strict=True):
        if config.hidden or not saved.n_rows:
            continue
        columns = range(len(saved.words))
        rows = (
            [None if saved.nulls[c][r] else int(saved.words[c][r]) for c in columns]
            for r in range(saved.n_rows)
        )
        card.load_rows(config.id, rows)


def _answer(decision: Decision) -> str:
    if decision.accepted:
        return "ACCEPT"
    return f"REJECT failed={list(decision.failed)}"
