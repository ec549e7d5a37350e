"""`CardRegs`: the register-level driver of `hdl/rgw_card.sv`, written once over a `Bus`.

The simulated card (ZeroMQ) and a U200 (pynq MMIO) differ only in the bus, so everything that
touches a register lives here: walking the block chain and checking the ID, loading a program
through the DOE window, loading rows with LOAD_ROW, reading tables back, counters, heartbeat,
status and timestamps. Addresses come only from riskgw/card/regmap.py.

The card refuses nothing: a row whose key is already in its table would be inserted twice, so the
duplicate check is made here, on the host, exactly as the software engine makes it.

A bus may offer `access_many(ops)`: reads and writes mixed, in order, in one call ((addr, value)
writes, (addr, None) reads; the values read come back). Reading a table is a READ command per
cell, so over a bus with a round trip per call (ZeroMQ) it batches them; without it each cell
costs two calls. A bus that also sets `polls` takes (addr, None, want) in `access_many`: it reads
addr until it reads want, so a batch waits for each READ to complete instead of reading a result
that is not there yet and fetching the cell again (a round trip of its own). A simulated bus may
also offer `run_cycles(n)`: its clock advances only while the simulator is asked to work, so a
reset lets it run the cycles the DOE needs to clear its tables.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields

import numpy as np

from riskgw.card.bus import AccessOp, Bus
from riskgw.card.doeport import (
    REGION_COUNT,
    DoeParams,
    ImageDoesNotFit,
    addr,
    cell_addr,
    image_writes,
)
from riskgw.card.driver import CardError
from riskgw.card.regmap import (
    BLOCKS,
    CARD_MAGIC,
    CONTROL_BLOCK,
    COUNTERS_BLOCK,
    DOE_BLOCK,
    ID_BLOCK,
    MAX_RULES,
    ROW_WORDS,
    TS_BLOCK,
    TS_RING,
    BlockType,
    Control,
    Counter,
    DoeCmd,
    Status,
)
from riskgw.doe.image import Image, TableConfig
from riskgw.doe.isa import ABI_VERSION
from riskgw.engine.engine import DuplicateKeyError
from riskgw.engine.state import EngineState, Snapshot
from riskgw.engine.table import Key, TableState, Value

M32 = 0xFFFFFFFF
M64 = (1 << 64) - 1
_MAX_BLOCKS = 64  # a chain longer than this loops
POLL_TIMEOUT_S = 120.0  # a reset or a command still running after this long is stuck (a slow simulator)
_WRITE_BATCH = 4096  # bus writes per write_many
_READ_BATCH = 512  # DOE reads per access_many


def _signed(v: int) -> int:
    return v - (1 << 64) if v >> 63 else v


@dataclass(frozen=True)
class CardId:
    """What the ID block says about the build."""

    abi_version: int
    git_hash: str  # 40 hex digits
    data_w: int
    lanes: int
    tables: int
    cols: int
    rows_log2: int
    rules: int
    regs: int
    prog_rows: int
    clock_mhz: int
    key_words: int
    ways: int
    scans: int
    in_words: int

    def mismatches(self, p: DoeParams) -> list[str]:
        """How a DOE built with `p` differs from this card, one entry per parameter.

        Every DoeParams field is shown by the ID under its own name, except ROWS (a power of two),
        shown as its log2."""
        want = {f.name: getattr(p, f.name) for f in fields(DoeParams) if f.name != "rows"}
        want["rows_log2"] = (p.rows - 1).bit_length()
        return [f"{k} {getattr(self, k)} (expected {v})" for k, v in want.items() if getattr(self, k) != v]


@dataclass(frozen=True)
class Timestamp:
    """One record of the timestamp ring: cycle stamps of an order's first rx and tx beats."""

    seq: int
    session: int
    rx_cycle: int  # low 32 bits of CYCLES
    tx_cycle: int

    @property
    def latency(self) -> int:
        return (self.tx_cycle - self.rx_cycle) & M32


class CardRegs:
    """Drives one card over `bus`. Call `attach` first; it checks the card is one this code knows.

    `params`: the DOE parameters the card is expected to be built with (a bitstream's manifest);
    `attach` refuses a card whose ID block shows other values. The driver lays out the DOE's
    addresses with them (ROWS exactly, where the ID shows only its log2).
    """

    def __init__(self, bus: Bus, params: DoeParams | None = None) -> None:
        self.bus = bus
        self.params = params or DoeParams()
        self.ident: CardId | None = None
        self.poll_timeout = POLL_TIMEOUT_S
        self._cmds = 0  # CMD_DONE once every command issued so far has completed
        # keys of each table as the host knows them; None: unknown (events may have inserted rows)
        self._keys: dict[int, set[Key]] = {}

    # ------------------------------------------------------------------ identity

    def walk(self) -> dict[BlockType, int]:
        """The block chain from address 0: every block's base, checked against the register map."""
        known = {b.type: b for b in BLOCKS}
        found: dict[BlockType, int] = {}
        base = 0
        for _ in range(_MAX_BLOCKS):
            type_version, nxt = self.bus.read_many([base, base + 4])
            raw_type, version = type_version >> 16, type_version & 0xFFFF
            try:
                block_type = BlockType(raw_type)
            except ValueError:
                raise CardError(f"unknown register block type {raw_type:#06x} at {base:#06x}") from None
            block = known[block_type]
            if version != block.version:
                raise CardError(
                    f"register block {block_type.name} is version {version},"
                    f" this driver knows {block.version}"
                )
            if base != block.base:
                raise CardError(
                    f"register block {block_type.name} at {base:#06x}, expected {block.base:#06x}"
                )
            if block_type in found:
                raise CardError(f"register block {block_type.name} appears twice")
            found[block_type] = base
            if nxt == 0:
                break
            base = nxt
        else:
            raise CardError(f"the register block chain has more than {_MAX_BLOCKS} blocks (a loop?)")
        missing = [b.type.name for b in BLOCKS if b.type not in found]
        if missing:
            raise CardError(f"the card has no {', '.join(missing)} register block")
        return found

    def identify(self) -> CardId:
        """Walk the chain and read the ID block; CardError when it is not an rgw_card we can drive."""
        magic = self.bus.read32(ID_BLOCK.addr("MAGIC"))
        if magic != CARD_MAGIC:
            raise CardError(f"no riskgw card: ID magic {magic:#010x}, expected {CARD_MAGIC:#010x}")
        self.walk()
        # every field of CardId but the git hash is the ID register of its upper-case name
        plain = [f.name.upper() for f in fields(CardId) if f.name != "git_hash"]
        names = [*plain, *(f"GIT_HASH{i}" for i in range(5))]
        addrs = [ID_BLOCK.addr(n) for n in plain] + [ID_BLOCK.addr("GIT_HASH", i) for i in range(5)]
        values = dict(zip(names, self.bus.read_many(addrs), strict=True))
        ident = CardId(
            git_hash="".join(f"{values[f'GIT_HASH{i}']:08x}" for i in range(5)),
            **{n.lower(): values[n] for n in plain},
        )
        if ident.abi_version != ABI_VERSION:
            raise CardError(
                f"the card runs program ABI version {ident.abi_version},"
                f" this riskgw builds version {ABI_VERSION}"
            )
        return ident

    def attach(self, git_hash: str | None = None) -> CardId:
        """Identify the card and check its build against `params` (and `git_hash` when given)."""
        ident = self.identify()
        bad = ident.mismatches(self.params)
        if bad:
            raise CardError(f"the card's DOE is not the expected build: {', '.join(bad)}")
        if git_hash is not None and ident.git_hash != git_hash.lower():
            raise CardError(f"the card was built from commit {ident.git_hash}, expected {git_hash}")
        self.ident = ident
        self._cmds = self.bus.read32(DOE_BLOCK.addr("CMD_DONE"))
        return ident

    # ------------------------------------------------------------------ control and status

    def status(self) -> Status:
        return Status(self.bus.read32(CONTROL_BLOCK.addr("STATUS")))

    def check_faults(self, status: Status | None = None) -> None:
        """CardError when the DOE lost a row (a full hash bucket or table): its state is wrong.

        `status`: STATUS as just read, when the caller read it along with something else."""
        if status is None:
            status = self.status()
        if status & Status.INDEX_FULL:
            raise CardError("card fault: a hash bucket of the DOE's index was full and a row was lost")
        if status & Status.TABLE_FULL:
            raise CardError("card fault: a DOE table was full and a row was lost")

    def clear_status(self, bits: Status) -> None:
        self.bus.write32(CONTROL_BLOCK.addr("STATUS"), int(bits))

    def reset(self) -> None:
        """Reset the DOE (tables, program, constants) and the counters; rx stays disabled."""
        self.bus.write32(CONTROL_BLOCK.addr("CONTROL"), int(Control.RESET))
        run_cycles = getattr(self.bus, "run_cycles", None)
        if run_cycles is not None:  # a simulated card: its clock runs only while asked to
            # the DOE clears 2 * ROWS hash buckets per table after a reset
            run_cycles(2 * self.params.rows * self.params.tables)
        deadline = time.monotonic() + self.poll_timeout
        while self.status() & Status.DOE_BUSY:
            if time.monotonic() > deadline:
                raise CardError(f"the DOE was still busy {self.poll_timeout:.0f} s after a reset")
        self.clear_status(Status.INDEX_FULL | Status.TABLE_FULL | Status.PROTOCOL_ERROR)
        self._cmds = self.bus.read32(DOE_BLOCK.addr("CMD_DONE"))
        self._keys = {}

    def enable(self, exch_session: int) -> None:
        """Take rx frames; accepted orders go to `exch_session`."""
        self.bus.write_many(
            [
                (CONTROL_BLOCK.addr("EXCH_SESSION"), exch_session),
                (CONTROL_BLOCK.addr("CONTROL"), int(Control.ENABLE)),
            ]
        )

    def disable(self) -> None:
        self.bus.write32(CONTROL_BLOCK.addr("CONTROL"), 0)

    def heartbeat(self) -> int:
        return self.bus.read32(CONTROL_BLOCK.addr("HEARTBEAT"))

    def cycles(self) -> int:
        lo, hi = self.bus.read_many([CONTROL_BLOCK.addr("CYCLES", 0), CONTROL_BLOCK.addr("CYCLES", 1)])
        return hi << 32 | lo

    def counters(self) -> dict[Counter, int]:
        words = self.bus.read_many([COUNTERS_BLOCK.addr("FLOW", i) for i in range(2 * len(Counter))])
        return {c: words[2 * c + 1] << 32 | words[2 * c] for c in Counter}

    def rule_counters(self, n: int) -> list[int]:
        """Failures of rule ids 0..n-1."""
        if not 0 <= n <= MAX_RULES:
            raise ValueError(f"at most {MAX_RULES} rule counters")
        words = self.bus.read_many([COUNTERS_BLOCK.addr("RULE", i) for i in range(2 * n)])
        return [words[2 * i + 1] << 32 | words[2 * i] for i in range(n)]

    def clear_counters(self) -> None:
        self.bus.write32(CONTROL_BLOCK.addr("CONTROL"), int(Control.CLEAR_COUNTERS))

    def timestamps(self) -> list[Timestamp]:
        """The records still in the ring, oldest first."""
        written = self.bus.read32(TS_BLOCK.addr("WRITTEN"))
        first = max(0, written - TS_RING)
        slots = [i % TS_RING for i in range(first, written)]
        words = self.bus.read_many([TS_BLOCK.addr("RING", 4 * s + w) for s in slots for w in range(4)])
        return [Timestamp(*words[4 * i : 4 * i + 4]) for i in range(len(slots))]

    # ------------------------------------------------------------------ the DOE window

    def _cmd_writes(self, doe_addr: int, data: int) -> list[tuple[int, int]]:
        self._cmds += 1
        d = DOE_BLOCK
        return [
            (d.addr("ADDR"), doe_addr),
            (d.addr("DATA", 0), data & M32),
            (d.addr("DATA", 1), data >> 32 & M32),
            (d.addr("CMD"), int(DoeCmd.WRITE)),
        ]

    def _wait_commands(self) -> None:
        want = self._cmds & M32
        deadline = time.monotonic() + self.poll_timeout
        while (done := self.bus.read32(DOE_BLOCK.addr("CMD_DONE"))) != want:
            if time.monotonic() > deadline:
                raise CardError(
                    f"DOE commands did not complete in {self.poll_timeout:.0f} s:"
                    f" CMD_DONE {done}, expected {want}"
                )

    def _write_all(self, writes: Sequence[tuple[int, int]]) -> None:
        for start in range(0, len(writes), _WRITE_BATCH):
            self.bus.write_many(writes[start : start + _WRITE_BATCH])

    def doe_write(self, doe_addr: int, data: int) -> None:
        self.bus.write_many(self._cmd_writes(doe_addr, data))
        self._wait_commands()

    def doe_read(self, doe_addr: int) -> int:
        """One 64-bit read of the DOE load port (a cell, a row count)."""
        d = DOE_BLOCK
        self._cmds += 1
        self.bus.write_many([(d.addr("ADDR"), doe_addr), (d.addr("CMD"), int(DoeCmd.READ))])
        done, lo, hi = self.bus.read_many([d.addr("CMD_DONE"), d.addr("RDATA", 0), d.addr("RDATA", 1)])
        if done != self._cmds & M32:  # not finished when asked: wait, then read the result again
            self._wait_commands()
            lo, hi = self.bus.read_many([d.addr("RDATA", 0), d.addr("RDATA", 1)])
        return hi << 32 | lo

    def load_image(self, image: Image) -> None:
        """Reset the DOE and load `image`: every table starts empty."""
        try:
            port_writes = image_writes(image, self.params)
        except ImageDoesNotFit as exc:
            raise CardError(f"the program does not fit the card: {exc}") from None
        self.reset()
        writes: list[tuple[int, int]] = []
        for a, data in port_writes:
            writes += self._cmd_writes(a, data)
        self._write_all(writes)
        self._wait_commands()
        self._keys = {t.id: set() for t in image.tables}

    # ------------------------------------------------------------------ rows

    def forget_keys(self) -> None:
        """Events ran: the tables' keys are no longer known on the host."""
        self._keys = {}

    def _known_keys(self, config: TableConfig) -> set[Key]:
        keys = self._keys.get(config.id)
        if keys is None:
            n = self.doe_read(addr(REGION_COUNT, config.id))
            cols = self._read_columns(config, config.key, n)
            keys = {k for k in zip(*cols, strict=True) if None not in k} if cols else set()
            self._keys[config.id] = keys
        return keys

    def load_rows(self, config: TableConfig, rows: Iterable[Sequence[Value]]) -> int:
        """Insert rows (physical words in column order) with LOAD_ROW; returns the number inserted.

        Raises DuplicateKeyError at the first row whose key is already in the table, having
        inserted the rows before it, as the software engine does.
        """
        n_cols = len(config.columns)
        if n_cols > ROW_WORDS:
            raise CardError(f"table {config.name} has {n_cols} words per row, LOAD_ROW carries {ROW_WORDS}")
        keys = self._known_keys(config) if config.key else set()
        d = DOE_BLOCK
        # A register write waits until the command before it has completed, so a batch of rows
        # never overwrites ROW_WORDS under a LOAD_ROW still reading them.
        writes: list[tuple[int, int]] = [(d.addr("ROW_TABLE"), config.id)]
        # The row registers keep their values, so a row writes only the words that differ from
        # the row before it (rows of one table share many: the account of its holdings, NULLs).
        row_words = [d.addr("ROW_WORDS", i) for i in range(2 * ROW_WORDS)]
        held: list[int | None] = [None] * (2 * ROW_WORDS)
        held_nulls: int | None = None
        n = 0
        try:
            for words in rows:
                if len(words) != n_cols:
                    raise ValueError(f"table {config.name} has {n_cols} words per row, got {len(words)}")
                if config.key:
                    key = tuple(words[c] for c in config.key)
                    if None not in key:
                        if key in keys:
                            raise DuplicateKeyError(config.name, key)
                        keys.add(key)
                nulls = (1 << ROW_WORDS) - 1
                for i, v in enumerate(words):
                    if v is not None:
                        nulls &= ~(1 << i)
                        for half, word in ((2 * i, v & M32), (2 * i + 1, v >> 32 & M32)):
                            if held[half] != word:
                                writes.append((row_words[half], word))
                                held[half] = word
                if held_nulls != nulls:
                    writes.append((d.addr("ROW_NULLS"), nulls))
                    held_nulls = nulls
                writes.append((d.addr("CMD"), int(DoeCmd.LOAD_ROW)))
                self._cmds += 1
                n += 1
                if len(writes) >= _WRITE_BATCH:
                    self.bus.write_many(writes)
                    writes = []
        finally:
            self.bus.write_many(writes)
            self._wait_commands()
        self.check_faults()
        return n

    # ------------------------------------------------------------------ read-back

    def doe_read_many(self, doe_addrs: Sequence[int], low_only: bool = False) -> list[int]:
        """`doe_read` of each address; one round trip per batch on a bus with `access_many`.

        `low_only`: only the low 32 bits are wanted (a NULL bit), so RDATA's high word is not read.
        """
        access = getattr(self.bus, "access_many", None)
        if access is None:
            return [self.doe_read(a) for a in doe_addrs]
        d = DOE_BLOCK
        a_addr, a_cmd, a_done = d.addr("ADDR"), d.addr("CMD"), d.addr("CMD_DONE")
        a_lo, a_hi = d.addr("RDATA", 0), d.addr("RDATA", 1)
        polls = bool(getattr(self.bus, "polls", False))
        out: list[int] = []
        for start in range(0, len(doe_addrs), _READ_BATCH):
            chunk = doe_addrs[start : start + _READ_BATCH]
            first = self._cmds
            self._cmds += len(chunk)
            ops: list[AccessOp] = []
            for i, a in enumerate(chunk):
                # a bus that polls waits for each READ to complete before its RDATA is read
                done: AccessOp = (a_done, None, (first + i + 1) & M32) if polls else (a_done, None)
                ops += [(a_addr, a), (a_cmd, int(DoeCmd.READ)), done, (a_lo, None)]
                if not low_only:
                    ops.append((a_hi, None))
            got: list[int] = access(ops)
            k = 2 if low_only else 3
            for i, a in enumerate(chunk):
                done_at, lo = got[k * i], got[k * i + 1]
                hi = 0 if low_only else got[k * i + 2]
                if done_at == (first + i + 1) & M32:
                    out.append(hi << 32 | lo)
                else:  # RDATA was read before this READ completed: read the cell again on its own
                    out.append(self.doe_read(a))
        return out

    def _read_columns(self, config: TableConfig, cols: Sequence[int], n_rows: int) -> list[list[Value]]:
        """Columns `cols` of rows 0..n_rows-1: NULL halves first, then the values of the rest."""
        p = self.params
        cells = [(c, row) for c in cols for row in range(n_rows)]
        nulls = self.doe_read_many([cell_addr(p, config.id, c, row, True) for c, row in cells], low_only=True)
        present = [cell for cell, null in zip(cells, nulls, strict=True) if not null & 1]
        values = self.doe_read_many([cell_addr(p, config.id, c, row, False) for c, row in present])
        out: dict[int, list[Value]] = {c: [None] * n_rows for c in cols}
        for (c, row), v in zip(present, values, strict=True):
            out[c][row] = _signed(v)
        return [out[c] for c in cols]

    def read_table(self, config: TableConfig, n_rows: int | None = None) -> TableState:
        """A table's rows as the card holds them, in row order, with its key index.

        `n_rows`: its row count when already read.
        """
        n = self.doe_read(addr(REGION_COUNT, config.id)) if n_rows is None else n_rows
        if n > self.params.rows:
            raise CardError(
                f"table {config.name}: the card reports {n} rows, it has room for {self.params.rows}"
            )
        cols = self._read_columns(config, range(len(config.columns)), n)
        words = [np.array([0 if v is None else v for v in col], np.int64) for col in cols]
        nulls = [np.array([v is None for v in col], np.bool_) for col in cols]
        index: dict[Key, int] = {}
        if config.key:
            for row in range(n):
                key = tuple(cols[c][row] for c in config.key)
                if None not in key:
                    index.setdefault(key, row)
            self._keys[config.id] = set(index)
        return TableState(n, words, nulls, index)

    def snapshot(self, image: Image) -> Snapshot:
        """Every table read back from the card, with the state hash the software engine computes."""
        self.check_faults()
        state = EngineState(image)
        counts = self.doe_read_many([addr(REGION_COUNT, t.id) for t in image.tables])
        tables = tuple(self.read_table(t, n) for t, n in zip(image.tables, counts, strict=True))
        state.restore(Snapshot(tables, ""))
        return state.snapshot()
