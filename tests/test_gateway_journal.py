"""The journal on its own: records round-trip, group commit, torn and corrupt tails, wrong image."""

from __future__ import annotations

from pathlib import Path

import pytest

from riskgw.doe.isa import N_EVENT_REGS, Event
from riskgw.engine.engine import Decision
from riskgw.errors import UserError
from riskgw.gateway.journal import Entry, JournalHeader, open_journal, scan

HEADER = JournalHeader("ab" * 32, "cd" * 32)


def entries(n: int) -> list[Entry]:
    out = []
    for i in range(n):
        inputs = tuple(None if (i + r) % 4 == 0 else i * 1000 + r - 5 for r in range(N_EVENT_REGS))
        decision = Decision(True) if i % 3 else Decision(False, (0, i % 7 + 1, 200))
        out.append(Entry(Event.NEW if i % 2 else Event.FILL, inputs, decision))
    return out


def write(path: Path, items: list[Entry], batch: int = 4) -> int:
    opened = open_journal(path, HEADER)
    assert opened.entries == [] and opened.cut is None
    j = opened.journal
    for i, e in enumerate(items):
        j.append(e.event, e.inputs, e.decision)
        if i % batch == batch - 1:
            j.commit()
    j.close()
    return j.commits


def test_records_round_trip_with_one_fsync_per_batch(tmp_path: Path) -> None:
    path = tmp_path / "j"
    items = entries(10)
    assert write(path, items, batch=4) == 4  # the header, 4, 4, then the 2 that close() commits
    found = scan(path)
    assert found.header == HEADER and found.problem is None
    assert found.entries == items
    reopened = open_journal(path, HEADER)
    assert reopened.entries == items and reopened.cut is None
    reopened.journal.close()


@pytest.mark.parametrize("cut", [1, 7, 9, 30])
def test_torn_tail_is_cut_and_reported(tmp_path: Path, cut: int) -> None:
    path = tmp_path / "j"
    items = entries(6)
    write(path, items)
    size = path.stat().st_size
    with path.open("r+b") as f:
        f.truncate(size - cut)
    opened = open_journal(path, HEADER)
    assert opened.entries == items[:5]
    assert opened.cut is not None and "after 5 events" in opened.cut and "torn" in opened.cut
    # the cut tail is gone from the file, and appending after it gives a clean journal
    opened.journal.append(items[5].event, items[5].inputs, items[5].decision)
    opened.journal.close()
    again = scan(path)
    assert again.problem is None and again.entries == items


def test_corrupt_record_is_cut_with_everything_after_it(tmp_path: Path) -> None:
    path = tmp_path / "j"
    items = entries(6)
    write(path, items)
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x40  # inside the last record's payload
    path.write_bytes(bytes(data))
    opened = open_journal(path, HEADER)
    opened.journal.close()
    assert opened.entries == items[:5]
    assert opened.cut is not None and "CRC" in opened.cut


def test_journal_of_another_image_or_other_data_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "j"
    write(path, entries(2))
    before = path.read_bytes()
    with pytest.raises(UserError, match="program image abababababab"):
        open_journal(path, JournalHeader("ef" * 32, HEADER.initial_hash))
    with pytest.raises(UserError, match="other initial tables"):
        open_journal(path, JournalHeader(HEADER.image_digest, "00" * 32))
    assert path.read_bytes() == before


def test_a_file_that_is_not_a_journal_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "orders.csv"
    path.write_text("order_id,account_id\n1,2\n")
    with pytest.raises(UserError, match="is not a riskgw journal"):
        open_journal(path, HEADER)
    assert path.read_text() == "order_id,account_id\n1,2\n"


def test_export_writes_replay_events_and_leaves_a_torn_tail_out(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from riskgw.cli import main as cli_main
    from riskgw.engine.csvdata import read_events
    from riskgw.engine.engine import event_inputs

    path = tmp_path / "j"
    order: dict[str, int | str | None] = dict(
        order_id=7, account_id=3, ticket_id="600001", direction=1, price=1234, quantity=300, ts=5
    )
    items = [
        Entry(Event.NEW, event_inputs(order), Decision(True)),
        Entry(Event.FILL, event_inputs({**order, "exec_price": 1230, "exec_quantity": 100}), Decision(True)),
        Entry(Event.CANCEL, event_inputs({**order, "exec_quantity": 200}), Decision(True)),
    ]
    write(path, items)
    with path.open("ab") as f:
        f.write(b"\x05\x00")
    before = path.read_bytes()
    out = tmp_path / "events.csv"
    assert cli_main(["journal", "export", str(path), "--out", str(out)]) == 0
    assert "2 bytes at offset" in capsys.readouterr().err
    assert path.read_bytes() == before  # export never cuts
    assert [(e.event, e.inputs) for e in read_events(out)] == [(e.event, e.inputs) for e in items]
    assert out.read_text().splitlines()[1] == "NEW,7,3,600001,1,1234,300,,,5"
    assert cli_main(["journal", "export", str(out), "--out", str(tmp_path / "x.csv")]) == 1
    assert "is not a riskgw journal" in capsys.readouterr().err


@pytest.mark.parametrize("where", ["missing/events.csv", "a_file/events.csv"])
def test_export_to_a_directory_that_cannot_hold_the_file_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], where: str
) -> None:
    from riskgw.cli import main as cli_main

    path = tmp_path / "j"
    write(path, entries(2))
    (tmp_path / "a_file").write_text("not a directory\n")
    assert cli_main(["journal", "export", str(path), "--out", str(tmp_path / where)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("riskgw: error: cannot write ") and err.count("\n") == 1, err
