"""The gateway's journal: every event that reaches the card, and its decision, before any reply.

A restart replays the journal through a fresh card loaded with the same program image and the same
initial tables, and so reaches exactly the state the gateway had. The file is a sequence of
records::

    +-----------+-----------+---------------------+
    | u32 len   | u32 crc32 | payload (len bytes) |     crc32 (zlib) of the payload
    +-----------+-----------+---------------------+

The first payload is the header: kind 1, magic, version, the program image's SHA-256 and the state
hash after the initial tables were loaded. Every other payload is one event: kind 2, the event, the
decision (accepted, failed rule ids) and the event's N_EVENT_REGS input words with their NULL bits,
and in a version 2 journal, after them, the login that sent a NEW over the wire protocol (u8
length, UTF-8), so that after a restart the order's answers go to that login's next session (a FIX
session's orders are its order map's: no login is recorded for them). A version 1 journal is read
and appended to as it is, without logins; a gateway that writes version 1 refuses a version 2
journal (it would not know the records' last bytes) and leaves it as it is.
A deployment (`riskgw deploy`, `riskgw rollback`) is a payload of kind 3: the version number, the
new program image's SHA-256 and the state hash right after the swap; the events after it ran on that
program. Kind 3 was added after version 1: an older gateway reading it cuts the journal there.

Group commit: `append` only buffers; `commit` writes everything buffered with one write and one
fsync, and the gateway sends no reply for a record before the commit that holds it returns.

A crash can leave a torn last record. `scan` stops at the first record that is short, fails its
CRC or does not parse; `open_journal` reports what it cut and truncates the file there, so a bad
tail is never replayed and never silently dropped.

A state snapshot (riskgw.gateway.snapshot) holds what replaying the journal up to a `Position` (a
record boundary) rebuilds; `open_journal(..., start=position)` then reads only the records after
it, and a restart replays that tail instead of the whole file.
"""

from __future__ import annotations

import os
import struct
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from riskgw.doe.isa import N_EVENT_REGS, Event
from riskgw.engine.engine import Decision
from riskgw.engine.table import Value
from riskgw.errors import UserError

MAGIC = b"RGWJ"
VERSION = 2  # written by this gateway; READS also reads
READS = (1, 2)
_FRAME = struct.Struct("<II")
_HEADER = struct.Struct("<B4sH32s32s")
_EVENT = struct.Struct(f"<BBBHH{N_EVENT_REGS}q")
_KIND_HEADER = 1
_KIND_EVENT = 2
_KIND_DEPLOY = 3
_DEPLOY = struct.Struct("<BI32s32s")
_MAX_RECORD = 1 << 16  # far above any real record: a larger length is corruption, not a record


@dataclass(frozen=True)
class JournalHeader:
    image_digest: str  # hex SHA-256 of the program image
    initial_hash: str  # hex state hash after the initial tables were loaded


@dataclass(frozen=True)
class Entry:
    event: Event
    inputs: tuple[Value, ...]
    decision: Decision
    sender: str | None = None  # the login that sent a NEW over the wire protocol (version 2)


@dataclass(frozen=True)
class DeployMark:
    """A program swap: it happened after the first `position` events of the journal."""

    position: int
    version: int
    image_digest: str  # hex SHA-256 of the new program image
    state_hash: str  # hex state hash right after the swap (tables migrated and loaded)


@dataclass(frozen=True)
class Position:
    """A record boundary of a journal: the bytes before it and the records they hold."""

    offset: int  # bytes from the start of the file
    records: int  # records before it, the header included
    events: int  # event records among them (deployment records are the rest)


@dataclass
class Scan:
    header: JournalHeader | None
    entries: list[Entry]
    good_bytes: int  # length of the valid prefix
    total_bytes: int
    problem: str | None  # why the scan stopped before the end, when it did
    marks: list[DeployMark] = field(default_factory=list)  # deployments, in journal order
    version: int = VERSION  # the header's (when there is one)


def encode_header(header: JournalHeader, version: int = VERSION) -> bytes:
    return _HEADER.pack(
        _KIND_HEADER, MAGIC, version, bytes.fromhex(header.image_digest), bytes.fromhex(header.initial_hash)
    )


def encode_entry(
    event: Event, inputs: Sequence[Value], decision: Decision, sender: str | None = None
) -> bytes:
    if len(inputs) != N_EVENT_REGS:
        raise ValueError(f"an event has {N_EVENT_REGS} input words, got {len(inputs)}")
    nulls = 0
    words = list(inputs)
    if None in words:  # on the order path every event has some (a NEW has no exec fields)
        for i, v in enumerate(words):
            if v is None:
                nulls |= 1 << i
                words[i] = 0
    failed = decision.failed
    head = _EVENT.pack(_KIND_EVENT, int(event), int(decision.accepted), len(failed), nulls, *words)
    if failed:
        head += struct.pack(f"<{len(failed)}H", *failed)
    return head if sender is None else head + login_trailer(sender)


def login_trailer(sender: str) -> bytes:
    """The bytes an event record ends with for the login that sent it: u8 length, UTF-8."""
    name = sender.encode("utf-8")
    if len(name) > 255:
        raise ValueError(f"a login of {len(name)} bytes: the journal keeps up to 255")
    return bytes((len(name),)) + name


def _record(payload: bytes) -> bytes:
    return _FRAME.pack(len(payload), zlib.crc32(payload)) + payload


def _decode_header(payload: bytes) -> tuple[JournalHeader, int]:
    if len(payload) != _HEADER.size:
        raise ValueError("the first record is not a journal header")
    kind, magic, version, digest, initial = _HEADER.unpack(payload)
    if kind != _KIND_HEADER or magic != MAGIC:
        raise ValueError("the first record is not a journal header")
    if version not in READS:
        raise ValueError(f"journal version {version}, this gateway reads {' and '.join(map(str, READS))}")
    return JournalHeader(digest.hex(), initial.hex()), version


def encode_deploy(version: int, image_digest: str, state_hash: str) -> bytes:
    return _DEPLOY.pack(_KIND_DEPLOY, version, bytes.fromhex(image_digest), bytes.fromhex(state_hash))


def _decode_deploy(payload: bytes, position: int) -> DeployMark:
    if len(payload) != _DEPLOY.size:
        raise ValueError("deployment record of the wrong length")
    _kind, version, digest, state = _DEPLOY.unpack(payload)
    return DeployMark(position, version, digest.hex(), state.hex())


def decode_entry(payload: bytes) -> Entry:
    """An event record's payload, as `encode_entry` wrote it; ValueError when it is not one."""
    if len(payload) < _EVENT.size or payload[0] != _KIND_EVENT:
        raise ValueError("not an event record")
    _kind, event, accepted, n_failed, nulls, *words = _EVENT.unpack_from(payload)
    end = _EVENT.size + 2 * n_failed
    if accepted > 1 or not (
        len(payload) == end or (len(payload) > end and len(payload) == end + 1 + payload[end])
    ):
        raise ValueError("event record of the wrong length")
    failed = struct.unpack_from(f"<{n_failed}H", payload, _EVENT.size)
    inputs = tuple(None if nulls >> i & 1 else w for i, w in enumerate(words))
    sender = None
    if len(payload) > end:
        try:
            sender = payload[end + 1 :].decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError("an event record whose login is not UTF-8") from None
    return Entry(Event(event), inputs, Decision(bool(accepted), tuple(failed)), sender)


def read_header(path: Path) -> JournalHeader:
    """The journal's header record; ValueError when the file does not start with one."""
    return read_header_version(path)[0]


def read_header_version(path: Path) -> tuple[JournalHeader, int]:
    """The journal's header record and its version; ValueError when the file does not start with one."""
    with path.open("rb") as f:
        frame = f.read(_FRAME.size)
        if len(frame) < _FRAME.size:
            raise ValueError("no journal header")
        length, crc = _FRAME.unpack(frame)
        payload = f.read(min(length, _MAX_RECORD))
    if len(payload) != length or zlib.crc32(payload) != crc:
        raise ValueError("a torn or corrupt journal header")
    return _decode_header(payload)


def scan(path: Path, start: Position | None = None) -> Scan:
    """Every valid record of a journal, stopping at the first bad one.

    From `start` (a record boundary after the header): only the records after it, the header read
    from the start of the file; `good_bytes` and `total_bytes` still count from the file's start.
    """
    header: JournalHeader | None = None
    version = VERSION
    if start is None:
        data = path.read_bytes()
        pos = 0
    else:
        header, version = read_header_version(path)
        with path.open("rb") as f:
            if os.fstat(f.fileno()).st_size < start.offset:
                raise ValueError(f"the journal ends before offset {start.offset}")
            f.seek(start.offset)
            data = f.read()
        pos = 0
    entries: list[Entry] = []
    marks: list[DeployMark] = []
    problem: str | None = None
    while pos < len(data):
        if len(data) - pos < _FRAME.size:
            problem = "a torn record header"
            break
        length, crc = _FRAME.unpack_from(data, pos)
        if length > _MAX_RECORD:
            problem = f"a record length of {length} bytes"
            break
        end = pos + _FRAME.size + length
        if end > len(data):
            problem = f"a torn record ({len(data) - pos - _FRAME.size} of {length} bytes)"
            break
        payload = data[pos + _FRAME.size : end]
        if zlib.crc32(payload) != crc:
            problem = "a record whose CRC does not match"
            break
        try:
            if header is None:
                header, version = _decode_header(payload)
            elif payload[:1] == bytes([_KIND_DEPLOY]):
                marks.append(_decode_deploy(payload, len(entries)))
            else:
                entries.append(decode_entry(payload))
        except ValueError as exc:
            problem = f"a record that does not parse ({exc})"
            break
        pos = end
    base = 0 if start is None else start.offset
    return Scan(header, entries, base + pos, base + len(data), problem, marks, version)


class Journal:
    """An open journal, positioned at its end. `append` buffers; `commit` writes and fsyncs once."""

    def __init__(
        self, path: Path, fd: int, fsync: bool = True, at: Position | None = None, version: int = VERSION
    ) -> None:
        self.path = path
        self.version = version  # a version 1 journal is appended to as version 1: no logins
        self._trailers: dict[str, bytes] = {}  # login -> its record trailer
        self._fd = fd
        self._fsync = fsync
        self._buf = bytearray()
        self.records = 0  # appended since the journal was opened
        self.commits = 0
        self.broken: OSError | None = None
        self._opened_at = at or Position(0, 0, 0)  # the file's end when it was opened
        self._deploys = 0  # deployment records among `records`
        self.written = self._opened_at.offset  # bytes in the file (what commits wrote)
        # What this journal's own fsyncs (journal_sync = "commit") covered, and when: the journal
        # lag on /metrics. What the file held when it was opened counts as synced.
        self.synced = self.written
        self.synced_at = time.monotonic()

    def append(
        self, event: Event, inputs: Sequence[Value], decision: Decision, sender: str | None = None
    ) -> None:
        """Buffer an event record; `sender`, the login of a NEW from the wire protocol, is kept
        when the journal's version has room for it."""
        if sender is None or self.version < 2:
            self._buf += _record(encode_entry(event, inputs, decision))
        else:
            trailer = self._trailers.get(sender)
            if trailer is None:
                trailer = self._trailers[sender] = login_trailer(sender)  # a few logins a day
            self._buf += _record(encode_entry(event, inputs, decision) + trailer)
        self.records += 1

    def append_deploy(self, version: int, image_digest: str, state_hash: str) -> None:
        """Record a program swap between the events appended before and after it."""
        self._buf += _record(encode_deploy(version, image_digest, state_hash))
        self.records += 1
        self._deploys += 1

    def position(self) -> Position | None:
        """Where the journal ends, when everything appended is written (None while some is not)."""
        if self._buf or self.broken is not None:
            return None
        at = self._opened_at
        return Position(self.written, at.records + self.records, at.events + self.records - self._deploys)

    @property
    def fsync(self) -> bool:
        """Whether each commit fsyncs (journal_sync = "commit")."""
        return self._fsync

    @property
    def pending(self) -> int:
        return len(self._buf)

    def commit(self) -> None:
        """Write and fsync what is buffered. After an OSError the journal is broken: the bytes on
        disk may end in a torn record, so every later commit raises too, and the next start cuts it.
        """
        if self.broken is not None:
            raise self.broken
        if not self._buf:
            return
        try:
            while self._buf:
                n = os.write(self._fd, self._buf)
                del self._buf[:n]
                self.written += n
            if self._fsync:
                os.fsync(self._fd)
                self.synced, self.synced_at = self.written, time.monotonic()
        except OSError as exc:
            self.broken = exc
            raise
        self.commits += 1

    def close(self) -> None:
        """Commit what is buffered (unless the journal is broken) and close the file."""
        if self._fd >= 0:
            try:
                if self.broken is None:
                    self.commit()
            finally:
                os.close(self._fd)
                self._fd = -1


@dataclass
class Opened:
    journal: Journal
    entries: list[Entry]  # to replay, in order
    cut: str | None  # what was cut from the tail, for the operator
    marks: list[DeployMark] = field(default_factory=list)  # program swaps among the entries


def open_journal(
    path: Path, header: JournalHeader, fsync: bool = True, start: Position | None = None
) -> Opened:
    """Open (or create) the journal for a gateway running `header`'s image on `header`'s tables.

    With `start` (where a snapshot the caller checked left off) only the records after it are read
    and returned. Refuses (UserError) a journal written for another program image or other initial
    tables.
    """
    cut: str | None = None
    entries: list[Entry] = []
    marks: list[DeployMark] = []
    at = Position(0, 0, 0)
    version = VERSION
    try:
        exists = path.exists() and path.stat().st_size > 0
        if exists:
            try:
                found = scan(path, start)
            except ValueError as exc:  # from `start`: the header is torn, or the file is too short
                raise UserError(
                    f"{path} is not a riskgw journal ({exc}): give another --journal path"
                ) from None
            if found.header is None:
                # Nothing valid at all: more likely a wrong path than a torn header; keep the file.
                raise UserError(
                    f"{path} is not a riskgw journal ({found.problem}): give another --journal path"
                )
            before = start or Position(0, 0, 0)
            if found.problem is not None:
                cut = (
                    f"journal {path}: cut {found.total_bytes - found.good_bytes} bytes at offset "
                    f"{found.good_bytes} after {before.events + len(found.entries)} events: {found.problem}"
                )
                os.truncate(path, found.good_bytes)
            _check_header(path, found.header, header)
            entries = found.entries
            marks = found.marks
            version = found.version
            tail = len(entries) + len(marks) + (0 if start is not None else 1)  # the header is a record
            at = Position(found.good_bytes, before.records + tail, before.events + len(entries))
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    except OSError as exc:
        raise UserError(f"cannot open journal {path}: {exc.strerror}") from None
    journal = Journal(path, fd, fsync, at, version)
    if not exists:
        journal._buf += _record(encode_header(header))
        journal.commit()
        journal._opened_at = Position(journal.written, 1, 0)
        _fsync_dir(path)
    return Opened(journal, entries, cut, marks)


def _check_header(path: Path, found: JournalHeader, want: JournalHeader) -> None:
    if found.image_digest != want.image_digest:
        raise UserError(
            f"journal {path} was written by program image {found.image_digest[:12]}, the rules now "
            f"compile to {want.image_digest[:12]}: start with the same rules, or move the journal aside"
        )
    if found.initial_hash != want.initial_hash:
        raise UserError(
            f"journal {path} starts from other initial tables (state {found.initial_hash[:12]}, the data "
            f"now gives {want.initial_hash[:12]}): start with the same --data, or move the journal aside"
        )


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
