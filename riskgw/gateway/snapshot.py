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

File layout (integers little-endian)::

    +--------+-----+-------+--------------+------------------+---------+--------------------+
    | "RGWS" | u16 | u16 0 | u64 body_len | sha256(body) 32B | u32 crc | body (body_len B)  |
    +--------+-----+-------+--------------+------------------+---------+--------------------+
    crc: CRC-32 of the 48 bytes before it.  body: u32 meta_len, meta (JSON), then the tables
    (per table: its columns' words as i64, its columns' NULL bytes, its key index as i64 keys
    then i64 rows), then the order state (see `_encode_orders`).

The meta says which journal the snapshot follows (the journal's header: program image and initial
state), where (offset, records, events), and the CRC-32 of the last `WINDOW` journal bytes before
that offset, so a snapshot of another journal, or of a journal cut shorter since, is recognised
without reading the journal's prefix. A snapshot that fails any check is reported in one line and
skipped; the next older one is tried, then the whole journal.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import datetime
import gc
import hashlib
import itertools
import json
import os
import signal
import struct
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from riskgw.card.driver import CardDriver, CardError
from riskgw.card.lockstep import LockstepCard, Restorable, load_snapshot
from riskgw.doe.image import Image
from riskgw.doe.isa import N_EVENT_REGS
from riskgw.engine.engine import Decision
from riskgw.engine.state import Snapshot
from riskgw.engine.table import Key, TableState, Value
from riskgw.errors import UserError
from riskgw.gateway.journal import JournalHeader, Position, read_header
from riskgw.gateway.protocol import MsgType

if TYPE_CHECKING:
    from riskgw.gateway.deploy import DeployStore
    from riskgw.gateway.server import Gateway

MAGIC = b"RGWS"
VERSION = 1
SUFFIX = ".rgws"
WINDOW = 4096  # journal bytes before the position whose CRC a snapshot keeps
_PREFIX = struct.Struct("<4sHHQ32s")
_CRC = struct.Struct("<I")
_HEAD_SIZE = _PREFIX.size + _CRC.size
_U32 = struct.Struct("<I")
_COUNT = struct.Struct("<Q")
_PR_SET_PDEATHSIG = 1  # prctl(2)
_CHUNK = 1 << 20  # bytes the writer gathers before a write (and a chance for the loop to run)

OrderKey = tuple[int, int]


class SnapshotError(ValueError):
    """A snapshot that cannot be used: damaged, of another journal, or not what its hash says."""


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


# ----------------------------------------------------------------------------- contents


@dataclass
class Orders:
    """The gateway's order state that a replay rebuilds (`Gateway.restore_open_orders`)."""

    decided: dict[OrderKey, tuple[tuple[Value, ...], Decision]]
    answers: dict[OrderKey, Sequence[tuple[MsgType, int, int]]]
    open: dict[OrderKey, int]  # quantity still open
    # The gateway keeps the records of a window of done orders: those in it, oldest first, and per
    # account the highest order id dropped from it.
    done: list[OrderKey] = field(default_factory=list)
    forgotten: dict[int, int] = field(default_factory=dict)


@dataclass
class Meta:
    journal: JournalHeader
    position: Position
    window_crc: int  # CRC-32 of the journal's bytes [max(0, offset - WINDOW), offset)
    versions: list[int]  # the deployment versions the journal ran, in order; the last is in force
    image_digest: str  # the program in force
    state_hash: str
    created: str  # UTC, ISO 8601
    tables: list[dict[str, int]] = field(default_factory=list)  # rows, cols, keys, index per table
    counts: dict[str, int] = field(default_factory=dict)  # decided, answers, open

    def as_json(self) -> dict[str, Any]:
        return {
            "journal": {"image_digest": self.journal.image_digest, "initial_hash": self.journal.initial_hash},
            "position": {
                "offset": self.position.offset,
                "records": self.position.records,
                "events": self.position.events,
            },
            "window_crc": self.window_crc,
            "versions": self.versions,
            "image_digest": self.image_digest,
            "state_hash": self.state_hash,
            "created": self.created,
            "tables": self.tables,
            "counts": self.counts,
        }

    @classmethod
    def from_json(cls, meta: Any) -> Meta:
        try:
            j, p = meta["journal"], meta["position"]
            return cls(
                JournalHeader(str(j["image_digest"]), str(j["initial_hash"])),
                Position(int(p["offset"]), int(p["records"]), int(p["events"])),
                int(meta["window_crc"]),
                [int(v) for v in meta["versions"]],
                str(meta["image_digest"]),
                str(meta["state_hash"]),
                str(meta["created"]),
                [{k: int(v) for k, v in t.items()} for t in meta["tables"]],
                {k: int(v) for k, v in meta["counts"].items()},
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise SnapshotError(f"its description does not parse ({exc!r})") from None


@dataclass
class Captured:
    """What `capture` copied on the event loop; the writer thread turns it into a file."""

    meta: Meta  # window_crc and image_digest still empty: the writer fills them in
    image: Image
    tables: Snapshot
    key_widths: list[int]
    decided: dict[OrderKey, tuple[Any, ...]]  # (inputs, decision, session): the session is not kept
    answers: dict[OrderKey, tuple[tuple[MsgType, int, int], ...]]
    open: dict[OrderKey, int]
    done: list[OrderKey]
    forgotten: dict[int, int]
    capture_ns: int  # how long the copy held the event loop


@dataclass
class Loaded:
    """A snapshot read back and checked."""

    path: Path
    meta: Meta
    tables: Snapshot
    orders: Orders


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
        meta, card.image, tables, key_widths, decided, answers, open_orders, done, forgotten, took
    )


def _table_chunks(state: TableState, width: int) -> Iterator[bytes]:
    for words in state.words:
        yield np.ascontiguousarray(words[: state.n_rows], dtype="<i8").tobytes()
    for nulls in state.nulls:
        yield np.ascontiguousarray(nulls[: state.n_rows], dtype=np.uint8).tobytes()
    items = list(state.index.items())
    for lo in range(0, len(items), 65536):  # in slices: each conversion holds the GIL
        part = items[lo : lo + 65536]
        yield np.array([k for k, _ in part], dtype="<i8").reshape(len(part), width).tobytes()
    for lo in range(0, len(items), 65536):
        yield np.array([r for _, r in items[lo : lo + 65536]], dtype="<i8").tobytes()


def _i64(values: Any, shape: tuple[int, ...] = (-1,)) -> bytes:
    return np.asarray(values, dtype="<i8").reshape(shape).tobytes()


def _encode_orders(c: Captured) -> Iterator[bytes]:
    """The order state, column by column (every count u64, every number i64 unless said):

    decided: n, total failed-rule ids; keys (n x 2: account, order id); input words (n x
      N_EVENT_REGS, 0 where NULL); NULL bytes (n x N_EVENT_REGS, u8); accepted (n, u8); failed
      counts (n, u16); the failed-rule ids of each in turn (u16)
    answers: n, total answers m; keys (n x 2); counts (n); answers (m x 3: type, price, quantity)
    open: n; (n x 3: account, order id, quantity open)
    done: n; keys (n x 2), oldest first.    forgotten: n; (n x 2: account, highest id dropped)
    """
    n = len(c.decided)
    inputs = [v[0] for v in c.decided.values()]
    decisions = [v[1] for v in c.decided.values()]
    flat = list(itertools.chain.from_iterable(inputs))
    if len(flat) != n * N_EVENT_REGS:
        raise SnapshotError(f"a decided order without {N_EVENT_REGS} input words")
    failed = list(itertools.chain.from_iterable(d.failed for d in decisions))
    yield _COUNT.pack(n) + _COUNT.pack(len(failed))
    yield _i64(list(c.decided), (n, 2))
    yield _i64([0 if v is None else v for v in flat])
    yield np.fromiter((v is None for v in flat), np.uint8, len(flat)).tobytes()
    yield np.fromiter((d.accepted for d in decisions), np.uint8, n).tobytes()
    yield np.fromiter((len(d.failed) for d in decisions), "<u2", n).tobytes()
    yield np.asarray(failed, dtype="<u2").tobytes()
    answers = list(itertools.chain.from_iterable(c.answers.values()))
    yield _COUNT.pack(len(c.answers)) + _COUNT.pack(len(answers))
    yield _i64(list(c.answers), (len(c.answers), 2))
    yield _i64([len(items) for items in c.answers.values()])
    yield _i64([(int(t), price, qty) for t, price, qty in answers], (len(answers), 3))
    yield _COUNT.pack(len(c.open))
    yield _i64([(a, o, left) for (a, o), left in c.open.items()], (len(c.open), 3))
    yield _COUNT.pack(len(c.done))
    yield _i64(c.done, (len(c.done), 2))
    yield _COUNT.pack(len(c.forgotten))
    yield _i64(list(c.forgotten.items()), (len(c.forgotten), 2))


def _window_crc(journal: Path, offset: int) -> int:
    start = max(0, offset - WINDOW)
    with journal.open("rb") as f:
        f.seek(start)
        data = f.read(offset - start)
    if len(data) != offset - start:
        raise SnapshotError(f"the journal ends before offset {offset}")
    return zlib.crc32(data)


def write_snapshot(c: Captured, journal: Path, directory: Path, durable: bool = True) -> tuple[Path, int]:
    """Write a captured state as a snapshot file (off the event loop). Returns its path and size.

    The journal is fsynced first, so a snapshot never covers records that a power loss could take
    from the journal (with journal_sync = "interval" the latest ones may not be on disk yet).
    """
    if durable:
        fd = os.open(journal, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    c.meta.window_crc = _window_crc(journal, c.meta.position.offset)
    c.meta.image_digest = c.image.digest()
    c.meta.tables = [
        {"rows": t.n_rows, "cols": len(t.words), "keys": w, "index": len(t.index)}
        for t, w in zip(c.tables.tables, c.key_widths, strict=True)
    ]
    c.meta.counts = {"decided": len(c.decided), "answers": len(c.answers), "open": len(c.open)}
    meta = json.dumps(c.meta.as_json(), separators=(",", ":")).encode()
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / f"snapshot-{c.meta.position.records:012d}{SUFFIX}"
    tmp = directory / f".{final.name}.tmp"
    digest = hashlib.sha256()
    size = 0
    with tmp.open("wb") as f:
        f.write(bytes(_HEAD_SIZE))  # the head, written last, once the body's length and hash are known

        def put(data: bytes) -> None:
            nonlocal size
            f.write(data)
            digest.update(data)
            size += len(data)

        put(_U32.pack(len(meta)) + meta)
        for state, width in zip(c.tables.tables, c.key_widths, strict=True):
            for chunk in _table_chunks(state, width):
                put(chunk)
        for chunk in _encode_orders(c):
            put(chunk)
        head = _PREFIX.pack(MAGIC, VERSION, 0, size, digest.digest())
        f.seek(0)
        f.write(head + _CRC.pack(zlib.crc32(head)))
        f.flush()
        if durable:
            os.fsync(f.fileno())
    os.replace(tmp, final)
    if durable:
        _fsync_dir(directory)
    return final, _HEAD_SIZE + size


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # not every file system lets a directory be fsynced
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# ----------------------------------------------------------------------------- reading one


def _head(data: bytes) -> tuple[int, bytes]:
    if len(data) < _HEAD_SIZE:
        raise SnapshotError(f"{len(data)} bytes, shorter than a snapshot's head")
    magic, version, _flags, size, digest = _PREFIX.unpack_from(data)
    if magic != MAGIC:
        raise SnapshotError("not a riskgw snapshot")
    (crc,) = _CRC.unpack_from(data, _PREFIX.size)
    if zlib.crc32(data[: _PREFIX.size]) != crc:
        raise SnapshotError("its head fails its CRC")
    if version != VERSION:
        raise SnapshotError(f"snapshot version {version}, this gateway reads {VERSION}")
    return size, digest


def read_meta(path: Path) -> Meta:
    """The description of a snapshot, from its head alone (the body is not checked)."""
    try:
        with path.open("rb") as f:
            size, _ = _head(f.read(_HEAD_SIZE))
            (n,) = _U32.unpack(f.read(_U32.size))
            if n > size:
                raise SnapshotError("its description is longer than its body")
            return Meta.from_json(json.loads(f.read(n)))
    except struct.error:
        raise SnapshotError("it is truncated") from None
    except ValueError as exc:
        if isinstance(exc, SnapshotError):
            raise
        raise SnapshotError(f"its description does not parse ({exc})") from None


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class _Reader:
    def __init__(self, data: memoryview) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> memoryview:
        if self.pos + n > len(self.data):
            raise SnapshotError("its body ends early")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def unpack(self, s: struct.Struct) -> tuple[Any, ...]:
        return s.unpack(self.take(s.size))


def read_snapshot(path: Path) -> Loaded:
    """A snapshot file read whole and checked (its head's CRC, its body's SHA-256, its layout)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SnapshotError(f"cannot be read: {exc.strerror}") from None
    size, digest = _head(data)
    body = memoryview(data)[_HEAD_SIZE:]
    if len(body) != size:
        raise SnapshotError(f"its body has {len(body)} bytes, its head says {size}: it is truncated")
    if hashlib.sha256(body).digest() != digest:
        raise SnapshotError("its body does not match its SHA-256")
    r = _Reader(body)
    try:
        (n,) = r.unpack(_U32)
        meta = Meta.from_json(json.loads(bytes(r.take(n))))
        tables = tuple(_read_table(r, t) for t in meta.tables)
        with _collector_paused():  # millions of new objects, none of them garbage
            orders = _read_orders(r)
    except (ValueError, struct.error) as exc:
        if isinstance(exc, SnapshotError):
            raise
        raise SnapshotError(f"its body does not parse ({exc})") from None
    if r.pos != len(body):
        raise SnapshotError(f"{len(body) - r.pos} bytes after its contents")
    return Loaded(path, meta, Snapshot(tables, meta.state_hash), orders)


def _read_table(r: _Reader, t: dict[str, int]) -> TableState:
    n, cols, width, n_index = t["rows"], t["cols"], t["keys"], t["index"]
    words = [np.frombuffer(r.take(8 * n), dtype="<i8").astype(np.int64) for _ in range(cols)]
    nulls = [np.frombuffer(r.take(n), dtype=np.uint8).astype(np.bool_) for _ in range(cols)]
    keys = np.frombuffer(r.take(8 * n_index * width), dtype="<i8").reshape(n_index, width).tolist()
    rows = np.frombuffer(r.take(8 * n_index), dtype="<i8").tolist()
    index: dict[Key, int] = dict(zip(map(tuple, keys), rows, strict=True))
    return TableState(n, words, nulls, index)


def _array(r: _Reader, n: int, dtype: str, width: int = 1) -> npt.NDArray[Any]:
    size = np.dtype(dtype).itemsize
    return (
        np.frombuffer(r.take(size * n * width), dtype=dtype).reshape(n, width)
        if width > 1
        else (np.frombuffer(r.take(size * n), dtype=dtype))
    )


def _pairs(r: _Reader, n: int, width: int = 2) -> list[tuple[int, ...]]:
    return list(map(tuple, _array(r, n, "<i8", width).tolist()))


def _read_orders(r: _Reader) -> Orders:
    orders = Orders({}, {}, {})
    n, n_failed = r.unpack(_COUNT) + r.unpack(_COUNT)
    keys = _pairs(r, n)
    words = _array(r, n, "<i8", N_EVENT_REGS).astype(object)
    words[_array(r, n, "u1", N_EVENT_REGS).astype(bool)] = None
    inputs = list(map(tuple, words.tolist()))
    accepted = _array(r, n, "u1").tolist()
    counts = _array(r, n, "<u2").tolist()
    failed = _array(r, n_failed, "<u2").tolist()
    known: dict[tuple[bool, tuple[int, ...]], Decision] = {}  # most orders share a few decisions
    at = 0
    for key, words_of, ok, k in zip(keys, inputs, accepted, counts, strict=True):
        ids = tuple(failed[at : at + k])
        at += k
        decision = known.get((bool(ok), ids))
        if decision is None:
            decision = known[(bool(ok), ids)] = Decision(bool(ok), ids)
        orders.decided[(key[0], key[1])] = (words_of, decision)
    if at != n_failed:
        raise SnapshotError("its failed-rule ids do not add up")
    n, m = r.unpack(_COUNT) + r.unpack(_COUNT)
    keys = _pairs(r, n)
    counts = _array(r, n, "<i8").tolist()
    types = {int(t): t for t in MsgType}
    answers = [(types[t], price, qty) for t, price, qty in _array(r, m, "<i8", 3).tolist()]
    at = 0
    for key, k in zip(keys, counts, strict=True):
        orders.answers[(key[0], key[1])] = answers[at : at + k]
        at += k
    if at != m:
        raise SnapshotError("its answers do not add up")
    (n,) = r.unpack(_COUNT)
    orders.open = {(a, o): left for a, o, left in _array(r, n, "<i8", 3).tolist()}
    (n,) = r.unpack(_COUNT)
    orders.done = [(a, o) for a, o in _array(r, n, "<i8", 2).tolist()]
    (n,) = r.unpack(_COUNT)
    orders.forgotten = {a: o for a, o in _array(r, n, "<i8", 2).tolist()}
    return orders


# ----------------------------------------------------------------------------- the directory


def snapshot_files(directory: Path) -> list[Path]:
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.suffix == SUFFIX and not p.name.startswith("."))


def remove_unfinished(directory: Path, log: Callable[[str], None]) -> None:
    """Delete the temporary files of snapshots whose writing never finished (a kill, a crash)."""
    if not directory.is_dir():
        return
    for p in sorted(directory.glob(f".*{SUFFIX}.tmp")):
        with contextlib.suppress(OSError):
            p.unlink()
            log(f"snapshot: removed {p.name}, an unfinished snapshot (the gateway stopped while writing it)")


def _follows(meta: Meta, header: JournalHeader) -> bool:
    return meta.journal == header


def prune(directory: Path, header: JournalHeader, keep: int) -> list[Path]:
    """Delete all but the `keep` newest snapshots of the journal `header` names; files of other
    journals and unreadable files are left alone (a restart reports them)."""
    mine: list[tuple[int, Path]] = []
    for p in snapshot_files(directory):
        try:
            meta = read_meta(p)
        except SnapshotError:
            continue
        if _follows(meta, header):
            mine.append((meta.position.records, p))
    mine.sort()
    gone = [p for _, p in mine[: max(0, len(mine) - keep)]]
    for p in gone:
        with contextlib.suppress(OSError):
            p.unlink()
    return gone


# ----------------------------------------------------------------------------- at start


def check_journal(meta: Meta, journal: Path, header: JournalHeader) -> None:
    """SnapshotError unless the snapshot follows this journal, as it is on disk now."""
    if not _follows(meta, header):
        raise SnapshotError(
            f"it follows another journal (program {meta.journal.image_digest[:12]}, initial state "
            f"{meta.journal.initial_hash[:12]})"
        )
    try:
        size = journal.stat().st_size
        found = read_header(journal)
    except FileNotFoundError:
        raise SnapshotError(f"there is no journal {journal}") from None
    except (OSError, ValueError) as exc:
        raise SnapshotError(f"the journal's header cannot be read ({exc})") from None
    if found != header:
        raise SnapshotError("the journal's header is not the one it follows")
    offset = meta.position.offset
    if size < offset:
        raise SnapshotError(f"the journal ends at byte {size}, before its position (byte {offset})")
    if _window_crc(journal, offset) != meta.window_crc:
        raise SnapshotError(f"the journal's bytes before offset {offset} are not the ones it followed")


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

    with _collector_paused():
        for key, (inputs, decision) in orders.decided.items():
            gw.decided[key] = (inputs, decision, None)
        for key, items in orders.answers.items():
            gw.history[key] = list(items)
        for key, remaining in orders.open.items():
            known = orders.decided.get(key)
            if known is None:
                raise SnapshotError(f"open order {key[1]} of account {key[0]} has no decision")
            gw.open[key] = OpenOrder(_order_from_inputs(known[0]), None, remaining)
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
    ) -> None:
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
        self._last_records = gateway.journal.records  # appended when the last snapshot was taken
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
            self._child(write_end, versions)
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
            self.last = {
                **{k: v for k, v in answer.items() if k != "ok"},
                "capture_us": round(took_us, 1),
                "write_s": round(time.monotonic() - begun, 3),
            }
            self.last_error = None

        future.add_done_callback(done)
        return future

    def _child(self, out: int, versions: list[int]) -> None:
        """The forked writer: capture, write, prune, answer on `out` in JSON, exit."""
        answer: dict[str, Any]
        try:
            gc.disable()  # short-lived: a collection would only copy the parent's pages
            _die_with_parent()
            # The gateway's sockets, journal and listeners are its own: the child opens what it
            # needs by name, and holds no connection or port open after the gateway lets it go.
            os.closerange(3, out)
            os.closerange(out + 1, os.sysconf("SC_OPEN_MAX"))
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

    def metric_lines(self) -> list[str]:
        last = self.last or {}
        return [
            "# HELP riskgw_snapshots_total state snapshots written since the gateway started",
            "# TYPE riskgw_snapshots_total counter",
            f"riskgw_snapshots_total {self.taken}",
            "# HELP riskgw_snapshot_failures_total state snapshots that could not be written",
            "# TYPE riskgw_snapshot_failures_total counter",
            f"riskgw_snapshot_failures_total {self.failures}",
            "# HELP riskgw_snapshot_last_records journal records the last snapshot covers",
            "# TYPE riskgw_snapshot_last_records gauge",
            f"riskgw_snapshot_last_records {last.get('records', 0)}",
            "# HELP riskgw_snapshot_last_bytes size of the last snapshot file",
            "# TYPE riskgw_snapshot_last_bytes gauge",
            f"riskgw_snapshot_last_bytes {last.get('bytes', 0)}",
            "# HELP riskgw_snapshot_capture_us time the last snapshot held the order path (its copy), µs",
            "# TYPE riskgw_snapshot_capture_us gauge",
            f"riskgw_snapshot_capture_us {self.last_capture_us:.1f}",
            "# HELP riskgw_snapshot_write_seconds time the last snapshot took to write, off the order path",
            "# TYPE riskgw_snapshot_write_seconds gauge",
            f"riskgw_snapshot_write_seconds {last.get('write_s', 0)}",
        ]
