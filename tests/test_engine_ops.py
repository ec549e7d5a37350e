"""The software engine on hand-built images: every opcode, NULLs, bundles, tables, snapshots.

Every test runs on both executors (the reference interpreter and the generated fast path).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import pytest

from riskgw.doe.image import Bundle, Image, PhysColumn, RuleInfo, ScanSpec, TableConfig
from riskgw.doe.isa import (
    ALU_OPS,
    INT32_MAX,
    INT64_MAX,
    INT64_MIN,
    REG_CONST_BASE,
    REG_NULL,
    REG_TRUE,
    UNARY_OPS,
    ColType,
    Event,
    EventField,
    Insn,
    Op,
    ScanMode,
)
from riskgw.doe.values import encode_char
from riskgw.engine import alu
from riskgw.engine.engine import Backend, Decision, DuplicateKeyError, Engine, event_inputs
from riskgw.engine.table import EngineError

BACKENDS: tuple[Backend, ...] = ("interp", "fast", "native")
NEW = Event.NEW
T = 1000  # first temporary register used by these images (above every constant)
ORDER_ID, PRICE, QTY, XPRICE = (
    EventField.ORDER_ID,
    EventField.PRICE,
    EventField.QUANTITY,
    EventField.EXEC_PRICE,
)
VALUES = (None, 0, 1, -1, 2, 7, -7, INT32_MAX + 1, INT64_MAX, INT64_MIN, INT64_MIN + 1)


def col(name: str, logical: int, type_: ColType = ColType.INT64, nullable: bool = True) -> PhysColumn:
    return PhysColumn(name, logical, 0, type_, nullable)


# out(k INT8 key, v INT8): where tests put the values they observe, one row per event.
OUT = TableConfig(0, "out", (col("k", 0, nullable=False), col("v", 1)), (0,))


def image(
    code: dict[tuple[Event, int], list[tuple[Insn, ...]]],
    tables: Sequence[TableConfig] = (OUT,),
    consts: Sequence[int | None] = (),
    rules: Sequence[RuleInfo] = (),
    scans: Sequence[ScanSpec] = (),
) -> Image:
    img = Image(list(tables), [None, 0, 1, *consts], list(rules), list(scans), [], code, 8, 1100)
    return Image.decode(img.encode())  # what the engine runs is what the encoding carries


def const(i: int) -> int:
    """Register of the i-th constant after the three fixed ones."""
    return REG_CONST_BASE + 3 + i


def emit_out(key: int, value: int, tmp: int = T + 50) -> list[tuple[Insn, ...]]:
    """Bundles that append (key, value) to `out`."""
    return [
        (Insn(Op.ALLOC, tmp, (key,), table=0),),
        (Insn(Op.WRITE, 0, (tmp, value), table=0, imm=1),),
    ]


def ev(**fields: int | str | None) -> tuple[int | None, ...]:
    return event_inputs(fields)


def out_rows(engine: Engine) -> dict[int, int | None]:
    rows = engine.state.table(0).rows()
    return {k: v for k, v in rows if k is not None}


def engines(img: Image) -> list[Engine]:
    return [Engine(img, b) for b in BACKENDS]


# ----------------------------------------------------------------------------- ALU


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("op", sorted(ALU_OPS), ids=lambda op: op.name)
def test_alu_op_on_event_values(backend: Backend, op: Op) -> None:
    n_src = 1 if op in UNARY_OPS else 3 if op is Op.SEL else 2
    srcs = (PRICE, QTY, XPRICE)[:n_src]
    img = image({(Event.ACCEPT, 0): [(Insn(op, T, srcs),), *emit_out(ORDER_ID, T)]})
    engine = Engine(img, backend)
    expected = {}
    for i, operands in enumerate(itertools.product(VALUES, repeat=n_src)):
        fields = dict(zip(("price", "quantity", "exec_price"), operands, strict=False))
        assert engine.process(Event.NEW, ev(order_id=i, **fields)) == Decision(True)
        expected[i] = alu.evaluate(op, *operands)
    assert out_rows(engine) == expected


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("op", sorted(ALU_OPS), ids=lambda op: op.name)
def test_alu_op_on_constants(backend: Backend, op: Op) -> None:
    # Constant operands: the fast path folds these at generation time, so this checks the folding.
    n_src = 1 if op in UNARY_OPS else 3 if op is Op.SEL else 2
    values = (None, 0, 1, -1, 7, -7, INT64_MAX, INT64_MIN)
    consts = list(values)
    combos = list(itertools.product(range(len(values)), repeat=n_src))
    consts += list(range(len(combos)))  # the out keys
    bundles: list[tuple[Insn, ...]] = []
    for i, combo in enumerate(combos):
        bundles.append((Insn(op, T, tuple(const(j) for j in combo)),))
        bundles += emit_out(const(len(values) + i), T)
    engine = Engine(image({(Event.ACCEPT, 0): bundles}, consts=consts), backend)
    engine.process(Event.NEW, ev())
    expected = {i: alu.evaluate(op, *(values[j] for j in combo)) for i, combo in enumerate(combos)}
    assert out_rows(engine) == expected


# ----------------------------------------------------------------------------- bundles


@pytest.mark.parametrize("backend", BACKENDS)
def test_bundle_reads_registers_from_before_the_bundle(backend: Backend) -> None:
    a, b = T, T + 1
    code = {
        (Event.ACCEPT, 0): [
            (Insn(Op.MOV, a, (PRICE,)), Insn(Op.MOV, b, (QTY,))),
            (Insn(Op.MOV, a, (b,)), Insn(Op.MOV, b, (a,)), Insn(Op.ADD, T + 2, (a, b))),  # a swap
            (Insn(Op.SUB, T + 3, (a, b)), Insn(Op.ADD, T + 4, (ORDER_ID, REG_TRUE))),
            *emit_out(ORDER_ID, T + 3),
            *emit_out(T + 4, T + 2, tmp=T + 51),
        ]
    }
    engine = Engine(image(code), backend)
    engine.process(Event.NEW, ev(order_id=10, price=5, quantity=2))
    assert out_rows(engine) == {10: 2 - 5, 11: 7}


@pytest.mark.parametrize("backend", BACKENDS)
def test_bundle_table_writes_take_effect_at_its_end(backend: Backend) -> None:
    h = T
    code = {
        (Event.ACCEPT, 0): [
            (Insn(Op.LOOKUP, h, (ORDER_ID,), table=0),),
            # the READ sees the cell before the WRITE of the same bundle
            (Insn(Op.WRITE, 0, (h, PRICE), table=0, imm=1), Insn(Op.READ, T + 1, (h,), table=0, imm=1)),
            (Insn(Op.ADD, T + 2, (ORDER_ID, REG_TRUE)), Insn(Op.READ, T + 3, (h,), table=0, imm=1)),
            # an ALLOC's row cannot be looked up in its own bundle
            (Insn(Op.ALLOC, T + 4, (T + 2,), table=0), Insn(Op.LOOKUP, T + 5, (T + 2,), table=0)),
            (Insn(Op.ISNULL, T + 6, (T + 5,)), Insn(Op.LOOKUP, T + 7, (T + 2,), table=0)),
            (Insn(Op.WRITE, 0, (T + 4, T + 1), table=0, imm=1),),
            (Insn(Op.ADD, T + 8, (T + 2, REG_TRUE)), Insn(Op.SUB, T + 9, (T + 7, T + 4))),
            *emit_out(T + 8, T + 6),
            (Insn(Op.ADD, T + 10, (T + 8, REG_TRUE)),),
            *emit_out(T + 10, T + 9, tmp=T + 51),
        ]
    }
    tables = (OUT,)
    engine = Engine(image(code, tables), backend)
    engine.state.table(0).alloc((100,))
    engine.state.table(0).write(1, 0, 42)
    engine.process(Event.NEW, ev(order_id=100, price=7))
    # row 100 now holds 7; row 101 got the value READ before the write (42); LOOKUP in the
    # ALLOC's bundle found nothing (ISNULL = 1); the next LOOKUP found the row ALLOC returned.
    assert out_rows(engine) == {100: 7, 101: 42, 102: 1, 103: 0}


# ----------------------------------------------------------------------------- tables

KV = TableConfig(
    1,
    "kv",
    (col("a", 0, ColType.INT32, False), PhysColumn("b", 1, 0, ColType.CHAR, True, 8)),
    (0,),
)
PAIR = TableConfig(
    1,
    "pair",
    (col("a", 0, ColType.INT32), col("b", 1), col("x", 2)),
    (0, 1),
)


def test_lookup_alloc_with_null_and_existing_keys() -> None:
    h1, h2 = T, T + 1
    code = {
        (Event.ACCEPT, 0): [
            (Insn(Op.ALLOC, h1, (PRICE, QTY), table=1),),
            (Insn(Op.WRITE, 0, (h1, XPRICE), table=1, imm=2), Insn(Op.ISNULL, T + 2, (h1,))),
            (Insn(Op.LOOKUP, h2, (PRICE, QTY), table=1),),
            (Insn(Op.READ, T + 3, (h2,), table=1, imm=2),),
            (Insn(Op.MUL, T + 4, (T + 2, REG_TRUE)),),
            *emit_out(ORDER_ID, T + 3),
        ]
    }
    for engine in engines(image(code, (OUT, PAIR))):
        engine.process(Event.NEW, ev(order_id=1, price=1, quantity=2, exec_price=10))
        # the same key again: ALLOC does nothing (dst NULL, so its WRITE is skipped); LOOKUP finds row 0
        engine.process(NEW, ev(order_id=2, price=1, quantity=2, exec_price=20))
        # a NULL key word: the row is stored but not indexed, so LOOKUP gives NULL
        engine.process(NEW, ev(order_id=3, price=1, quantity=None, exec_price=30))
        engine.process(NEW, ev(order_id=4, price=1, quantity=None, exec_price=40))
        assert out_rows(engine) == {1: 10, 2: 10, 3: None, 4: None}
        assert engine.state.table(1).rows() == [(1, 2, 10), (1, None, 30), (1, None, 40)]
        assert engine.state.table(1).index == {(1, 2): 0}


@pytest.mark.parametrize("backend", BACKENDS)
def test_write_needs_true_predicate_and_a_handle(backend: Backend) -> None:
    h = T
    code = {
        (Event.ACCEPT, 0): [
            (Insn(Op.LOOKUP, h, (PRICE, QTY), table=1),),
            (Insn(Op.WRITE, 0, (h, ORDER_ID), pred=XPRICE, table=1, imm=2),),
            (Insn(Op.READ, T + 1, (REG_NULL,), table=1, imm=2),),
            *emit_out(ORDER_ID, T + 1),
        ]
    }
    engine = Engine(image(code, (OUT, PAIR)), backend)
    engine.state.table(1).alloc((1, 1))
    engine.process(NEW, ev(order_id=5, price=1, quantity=1, exec_price=1))
    engine.process(Event.NEW, ev(order_id=6, price=1, quantity=1, exec_price=0))  # FALSE predicate
    engine.process(Event.NEW, ev(order_id=7, price=1, quantity=1, exec_price=None))  # NULL predicate
    engine.process(Event.NEW, ev(order_id=8, price=2, quantity=1, exec_price=1))  # no row: NULL handle
    assert engine.state.table(1).rows() == [(1, 1, 5)]
    assert out_rows(engine) == {5: None, 6: None, 7: None, 8: None}


@pytest.mark.parametrize("backend", BACKENDS)
def test_tables_grow_and_keep_row_order(backend: Backend) -> None:
    engine = Engine(image({(Event.ACCEPT, 0): emit_out(ORDER_ID, PRICE)}), backend)
    for i in range(1000):
        engine.process(Event.NEW, ev(order_id=999 - i, price=i * i))
    rows = engine.state.table(0).rows()
    assert rows == [(999 - i, i * i) for i in range(1000)]
    assert engine.state.table(0).index[(0,)] == 999


# ----------------------------------------------------------------------------- SCAN

GROUP = TableConfig(1, "grp", (col("g", 0), col("o", 1), col("tag", 2)), ())


def scan_image(mode: ScanMode) -> Image:
    code = {
        (Event.ACCEPT, 0): [
            (Insn(Op.SCAN, T, (PRICE,), table=0),),
            (Insn(Op.READ, T + 1, (T,), table=1, imm=2),),
            *emit_out(ORDER_ID, T + 1),
        ]
    }
    return image(code, (OUT, GROUP), scans=[ScanSpec(0, 1, mode, (0,), 1)])


GROUP_ROWS = [  # g, o, tag (the tag identifies the row)
    (1, 5, 0),
    (1, None, 1),
    (1, 3, 2),
    (1, 9, 3),
    (1, 3, 4),  # ties row 2 for the least
    (1, 9, 5),  # ties row 3 for the greatest
    (1, None, 6),
    (2, None, 7),
    (2, None, 8),
    (None, 1, 9),  # NULL never matches
    (3, 4, 10),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        (ScanMode.MIN, {1: 2, 2: None, 3: 10, 4: None}),
        (ScanMode.MAX, {1: 3, 2: None, 3: 10, 4: None}),
        (ScanMode.FIRST_ASC, {1: 1, 2: 7, 3: 10, 4: None}),
        (ScanMode.FIRST_DESC, {1: 3, 2: 7, 3: 10, 4: None}),
    ],
    ids=lambda v: v.name if isinstance(v, ScanMode) else "",
)
def test_scan_modes(backend: Backend, mode: ScanMode, expected: dict[int, int | None]) -> None:
    engine = Engine(scan_image(mode), backend)
    grp = engine.state.table(1)
    for g, o, tag in GROUP_ROWS:
        row = grp.alloc(())
        assert row is not None
        for c, v in enumerate((g, o, tag)):
            grp.write(c, row, v)
    for g in (1, 2, 3, 4):
        engine.process(Event.NEW, ev(order_id=g, price=g))
    engine.process(NEW, ev(order_id=5, price=None))
    assert out_rows(engine) == {**expected, 5: None}


# ----------------------------------------------------------------------------- events and rules


def rules_image() -> Image:
    # Rules listed out of id order: decisions follow the rule table's order, not the ids.
    rules = [RuleInfo(2, "Second", 0, 1, 1), RuleInfo(0, "Zeroth", 0, 2, 1), RuleInfo(1, "First", 0, 3, 1)]
    code = {
        (Event.NEW, 0): [
            (Insn(Op.GT, T, (PRICE, REG_TRUE)), Insn(Op.GT, T + 1, (QTY, REG_TRUE))),
            (
                Insn(Op.RULE, 0, (REG_TRUE, T), imm=0),  # fails unless price > 1
                Insn(Op.RULE, 0, (XPRICE, T + 1), imm=2),  # guarded by exec_price
                Insn(Op.RULE, 0, (REG_TRUE, REG_TRUE), imm=1),  # never fails
            ),
        ],
        (Event.ACCEPT, 0): emit_out(ORDER_ID, PRICE),
        (Event.FILL, 0): emit_out(ORDER_ID, QTY),
    }
    return image(code, rules=rules)


@pytest.mark.parametrize("backend", BACKENDS)
def test_verdicts_list_failed_rules_in_rule_order_and_reject_changes_nothing(backend: Backend) -> None:
    engine = Engine(rules_image(), backend)
    assert engine.process(Event.NEW, ev(order_id=1, price=5, quantity=5, exec_price=1)) == Decision(True)
    assert engine.process(NEW, ev(order_id=2, price=1, quantity=0, exec_price=1)) == Decision(False, (2, 0))
    assert engine.process(NEW, ev(order_id=3, price=None, quantity=0, exec_price=0)) == Decision(False, (0,))
    assert engine.process(NEW, ev(order_id=4, price=5, quantity=None, exec_price=7)) == Decision(False, (2,))
    assert engine.process(NEW, ev(order_id=5, price=5, quantity=0, exec_price=None)) == Decision(True)
    assert engine.process(Event.FILL, ev(order_id=6, price=0, quantity=9)) == Decision(True)
    assert engine.process(Event.CANCEL, ev(order_id=7)) == Decision(True)  # no section: nothing happens
    assert out_rows(engine) == {1: 5, 5: 5, 6: 9}


@pytest.mark.parametrize("backend", BACKENDS)
def test_load_row_runs_the_load_section_and_refuses_duplicate_keys(backend: Backend) -> None:
    load: list[Bundle] = [(Insn(Op.ALLOC, T, (0,), table=1),), (Insn(Op.WRITE, 0, (T, 1), table=1, imm=1),)]
    engine = Engine(image({(Event.LOAD, 1): load}, (OUT, KV)), backend)
    engine.load_row(1, (7, *encode_char("abc", 8)))
    with pytest.raises(DuplicateKeyError):
        engine.load_row(1, (7, None))
    engine.load_row(1, (8, None))
    assert engine.state.table(1).rows() == [(7, encode_char("abc", 8)[0]), (8, None)]


# ----------------------------------------------------------------------------- snapshots


@pytest.mark.parametrize("backend", BACKENDS)
def test_snapshot_restore_and_hash(backend: Backend) -> None:
    img = rules_image()
    engine = Engine(img, backend)
    empty = engine.state_hash()
    engine.process(Event.NEW, ev(order_id=1, price=5, quantity=5))
    snap = engine.snapshot()
    assert snap.hash == engine.state_hash() != empty
    for i in range(2, 40):  # grows the table past its first capacity
        engine.process(Event.NEW, ev(order_id=i, price=5, quantity=5))
    assert engine.state_hash() != snap.hash
    engine.restore(snap)
    assert engine.state_hash() == snap.hash
    # after a restore the executor sees the restored rows: order 2 can be inserted again
    engine.process(NEW, ev(order_id=2, price=6, quantity=5))
    other = Engine(img, "interp")
    other.process(Event.NEW, ev(order_id=1, price=5, quantity=5))
    other.process(Event.NEW, ev(order_id=2, price=6, quantity=5))
    assert engine.state_hash() == other.state_hash()
    assert out_rows(engine) == {1: 5, 2: 6}


def test_hash_sees_null_bits_and_row_order() -> None:
    img = image({(Event.ACCEPT, 0): emit_out(ORDER_ID, PRICE)})
    hashes = set()
    for events in ([(1, 0), (2, 0)], [(1, None), (2, 0)], [(2, 0), (1, 0)]):
        engine = Engine(img, "interp")
        for oid, price in events:
            engine.process(Event.NEW, ev(order_id=oid, price=price))
        hashes.add(engine.state_hash())
    assert len(hashes) == 3


# ----------------------------------------------------------------------------- image checks


@pytest.mark.parametrize(
    "code",
    [
        {(Event.ACCEPT, 0): [(Insn(Op.WRITE, 0, (REG_NULL, REG_NULL), table=0, imm=0),)]},  # key column
        {(Event.NEW, 0): [(Insn(Op.ALLOC, T, (REG_TRUE,), table=0),)]},  # a check that writes
        {(Event.NEW, 0): [(Insn(Op.RULE, 0, (REG_TRUE, REG_TRUE), imm=5),)]},  # unknown rule
        {(Event.ACCEPT, 0): [(Insn(Op.READ, T, (REG_NULL,), table=9, imm=0),)]},  # unknown table
    ],
)
def test_engine_refuses_images_it_cannot_run_faithfully(
    code: dict[tuple[Event, int], list[tuple[Insn, ...]]],
) -> None:
    with pytest.raises(EngineError):
        Engine(image(code))


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_event_has_exactly_its_input_words(backend: Backend) -> None:
    engine = Engine(rules_image(), backend)
    with pytest.raises(ValueError):
        engine.process(NEW, (1, 2, 3))


@pytest.mark.parametrize("backend", BACKENDS)
def test_accept_sees_what_new_read_and_then_its_own_writes(backend: Backend) -> None:
    # The fast path reuses NEW's lookups in ACCEPT; a write must end that reuse.
    read = [(Insn(Op.LOOKUP, T, (ORDER_ID,), table=0),), (Insn(Op.READ, T + 1, (T,), table=0, imm=1),)]
    code: dict[tuple[Event, int], list[Bundle]] = {
        (Event.NEW, 0): [*read, (Insn(Op.RULE, 0, (REG_TRUE, T + 1), imm=0),)],
        (Event.ACCEPT, 0): [
            *read,
            (Insn(Op.ADD, T + 2, (T + 1, T + 1)),),
            (Insn(Op.WRITE, 0, (T, T + 2), table=0, imm=1),),
            *read,
            (Insn(Op.ADD, T + 3, (T + 1, REG_TRUE)),),
            (Insn(Op.WRITE, 0, (T, T + 3), table=0, imm=1),),
        ],
    }
    engine = Engine(image(code, rules=[RuleInfo(0, "NonZero", 0, 1, 1)]), backend)
    engine.state.table(0).alloc((1,))
    engine.state.table(0).write(1, 0, 5)
    assert engine.process(NEW, ev(order_id=1)) == Decision(True)
    assert out_rows(engine) == {1: 11}
    assert engine.process(NEW, ev(order_id=2)) == Decision(False, (0,))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("op", [Op.AND, Op.OR], ids=lambda op: op.name)
def test_logic_on_truth_values_known_and_unknown_to_be_null(backend: Backend, op: Op) -> None:
    # The fast path has shortcuts for operands that are 0/1/NULL, and for ones never NULL.
    makers = {
        "bool": Insn(Op.EQ, 0, (PRICE, QTY)),  # 0, 1 or NULL
        "nonnull_bool": Insn(Op.NOTNULL, 0, (PRICE,)),
        "value": Insn(Op.MOV, 0, (XPRICE,)),  # any value
    }
    kinds = list(makers)
    bundles: list[tuple[Insn, ...]] = []
    outputs = []
    for i, (ka, kb) in enumerate(itertools.product(kinds, repeat=2)):
        ra, rb, rr = T + 3 * i, T + 3 * i + 1, T + 3 * i + 2
        ma, mb = makers[ka], makers[kb]
        bundles.append((Insn(ma.op, ra, ma.srcs), Insn(mb.op, rb, mb.srcs)))
        bundles.append((Insn(op, rr, (ra, rb)), Insn(op, rr + 100, (rb, ra))))
        outputs.append((ka, kb, rr))
    bundles.append((Insn(Op.MUL, T + 99, (ORDER_ID, const(0))),))
    for j, (_, _, rr) in enumerate(outputs):
        bundles.append((Insn(Op.ADD, T + 98, (T + 99, const(1 + j))),))
        bundles += emit_out(T + 98, rr, tmp=T + 400 + 2 * j)
        bundles.append((Insn(Op.ADD, T + 97, (T + 98, const(1 + len(outputs)))),))
        bundles += emit_out(T + 97, rr + 100, tmp=T + 401 + 2 * j)
    engine = Engine(
        image({(Event.ACCEPT, 0): bundles}, consts=[1000, *range(1, 2 * len(outputs) + 2)]), backend
    )
    expected = {}
    vals = (None, 0, 1, 5)
    for n, (price, qty, xprice) in enumerate(itertools.product(vals, repeat=3), start=1):
        engine.process(NEW, ev(order_id=n, price=price, quantity=qty, exec_price=xprice))
        operand = {"bool": alu.eq(price, qty), "nonnull_bool": alu.notnull(price), "value": xprice}
        for j, (ka, kb, _) in enumerate(outputs):
            expected[n * 1000 + 1 + j] = alu.evaluate(op, operand[ka], operand[kb])
            expected[n * 1000 + 1 + j + 1 + len(outputs)] = alu.evaluate(op, operand[kb], operand[ka])
    assert out_rows(engine) == expected
