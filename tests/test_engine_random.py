"""Differential test: the generated fast path against the reference interpreter on random programs.

Programs are random but well formed the way compiled images are: handles come only from LOOKUP,
ALLOC or SCAN of the same table, the NEW section writes nothing, WRITEs leave key columns alone.
Values are drawn from a small domain so that keys collide and lookups hit.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from riskgw.doe.image import Bundle, Image, PhysColumn, RuleInfo, ScanSpec, TableConfig
from riskgw.doe.isa import (
    ALU_OPS,
    INT64_MAX,
    INT64_MIN,
    N_EVENT_REGS,
    REG_CONST_BASE,
    UNARY_OPS,
    ColType,
    Event,
    Insn,
    Op,
    ScanMode,
)
from riskgw.engine.engine import Backend, DuplicateKeyError, Engine
from riskgw.engine.state import Snapshot


def _cols(n: int) -> tuple[PhysColumn, ...]:
    return tuple(PhysColumn(f"c{i}", i, 0, ColType.INT64, True) for i in range(n))


TABLES = [
    TableConfig(0, "one_key", _cols(3), (0,)),
    TableConfig(1, "two_keys", _cols(4), (0, 1)),
    TableConfig(2, "no_key", _cols(3), ()),
]
VALUE_REGS = list(range(200, 212))
HANDLE_REGS = {t.id: [300 + 10 * t.id + i for i in range(3)] for t in TABLES}
SMALL = st.sampled_from([None, 0, 1, 2, 3, -1, INT64_MAX, INT64_MIN])
N_RULES = 4


@st.composite
def images(draw: st.DrawFn) -> Image:
    consts = [None, 0, 1, *draw(st.lists(SMALL, min_size=1, max_size=4))]
    const_regs = [REG_CONST_BASE + i for i in range(len(consts))]
    readable = [*range(N_EVENT_REGS), *const_regs, *VALUE_REGS]
    scans = [
        ScanSpec(0, 2, draw(st.sampled_from(ScanMode)), (0,), draw(st.sampled_from([1, 2]))),
        ScanSpec(1, 1, draw(st.sampled_from(ScanMode)), (0,), draw(st.sampled_from([2, 3]))),
    ]
    val = st.sampled_from(readable)

    def insn(event: Event) -> Insn:
        kinds = ["alu", "alu", "alu", "lookup", "read", "scan"]
        if event is Event.NEW:
            kinds.append("rule")
        else:
            kinds += ["write", "write", "alloc"]
        kind = draw(st.sampled_from(kinds))
        if kind == "alu":
            op = draw(st.sampled_from(sorted(ALU_OPS)))
            n = 1 if op in UNARY_OPS else 3 if op is Op.SEL else 2
            return Insn(op, draw(st.sampled_from(VALUE_REGS)), tuple(draw(val) for _ in range(n)))
        if kind == "rule":
            return Insn(Op.RULE, 0, (draw(val), draw(val)), imm=draw(st.integers(0, N_RULES - 1)))
        if kind == "scan":
            spec = draw(st.sampled_from(scans))
            return Insn(Op.SCAN, draw(st.sampled_from(HANDLE_REGS[spec.table])), (draw(val),), table=spec.id)
        t = draw(st.sampled_from(TABLES if kind in ("read", "write", "alloc") else TABLES[:2]))
        handle = st.sampled_from(HANDLE_REGS[t.id])
        if kind == "lookup":
            return Insn(Op.LOOKUP, draw(handle), tuple(draw(val) for _ in t.key), table=t.id)
        if kind == "alloc":
            return Insn(Op.ALLOC, draw(handle), tuple(draw(val) for _ in t.key), pred=draw(val), table=t.id)
        if kind == "read":
            col = draw(st.integers(0, len(t.columns) - 1))
            return Insn(Op.READ, draw(st.sampled_from(VALUE_REGS)), (draw(handle),), table=t.id, imm=col)
        col = draw(st.sampled_from([c for c in range(len(t.columns)) if c not in t.key]))
        return Insn(Op.WRITE, 0, (draw(handle), draw(val)), pred=draw(val), table=t.id, imm=col)

    code: dict[tuple[Event, int], list[Bundle]] = {}
    for event in (Event.NEW, Event.ACCEPT, Event.FILL, Event.CANCEL):
        n_bundles = draw(st.integers(0, 8))
        code[(event, 0)] = [
            tuple(insn(event) for _ in range(draw(st.integers(1, 4)))) for _ in range(n_bundles)
        ]
    # LOAD for one_key: the row's words are in registers 0..2
    code[(Event.LOAD, 0)] = [
        (Insn(Op.ALLOC, 300, (0,), table=0),),
        (Insn(Op.WRITE, 0, (300, 1), table=0, imm=1), Insn(Op.WRITE, 0, (300, 2), table=0, imm=2)),
    ]
    rules = [RuleInfo(i, f"R{i}", 0, i + 1, 1) for i in reversed(range(N_RULES))]
    img = Image(list(TABLES), consts, rules, scans, [], code, 4, 400)
    return Image.decode(img.encode())


EVENTS = st.lists(
    st.tuples(
        st.sampled_from([Event.NEW, Event.NEW, Event.FILL, Event.CANCEL]),
        st.tuples(*(SMALL for _ in range(N_EVENT_REGS))),
    ),
    max_size=30,
)
ROWS = st.lists(st.tuples(SMALL, SMALL, SMALL), max_size=6)


def run_against_interpreter(
    img: Image,
    rows: list[tuple[int | None, ...]],
    events: list[tuple[Event, tuple[int | None, ...]]],
    snap_at: int,
    backend: Backend,
) -> tuple[Engine, Engine, tuple[Snapshot, Snapshot] | None]:
    """Load the rows and run the events on the interpreter and on `backend`, checking after each step.

    Returns both engines and, when the session reached `snap_at`, their snapshots taken there.
    """
    ref, other = Engine(img, "interp"), Engine(img, backend)
    for row in rows:
        outcomes = []
        for engine in (ref, other):
            try:
                engine.load_row(0, row)
                outcomes.append("loaded")
            except DuplicateKeyError:
                outcomes.append("duplicate")
        assert outcomes[0] == outcomes[1]
    assert ref.state_hash() == other.state_hash()
    snaps = None
    for i, (event, inputs) in enumerate(events):
        if i == snap_at:
            snaps = ref.snapshot(), other.snapshot()
            assert snaps[0].hash == snaps[1].hash
        assert ref.process(event, inputs) == other.process(event, inputs), f"event {i}"
        assert ref.state_hash() == other.state_hash(), f"after event {i}"
    for t in TABLES:
        assert ref.state.table(t.id).rows() == other.state.table(t.id).rows()
        assert ref.state.table(t.id).index == other.state.table(t.id).index
    return ref, other, snaps


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(images(), ROWS, EVENTS, st.integers(0, 30))
def test_fast_path_matches_interpreter(
    img: Image,
    rows: list[tuple[int | None, ...]],
    events: list[tuple[Event, tuple[int | None, ...]]],
    snap_at: int,
) -> None:
    ref, fast, snaps = run_against_interpreter(img, rows, events, snap_at, "fast")
    for t in TABLES:
        columns = [list(c) for c in zip(*fast.state.table(t.id).rows(), strict=True)]
        assert fast.state.table(t.id).mirror == (columns or [[] for _ in t.columns])
    if snaps is not None:
        # replaying the tail after a restore gives the same decisions again
        ref.restore(snaps[0])
        fast.restore(snaps[1])
        for event, inputs in events[snap_at:]:
            assert ref.process(event, inputs) == fast.process(event, inputs)
        assert ref.state_hash() == fast.state_hash()
