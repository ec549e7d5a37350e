"""The snapshot file: writing one from a captured state, reading and checking one, the directory.

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
without reading the journal's prefix (`check_journal`). What a snapshot is for and when one is
taken: riskgw.gateway.snapshot.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import itertools
import json
import os
import struct
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from riskgw.doe.image import Image
from riskgw.doe.isa import N_EVENT_REGS
from riskgw.engine.engine import Decision
from riskgw.engine.state import Snapshot
from riskgw.engine.table import Key, TableState, Value
from riskgw.gateway.durable import sync_dir
from riskgw.gateway.journal import JournalHeader, Position, read_header
from riskgw.gateway.protocol import MsgType

MAGIC = b"RGWS"
VERSION = 2  # written; version 1 (without the open orders' logins) is read too
READS = (1, 2)
SUFFIX = ".rgws"
WINDOW = 4096  # journal bytes before the position whose CRC a snapshot keeps
_PREFIX = struct.Struct("<4sHHQ32s")
_CRC = struct.Struct("<I")
_HEAD_SIZE = _PREFIX.size + _CRC.size
_U32 = struct.Struct("<I")
_COUNT = struct.Struct("<Q")

OrderKey = tuple[int, int]


class SnapshotError(ValueError):
    """A snapshot that cannot be used: damaged, of another journal, or not what its hash says."""


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
    # The login each open order follows (riskgw.gateway.follow), for those that follow one.
    logins: dict[OrderKey, str] = field(default_factory=dict)


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
    logins: dict[OrderKey, str] = field(default_factory=dict)  # of open orders that follow theirs


@dataclass
class Loaded:
    """A snapshot read back and checked."""

    path: Path
    meta: Meta
    tables: Snapshot
    orders: Orders


# ----------------------------------------------------------------------------- writing one


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
    logins (version 2): n names; each name's length (n, u16) then the names (UTF-8, one after the
      other); m open orders that follow a login; (m x 3: account, order id, its login's index)
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
    names = sorted(set(c.logins.values()))
    index = {name: i for i, name in enumerate(names)}
    encoded = [name.encode("utf-8") for name in names]
    yield _COUNT.pack(len(names))
    yield np.asarray([len(b) for b in encoded], dtype="<u2").tobytes() + b"".join(encoded)
    yield _COUNT.pack(len(c.logins))
    yield _i64([(a, o, index[name]) for (a, o), name in c.logins.items()], (len(c.logins), 3))


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
        sync_dir(directory)
    return final, _HEAD_SIZE + size


# ----------------------------------------------------------------------------- reading one


def _head(data: bytes) -> tuple[int, bytes, int]:
    if len(data) < _HEAD_SIZE:
        raise SnapshotError(f"{len(data)} bytes, shorter than a snapshot's head")
    magic, version, _flags, size, digest = _PREFIX.unpack_from(data)
    if magic != MAGIC:
        raise SnapshotError("not a riskgw snapshot")
    (crc,) = _CRC.unpack_from(data, _PREFIX.size)
    if zlib.crc32(data[: _PREFIX.size]) != crc:
        raise SnapshotError("its head fails its CRC")
    if version not in READS:
        raise SnapshotError(f"snapshot version {version}, this gateway reads {' and '.join(map(str, READS))}")
    return size, digest, version


def read_meta(path: Path) -> Meta:
    """The description of a snapshot, from its head alone (the body is not checked)."""
    try:
        with path.open("rb") as f:
            size, _, _ = _head(f.read(_HEAD_SIZE))
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
def collector_paused() -> Iterator[None]:
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
    size, digest, version = _head(data)
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
        with collector_paused():  # millions of new objects, none of them garbage
            orders = _read_orders(r, version)
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


def _read_orders(r: _Reader, version: int) -> Orders:
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
    for account, order_id in orders.open:
        if (account, order_id) not in orders.decided:
            raise SnapshotError(f"open order {order_id} of account {account} has no decision")
    (n,) = r.unpack(_COUNT)
    orders.done = [(a, o) for a, o in _array(r, n, "<i8", 2).tolist()]
    (n,) = r.unpack(_COUNT)
    orders.forgotten = {a: o for a, o in _array(r, n, "<i8", 2).tolist()}
    if version >= 2:
        (n,) = r.unpack(_COUNT)
        lengths = _array(r, n, "<u2").tolist()
        names = [bytes(r.take(k)).decode("utf-8") for k in lengths]
        (n,) = r.unpack(_COUNT)
        for a, o, i in _array(r, n, "<i8", 3).tolist():
            if (a, o) not in orders.open or not 0 <= i < len(names):
                raise SnapshotError(f"the login of order {o} of account {a} is not one of its open orders'")
            orders.logins[(a, o)] = names[i]
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
