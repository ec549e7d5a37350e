"""Journal version 2: its readers (replay, export) see the same events as in version 1, and a tear
inside a record's login is cut, never replayed half."""

from __future__ import annotations

import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from riskgw.doe.isa import Event
from riskgw.engine.engine import Decision, event_inputs
from riskgw.engine.replay import journal_events
from riskgw.gateway.journal import (
    Entry,
    JournalHeader,
    encode_entry,
    encode_header,
    open_journal,
    scan,
)

HEADER = JournalHeader("ab" * 32, "cd" * 32)
ROOT = Path(__file__).resolve().parent.parent


def _events() -> list[tuple[Entry, str | None]]:
    order: dict[str, int | str | None] = dict(
        order_id=7, account_id=3, ticket_id="600001", direction=1, price=1234, quantity=300, ts=5
    )
    other = {**order, "order_id": 8, "ticket_id": "AB"}
    return [
        (Entry(Event.NEW, event_inputs(order), Decision(True)), "alice"),
        (Entry(Event.NEW, event_inputs(other), Decision(False, (0, 3))), "bøb"),  # non-ASCII login
        (
            Entry(
                Event.FILL, event_inputs({**order, "exec_price": 1230, "exec_quantity": 100}), Decision(True)
            ),
            None,
        ),
        (Entry(Event.NEW, event_inputs({**order, "order_id": 9}), Decision(True)), None),  # a FIX order
        (Entry(Event.CANCEL, event_inputs({**order, "exec_quantity": 200}), Decision(True)), None),
        (Entry(Event.NEW, event_inputs({**order, "order_id": 10}), Decision(True)), "x" * 255),
    ]


def _frame(p: bytes) -> bytes:
    return struct.pack("<II", len(p), zlib.crc32(p)) + p


def _write(path: Path, version: int) -> None:
    records = [encode_header(HEADER, version)]
    for entry, sender in _events():
        records.append(
            encode_entry(entry.event, entry.inputs, entry.decision, sender if version >= 2 else None)
        )
    path.write_bytes(b"".join(_frame(p) for p in records))


def test_v2_journal_reads_every_login_and_the_same_events_as_v1(tmp_path: Path) -> None:
    v1, v2 = tmp_path / "v1.journal", tmp_path / "v2.journal"
    _write(v1, 1)
    _write(v2, 2)
    a, b = scan(v1), scan(v2)
    assert a.problem is None and b.problem is None and (a.version, b.version) == (1, 2)
    assert [e.sender for e in b.entries] == [s for _, s in _events()]
    assert [(e.event, e.inputs, e.decision) for e in a.entries] == [
        (e.event, e.inputs, e.decision) for e in b.entries
    ]
    # riskgw replay --journal: the same rows
    assert journal_events(v1) == journal_events(v2)


def test_journal_export_of_v1_and_v2_is_byte_identical(tmp_path: Path) -> None:
    v1, v2 = tmp_path / "v1.journal", tmp_path / "v2.journal"
    _write(v1, 1)
    _write(v2, 2)
    outs = []
    for j in (v1, v2):
        out = tmp_path / f"{j.stem}.csv"
        done = subprocess.run(
            [sys.executable, "-m", "riskgw.cli", "journal", "export", str(j), "--out", str(out)],
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        assert done.returncode == 0, done.stderr
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]
    assert b"alice" not in outs[1] and "bøb".encode() not in outs[1]


def _last_record_bounds(path: Path) -> tuple[int, int]:
    """(start, end) of the last record in the file."""
    data = path.read_bytes()
    pos = last = 0
    while pos < len(data):
        (length,) = struct.unpack_from("<I", data, pos)
        last = pos
        pos += 8 + length
    return last, pos


@pytest.mark.parametrize("sender", ["alice", "x" * 255])
def test_a_tear_at_every_byte_of_a_v2_new_record_is_cut_never_replayed_half(
    tmp_path: Path, sender: str
) -> None:
    base = tmp_path / "base.journal"
    opened = open_journal(base, HEADER, fsync=False)
    good = _events()[:3]
    for entry, s in good:
        opened.journal.append(entry.event, entry.inputs, entry.decision, s)
    entry = _events()[0][0]
    opened.journal.append(entry.event, entry.inputs, entry.decision, sender)
    opened.journal.close()
    start, end = _last_record_bounds(base)
    data = base.read_bytes()
    for cut in range(start + 1, end):  # every tear inside the last record, header bytes included
        path = tmp_path / f"cut{cut}.journal"
        path.write_bytes(data[:cut])
        found = scan(path)
        assert found.problem is not None, cut
        assert len(found.entries) == 3 and found.good_bytes == start, cut
        o = open_journal(path, HEADER, fsync=False)
        assert len(o.entries) == 3 and o.cut is not None and "after 3 events" in o.cut, cut
        assert [e.sender for e in o.entries] == [s for _, s in good]
        o.journal.append(entry.event, entry.inputs, entry.decision, sender)  # appended after the cut
        o.journal.close()
        again = scan(path)
        assert again.problem is None and again.entries[-1].sender == sender, cut
        assert path.read_bytes() == data, cut
        path.unlink()


def test_riskgw_replay_of_v1_and_v2_journals_writes_the_same_files(tmp_path: Path) -> None:
    rules = sorted(str(p) for p in (ROOT / "rules").glob("*.sql"))
    outs = []
    for version in (1, 2):
        j = tmp_path / f"v{version}.journal"
        _write(j, version)
        out, dump = tmp_path / f"v{version}.csv", tmp_path / f"dump{version}"
        done = subprocess.run(
            [sys.executable, "-m", "riskgw.cli", "replay", *rules, "--journal", str(j), "--out", str(out),
             "--dump-state", str(dump)],
            capture_output=True, text=True, cwd=ROOT,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        outs.append((out.read_bytes(), {p.name: p.read_bytes() for p in sorted(dump.iterdir())}))
    assert outs[0] == outs[1] and outs[0][0].count(b"\n") == 1 + len(_events())
