"""The FIX order map file: records read back in order, a torn last line left out, appends after it."""

from __future__ import annotations

from pathlib import Path

from riskgw.gateway.fixmap import FILE_NAME, OrderMap


def test_records_survive_a_reopen_and_a_torn_line_is_left_out(tmp_path: Path) -> None:
    first = OrderMap(tmp_path)
    first.open()
    first.record(k="new", s="BROKER1", cl="a1", id=7)
    first.record(k="F", s="BROKER1", oid="7", cl="a1-x")
    first.close()
    with (tmp_path / FILE_NAME).open("a", encoding="utf-8") as f:
        f.write('{"k":"new","s":"BRO')  # a crash in the middle of a write
    second = OrderMap(tmp_path)
    assert [r["cl"] for r in second.load()] == ["a1", "a1-x"]
    second.open()
    second.record(k="new", s="BROKER2", cl="b1", id=8)
    second.close()
    records = OrderMap(tmp_path).load()
    assert [(r["s"], r["cl"]) for r in records] == [("BROKER1", "a1"), ("BROKER1", "a1-x"), ("BROKER2", "b1")]


def test_no_file_is_no_records(tmp_path: Path) -> None:
    assert OrderMap(tmp_path / "absent").load() == []
