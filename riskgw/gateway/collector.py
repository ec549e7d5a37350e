"""Python's cycle collector while a gateway runs: no full collection while orders flow.

CPython collects its oldest generation whenever the objects that outlived the younger collections
grow by a quarter. The gateway keeps its last 100,000 decided orders (several objects each), so
under load that was a pass over a few hundred thousand objects every few seconds: measured in
`riskgw serve` at 30-100 ms each (p50 65 ms), with every order that arrived meanwhile waiting.
Reference counting frees what the order path makes (it makes no reference cycles; a test holds it
to that), so those passes find almost nothing: cycles come from connections closing, errors and
deployments.

With `gc = "idle"` (the default), from the end of the gateway's start to its stop:
- the state loaded at start is collected once and frozen (gc.freeze: never scanned again, and a
  snapshot's forked child keeps sharing its pages);
- the oldest generation is not collected by CPython's own rule; the young ones are, as before
  (p99 1.1 ms, measured);
- a full collection runs once a second has passed with no event decided and a minute since the
  last one: everything is scanned (frozen objects too, so a deployment's old program is freed) and
  what is left frozen again;
- after ten minutes with no quiet second, one runs anyway, over what was not frozen (what the ten
  minutes left), so its pause does not grow with the whole state; it is logged.
`gc = "python"` leaves CPython's collector as it is. Settings are process-wide: the first gateway
to start in a process sets them, the last to stop puts them back.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable
from typing import Any

GC_MODES = ("idle", "python")
QUIET_S = 1.0  # no event decided for this long: a full collection may run
EVERY_S = 60.0  # at most one full collection a minute when the gateway is quiet
AT_MOST_S = 600.0  # a full collection after this long even when it never is
_NEVER = 1 << 30  # a threshold the oldest generation's counter does not reach

_users = 0  # collectors started and not stopped in this process
_saved: tuple[int, int, int] | None = None  # CPython's thresholds before the first


def _take() -> None:
    global _users, _saved
    if _users == 0:
        _saved = gc.get_threshold()
        gc.set_threshold(_saved[0], _saved[1], _NEVER)
    _users += 1


def _give_back() -> None:
    global _users, _saved
    _users -= 1
    if _users == 0 and _saved is not None:
        gc.unfreeze()
        gc.set_threshold(*_saved)
        _saved = None


class Collector:
    """Full collections for one gateway: `start` at the end of its start, `tick` once a second
    (the `run` task), `stop` when it stops. `activity` counts the events decided so far."""

    def __init__(
        self,
        activity: Callable[[], int],
        log: Callable[[str], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._activity = activity
        self._log = log
        self._clock = clock
        self._seen = -1
        self._quiet_since = 0.0
        self._last_full = 0.0
        self._started = False
        self.full_collections = 0
        self.forced = 0  # full collections while events were still being decided
        self.last_ms = 0.0
        self.last_found = 0  # unreachable objects the last full collection freed

    def start(self) -> None:
        if self._started:
            return
        self._started = True
        _take()
        self._full(everything=True)
        self.full_collections = 0  # the one at start is not counted
        self._seen, self._quiet_since = self._activity(), self._last_full

    def stop(self) -> None:
        if self._started:
            self._started = False
            _give_back()

    def tick(self) -> bool:
        """A full collection when one is due; whether it ran."""
        if not self._started:
            return False
        now, seen = self._clock(), self._activity()
        if seen != self._seen:
            self._seen, self._quiet_since = seen, now
        quiet = now - self._quiet_since >= QUIET_S
        since = now - self._last_full
        if not (quiet and since >= EVERY_S) and since < AT_MOST_S:
            return False
        self._full(everything=quiet)
        self.full_collections += 1
        if not quiet:
            self.forced += 1
            self._log(
                f"garbage collector: a full collection while orders flowed (no quiet second in "
                f"{since:.0f} s): {self.last_ms:.1f} ms, {self.last_found} objects freed"
            )
        return True

    def _full(self, everything: bool) -> None:
        start = time.perf_counter()
        if everything:
            gc.unfreeze()
        self.last_found = gc.collect()
        gc.freeze()
        self.last_ms = 1e3 * (time.perf_counter() - start)
        self._last_full = self._clock()

    async def run(self, period: float = 1.0) -> None:
        while True:
            await asyncio.sleep(period)
            self.tick()

    def status(self) -> dict[str, Any]:
        return {
            "mode": "idle",
            "full_collections": self.full_collections,
            "forced": self.forced,
            "last_full_ms": round(self.last_ms, 1),
            "last_full_freed": self.last_found,
            "frozen": gc.get_freeze_count(),
            "thresholds": list(gc.get_threshold()),
        }
