"""CardRegs against a register-file model of the card (the map of riskgw/card/regmap.py, the DOE
window modelled as a store of cells): the ID and chain checks, the words a program load and a row
load put through the window, the host-side duplicate check, and a read-back whose hash must equal
the software engine's for the same rows. The model is no DOE: it runs nothing, so whether the
card computes the right tables is tested against the simulated card (tests/test_sim_card.py)."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence
from pathlib import Path

import pytest

from riskgw.card.doeport import REGION_COUNT, DoeParams, addr, cell_addr, image_writes
from riskgw.card.driver import CardError
from riskgw.card.regmap import (
    BLOCKS,
    CARD_MAGIC,
    CONTROL_BLOCK,
    COUNTERS_BLOCK,
    DOE_BLOCK,
    ID_BLOCK,
    ROW_WORDS,
    TS_BLOCK,
    TS_RING,
    Control,
    Counter,
    DoeCmd,
    Status,
)
from riskgw.card.regs import CardRegs
from riskgw.doe.compiler import compile_files
from riskgw.doe.image import Image
from riskgw.doe.isa import ABI_VERSION, Event
from riskgw.engine.engine import DuplicateKeyError, Engine, event_inputs

REPO = Path(__file__).resolve().parents[1]
PARAMS = DoeParams(rows=256)
GIT = "0123456789abcdef0123456789abcdef01234567"
M32 = 0xFFFFFFFF


class CardModel:
    """The card's registers as a dict, with the DOE window's commands acted out on a cell store."""

    def __init__(self, p: DoeParams = PARAMS) -> None:
        self.p = p
        self.regs: dict[int, int] = {}
        for i, b in enumerate(BLOCKS):
            self.regs[b.base] = int(b.type) << 16 | b.version
            self.regs[b.base + 4] = BLOCKS[i + 1].base if i + 1 < len(BLOCKS) else 0
        ident = {
            "MAGIC": CARD_MAGIC,
            "ABI_VERSION": ABI_VERSION,
            "DATA_W": 64,
            "LANES": p.lanes,
            "TABLES": p.tables,
            "COLS": p.cols,
            "ROWS_LOG2": (p.rows - 1).bit_length(),
            "RULES": p.rules,
            "REGS": p.regs,
            "PROG_ROWS": p.prog_rows,
            "CLOCK_MHZ": 250,
            "KEY_WORDS": p.key_words,
            "WAYS": p.ways,
            "SCANS": p.scans,
            "IN_WORDS": p.in_words,
        }
        for name, v in ident.items():
            self.regs[ID_BLOCK.addr(name)] = v
        for i in range(5):
            self.regs[ID_BLOCK.addr("GIT_HASH", i)] = int(GIT[8 * i : 8 * i + 8], 16)
        self.busy_reads = 0
        self.cmd_done = 0
        self.port_writes: list[tuple[int, int]] = []
        self.loaded_rows: list[tuple[int, list[int | None]]] = []
        self.cells: dict[int, int] = {}
        self.resets = 0
        self.round_trips = 0

    def _do(self, a: int, v: int) -> None:
        d = DOE_BLOCK
        if a == CONTROL_BLOCK.addr("CONTROL") and v & Control.RESET:
            self.resets += 1
            self.busy_reads = 2
            self.cmd_done = 0
            self.port_writes.clear()
            self.loaded_rows.clear()
        elif a == CONTROL_BLOCK.addr("STATUS"):
            self.regs[a] = self.regs.get(a, 0) & ~v
        elif a == d.addr("CMD"):
            self.cmd_done += 1
            doe_addr = self.regs.get(d.addr("ADDR"), 0)
            if v == DoeCmd.WRITE:
                data = self.regs.get(d.addr("DATA", 1), 0) << 32 | self.regs.get(d.addr("DATA", 0), 0)
                self.port_writes.append((doe_addr, data))
            elif v == DoeCmd.READ:
                value = self.cells.get(doe_addr, 0)
                self.regs[d.addr("RDATA", 0)] = value & M32
                self.regs[d.addr("RDATA", 1)] = value >> 32
            elif v == DoeCmd.LOAD_ROW:
                nulls = self.regs.get(d.addr("ROW_NULLS"), 0)
                words: list[int | None] = []
                for i in range(ROW_WORDS):
                    w = self.regs.get(d.addr("ROW_WORDS", 2 * i + 1), 0) << 32
                    w |= self.regs.get(d.addr("ROW_WORDS", 2 * i), 0)
                    words.append(None if nulls >> i & 1 else w - (1 << 64) * (w >> 63))
                self.loaded_rows.append((self.regs.get(d.addr("ROW_TABLE"), 0), words))
        else:
            self.regs[a] = v & M32

    def read32(self, a: int) -> int:
        return self.read_many([a])[0]

    def write32(self, a: int, v: int) -> None:
        self.write_many([(a, v)])

    def write_many(self, writes: Sequence[tuple[int, int]]) -> None:
        self.round_trips += 1
        for a, v in writes:
            self._do(a, v)

    def read_many(self, addrs: Sequence[int]) -> list[int]:
        self.round_trips += 1
        out = []
        for a in addrs:
            if a == CONTROL_BLOCK.addr("STATUS"):
                busy = Status.DOE_BUSY if self.busy_reads else 0
                self.busy_reads = max(0, self.busy_reads - 1)
                out.append(self.regs.get(a, 0) | busy)
            elif a == DOE_BLOCK.addr("CMD_DONE"):
                out.append(self.cmd_done & M32)
            else:
                out.append(self.regs.get(a, 0))
        return out

    def hold(self, engine: Engine) -> None:
        """Hold the engine's tables as cells, as the DOE would after running the same events."""
        for t in engine.image.tables:
            rows = engine.state.table(t.id).rows()
            self.cells[addr(REGION_COUNT, t.id)] = len(rows)
            for r, row in enumerate(rows):
                for c, v in enumerate(row):
                    self.cells[cell_addr(self.p, t.id, c, r, True)] = int(v is None)
                    # a NULL cell's value half holds whatever was there: it must not reach the hash
                    self.cells[cell_addr(self.p, t.id, c, r, False)] = (
                        0x5A5A if v is None else v & (2**64 - 1)
                    )


class MixedCardModel(CardModel):
    """The model with the optional `access_many`; every third READ is still running when it is
    followed by its CMD_DONE and RDATA reads (they see the count before it and stale data)."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0
        self.late = 0

    def access_many(self, ops: Sequence[tuple[int, int | None]]) -> list[int]:
        self.round_trips += 1
        out: list[int] = []
        late = False
        for a, v in ops:
            if v is None:
                value = self.read_many([a])[0]
                self.round_trips -= 1
                if late and a == DOE_BLOCK.addr("CMD_DONE"):
                    value = (value - 1) & M32
                elif late and a in (DOE_BLOCK.addr("RDATA", 0), DOE_BLOCK.addr("RDATA", 1)):
                    value = 0xDEAD
                out.append(value)
            else:
                if a == DOE_BLOCK.addr("CMD") and v == DoeCmd.READ:
                    self.reads += 1
                    late = self.reads % 3 == 0
                    self.late += late
                self.write_many([(a, v)])
                self.round_trips -= 1
        return out


class PollingCardModel(CardModel):
    """The model with `access_many` and polls, as the simulated card's bus has them: a READ's
    CMD_DONE is polled for inside the call, so no cell needs a round trip of its own."""

    polls = True

    def __init__(self) -> None:
        super().__init__()
        self.polled = 0

    def access_many(self, ops: Sequence[tuple[int, int | None] | tuple[int, None, int]]) -> list[int]:
        out: list[int] = []
        for op in ops:
            if op[1] is None:
                value = self.read_many([op[0]])[0]
                if len(op) == 3:
                    assert value == op[2], "the model completes a command at once"
                    self.polled += 1
                out.append(value)
            else:
                self.write_many([(op[0], op[1])])
        self.round_trips -= len(ops) - 1
        return out


@pytest.fixture(scope="module")
def image() -> Image:
    return compile_files(sorted((REPO / "rules").glob("*.sql"))).image


def attached(model: CardModel) -> CardRegs:
    regs = CardRegs(model, PARAMS)
    regs.attach()
    return regs


def test_identify_reads_the_id_block() -> None:
    ident = attached(CardModel()).ident
    assert ident is not None
    assert ident.git_hash == GIT and ident.abi_version == ABI_VERSION
    assert (ident.lanes, ident.tables, ident.cols, ident.rows_log2) == (8, 8, 16, 8)
    assert (ident.data_w, ident.rules, ident.regs, ident.clock_mhz) == (64, 64, 256, 250)
    assert (ident.key_words, ident.ways, ident.scans, ident.in_words) == (6, 4, 16, 16)


@pytest.mark.parametrize(
    ("poke", "message"),
    [
        ({ID_BLOCK.addr("MAGIC"): 0xDEADBEEF}, "no riskgw card: ID magic 0xdeadbeef"),
        ({ID_BLOCK.addr("ABI_VERSION"): ABI_VERSION + 1}, f"ABI version {ABI_VERSION + 1}, this riskgw"),
        ({COUNTERS_BLOCK.base: 0x0042_0001}, "unknown register block type 0x0042 at 0x0200"),
        ({DOE_BLOCK.base: int(DOE_BLOCK.type) << 16 | 2}, "block DOE is version 2, this driver knows 1"),
        (
            {COUNTERS_BLOCK.base: int(CONTROL_BLOCK.type) << 16 | 1},
            "block CONTROL at 0x0200, expected 0x0100",
        ),
        ({DOE_BLOCK.base + 4: 0}, "the card has no TIMESTAMPS register block"),
        ({TS_BLOCK.base + 4: TS_BLOCK.base}, "register block TIMESTAMPS appears twice"),
        ({ID_BLOCK.addr("LANES"): 4}, r"not the expected build: lanes 4 \(expected 8\)"),
        ({ID_BLOCK.addr("ROWS_LOG2"): 10}, r"rows_log2 10 \(expected 8\)"),
    ],
)
def test_a_card_it_does_not_know_is_refused(poke: dict[int, int], message: str) -> None:
    model = CardModel()
    model.regs.update(poke)
    with pytest.raises(CardError, match=message):
        CardRegs(model, PARAMS).attach()


@pytest.mark.parametrize("name", [f.name for f in dataclasses.fields(DoeParams)])
def test_every_doe_parameter_is_checked_against_the_id(name: str) -> None:
    built = dataclasses.replace(PARAMS, **{name: 2 * getattr(PARAMS, name)})
    shown, card, want = name, getattr(built, name), getattr(PARAMS, name)
    if name == "rows":  # the ID shows ROWS as its log2
        shown, card, want = "rows_log2", 9, 8
    with pytest.raises(CardError) as info:
        CardRegs(CardModel(built), PARAMS).attach()
    assert str(info.value) == f"the card's DOE is not the expected build: {shown} {card} (expected {want})"


def test_git_hash_is_checked_when_given() -> None:
    CardRegs(CardModel(), PARAMS).attach(GIT.upper())
    with pytest.raises(CardError, match=f"built from commit {GIT}, expected 1234"):
        CardRegs(CardModel(), PARAMS).attach("1234")


def test_program_load_resets_then_writes_the_load_port(image: Image) -> None:
    model = CardModel()
    regs = attached(model)
    regs.load_image(image)
    assert model.resets == 1
    assert model.port_writes == image_writes(image, PARAMS)
    assert model.round_trips < 40, "a program load is batched, not a round trip per register"


def test_a_program_that_does_not_fit_is_a_card_error(image: Image) -> None:
    regs = CardRegs(CardModel(DoeParams(rows=256, rules=2)), DoeParams(rows=256, rules=2))
    regs.attach()
    with pytest.raises(CardError, match="does not fit the card"):
        regs.load_image(image)


def test_rows_go_through_load_row_and_duplicates_stop_on_the_host(image: Image) -> None:
    model = CardModel()
    regs = attached(model)
    regs.load_image(image)
    acct = image.table("account_info")
    width = len(acct.columns)
    row1: list[int | None] = [1, -5, None] + [None] * (width - 3)
    row2: list[int | None] = [2, 1 << 40, 7] + [None] * (width - 3)
    assert regs.load_rows(acct, [row1, row2]) == 2
    dup = [1] + [0] * (width - 1)
    with pytest.raises(DuplicateKeyError) as exc:
        regs.load_rows(acct, [[3] + [0] * (width - 1), dup, [4] + [0] * (width - 1)])
    assert exc.value.key == (1,)
    # the rows before the duplicate went in, the duplicate and the rows after it did not
    assert [(t, w[:width]) for t, w in model.loaded_rows] == [
        (acct.id, row1),
        (acct.id, row2),
        (acct.id, [3] + [0] * (width - 1)),
    ]
    assert all(w[width:] == [None] * (ROW_WORDS - width) for _, w in model.loaded_rows)


def test_after_events_the_keys_are_read_back_from_the_card(image: Image) -> None:
    model = CardModel()
    regs = attached(model)
    regs.load_image(image)
    engine = Engine(image, "interp")
    acct = image.table("account_info")
    engine.load_row(acct.id, [9] + [None] * (len(acct.columns) - 1))
    model.hold(engine)  # as if events had inserted account 9 on the card
    regs.forget_keys()
    with pytest.raises(DuplicateKeyError):
        regs.load_rows(acct, [[9] + [0] * (len(acct.columns) - 1)])
    assert regs.load_rows(acct, [[10] + [0] * (len(acct.columns) - 1)]) == 1


@pytest.mark.parametrize("model_type", [CardModel, MixedCardModel, PollingCardModel])
def test_read_back_has_the_software_engines_hash(image: Image, model_type: type[CardModel]) -> None:
    engine = Engine(image, "interp")
    rng = random.Random(4)
    for t in image.tables:
        if t.hidden:
            continue
        for i in range(5):
            words = [rng.choice([None, -(2**63), -1, 2**63 - 1, rng.randint(-9, 9)]) for _ in t.columns]
            for c in t.key:
                words[c] = 100 + i
            engine.load_row(t.id, words)
    for i in range(40):
        fields: dict[str, int | str | None] = {
            "order_id": i,
            "account_id": 100 + i % 5,
            "ticket_id": "600000",
            "direction": i % 2,
            "price": 10 + i,
            "quantity": 1 + i,
            "ts": i,
        }
        engine.process(Event.NEW, event_inputs(fields))
    model = model_type()
    regs = attached(model)
    model.hold(engine)
    snap = regs.snapshot(image)
    if isinstance(model, MixedCardModel):
        # a few round trips per table, and two for each late READ read again on its own
        trips = 2 * model.late + 4 * len(image.tables) + 5
        assert model.reads > 100 and model.round_trips < trips, "cell reads are batched"
    if isinstance(model, PollingCardModel):
        assert model.polled > 100 and model.round_trips < 4 * len(image.tables) + 5
    assert snap.hash == engine.state_hash()
    for got, want in zip(snap.tables, engine.snapshot().tables, strict=True):
        assert got.n_rows == want.n_rows and got.index == want.index


def test_status_faults_counters_and_timestamps() -> None:
    model = CardModel()
    regs = attached(model)
    regs.check_faults()
    model.regs[CONTROL_BLOCK.addr("STATUS")] = int(Status.INDEX_FULL)
    with pytest.raises(CardError, match="hash bucket"):
        regs.check_faults()
    model.regs[CONTROL_BLOCK.addr("STATUS")] = int(Status.TABLE_FULL | Status.RX_ENABLED)
    with pytest.raises(CardError, match="table was full"):
        regs.check_faults()
    regs.clear_status(Status.TABLE_FULL)
    assert regs.status() == Status.RX_ENABLED
    model.regs[COUNTERS_BLOCK.addr("FLOW", 2 * Counter.ACCEPTED)] = 5
    model.regs[COUNTERS_BLOCK.addr("FLOW", 2 * Counter.ACCEPTED + 1)] = 1
    assert regs.counters()[Counter.ACCEPTED] == 1 << 32 | 5
    model.regs[COUNTERS_BLOCK.addr("RULE", 2)] = 3
    assert regs.rule_counters(2) == [0, 3]
    model.regs[TS_BLOCK.addr("WRITTEN")] = TS_RING + 2
    for i, v in enumerate((7, 1, 100, 130)):
        model.regs[TS_BLOCK.addr("RING", 4 * 1 + i)] = v
    stamps = regs.timestamps()
    assert len(stamps) == TS_RING
    assert stamps[-1].seq == 7 and stamps[-1].session == 1 and stamps[-1].latency == 30
