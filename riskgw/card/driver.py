"""`CardDriver`: what the gateway needs from an executor of a program image.

The gateway talks to every executor (the software engine, the simulated card, a U200) through
this one interface, so a card can replace the software engine without changing the order path.
An event goes in as its N_EVENT_REGS input words and comes back as a `Decision`, exactly as
`Engine.process` defines it; table rows go in as their physical words in column order.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Sequence

from riskgw.doe.image import Image
from riskgw.doe.isa import Event
from riskgw.engine.engine import Decision
from riskgw.engine.state import Snapshot
from riskgw.engine.table import Value


class CardError(RuntimeError):
    """The card cannot do what was asked (no program loaded, closed, a driver fault)."""


class CardDriver(abc.ABC):
    """One executor of a program image. Not thread-safe: one caller drives it."""

    @abc.abstractmethod
    def load_image(self, image: Image) -> None:
        """Load a program; every table starts empty."""

    @abc.abstractmethod
    def load_rows(self, table_id: int, rows: Iterable[Sequence[Value]]) -> int:
        """Insert data rows into a table through its LOAD section; returns the number inserted.

        Raises riskgw.engine.engine.DuplicateKeyError at the first row whose key is already there.
        """

    @abc.abstractmethod
    def process(self, event: Event, inputs: Sequence[Value]) -> Decision:
        """Run one event (NEW, FILL, REJECT or CANCEL) and return its decision."""

    def process_many(self, items: Sequence[tuple[Event, Sequence[Value]]]) -> list[Decision]:
        """`process` on each (event, inputs) in order; a card with a round trip per call sends them
        together."""
        return [self.process(event, inputs) for event, inputs in items]

    @abc.abstractmethod
    def state_hash(self) -> str:
        """The engine state hash (riskgw.engine.state.EngineState.hash) of every table."""

    @abc.abstractmethod
    def snapshot(self) -> Snapshot:
        """Every table's contents and their hash."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the card; later calls raise CardError."""

    @property
    @abc.abstractmethod
    def image(self) -> Image:
        """The loaded program; CardError when none is."""
