"""`FaultyCard`: a software card that fails on demand, for fault-injection tests and benchmarks.

It behaves like the simulated card seen from the driver: `kill()` is the card's process exiting
(every later call raises CardError), `stall()` is the process stopped (the heartbeat stops
advancing and a call waits `stall_timeout_s` before it raises CardError, as a driver's timeout
would), `corrupt_next()` gives one wrong answer (a flipped verdict) while the state moves on as
the program says. `kill(after=True)` dies after running the event it was handed, so the card's
state holds an event whose answer never came back.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence

from riskgw.card.driver import CardDriver, CardError
from riskgw.card.soft import SoftCard
from riskgw.doe.image import Image
from riskgw.doe.isa import Event
from riskgw.engine.engine import Backend, Decision
from riskgw.engine.state import Snapshot
from riskgw.engine.table import Value


class FaultyCard(CardDriver):
    def __init__(self, backend: Backend = "fast", stall_timeout_s: float = 0.0) -> None:
        self._inner = SoftCard(backend)
        self.stall_timeout_s = stall_timeout_s
        self.dead = False
        self.stalled = False
        self._die_after_next = False
        self._corrupt_next = False
        self._beat = 0
        self.processed = 0

    def kill(self, after: bool = False) -> None:
        """Die now, or (after=True) once the next event has run on the card."""
        if after:
            self._die_after_next = True
        else:
            self.dead = True

    def stall(self) -> None:
        self.stalled = True

    def corrupt_next(self) -> None:
        self._corrupt_next = True

    def _alive(self) -> None:
        if self.stalled:
            time.sleep(self.stall_timeout_s)
            raise CardError(f"no answer from the card in {self.stall_timeout_s * 1e3:.0f} ms")
        if self.dead:
            raise CardError("the card's process exited (killed)")

    def heartbeat(self) -> int:
        if self.dead:
            raise CardError("the card's process exited (killed)")
        if not self.stalled:  # a stopped fabric: the register still reads, it stops counting
            self._beat += 1
        return self._beat

    def load_image(self, image: Image) -> None:
        self._alive()
        self._inner.load_image(image)

    def load_rows(self, table_id: int, rows: Iterable[Sequence[Value]]) -> int:
        self._alive()
        return self._inner.load_rows(table_id, rows)

    def process(self, event: Event, inputs: Sequence[Value]) -> Decision:
        self._alive()
        decision = self._inner.process(event, inputs)
        self.processed += 1
        if self._die_after_next:
            self._die_after_next = False
            self.dead = True
            raise CardError("the card's process exited (killed) before answering")
        if self._corrupt_next:
            self._corrupt_next = False
            return Decision(False, (0,)) if decision.accepted else Decision(True)
        return decision

    def state_hash(self) -> str:
        self._alive()
        return self._inner.state_hash()

    def snapshot(self) -> Snapshot:
        self._alive()
        return self._inner.snapshot()

    def restore(self, snap: Snapshot) -> None:
        self._alive()
        self._inner.restore(snap)

    def close(self) -> None:
        self._inner.close()

    @property
    def image(self) -> Image:
        self._alive()
        return self._inner.image
