"""Reading replay inputs: table data files and event files, checked value by value.

Every mistake is an InputError naming the file and line. An empty field is NULL.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from riskgw.doe.image import TableConfig
from riskgw.doe.isa import EVENT_FIELD_REGS, INT32_MAX, INT32_MIN, INT64_MAX, INT64_MIN, ColType, Event
from riskgw.doe.values import encode_char
from riskgw.engine.table import Value
from riskgw.errors import InputError
from riskgw.lang.ast import TRADE_ORDER_FIELDS, TypeKind

_INTEGER = re.compile(r"[+-]?[0-9]+", re.ASCII)

EVENT_HEADER = ("event", *(name for name, _ in TRADE_ORDER_FIELDS))
EVENT_NAMES = {e.name: e for e in (Event.NEW, Event.FILL, Event.REJECT, Event.CANCEL)}


@dataclass(frozen=True)
class ColumnFormat:
    """How one logical column's text becomes words."""

    name: str
    type: ColType  # INT32, INT64 or CHAR
    char_size: int  # CHAR(n): n
    nullable: bool
    first_word: int  # its first physical column (or input register)
    n_words: int

    def type_name(self) -> str:
        return {ColType.INT32: "INT", ColType.INT64: "INT8"}.get(self.type, f"CHAR({self.char_size})")

    def parse(self, text: str, path: str, line: int) -> tuple[Value, ...]:
        if text == "":
            if not self.nullable:
                raise InputError(path, line, f"column {self.name} is NOT NULL but the field is empty")
            return (None,) * self.n_words
        if self.type is ColType.CHAR:
            try:
                return encode_char(text, self.char_size)
            except ValueError as exc:
                raise InputError(path, line, f"column {self.name}: {text!r}: {exc}") from None
        if not _INTEGER.fullmatch(text):
            raise InputError(path, line, f"column {self.name}: {text!r} is not an integer")
        value = int(text)
        lo, hi = (INT32_MIN, INT32_MAX) if self.type is ColType.INT32 else (INT64_MIN, INT64_MAX)
        if not lo <= value <= hi:
            raise InputError(path, line, f"column {self.name}: {text} does not fit {self.type_name()}")
        return (value,)


def table_formats(config: TableConfig) -> list[ColumnFormat]:
    """The logical columns of a table, in declaration order."""
    formats: list[ColumnFormat] = []
    for i, pc in enumerate(config.columns):
        if pc.word != 0:
            continue
        n = sum(1 for c in config.columns if c.logical == pc.logical)
        formats.append(ColumnFormat(pc.name, pc.type, pc.char_size, pc.nullable, i, n))
    return formats


def event_formats() -> list[ColumnFormat]:
    """The fields of an event, each with its input registers."""
    kinds = {TypeKind.INT: ColType.INT32, TypeKind.INT8: ColType.INT64, TypeKind.CHAR: ColType.CHAR}
    out = []
    for name, sql_type in TRADE_ORDER_FIELDS:
        reg, n_words = EVENT_FIELD_REGS[name]
        out.append(ColumnFormat(name, kinds[sql_type.kind], sql_type.size, True, reg, n_words))
    return out


def read_text(path: Path) -> str:
    """A file's text; a missing, unreadable or non-UTF-8 file is an InputError."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(str(path), 0, f"cannot read: {exc.strerror}") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise InputError(str(path), line, "not UTF-8 text") from None


def csv_rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of every non-blank record, the header included."""
    text = read_text(path)
    reader = csv.reader(text.splitlines(keepends=True), strict=True)
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise InputError(str(path), reader.line_num, f"bad CSV: {exc}") from None
        if fields:
            yield reader.line_num, fields


@dataclass(frozen=True)
class DataRow:
    line: int
    words: tuple[Value, ...]


def read_table(path: Path, config: TableConfig, ignore: frozenset[str] = frozenset()) -> Iterator[DataRow]:
    """The rows of a table's data file, as physical words in column order.

    Header columns named in `ignore` (lower case) that the table lacks are skipped rather than an
    error: `riskgw replay --diff` loads one data file into two versions of a table.
    """
    where = str(path)
    formats = {f.name: f for f in table_formats(config)}
    rows = csv_rows(path)
    first = next(rows, None)
    if first is None:
        raise InputError(where, 1, f"empty file: expected a header row with columns of {config.name}")
    line, header = first
    columns: list[ColumnFormat | None] = []
    for name in header:
        fmt = formats.get(name.strip().lower())
        if fmt is None:
            if name.strip().lower() in ignore:
                columns.append(None)
                continue
            known = ", ".join(formats)
            raise InputError(where, line, f"table {config.name} has no column {name!r} (columns: {known})")
        if fmt in columns:
            raise InputError(where, line, f"column {fmt.name} appears twice in the header")
        columns.append(fmt)
    missing = [f for f in formats.values() if f not in columns]
    for f in missing:
        if not f.nullable:
            raise InputError(where, line, f"column {f.name} is NOT NULL and missing from the header")
    n_words = len(config.columns)
    for line, fields in rows:
        if len(fields) != len(columns):
            raise InputError(where, line, f"expected {len(columns)} fields, got {len(fields)}")
        words: list[Value] = [None] * n_words
        for fmt, text in zip(columns, fields, strict=True):
            if fmt is not None:
                words[fmt.first_word : fmt.first_word + fmt.n_words] = fmt.parse(text, where, line)
        yield DataRow(line, tuple(words))


@dataclass(frozen=True)
class EventRow:
    line: int
    event: Event
    inputs: tuple[Value, ...]  # the N_EVENT_REGS input registers


def read_events(path: Path) -> list[EventRow]:
    where = str(path)
    formats = event_formats()
    n_regs = max(f.first_word + f.n_words for f in formats)
    rows = csv_rows(path)
    first = next(rows, None)
    if first is None:
        raise InputError(where, 1, f"empty file: expected the header {','.join(EVENT_HEADER)}")
    line, header = first
    if tuple(header) != EVENT_HEADER:
        raise InputError(where, line, f"the header must be {','.join(EVENT_HEADER)}")
    events: list[EventRow] = []
    n_fields = len(EVENT_HEADER)
    for line, fields in rows:
        if len(fields) != n_fields:
            raise InputError(where, line, f"expected {n_fields} fields, got {len(fields)}")
        event = EVENT_NAMES.get(fields[0])
        if event is None:
            expected = ", ".join(EVENT_NAMES)
            raise InputError(where, line, f"unknown event {fields[0]!r} (expected one of {expected})")
        regs: list[Value] = [None] * n_regs
        for fmt, text in zip(formats, fields[1:], strict=True):
            if text:
                regs[fmt.first_word : fmt.first_word + fmt.n_words] = fmt.parse(text, where, line)
        events.append(EventRow(line, event, tuple(regs)))
    return events
