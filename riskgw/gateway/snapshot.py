"""State snapshots: a restart loads the newest good one and replays only the journal after it.

A snapshot holds everything a replay of the journal up to one record boundary (a journal
`Position`) rebuilds: the card's tables and their state hash, the program in force and the
deployment history, and the gateway's order state (every NEW decided, the exchange's answers on
each order, the open-order book). Kill switches, the FIX order map and the audit store have files
of their own and are not part of it.

Taking one costs the order path a fork(2): between two events, when everything journaled is
written, the gateway forks, and the child, which sees the memory as it was at that instant (copy
on write), copies the card's tables (the engine's `snapshot`) and the order state, fsyncs the
journal up to the position, writes the file atomically (a temporary name, fsync, rename, fsync of
the directory), prunes, answers in JSON on a pipe and exits. Its serialising and its garbage never
hold the gateway's GIL. Only a software engine's tables (a soft card, or a card's software
standby) are snapshotted this way: a card's own would be read over its bus. A process killed while
writing leaves only a `.tmp` file, removed at the next start; the child dies with the gateway.
The file, its checks and the directory: riskgw.gateway.snapfile.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import datetime
import gc
import json
import os
import signal
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client.metrics_core import Metric

from riskgw.card.driver import CardDriver, CardError
from riskgw.card.lockstep import LockstepCard, Restorable, load_snapshot
from riskgw.doe.image import Image
from riskgw.engine.state import Snapshot
from riskgw.errors import UserError
from riskgw.gateway.follow import followed_login
from riskgw.gateway.journal import JournalHeader
from riskgw.gateway.metrics import counter, gauge
from riskgw.gateway.snapfile import (
    Captured,
    Loaded,
    Meta,
    Orders,
    SnapshotError,
    check_journal,
    collector_paused,
    prune,
    read_meta,
    read_snapshot,
    remove_unfinished,
    snapshot_files,
    write_snapshot,
)

if TYPE_CHECKING:
    from riskgw.gateway.deploy import DeployStore
    from riskgw.gateway.server import Gateway

_PR_SET_PDEATHSIG = 1  # prctl(2)


# ----------------------------------------------------------------------------- settings


@dataclass
class SnapshotSettings:
    """The `[snapshots]` table of gateway.toml."""

    every_events: int = 100_000  # journal events between two snapshots (0: not by count)
    every_seconds: float = 600.0  # seconds between two, when events came in meanwhile (0: not by time)
    keep: int = 3  # snapshots kept (the newest ones)
    dir: Path | None = None  # default: beside the journal, JOURNAL.snapshots/

    @property
    def automatic(self) -> bool:
        """Whether snapshots are taken without being asked (`riskgw ctl snapshot` always can)."""
        return self.every_events > 0 or self.every_seconds > 0


def parse_snapshots(table: Any, base: Path) -> SnapshotSettings:
    """The `[snapshots]` table; UserError naming the bad setting."""
    if not isinstance(table, dict):
        raise UserError("snapshots must be a [snapshots] table")
    known = ("every_events", "every_seconds", "keep", "dir")
    unknown = sorted(set(table) - set(known))
    if unknown:
        raise UserError(f"snapshots: unknown setting {unknown[0]!r} (settings: {', '.join(known)})")
    out = SnapshotSettings()
    events = table.get("every_events", out.every_events)
    if not isinstance(events, int) or isinstance(events, bool) or events < 0:
        raise UserError("snapshots.every_events must be a whole number of events, 0 for none")
    seconds = table.get("every_seconds", out.every_seconds)
    if not isinstance(seconds, int | float) or isinstance(seconds, bool) or seconds < 0:
        raise UserError("snapshots.every_seconds must be a number of seconds, 0 for none")
    keep = table.get("keep", out.keep)
    if not isinstance(keep, int) or isinstance(keep, bool) or keep < 1:
        raise UserError("snapshots.keep must be a whole number, at least 1")
    out.every_events, out.every_seconds, out.keep = events, float(seconds), keep
    if "dir" in table:
        out.dir = base / str(table["dir"])
    return out


def snapshots_dir(journal: Path, settings: SnapshotSettings) -> Path:
    return settings.dir or journal.with_name(journal.name + ".snapshots")


# ----------------------------------------------------------------------------- taking one


def capture(gw: Gateway, versions: Sequence[int], header: JournalHeader) -> Captured | None:
    """Copy the state a snapshot holds, on the event loop, between two events.

    None while the journal holds records not yet written (the state would be ahead of the file).
    """
    position = gw.journal.position()
    if position is None:
        return None
    start = time.perf_counter_ns()
    card = gw.card
    tables = card.snapshot()
    key_widths = [len(t.key) for t in card.image.tables]
    decided = dict(gw.decided)  # values are tuples: a shallow copy is a copy
    # Answer lists grow in place: each is copied.
    answers = {key: tuple(items) for key, items in gw.history.items()}
    open_orders = {key: order.remaining for key, order in gw.open.items()}
    # A version 1 journal keeps no logins: a snapshot of it keeps none either, so a restart from it
    # gives what a restart from the journal alone gives.
    logins = {
        key: login
        for key, order in gw.open.items()
        if gw.journal.version >= 2 and (login := followed_login(order)) is not None
    }
    done = list(gw._done)  # the window of done orders whose records the gateway keeps
    forgotten = dict(gw.forgotten)
    took = time.perf_counter_ns() - start
    meta = Meta(
        header,
        position,
        0,
        list(versions),
        "",
        tables.hash,
        datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
    )
    return Captured(
        meta, card.image, tables, key_widths, decided, answers, open_orders, done, forgotten, took, logins
    )


# ----------------------------------------------------------------------------- at start


def restore_card(card: CardDriver, image: Image, tables: Snapshot) -> None:
    """Load `image` and the snapshot's tables into the card; SnapshotError when the card's state
    hash afterwards is not the snapshot's."""
    try:
        card.load_image(image)
        if isinstance(card, LockstepCard):
            # Both executors take the user tables through their LOAD sections; when the aggregates
            # that rebuilds differ (a group whose rows all went), the software engine takes the
            # tables as they were and the card rejoins from it, as after a failover.
            load_snapshot(card, image, tables)
            if card.state_hash() != tables.hash:
                card.restore(tables)
        elif isinstance(card, Restorable):
            card.restore(tables)
        else:
            load_snapshot(card, image, tables)
        got = card.state_hash()
    except (CardError, ValueError) as exc:
        raise SnapshotError(f"the card did not take its tables ({exc})") from None
    if got != tables.hash:
        raise SnapshotError(
            f"the card's state hash is {got[:12]} after loading it, the snapshot's {tables.hash[:12]}"
        )


def restore_orders(gw: Gateway, orders: Orders) -> None:
    """Put the snapshot's order state into a gateway, as a replay up to its position leaves it."""
    from riskgw.gateway.server import OpenOrder, _order_from_inputs

    with collector_paused():
        for key, (inputs, decision) in orders.decided.items():
            gw.decided[key] = (inputs, decision, None)
        for key, items in orders.answers.items():
            gw.history[key] = list(items)
        for key, remaining in orders.open.items():  # read_snapshot checked each has its decision
            values = _order_from_inputs(orders.decided[key][0])
            order = gw.open[key] = OpenOrder(values, None, remaining, orders.logins.get(key))
            gw.follow.opened(key, order)
        gw._done.extend(orders.done)
        gw.forgotten.update(orders.forgotten)


def pick(
    directory: Path,
    journal: Path,
    header: JournalHeader,
    store: DeployStore,
    card: CardDriver,
    reset: Callable[[], object],
    log: Callable[[str], None],
) -> Loaded | None:
    """The newest snapshot that is sound, follows this journal and loads into the card (the card
    then holds its program and tables); None when there is none, the card reset to the journal's
    start. Every snapshot skipped is reported in one line."""
    remove_unfinished(directory, log)
    candidates: list[tuple[int, Path]] = []
    for p in snapshot_files(directory):
        try:
            candidates.append((read_meta(p).position.records, p))
        except SnapshotError as exc:
            log(f"snapshot {p} skipped: {exc}")
    touched = False
    for _, path in sorted(candidates, reverse=True):
        try:
            loaded = read_snapshot(path)
            check_journal(loaded.meta, journal, header)
            versions = loaded.meta.versions
            if not versions:
                raise SnapshotError("it names no program version")
            try:
                image = store.image(versions[-1])
            except UserError as exc:
                raise SnapshotError(f"its program v{versions[-1]} cannot be read: {exc}") from None
            if image.digest() != loaded.meta.image_digest:
                raise SnapshotError(
                    f"it ran program {loaded.meta.image_digest[:12]}, v{versions[-1]} in "
                    f"{store.root} is {image.digest()[:12]}"
                )
            touched = True
            restore_card(card, image, loaded.tables)
        except SnapshotError as exc:
            log(f"snapshot {path} skipped: {exc}")
            if touched:
                reset()
                touched = False
            continue
        return loaded
    return None


# ----------------------------------------------------------------------------- the gateway's side


def _reap(pid: int, answers: int) -> dict[str, Any]:
    """Wait for a snapshot process (in a thread): its JSON answer, or why it gave none."""
    data = bytearray()
    try:
        while chunk := os.read(answers, 65536):
            data += chunk
    finally:
        os.close(answers)
    _, status = os.waitpid(pid, 0)
    if not data:
        return {"ok": False, "error": f"the snapshot process ended without an answer (wait status {status})"}
    try:
        answer = json.loads(data)
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        return {"ok": False, "error": f"the snapshot process answered {bytes(data[:80])!r}"}
    return answer


def _die_with_parent() -> None:
    """Ask Linux to kill this process when the gateway dies: a snapshot must not outlive it."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class Snapshotter:
    """Takes the gateway's snapshots: every `every_events` journal events or `every_seconds`
    seconds (when events came in meanwhile), and on `riskgw ctl snapshot`; keeps the newest `keep`."""

    def __init__(
        self,
        gateway: Gateway,
        settings: SnapshotSettings,
        header: JournalHeader,
        versions: Callable[[], Sequence[int]],
        log: Callable[[str], None],
        durable: bool = True,
        behind: int = 0,
    ) -> None:
        """`behind`: journal records replayed at start; as many as `every_events` make the first
        snapshot due at once, so the next restart need not replay them again."""
        self.gateway = gateway
        self.settings = settings
        self.directory = snapshots_dir(gateway.journal.path, settings)
        self.header = header
        self._versions = versions
        self._log = log
        self._durable = durable
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="snapshot")
        self._writing: asyncio.Future[dict[str, Any]] | None = None
        self._task: asyncio.Task[None] | None = None
        self._starting = asyncio.Lock()  # one snapshot process at a time
        self.taken = 0
        self.failures = 0
        self.last_error: str | None = None
        self.last: dict[str, Any] | None = None  # the last snapshot written, for status
        self.loaded: dict[str, Any] | None = None  # the snapshot the gateway started from
        self.last_capture_us = 0.0
        self.max_capture_us = 0.0
        self.last_time = 0.0  # wall clock when the last snapshot was on disk
        # journal.records when the last snapshot was taken (as if one had been before the replay)
        self._last_records = gateway.journal.records - behind
        self._last_time = time.monotonic()

    def start(self) -> None:
        if self.settings.automatic:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        s = self.settings
        tick = min(1.0, s.every_seconds / 4) if s.every_seconds else 0.25
        while True:
            await asyncio.sleep(tick)
            if self._writing is not None or self.gateway.failed is not None:
                continue
            new = self.gateway.journal.records - self._last_records
            if new <= 0:
                continue
            due_count = s.every_events > 0 and new >= s.every_events
            due_time = s.every_seconds > 0 and time.monotonic() - self._last_time >= s.every_seconds
            if due_count or due_time:
                async with self._starting:
                    if self._writing is None:
                        await self._take_soon()  # a failure is counted, logged and in status

    async def _take_soon(self, tries: int = 200) -> asyncio.Future[dict[str, Any]] | None:
        """Capture at the first turn of the loop when the journal holds nothing unwritten."""
        for _ in range(tries):
            if self.gateway.journal.position() is not None:
                return self._start()
            await asyncio.sleep(0)
        return None

    def _start(self) -> asyncio.Future[dict[str, Any]] | None:
        """Fork a process that writes the snapshot, when the journal holds nothing unwritten.

        The child sees the gateway's memory as it was at the fork (copy on write) and has the
        process to itself: the order path pays the fork, not the copy, the serialising (which
        holds the GIL) or the garbage collector's passes over it.
        """
        gw = self.gateway
        if gw.journal.position() is None:
            return None
        versions = list(self._versions())
        start = time.perf_counter_ns()
        try:
            read_end, write_end = os.pipe()
            parent = os.getpid()
            try:
                pid = os.fork()
            except OSError:
                os.close(read_end)
                os.close(write_end)
                raise
        except OSError as exc:  # no memory or no process left for the child: next time, maybe
            self.failures += 1
            self.last_error = f"cannot start the snapshot process: {exc.strerror or exc}"
            self._log(f"snapshot failed: {self.last_error}")
            self._last_records = gw.journal.records
            self._last_time = time.monotonic()
            return None
        if pid == 0:  # the child: it never returns
            os.close(read_end)
            self._child(write_end, versions, parent)
        took_us = (time.perf_counter_ns() - start) / 1000
        os.close(write_end)
        self.last_capture_us = took_us
        self.max_capture_us = max(self.max_capture_us, took_us)
        self._last_records = gw.journal.records
        self._last_time = time.monotonic()
        begun = time.monotonic()
        future = asyncio.get_running_loop().run_in_executor(self._pool, _reap, pid, read_end)
        self._writing = future

        def done(f: asyncio.Future[dict[str, Any]]) -> None:
            self._writing = None
            if f.cancelled():
                return
            exc = f.exception()
            answer = f.result() if exc is None else {"ok": False, "error": str(exc)}
            if not answer.get("ok"):
                self.failures += 1
                self.last_error = str(answer.get("error"))
                self._log(f"snapshot failed: {self.last_error}")
                return
            self.taken += 1
            self.last_time = time.time()
            self.last = {
                **{k: v for k, v in answer.items() if k != "ok"},
                "capture_us": round(took_us, 1),
                "write_s": round(time.monotonic() - begun, 3),
            }
            self.last_error = None

        future.add_done_callback(done)
        return future

    def _child(self, out: int, versions: list[int], parent: int) -> None:
        """The forked writer: capture, write, prune, answer on `out` in JSON, exit."""
        answer: dict[str, Any]
        try:
            gc.disable()  # short-lived: a collection would only copy the parent's pages
            _die_with_parent()
            if os.getppid() != parent:  # it died before the line above
                os._exit(1)
            # The gateway's sockets, journal and listeners are its own: the child opens what it
            # needs by name, and holds no connection or port open after the gateway lets it go.
            os.closerange(3, out)
            os.closerange(out + 1, os.sysconf("SC_OPEN_MAX"))
            signal.set_wakeup_fd(-1)  # the loop's, which the child does not run
            for sig in (signal.SIGTERM, signal.SIGINT):  # a stop signal stops the child itself
                signal.signal(sig, signal.SIG_DFL)
            captured = capture(self.gateway, versions, self.header)
            if captured is None:
                raise SnapshotError("the journal held records not yet written")
            path, size = write_snapshot(captured, self.gateway.journal.path, self.directory, self._durable)
            prune(self.directory, self.header, self.settings.keep)
            p, meta = captured.meta.position, captured.meta
            answer = {
                "ok": True,
                "file": str(path),
                "records": p.records,
                "events": p.events,
                "offset": p.offset,
                "bytes": size,
                "created": meta.created,
                "version": meta.versions[-1] if meta.versions else None,
                "state_hash": meta.state_hash,
            }
        except BaseException as exc:  # everything ends in the answer: the child must reach _exit
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            answer = {"ok": False, "error": f"{type(exc).__name__}: {why}"}
        try:
            os.write(out, json.dumps(answer).encode())
        finally:
            os._exit(0)

    async def take_now(self) -> dict[str, Any]:
        """A snapshot now (`riskgw ctl snapshot`): waits for one being written, then takes one."""
        if self.gateway.failed is not None:
            return {"ok": False, "error": "the journal cannot be written"}
        async with self._starting:
            while self._writing is not None:
                with contextlib.suppress(Exception):
                    await asyncio.shield(self._writing)
            future = await self._take_soon()
        if future is None:
            return {"ok": False, "error": self.last_error or "the journal kept records unwritten; try again"}
        answer = await asyncio.shield(future)
        if not answer.get("ok"):
            return {"ok": False, "error": f"the snapshot could not be written: {answer.get('error')}"}
        return {"ok": True, **(self.last or {})}

    async def close(self) -> None:
        """Stop taking snapshots; let one being written finish."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._writing is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._writing)
        self._pool.shutdown(wait=True)

    def status(self) -> dict[str, Any]:
        s = self.settings
        return {
            "dir": str(self.directory),
            "every_events": s.every_events,
            "every_seconds": s.every_seconds,
            "keep": s.keep,
            "taken": self.taken,
            "failures": self.failures,
            "last_error": self.last_error,
            "writing": self._writing is not None,
            "last": self.last,
            "loaded": self.loaded,
            "max_capture_us": round(self.max_capture_us, 1),
        }

    def metric_families(self) -> list[Metric]:
        last = self.last or {}
        return [
            counter(
                "riskgw_snapshots_total", "state snapshots written since the gateway started", self.taken
            ),
            counter(
                "riskgw_snapshot_failures_total", "state snapshots that could not be written", self.failures
            ),
            gauge(
                "riskgw_snapshot_last_timestamp_seconds",
                "when the last snapshot was on disk (0: none)",
                round(self.last_time, 3),
            ),
            gauge(
                "riskgw_snapshot_last_records",
                "journal records the last snapshot covers",
                last.get("records", 0),
            ),
            gauge("riskgw_snapshot_last_bytes", "size of the last snapshot file", last.get("bytes", 0)),
            gauge(
                "riskgw_snapshot_capture_us",
                "time the last snapshot held the order path (its copy), µs",
                round(self.last_capture_us, 1),
            ),
            gauge(
                "riskgw_snapshot_write_seconds",
                "time the last snapshot took to write, off the order path",
                last.get("write_s", 0),
            ),
        ]
