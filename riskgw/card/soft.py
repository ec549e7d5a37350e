"""`SoftCard`: the software engine behind the CardDriver interface."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from riskgw.card.driver import CardDriver, CardError
from riskgw.doe.image import Image
from riskgw.doe.isa import Event
from riskgw.engine.engine import Backend, Decision, Engine
from riskgw.engine.state import Snapshot
from riskgw.engine.table import Value


class SoftCard(CardDriver):
    def __init__(self, backend: Backend = "fast") -> None:
        self._backend: Backend = backend
        self._engine: Engine | None = None
        self._closed = False

    def _live(self) -> Engine:
        if self._closed:
            raise CardError("the card is closed")
        if self._engine is None:
            raise CardError("no program image is loaded")
        return self._engine

    def load_image(self, image: Image) -> None:
        if self._closed:
            raise CardError("the card is closed")
        self._engine = Engine(image, self._backend)

    @property
    def image(self) -> Image:
        return self._live().image

    def load_rows(self, table_id: int, rows: Iterable[Sequence[Value]]) -> int:
        engine = self._live()
        n = 0
        for words in rows:
            engine.load_row(table_id, words)
            n += 1
        return n

    def process(self, event: Event, inputs: Sequence[Value]) -> Decision:
        return self._live().process(event, inputs)

    def process_many(self, items: Sequence[tuple[Event, Sequence[Value]]]) -> list[Decision]:
        """`process` on each in order; the native engine runs them in one call."""
        return self._live().process_batch(items)

    def state_hash(self) -> str:
        return self._live().state_hash()

    def snapshot(self) -> Snapshot:
        return self._live().snapshot()

    def restore(self, snap: Snapshot) -> None:
        """Replace every table's contents with a snapshot's (a standby handing its state to a card)."""
        engine = self._live()
        try:
            engine.restore(snap)
        except ValueError as exc:
            raise CardError(str(exc)) from None

    def close(self) -> None:
        self._closed = True
        self._engine = None
