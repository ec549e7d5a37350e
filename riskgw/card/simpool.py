"""`SimCardPool`: simulated cards started ahead, so bringing one back does not wait for a start.

Starting `riskgw sim-card` costs a process start, cocotb's start and the model's reset (1-2 s on
an idle machine, 5-10 s on a loaded one), and loading a program costs about 20,000 simulated
cycles of register writes. A failback needs a new card at once; the pool keeps `spares` cards
started, and with `image` set, loaded with that program, so that `take()` hands one over in
microseconds and starts the next in the background. A spare's clock rests until it is taken (the
taker's first request starts it), so that a spare costs memory but no CPU.

A start that fails (the process, its program's load or its rest) is counted in `status()` at once
(`failed`, and `error` says why until a start succeeds), logged once, and tried again after a pause
that doubles from `retry_first_s` (1 s) up to `retry_most_s` (30 s), for as long as the pool lacks
a spare: a failed start is never a card, so `ready` counts only cards a taker can have. A taker
with no card ready waits while the pool starts one and tries again: it gets the first card ready
within its timeout, and CardError (with the last failure's reason) when its timeout passes, when
`tries` starts (3) have failed while it waited, or when the pool is closed. It never gets a failure
that happened before it asked, and a pool that keeps failing answers each taker after `tries`
fresh attempts, not at once.

When the program changes (a deployment), `program(image)` makes the spares already started load
the new one in the background, and the next ones start with it; a card taken before that is done
carries the older program, so the taker loads the program it needs anyway (a SimCard skips the
load when it holds that program already and nothing has run on it).

Every card is started by the pool's own thread, which lives until `close()`: a simulated card's
process is stopped when the thread that started it ends (PR_SET_PDEATHSIG), so a card taken from
the pool lives until the pool is closed, or the card is. `close()` closes the ready spares and
does not wait for a start under way (a first start builds the model: minutes): it sends SIGTERM to
the process being started or loaded, whose start then fails on the pool's thread, which reaps it;
a start that ends anyway gives a card the pool's thread closes. `close()` waits at most
`CLOSE_WAIT_S` for that.
"""

from __future__ import annotations

import collections
import contextlib
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path

from riskgw.card.driver import CardError
from riskgw.card.simcard import SimCard
from riskgw.card.simlink import SimProcess
from riskgw.card.simserver import CardParams
from riskgw.doe.image import Image

RETRY_FIRST_S = 1.0  # the pause after a failed start, doubled after each one that follows
RETRY_MOST_S = 30.0  # the longest pause: a start costs seconds of CPU on a shared machine
TAKE_TRIES = 3  # fresh failed starts after which a waiting taker gets the error
CLOSE_WAIT_S = 5.0  # how long close() waits for the pool's thread to reap an interrupted start

_STOP = object()
_RELOAD = object()


def retry_delay(failures: int, first: float = RETRY_FIRST_S, most: float = RETRY_MOST_S) -> float:
    """Seconds before the next start after `failures` failed starts in a row (1 or more)."""
    return min(first * 2.0 ** min(failures - 1, 60), most)


def _interrupt(process: SimProcess) -> None:
    # SIGTERM alone: the thread running the start (or load) sees the process end and reaps it
    with contextlib.suppress(OSError):
        process.proc.terminate()


def _close(card: SimCard) -> None:
    with contextlib.suppress(CardError, OSError):
        card.close()


class SimCardPool:
    def __init__(
        self,
        params: CardParams | None = None,
        spares: int = 1,
        timeout: float = 30.0,
        image: Image | None = None,
        log_dir: Path | None = None,
        start: Callable[..., SimCard] = SimCard.start,
        log: Callable[[str], None] | None = None,
        retry_first_s: float = RETRY_FIRST_S,
        retry_most_s: float = RETRY_MOST_S,
    ) -> None:
        """`start(params, timeout=, log=, on_process=)` starts a card (SimCard.start's arguments);
        `log` hears of each failed start and of the first start that succeeds after some failed."""
        if spares < 1:
            raise ValueError("a pool keeps at least one spare card")
        self.params = params or CardParams()
        self.spares = spares
        self.timeout = timeout
        self.image = image  # the program spares are loaded with (None: none)
        self.log_dir = log_dir
        self.started = 0  # starts begun, the failed ones included
        self.failed = 0  # starts that failed
        self.failing = 0  # starts that failed since the last one that succeeded
        self.error: str | None = None  # why the last start failed, until one succeeds
        self.taken = 0
        self.loaded: str | None = None  # the digest of the program the spares were last loaded with
        self._start = start
        self._log = log
        self._retry = (retry_first_s, retry_most_s)
        self._cond = threading.Condition()  # guards the fields below and the counts above
        self._ready: collections.deque[SimCard] = collections.deque()
        self._preparing: SimProcess | None = None  # the process of the card being started or loaded
        self._closed = False
        self._orders: queue.Queue[object] = queue.Queue()
        self._worker = threading.Thread(target=self._run, name="sim-card pool", daemon=True)
        self._worker.start()
        for _ in range(spares):
            self._orders.put(None)

    # ------------------------------------------------------------------ the pool's thread

    def _run(self) -> None:
        while (order := self._orders.get()) is not _STOP:
            if order is _RELOAD:
                self._reload()
            else:
                self._start_one()

    def _say(self, text: str) -> None:
        if self._log is not None:
            self._log(text)

    def _start_one(self) -> None:
        """One more spare: started, tried again after a failure, until it is ready or the pool is closed."""
        while not self._closed:
            try:
                card = self._prepare()
            except (CardError, OSError) as exc:
                with self._cond:
                    if self._closed:
                        return  # a start close() interrupted is no failure
                    self.failed += 1
                    self.failing += 1
                    self.error = str(exc) or type(exc).__name__
                    delay = retry_delay(self.failing, *self._retry)
                    self._cond.notify_all()  # a waiting taker counts the failure
                    failing = self.failing
                self._say(
                    f"card: a spare simulated card did not start ({failing} in a row): {self.error};"
                    f" trying again in {delay:g} s"
                )
                with self._cond:
                    self._cond.wait_for(lambda: self._closed, timeout=delay)
                continue
            with self._cond:
                closed = self._closed
                recovered = self.failing
                if not closed:
                    self._ready.append(card)
                    self.failing, self.error = 0, None
                    self._cond.notify_all()
            if closed:  # the start ended after close(): nobody will take this card
                _close(card)
            elif recovered:
                self._say(f"card: a spare simulated card started after {recovered} failed starts")
            return

    def _prepare(self) -> SimCard:
        """A card started, loaded with the pool's program and resting; CardError when that fails."""
        with self._cond:
            n = self.started
            self.started += 1
        log = None if self.log_dir is None else self.log_dir / f"sim-card-{n}.log"
        try:
            card = self._start(self.params, timeout=self.timeout, log=log, on_process=self._starting)
            try:
                image = self.image
                if image is not None:
                    card.load_image(image)
                    self.loaded = image.digest()
                card.rest()  # until it is taken: a card that has served requests runs its clock idle
            except (CardError, OSError):
                _close(card)
                raise
        finally:
            with self._cond:
                self._preparing = None
        return card

    def _starting(self, process: SimProcess) -> None:
        with self._cond:
            if not self._closed:
                self._preparing = process
                return
        _interrupt(process)

    def _reload(self) -> None:
        """The spares ready now, loaded with the pool's program; one that fails is replaced."""
        with self._cond:
            count = len(self._ready)
        for _ in range(count):
            image = self.image
            with self._cond:
                if self._closed or not self._ready or image is None:
                    return
                card = self._ready.popleft()
                self._preparing = card.server
            try:
                card.load_image(image)  # nothing when it holds this program already
                card.rest()
            except (CardError, OSError) as exc:
                _close(card)
                with self._cond:
                    self._preparing = None
                    closed = self._closed
                if not closed:
                    self._say(f"card: a spare simulated card could not load the new program: {exc}")
                    self._orders.put(None)
                continue
            with self._cond:
                self._preparing = None
                if not self._closed:
                    self.loaded = image.digest()
                    self._ready.append(card)
                    self._cond.notify_all()
                    continue
            _close(card)

    # ------------------------------------------------------------------ the pool's users

    def program(self, image: Image) -> None:
        """Spares carry `image` from now on: those ready are reloaded in the background."""
        if self._closed:
            return
        self.image = image
        self._orders.put(_RELOAD)

    def status(self) -> dict[str, int | str | None]:
        """How many spares are kept, ready, started, failed to start and taken; why the last start
        failed (None once one has succeeded since); the program the spares were last loaded with
        (its digest's first 12 hex digits)."""
        with self._cond:
            return {
                "image": None if self.loaded is None else self.loaded[:12],
                "spares": self.spares,
                "ready": len(self._ready),
                "started": self.started,
                "failed": self.failed,
                "error": self.error,
                "taken": self.taken,
            }

    def take(self, timeout: float = 900.0, tries: int = TAKE_TRIES) -> SimCard:
        """A started card (loaded with `image` when set); the next one starts in the background.
        With none ready, waits while the pool starts one (and tries again after a failure);
        CardError when none is ready within `timeout`, when `tries` starts fail meanwhile, or when
        the pool is closed."""
        deadline = time.monotonic() + timeout
        with self._cond:
            failed_before = self.failed
            while not self._ready:
                if self._closed:
                    raise CardError("the simulated card pool is closed")
                seen = self.failed - failed_before
                if seen >= tries:
                    raise CardError(f"no simulated card could start ({seen} starts failed): {self.error}")
                left = deadline - time.monotonic()
                if left <= 0:
                    why = "" if self.error is None else f" (the last start failed: {self.error})"
                    raise CardError(f"no simulated card started within {timeout:.0f} s{why}")
                self._cond.wait(left)
            card = self._ready.popleft()
            self.taken += 1
        self._orders.put(None)
        return card

    def close(self) -> None:
        """Stop the spares, and the card being started or loaded (its process gets SIGTERM); wait at
        most CLOSE_WAIT_S for the pool's thread, which reaps that card and then ends, stopping the
        cards it started that are still open."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            spares = list(self._ready)
            self._ready.clear()
            preparing = self._preparing
            self._cond.notify_all()
        self._orders.put(_STOP)
        if preparing is not None:
            _interrupt(preparing)
        for card in spares:
            _close(card)
        self._worker.join(CLOSE_WAIT_S)
