"""One DOE table in software: physical columns of 64-bit words with NULL bits, and a hash index.

The numpy arrays are the store (compact, and what snapshots, the state hash and SCAN read). The
fast path also asks for a Python list per column (`mirror`), because reading and writing a list
is several times cheaper than a numpy array from Python. With mirrors on, the fast path writes
cells to the mirror only and adds the row to `dirty`; `sync()` copies dirty rows into the arrays
before anything reads them. Row addresses are insertion order and never change: rows are only
appended.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from riskgw.doe.image import TableConfig

Value = int | None
Key = tuple[Value, ...]
Words = npt.NDArray[np.int64]
Nulls = npt.NDArray[np.bool_]

_INITIAL_CAPACITY = 16


class EngineError(RuntimeError):
    """The engine was asked to do something the image or the caller guarantees never happens."""


class ColumnTable:
    def __init__(self, config: TableConfig) -> None:
        self.config = config
        self.n_cols = len(config.columns)
        self.key_cols = config.key
        self.n_rows = 0
        self.capacity = _INITIAL_CAPACITY
        # Lists of arrays: generated code holds the lists, so growing replaces an element, not the list.
        self.words: list[Words] = [np.zeros(self.capacity, np.int64) for _ in range(self.n_cols)]
        self.nulls: list[Nulls] = [np.ones(self.capacity, np.bool_) for _ in range(self.n_cols)]
        self.index: dict[Key, int] = {}
        self.mirror: list[list[Value]] | None = None
        self.dirty: set[int] = set()  # rows whose mirror cells are newer than the arrays

    # ------------------------------------------------------------------ mirrors

    def enable_mirror(self) -> list[list[Value]]:
        if self.mirror is None:
            self.mirror = [self._column_values(c) for c in range(self.n_cols)]
        return self.mirror

    def sync(self) -> None:
        """Bring the arrays up to date with the mirror cells written since the last sync."""
        if not self.dirty:
            return
        assert self.mirror is not None
        if self.n_rows > self.capacity:
            self._grow(max(2 * self.capacity, 1 << (self.n_rows - 1).bit_length()))
        rows = sorted(self.dirty)
        index = np.array(rows, np.int64)
        for col, values in enumerate(self.mirror):
            cells = [values[r] for r in rows]
            self.nulls[col][index] = [v is None for v in cells]
            self.words[col][index] = [0 if v is None else v for v in cells]
        self.dirty.clear()

    def _column_values(self, col: int) -> list[Value]:
        self.sync()
        n = self.n_rows
        words = self.words[col][:n].tolist()
        nulls = self.nulls[col][:n].tolist()
        return [None if z else w for w, z in zip(words, nulls, strict=True)]

    # ------------------------------------------------------------------ reads

    def get(self, col: int, row: int) -> Value:
        if not 0 <= row < self.n_rows:
            raise EngineError(f"table {self.config.name}: row handle {row} out of range")
        self.sync()
        if self.nulls[col][row]:
            return None
        return int(self.words[col][row])

    def row(self, row: int) -> tuple[Value, ...]:
        return tuple(self.get(c, row) for c in range(self.n_cols))

    def rows(self) -> list[tuple[Value, ...]]:
        """Every row's physical words in row order (NULL as None)."""
        cols = [self._column_values(c) for c in range(self.n_cols)]
        return list(zip(*cols, strict=True)) if cols else [() for _ in range(self.n_rows)]

    def lookup(self, key: Key) -> Value:
        return self.index.get(key)

    def key_of(self, words: tuple[Value, ...]) -> Key:
        return tuple(words[c] for c in self.key_cols)

    # ------------------------------------------------------------------ writes

    def write(self, col: int, row: int, value: Value) -> None:
        if not 0 <= row < self.n_rows:
            raise EngineError(f"table {self.config.name}: row handle {row} out of range")
        if self.mirror is not None:
            self.mirror[col][row] = value
            self.dirty.add(row)
        elif value is None:
            self.words[col][row] = 0
            self.nulls[col][row] = True
        else:
            self.words[col][row] = value
            self.nulls[col][row] = False

    def alloc(self, key: Key) -> Value:
        """ALLOC: append a row with key `key`, other cells NULL; NULL (nothing done) if the key is taken."""
        if not self.key_cols:
            return self._append()
        if key in self.index:
            return None
        row = self._append()
        mirror = self.mirror
        for col, value in zip(self.key_cols, key, strict=True):
            if value is None:
                continue
            if mirror is not None:
                mirror[col][row] = value
            else:
                self.words[col][row] = value
                self.nulls[col][row] = False
        if None not in key:
            self.index[key] = row
        return row

    def _append(self) -> int:
        row = self.n_rows
        self.n_rows = row + 1
        if self.mirror is not None:
            # The arrays grow and take the row's cells at the next sync.
            for values in self.mirror:
                values.append(None)
            self.dirty.add(row)
        elif row == self.capacity:
            self._grow(2 * self.capacity)
        return row

    def _grow(self, capacity: int) -> None:
        n = min(self.n_rows, self.capacity)
        for c in range(self.n_cols):
            words = np.zeros(capacity, np.int64)
            nulls = np.ones(capacity, np.bool_)
            words[:n] = self.words[c][:n]
            nulls[:n] = self.nulls[c][:n]
            self.words[c] = words
            self.nulls[c] = nulls
        self.capacity = capacity

    # ------------------------------------------------------------------ snapshots

    def save(self) -> TableState:
        self.sync()
        n = self.n_rows
        return TableState(
            n,
            [w[:n].copy() for w in self.words],
            [z[:n].copy() for z in self.nulls],
            dict(self.index),
        )

    def load(self, state: TableState) -> None:
        """Replace the contents in place (generated code holds references to the containers)."""
        n = state.n_rows
        capacity = max(_INITIAL_CAPACITY, 1 << max(n - 1, 0).bit_length())
        for c in range(self.n_cols):
            words = np.zeros(capacity, np.int64)
            nulls = np.ones(capacity, np.bool_)
            words[:n] = state.words[c]
            nulls[:n] = state.nulls[c]
            self.words[c] = words
            self.nulls[c] = nulls
        self.capacity = capacity
        self.n_rows = n
        self.index.clear()
        self.index.update(state.index)
        self.dirty.clear()
        if self.mirror is not None:
            for c in range(self.n_cols):
                self.mirror[c][:] = self._column_values(c)

    def matrix(self) -> tuple[Words, Nulls]:
        """Rows x physical columns: the words (0 where NULL) and the NULL bits."""
        self.sync()
        n = self.n_rows
        if self.n_cols == 0:
            return np.zeros((n, 0), np.int64), np.zeros((n, 0), np.bool_)
        words = np.stack([w[:n] for w in self.words], axis=1)
        nulls = np.stack([z[:n] for z in self.nulls], axis=1)
        return words, nulls


class TableState:
    """A copy of one table's contents, as a snapshot holds it."""

    __slots__ = ("index", "n_rows", "nulls", "words")

    def __init__(self, n_rows: int, words: list[Words], nulls: list[Nulls], index: dict[Key, int]) -> None:
        self.n_rows = n_rows
        self.words = words
        self.nulls = nulls
        self.index = index
