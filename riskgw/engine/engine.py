"""The software DOE: runs a program image's sections on events and data rows.

`Engine(image)` uses the generated fast path; `Engine(image, backend="interp")` the reference
interpreter; `Engine(image, backend="native")` generated C (riskgw.engine.native), which needs a C
compiler. All hold their state in an `EngineState` and give identical decisions and hashes.
Time arrives in the event (`ts`); the engine never reads a clock.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from riskgw.doe.image import Image
from riskgw.doe.isa import EVENT_FIELD_REGS, N_EVENT_REGS, Event
from riskgw.doe.values import encode_char
from riskgw.engine.fastpath import FastPath
from riskgw.engine.interp import Interpreter
from riskgw.engine.program import check_image
from riskgw.engine.state import EngineState, Snapshot
from riskgw.engine.table import EngineError, Key, Value

if TYPE_CHECKING:
    from riskgw.engine.native import Native

Backend = Literal["fast", "interp", "native"]
EVENTS = (Event.NEW, Event.FILL, Event.REJECT, Event.CANCEL)


@dataclass(frozen=True)
class Decision:
    """The outcome of one event: NEW is accepted iff no rule failed; other events are always applied."""

    accepted: bool
    failed: tuple[int, ...] = ()  # ids of the failed rules, in rule order


ACCEPTED = Decision(True)


class DuplicateKeyError(EngineError):
    """A data row whose key is already in its table."""

    def __init__(self, table: str, key: Key) -> None:
        self.table = table
        self.key = key
        super().__init__(f"duplicate key in table {table}")


def event_inputs(fields: Mapping[str, int | str | None]) -> tuple[Value, ...]:
    """The input registers of an event from `trade_order` field values (missing fields are NULL)."""
    regs: list[Value] = [None] * N_EVENT_REGS
    for name, (reg, n_words) in EVENT_FIELD_REGS.items():
        value = fields.get(name)
        if value is None:
            continue
        if n_words == 1:
            if not isinstance(value, int):
                raise TypeError(f"{name} must be an integer")
            regs[reg] = value
        else:
            words = encode_char(value if isinstance(value, str) else str(value), 8 * n_words)
            regs[reg : reg + n_words] = words
    return tuple(regs)


class Engine:
    """`process(event, inputs) -> Decision` runs one event (NEW, FILL, REJECT or CANCEL) with its
    N_EVENT_REGS input words; `load_row` inserts a data row; `snapshot`, `restore`, `state_hash`.
    """

    process: Callable[[Event, Sequence[Value]], Decision]

    def __init__(self, image: Image, backend: Backend = "fast") -> None:
        if backend not in ("fast", "interp", "native"):
            raise ValueError(f"unknown backend {backend!r}")
        check_image(image)
        self.image = image
        self.backend = backend
        self.state = EngineState(image)
        self._rule_ids = [r.id for r in image.rules]
        self._decisions: dict[int, Decision] = {}
        self._interp = Interpreter(image, self.state)
        self._fast = FastPath(image, self.state, N_EVENT_REGS) if backend == "fast" else None
        self._native: Native | None = None
        if backend == "native":
            from riskgw.engine.native import Native  # ctypes and the compiler only when asked for

            self._native = Native(image, self.state, N_EVENT_REGS)
            self.process = self._native_process(self._native)
        else:
            self.process = self._interpret if self._fast is None else self._fast_process(self._fast)

    # ------------------------------------------------------------------ events

    def _fast_process(self, fast: FastPath) -> Callable[[Event, Sequence[Value]], Decision]:
        # A closure over locals: the per-event cost of a method and its attribute lookups is a
        # noticeable share of a generated section's run time.
        new_event, others, decision, new, accepted = (
            fast.new,
            fast.events,
            self._decision,
            Event.NEW,
            ACCEPTED,
        )

        def process(event: Event, inputs: Sequence[Value]) -> Decision:
            if event is new:
                mask = new_event(inputs)
                return decision(mask) if mask else accepted
            run = others.get(event)
            if run is None:
                raise ValueError(f"{event.name} is not an event")
            run(inputs)
            return accepted

        return process

    def _native_process(self, native: Native) -> Callable[[Event, Sequence[Value]], Decision]:
        run, decision, accepted = native.event_fn(), self._decision, ACCEPTED

        def process(event: Event, inputs: Sequence[Value]) -> Decision:
            if event not in EVENTS:
                raise ValueError(f"{event.name} is not an event")
            mask = run(event, inputs)
            return decision(mask) if mask else accepted

        return process

    def process_batch(self, events: Sequence[tuple[Event, Sequence[Value]]]) -> list[Decision]:
        """`process` on each event in order; the native backend runs them in one call."""
        if self._native is None:
            process = self.process
            return [process(e, inputs) for e, inputs in events]
        for event, _ in events:
            if event not in EVENTS:
                raise ValueError(f"{event.name} is not an event")
        masks = self._native.batch(events)
        out = [ACCEPTED] * len(events)
        if masks.shape[1] == 1:
            for i in np.flatnonzero(masks[:, 0]).tolist():
                out[i] = self._decision(int(masks[i, 0]))
        else:
            for i in np.flatnonzero(masks.any(axis=1)).tolist():
                out[i] = self._decision(sum(int(m) << (64 * w) for w, m in enumerate(masks[i])))
        return out

    def _interpret(self, event: Event, inputs: Sequence[Value]) -> Decision:
        if len(inputs) != N_EVENT_REGS:
            raise ValueError(f"an event has {N_EVENT_REGS} input words, got {len(inputs)}")
        if event is Event.NEW:
            failed: set[int] = set()
            self._interp.run(Event.NEW, 0, inputs, failed)
            if failed:
                return Decision(False, tuple(r for r in self._rule_ids if r in failed))
            self._interp.run(Event.ACCEPT, 0, inputs)
            return ACCEPTED
        if event not in EVENTS:
            raise ValueError(f"{event.name} is not an event")
        self._interp.run(event, 0, inputs)
        return ACCEPTED

    def _decision(self, mask: int) -> Decision:
        decision = self._decisions.get(mask)
        if decision is None:
            failed = tuple(r for i, r in enumerate(self._rule_ids) if mask >> i & 1)
            decision = self._decisions[mask] = Decision(False, failed)
        return decision

    # ------------------------------------------------------------------ data

    def load_row(self, table_id: int, words: Sequence[Value]) -> None:
        """Insert a data row (its physical words in column order) by running the table's LOAD section.

        Raises DuplicateKeyError, changing nothing, when a row with the same key is already there.
        """
        table = self.state.table(table_id)
        if len(words) != table.n_cols:
            raise ValueError(f"table {table.config.name} has {table.n_cols} words per row, got {len(words)}")
        if table.key_cols and self._native is None:  # the native load checks the key itself
            key = table.key_of(tuple(words))
            if None not in key and key in table.index:
                raise DuplicateKeyError(table.config.name, key)
        if self._native is not None:
            if not self._native.load(table_id, words):
                raise DuplicateKeyError(table.config.name, table.key_of(tuple(words)))
        elif self._fast is not None:
            self._fast.loads[table_id](words)
        else:
            self._interp.run(Event.LOAD, table_id, words)

    # ------------------------------------------------------------------ state

    def snapshot(self) -> Snapshot:
        return self.state.snapshot()

    def restore(self, snap: Snapshot) -> None:
        self.state.restore(snap)

    def state_hash(self) -> str:
        return self.state.hash()
