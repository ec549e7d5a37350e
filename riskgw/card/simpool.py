"""`SimCardPool`: simulated cards started ahead, so bringing one back does not wait for a start.

Starting `riskgw sim-card` costs a process start, cocotb's start and the model's reset (1-2 s on
an idle machine, 5-10 s on a loaded one), and loading a program costs about 20,000 simulated
cycles of register writes. A failback needs a new card at once; the pool keeps `spares` cards
started, and with `image` set, loaded with that program, so that `take()` hands one over in
microseconds and starts the next in the background. A spare's clock rests until it is taken (the
taker's first request starts it), so that a spare costs memory but no CPU.

When the program changes (a deployment), `program(image)` makes the spares already started load
the new one in the background, and the next ones start with it; a card taken before that is done
carries the older program, so the taker loads the program it needs anyway (a SimCard skips the
load when it holds that program already and nothing has run on it).

Every card is started by the pool's own thread, which lives until `close()`: a simulated card's
process is stopped when the thread that started it ends (PR_SET_PDEATHSIG), so a card taken from
the pool lives until the pool is closed, or the card is.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable
from pathlib import Path

from riskgw.card.driver import CardError
from riskgw.card.simcard import SimCard
from riskgw.card.simserver import CardParams
from riskgw.doe.image import Image

_STOP = object()
_RELOAD = object()


class SimCardPool:
    def __init__(
        self,
        params: CardParams | None = None,
        spares: int = 1,
        timeout: float = 30.0,
        image: Image | None = None,
        log_dir: Path | None = None,
        start: Callable[..., SimCard] = SimCard.start,
    ) -> None:
        if spares < 1:
            raise ValueError("a pool keeps at least one spare card")
        self.params = params or CardParams()
        self.spares = spares
        self.timeout = timeout
        self.image = image  # the program spares are loaded with (None: none)
        self.log_dir = log_dir
        self.started = 0
        self.taken = 0
        self.loaded: str | None = None  # the digest of the program the spares were last loaded with
        self._start = start
        self._ready: queue.Queue[SimCard | CardError] = queue.Queue()
        self._orders: queue.Queue[object] = queue.Queue()
        self._closed = False
        self._worker = threading.Thread(target=self._run, name="sim-card pool", daemon=True)
        self._worker.start()
        for _ in range(spares):
            self._orders.put(None)

    def _run(self) -> None:
        while (order := self._orders.get()) is not _STOP:
            if order is _RELOAD:
                self._reload()
                continue
            try:
                log = None if self.log_dir is None else self.log_dir / f"sim-card-{self.started}.log"
                self.started += 1
                card = self._start(self.params, timeout=self.timeout, log=log)
                try:
                    image = self.image
                    if image is not None:
                        card.load_image(image)
                        self.loaded = image.digest()
                    card.rest()  # until it is taken: a card that has served requests runs its clock idle
                except CardError:
                    with contextlib.suppress(CardError, OSError):
                        card.close()
                    raise
                self._ready.put(card)
            except CardError as exc:
                self._ready.put(exc)
        # the cards this thread started are stopped when it ends: close the spares first
        while True:
            try:
                left = self._ready.get_nowait()
            except queue.Empty:
                break
            if isinstance(left, SimCard):
                with contextlib.suppress(CardError, OSError):
                    left.close()

    def _reload(self) -> None:
        """The spares ready now, loaded with the pool's program; one that fails is replaced."""
        ready: list[SimCard | CardError] = []
        while True:
            try:
                ready.append(self._ready.get_nowait())
            except queue.Empty:
                break
        for got in ready:
            image = self.image
            if isinstance(got, SimCard) and image is not None:
                try:
                    got.load_image(image)  # nothing when it holds this program already
                    got.rest()
                except CardError:
                    with contextlib.suppress(CardError, OSError):
                        got.close()
                    self._orders.put(None)
                    continue
                self.loaded = image.digest()
            self._ready.put(got)

    def program(self, image: Image) -> None:
        """Spares carry `image` from now on: those ready are reloaded in the background."""
        if self._closed:
            return
        self.image = image
        self._orders.put(_RELOAD)

    def status(self) -> dict[str, int | str | None]:
        """How many spares are kept, ready, started and taken, and the program they were last loaded
        with (its digest's first 12 hex digits)."""
        return {
            "image": None if self.loaded is None else self.loaded[:12],
            "spares": self.spares,
            "ready": self._ready.qsize(),
            "started": self.started,
            "taken": self.taken,
        }

    def take(self, timeout: float = 900.0) -> SimCard:
        """A started card (loaded with `image` when set); the next one starts in the background.
        CardError when the card could not start."""
        if self._closed:
            raise CardError("the simulated card pool is closed")
        try:
            got = self._ready.get(timeout=timeout)
        except queue.Empty:
            raise CardError(f"no simulated card started within {timeout:.0f} s") from None
        self._orders.put(None)
        if isinstance(got, CardError):
            raise got
        self.taken += 1
        return got

    def close(self) -> None:
        """Stop the spares and the thread (which stops the cards it started that are still open)."""
        if self._closed:
            return
        self._closed = True
        self._orders.put(_STOP)
        self._worker.join()
