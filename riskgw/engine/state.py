"""The engine's whole state: every table of an image; snapshots, the state hash and table dumps.

`dump_rows` is the one definition of how a table's final state is written (sorted, formatted), so
that the SQLite oracle in the tests and `riskgw replay --dump-state` produce comparable files.
"""

from __future__ import annotations

import csv
import hashlib
import io
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from riskgw.doe.image import Image, TableConfig
from riskgw.doe.isa import ColType
from riskgw.doe.values import decode_char
from riskgw.engine.table import ColumnTable, TableState

LogicalValue = int | str | None

_HASH_TAG = b"riskgw-state-v1"


@dataclass(frozen=True)
class Snapshot:
    """The contents of every table at one moment; `hash` is the state hash they had."""

    tables: tuple[TableState, ...]
    hash: str


class EngineState:
    def __init__(self, image: Image) -> None:
        self.tables: dict[int, ColumnTable] = {t.id: ColumnTable(t) for t in image.tables}

    def table(self, table_id: int) -> ColumnTable:
        return self.tables[table_id]

    def by_name(self, name: str) -> ColumnTable:
        for t in self.tables.values():
            if t.config.name == name:
                return t
        raise KeyError(name)

    def snapshot(self) -> Snapshot:
        return Snapshot(tuple(t.save() for t in self.tables.values()), self.hash())

    def restore(self, snap: Snapshot) -> None:
        if len(snap.tables) != len(self.tables):
            raise ValueError("snapshot is of a different program image")
        for table, saved in zip(self.tables.values(), snap.tables, strict=True):
            table.load(saved)

    def hash(self) -> str:
        """SHA-256 (hex) of every table's rows, in table order then row order, with NULL bits.

        Per table: u16 id, u16 physical columns, u64 rows; then the words row by row (i64
        little-endian, 0 where NULL), then the NULL bits row by row (one byte each). Two executors
        holding the same rows in the same order have the same hash.
        """
        h = hashlib.sha256(_HASH_TAG)
        for table in self.tables.values():
            words, nulls = table.matrix()
            h.update(struct.pack("<HHQ", table.config.id, table.n_cols, table.n_rows))
            h.update(np.ascontiguousarray(words, dtype="<i8").tobytes())
            h.update(np.ascontiguousarray(nulls, dtype=np.uint8).tobytes())
        return h.hexdigest()


# ----------------------------------------------------------------------------- logical rows


def logical_row(config: TableConfig, words: Sequence[int | None]) -> tuple[LogicalValue, ...]:
    """A row's logical values (CHAR decoded to text) from its physical words."""
    out: list[LogicalValue] = []
    col = 0
    n = len(config.columns)
    while col < n:
        pc = config.columns[col]
        if pc.type is ColType.CHAR:
            end = col + 1
            while end < n and config.columns[end].logical == pc.logical:
                end += 1
            first = words[col]
            if first is None:
                out.append(None)
            else:
                out.append(decode_char([w if w is not None else 0 for w in words[col:end]]))
            col = end
        else:
            out.append(words[col])
            col += 1
    return tuple(out)


def table_rows(table: ColumnTable) -> list[tuple[LogicalValue, ...]]:
    """Every row of a table as logical values, in row order."""
    return [logical_row(table.config, r) for r in table.rows()]


def _sort_key(row: Sequence[LogicalValue]) -> tuple[tuple[int, int | bytes], ...]:
    # NULL before any value; text by its UTF-8 bytes; a column holds one kind, so kinds never meet.
    return tuple((0, 0) if v is None else (1, v.encode("utf-8") if isinstance(v, str) else v) for v in row)


def dump_rows(rows: Iterable[Sequence[LogicalValue]]) -> list[list[str]]:
    """A table's rows as CSV fields, sorted the way every state dump is.

    Rows sort by the tuple of their values in declaration order: NULL before any value, integers
    numerically, text by its UTF-8 bytes. NULL is an empty field, an integer its decimal text.
    """
    ordered = sorted(rows, key=_sort_key)
    return [["" if v is None else str(v) for v in row] for row in ordered]


def dump_csv(header: Sequence[str], rows: Iterable[Sequence[LogicalValue]]) -> str:
    """The text of a state dump file: the header, then `dump_rows(rows)`; lines end with a newline."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(dump_rows(rows))
    return buf.getvalue()
