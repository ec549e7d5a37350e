"""The native executor: an image's sections as C (riskgw.engine.cgen), built once with the C
compiler (riskgw.engine.cbuild) and called through ctypes.

Tables stay in the numpy arrays of `ColumnTable` (words, and NULL bytes), so snapshots, the state
hash and state dumps read them as for the other executors; C receives their addresses in a `Tab`
record per table. The key index is an open-addressing table of row numbers (row + 1, 0 for empty)
in a numpy array that C fills; the Python dict `index` is brought up to date from the rows when it
is read. When an event needs more rows than a table has room for, C returns FULL before changing
anything; Python grows the arrays and calls again.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

from riskgw.doe.image import Image, TableConfig
from riskgw.engine.cbuild import build_library
from riskgw.engine.cgen import BAD_EVENT, BAD_ROW, DUP, FULL, generate
from riskgw.engine.state import EngineState
from riskgw.engine.table import ColumnTable, EngineError, Key, TableState, Value

_INITIAL_CAPACITY = 16


# ----------------------------------------------------------------------------- tables


class _Tab(ctypes.Structure):
    _fields_ = [
        ("n_rows", ctypes.c_int64),
        ("cap", ctypes.c_int64),
        ("imask", ctypes.c_int64),
        ("slots", ctypes.c_void_p),
        ("w", ctypes.POINTER(ctypes.c_void_p)),
        ("z", ctypes.POINTER(ctypes.c_void_p)),
    ]


class NativeTable(ColumnTable):
    """A ColumnTable whose rows C appends and writes: `n_rows` lives in the C record, and `index`
    (the Python dict) is brought up to date from the rows when it is read.
    """

    def __init__(self, config: TableConfig, tab: _Tab, reindex: Callable[[NativeTable], None]) -> None:
        self._tab = tab
        self._reindex = reindex
        self._index: dict[Key, int] = {}
        self._indexed = 0  # rows already in `_index`
        self.slots: npt.NDArray[np.int64] = np.zeros(0, np.int64)
        super().__init__(config)
        self._publish()

    @property
    def n_rows(self) -> int:
        return int(self._tab.n_rows)

    @n_rows.setter
    def n_rows(self, value: int) -> None:
        self._tab.n_rows = value

    @property
    def index(self) -> dict[Key, int]:
        n = self._tab.n_rows
        if self._indexed < n and self.key_cols:
            lo = self._indexed
            keys = zip(*(self.words[c][lo:n].tolist() for c in self.key_cols), strict=True)
            null = np.zeros(n - lo, np.bool_)
            for c in self.key_cols:
                null |= self.nulls[c][lo:n]
            for i, (key, skip) in enumerate(zip(keys, null.tolist(), strict=True)):
                if not skip:
                    self._index[key] = lo + i
        self._indexed = n
        return self._index

    @index.setter
    def index(self, value: dict[Key, int]) -> None:
        self._index = value
        self._indexed = 0

    def _publish(self) -> None:
        """Give C the current arrays and a key index sized for them (rebuilt from the rows)."""
        tab = self._tab
        self._w_ptrs = (ctypes.c_void_p * max(1, self.n_cols))(*(w.ctypes.data for w in self.words))
        self._z_ptrs = (ctypes.c_void_p * max(1, self.n_cols))(*(z.ctypes.data for z in self.nulls))
        tab.w = ctypes.cast(self._w_ptrs, ctypes.POINTER(ctypes.c_void_p))
        tab.z = ctypes.cast(self._z_ptrs, ctypes.POINTER(ctypes.c_void_p))
        tab.cap = self.capacity
        if self.key_cols:
            self.slots = np.zeros(2 * self.capacity, np.int64)  # at most half full
        else:
            self.slots = np.zeros(1, np.int64)
        tab.slots = self.slots.ctypes.data
        tab.imask = len(self.slots) - 1
        if self.key_cols:
            self._reindex(self)

    def _grow(self, capacity: int) -> None:
        super()._grow(capacity)
        self._publish()

    def reserve(self, rows: int) -> None:
        """Make room for `rows` more rows."""
        need = self.n_rows + rows
        if need > self.capacity:
            self._grow(max(2 * self.capacity, 1 << (need - 1).bit_length()))

    def alloc(self, key: Key) -> Value:
        """ALLOC from Python (tests, tools): as ColumnTable's, then the C key index catches up."""
        row = super().alloc(key)
        if row is not None and self.key_cols:
            self._reindex(self)
        return row

    def load(self, state: TableState) -> None:
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
        self._index = dict(state.index)
        self._indexed = n
        self.dirty.clear()
        self._publish()


# ----------------------------------------------------------------------------- the backend


class Native:
    """The compiled image bound to an EngineState whose tables it replaces by NativeTables.

    `event_fn()(ev, inputs)` and `batch(events)` give rule masks (bit i for the i-th rule of the
    image); `load(table_id, words)` returns False for a duplicate key. Inputs are read by the C
    code straight from the Python objects (ints or None), so a call costs one ctypes transition.
    """

    def __init__(self, image: Image, state: EngineState, n_event_inputs: int) -> None:
        self.source, reserve, self.mask_words = generate(image, n_event_inputs)
        # PyDLL: the entry points read Python objects, so they run holding the GIL
        lib = ctypes.PyDLL(str(build_library(self.source)))
        self.n_inputs = n_event_inputs
        vp, obj, c_int = ctypes.c_void_p, ctypes.py_object, ctypes.c_int
        self._event = lib.rgw_py_event
        self._event.argtypes = [vp, c_int, obj, vp]
        self._event.restype = c_int
        self._load = lib.rgw_py_load
        self._load.argtypes = [vp, c_int, obj, c_int]
        self._load.restype = c_int
        self._batch = lib.rgw_py_batch
        self._batch.argtypes = [vp, obj, ctypes.c_int64, ctypes.c_int64, vp, ctypes.POINTER(c_int)]
        self._batch.restype = ctypes.c_int64
        reindex = lib.rgw_reindex
        reindex.argtypes = [vp, c_int, vp]
        reindex.restype = None
        self._lib = lib  # the functions above need the library loaded

        self._tabs = (_Tab * max(1, len(image.tables)))()
        self._tabs_ptr = ctypes.addressof(self._tabs)
        self.tables: list[NativeTable] = []
        for pos, config in enumerate(image.tables):
            keys = (ctypes.c_int * max(1, len(config.key)))(*config.key)

            def rebuild(table: NativeTable, keys: ctypes.Array[ctypes.c_int] = keys) -> None:
                reindex(ctypes.addressof(table._tab), len(table.key_cols), ctypes.addressof(keys))

            table = NativeTable(config, self._tabs[pos], rebuild)
            state.tables[config.id] = table
            self.tables.append(table)
        self._reserve = [(t, reserve[t.config.id]) for t in self.tables if reserve[t.config.id]]
        self._mask = (ctypes.c_uint64 * self.mask_words)()
        self._mask_ptr = ctypes.addressof(self._mask)

    def _make_room(self) -> None:
        for table, rows in self._reserve:
            table.reserve(rows)

    def _check(self, status: int) -> None:
        if status == BAD_ROW:
            raise EngineError("a row handle out of range")
        if status == BAD_EVENT:
            raise ValueError("not an event of the native engine")
        raise EngineError(f"native engine status {status}")

    def event_fn(self) -> Callable[[int, Sequence[Value]], int]:
        """The one-event call: (event, inputs) -> the failed rules' mask (0 when none failed)."""
        # Arguments already of ctypes types, and no argtypes to convert through, make the call
        # about a third cheaper; the event code is a Python int (an Event), which ctypes passes
        # as a C int.
        run = self._lib["rgw_py_event"]  # a function object of its own, without argtypes
        run.restype = ctypes.c_int
        tabs, mask_arg, wrap = (
            ctypes.c_void_p(self._tabs_ptr),
            ctypes.c_void_p(self._mask_ptr),
            ctypes.py_object,
        )
        mask = self._mask
        one_word = self.mask_words == 1

        def event(ev: int, inputs: Sequence[Value]) -> int:
            arg = wrap(inputs)
            status: int = run(tabs, ev, arg, mask_arg)
            while status == FULL:
                self._make_room()
                status = run(tabs, ev, arg, mask_arg)
            if status:
                self._check(status)
            if one_word:
                return mask[0]
            return sum(m << (64 * i) for i, m in enumerate(mask))

        return event

    def load(self, table_id: int, words: Sequence[Value]) -> bool:
        n = len(words)
        status = self._load(self._tabs_ptr, table_id, words, n)
        while status == FULL:
            self._make_room()
            status = self._load(self._tabs_ptr, table_id, words, n)
        if status == DUP:
            return False
        if status:
            self._check(status)
        return True

    def batch(self, events: Sequence[tuple[int, Sequence[Value]]]) -> npt.NDArray[np.uint64]:
        """Run (event, inputs) pairs in order; row i of the result is event i's mask words."""
        n = len(events)
        masks = np.zeros((n, self.mask_words), np.uint64)
        status = ctypes.c_int(0)
        done = 0
        while done < n:
            done = self._batch(self._tabs_ptr, events, done, n, masks.ctypes.data, ctypes.byref(status))
            if status.value == FULL:
                self._make_room()
            elif status.value:
                self._check(status.value)
        return masks
