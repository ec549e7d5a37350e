"""The native executor (generated C) against the reference interpreter.

Random programs (the generators of test_engine_random), every rule set on the reference scenario's
session with the state hash compared after every event, snapshots, growth far past the initial
capacity, NULL-keyed rows, SCAN modes, the batch entry point, and a missing C compiler.
Libraries are built into a cache directory private to this module.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_engine_random import EVENTS, ROWS, images, run_against_interpreter
from test_engine_rules import RULE_SETS

from riskgw.doe.compiler import compile_files
from riskgw.doe.image import Bundle, Image, PhysColumn, ScanSpec, TableConfig
from riskgw.doe.isa import INT64_MAX, INT64_MIN, REG_CONST_BASE, REG_TRUE, ColType, Event, Insn, Op, ScanMode
from riskgw.engine.csvdata import EVENT_NAMES
from riskgw.engine.engine import Decision, DuplicateKeyError, Engine, event_inputs
from riskgw.engine.replay import load_data
from riskgw.engine.state import Snapshot
from riskgw.engine.table import EngineError, Value
from riskgw.scenario import EVENT_HEADER, DataSet, Row, Session

T = 1000  # first temporary register of the hand-built images


@pytest.fixture(scope="module", autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    old = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if old is None:
        del os.environ["XDG_CACHE_HOME"]
    else:
        os.environ["XDG_CACHE_HOME"] = old


def _same_state(ref: Engine, nat: Engine) -> None:
    assert ref.state_hash() == nat.state_hash()
    for t in ref.image.tables:
        assert ref.state.table(t.id).rows() == nat.state.table(t.id).rows()
        assert ref.state.table(t.id).index == nat.state.table(t.id).index


# ----------------------------------------------------------------------------- random programs


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(images(), ROWS, EVENTS, st.integers(0, 30))
def test_native_matches_interpreter_on_random_programs(
    img: Image,
    rows: list[tuple[int | None, ...]],
    events: list[tuple[Event, tuple[int | None, ...]]],
    snap_at: int,
) -> None:
    ref, nat, snaps = run_against_interpreter(img, rows, events, snap_at, "native")
    if snaps is not None:
        ref.restore(snaps[0])
        nat.restore(snaps[1])
        assert ref.state_hash() == nat.state_hash()
        tail = events[snap_at:]
        # the batch entry point after a restore: the same decisions as one event at a time
        assert [ref.process(e, inputs) for e, inputs in tail] == nat.process_batch(tail)
        _same_state(ref, nat)


# ----------------------------------------------------------------------------- rule sets


def _inputs(row: Row) -> tuple[int | None, ...]:
    return event_inputs(dict(zip(EVENT_HEADER[1:], row[1:], strict=True)))


@pytest.mark.parametrize("rule_set", sorted(RULE_SETS))
def test_native_matches_interpreter_on_compiled_rules(rule_set: str, tmp_path: Path) -> None:
    image = compile_files(RULE_SETS[rule_set]).image
    data = DataSet(n_accounts=20, n_securities=128, holdings_per_account=48)
    data_dir = data.write(tmp_path / "data")
    tables = {t.name for t in image.tables}
    for path in data_dir.glob("*.csv"):
        if path.stem not in tables:
            path.unlink()  # the seed fixture declares only two of the tables
    ref, nat = Engine(image, "interp"), Engine(image, "native")
    for engine in (ref, nat):
        load_data(engine, data_dir)
    _same_state(ref, nat)

    decisions: list[tuple[Decision, Decision]] = []
    hashes_differ: list[int] = []
    recorded: list[tuple[Event, tuple[Value, ...]]] = []

    def decide(row: Row) -> bool:
        event, inputs = EVENT_NAMES[str(row[0])], _inputs(row)
        if len(recorded) == 300:
            snaps.extend((ref.snapshot(), nat.snapshot()))
        recorded.append((event, inputs))
        pair = ref.process(event, inputs), nat.process(event, inputs)
        decisions.append(pair)
        if ref.state_hash() != nat.state_hash():
            hashes_differ.append(len(decisions) - 1)
        return pair[0].accepted

    snaps: list[Snapshot] = []
    rows = Session(data=data, n_orders=600, seed=3).run(decide)
    for i, (a, b) in enumerate(decisions):
        assert a == b, f"event {i}: {rows[i]}"
    assert hashes_differ == []
    _same_state(ref, nat)
    kinds = {(str(r[0]), d[0].accepted) for r, d in zip(rows, decisions, strict=True)}
    assert {("NEW", True), ("NEW", False), ("FILL", True), ("REJECT", True), ("CANCEL", True)} <= kinds

    # restore to the middle of the session and replay the rest as one batch
    end_hash = ref.state_hash()
    ref_snap, nat_snap = snaps
    ref.restore(ref_snap)
    nat.restore(nat_snap)
    _same_state(ref, nat)
    tail = recorded[300:]
    assert nat.process_batch(tail) == [d[0] for d in decisions[300:]]
    assert nat.state_hash() == end_hash


# ----------------------------------------------------------------------------- hand-built images


def _cols(n: int) -> tuple[PhysColumn, ...]:
    return tuple(PhysColumn(f"c{i}", i, 0, ColType.INT64, True) for i in range(n))


def _image(
    code: dict[tuple[Event, int], list[Bundle]], tables: list[TableConfig], scans: Sequence[ScanSpec] = ()
) -> Image:
    img = Image(tables, [None, 0, 1], [], list(scans), [], code, 8, 1100)
    return Image.decode(img.encode())


def _ev(order_id: Value, price: Value = None, quantity: Value = None) -> tuple[Value, ...]:
    return event_inputs({"order_id": order_id, "price": price, "quantity": quantity})


def test_tables_grow_far_past_their_capacity_and_keep_their_index() -> None:
    # FILL appends (order_id, price) to a keyed table and (price) to an unkeyed one; NEW looks the
    # key up and rejects when it is already there.
    keyed = TableConfig(0, "keyed", _cols(2), (0,))
    plain = TableConfig(1, "plain", _cols(1), ())
    from riskgw.doe.image import RuleInfo

    code: dict[tuple[Event, int], list[Bundle]] = {
        (Event.FILL, 0): [
            (Insn(Op.ALLOC, T, (0,), table=0), Insn(Op.ALLOC, T + 1, (), table=1)),
            (Insn(Op.WRITE, 0, (T, 5), table=0, imm=1), Insn(Op.WRITE, 0, (T + 1, 5), table=1, imm=0)),
        ],
        (Event.NEW, 0): [
            (Insn(Op.LOOKUP, T, (0,), table=0),),
            (Insn(Op.ISNULL, T + 1, (T,)),),
            (Insn(Op.RULE, 0, (REG_TRUE, T + 1), imm=7),),
        ],
    }
    img = Image([keyed, plain], [None, 0, 1], [RuleInfo(7, "fresh", 0, 1, 1)], [], [], code, 8, 1100)
    img = Image.decode(img.encode())
    ref, nat = Engine(img, "interp"), Engine(img, "native")
    n = 5000
    fills = [(Event.FILL, _ev(k * 7919 % 100_003, k)) for k in range(n)]
    for e, inputs in fills[: n // 2]:
        assert ref.process(e, inputs) == nat.process(e, inputs)
    ref.process_batch(fills[n // 2 :])
    nat.process_batch(fills[n // 2 :])
    _same_state(ref, nat)
    assert nat.state.table(0).capacity >= n > 16
    checks = [(Event.NEW, _ev(k)) for k in range(0, 100_003, 97)]
    verdicts = [ref.process(e, inputs) for e, inputs in checks]
    assert nat.process_batch(checks) == verdicts
    assert {d.accepted for d in verdicts} == {True, False}


def test_null_keyed_rows_are_stored_but_never_found() -> None:
    table = TableConfig(0, "t", _cols(3), (0, 1))
    load: list[Bundle] = [
        (Insn(Op.ALLOC, T, (0, 1), table=0),),
        (Insn(Op.WRITE, 0, (T, 2), table=0, imm=2),),
    ]
    # FILL: count, into a new row keyed (order_id, 0), whether (price, quantity) is found
    fill = [
        (Insn(Op.LOOKUP, T, (5, 6), table=0),),
        (Insn(Op.NOTNULL, T + 1, (T,)), Insn(Op.ALLOC, T + 2, (0, REG_CONST_BASE + 1), table=0)),
        (Insn(Op.WRITE, 0, (T + 2, T + 1), table=0, imm=2),),
    ]
    img = _image({(Event.LOAD, 0): load, (Event.FILL, 0): fill}, [table])
    ref, nat = Engine(img, "interp"), Engine(img, "native")
    rows = [(1, None, 10), (1, None, 11), (None, None, 12), (None, None, 13), (1, 2, 14), (None, 2, 15)]
    for engine in (ref, nat):
        for row in rows:
            engine.load_row(0, row)
        with pytest.raises(DuplicateKeyError):
            engine.load_row(0, (1, 2, 99))
    _same_state(ref, nat)
    assert len(nat.state.table(0).index) == 1
    for i, (a, b) in enumerate([(1, None), (None, None), (1, 2), (None, 2), (2, 1)]):
        inputs = event_inputs({"order_id": 100 + i, "price": a, "quantity": b})
        assert ref.process(Event.FILL, inputs) == nat.process(Event.FILL, inputs)
    _same_state(ref, nat)
    found = {r[0]: r[2] for r in nat.state.table(0).rows() if r[0] is not None and r[0] >= 100}
    assert found == {100: 0, 101: 0, 102: 1, 103: 0, 104: 0}


@pytest.mark.parametrize("mode", list(ScanMode), ids=lambda m: m.name)
def test_scan_modes_with_nulls_and_ties(mode: ScanMode) -> None:
    # group(g, o) rows; FILL scans group `price` and writes the row found into out(order_id, row)
    group = TableConfig(0, "group", _cols(2), ())
    out = TableConfig(1, "out", _cols(2), (0,))
    load = [
        (Insn(Op.ALLOC, T, (), table=0),),
        tuple(Insn(Op.WRITE, 0, (T, c), table=0, imm=c) for c in range(2)),
    ]
    fill = [
        (Insn(Op.SCAN, T, (5,), table=0), Insn(Op.ALLOC, T + 1, (0,), table=1)),
        (Insn(Op.WRITE, 0, (T + 1, T), table=1, imm=1),),
    ]
    img = _image(
        {(Event.LOAD, 0): load, (Event.FILL, 0): fill}, [group, out], scans=[ScanSpec(0, 0, mode, (0,), 1)]
    )
    ref, nat = Engine(img, "interp"), Engine(img, "native")
    orders = (5, None, 3, 3, INT64_MIN, INT64_MAX, None, 9, 9)
    rows = [(g, o) for g, o in itertools.product((1, 2, 3, None), orders)]
    rows += [(4, None), (4, None), (5, 7), (5, 7), (6, INT64_MAX), (6, None), (6, INT64_MAX)]
    for engine in (ref, nat):
        for row in rows[: len(rows) // 2]:
            engine.load_row(0, row)
    for i, g in enumerate((1, 2, None, 4, 5, 6, 7, 0)):
        inputs = event_inputs({"order_id": i, "price": g})
        assert ref.process(Event.FILL, inputs) == nat.process(Event.FILL, inputs)
        for engine in (ref, nat):  # more rows between the scans
            engine.load_row(0, rows[len(rows) // 2 + i])
    _same_state(ref, nat)
    assert any(r[1] is not None for r in nat.state.table(1).rows())


def test_overflow_and_division_edges_match_the_reference() -> None:
    ops = [Op.ADD, Op.SUB, Op.MUL, Op.DIV, Op.MOD, Op.NEG, Op.ABS, Op.RANGE32, Op.AND, Op.OR, Op.NOT]
    out = TableConfig(0, "out", _cols(1 + len(ops)), (0,))
    fill = [
        (
            Insn(Op.ALLOC, T, (0,), table=0),
            *(
                Insn(op, T + 1 + i, (5, 6)[: 1 if op in (Op.NEG, Op.ABS, Op.RANGE32, Op.NOT) else 2])
                for i, op in enumerate(ops)
            ),
        ),
        tuple(Insn(Op.WRITE, 0, (T, T + 1 + i), table=0, imm=1 + i) for i in range(len(ops))),
    ]
    img = _image({(Event.FILL, 0): fill}, [out])
    ref, nat = Engine(img, "interp"), Engine(img, "native")
    values = (None, 0, 1, -1, 2, -2, 3, INT64_MAX, INT64_MIN, INT64_MIN + 1, 1 << 32, -(1 << 31), 1 << 31)
    events = [(Event.FILL, _ev(i, a, b)) for i, (a, b) in enumerate(itertools.product(values, repeat=2))]
    for e, inputs in events:
        ref.process(e, inputs)
    nat.process_batch(events)
    _same_state(ref, nat)


def test_events_and_rows_are_checked_like_the_other_backends() -> None:
    table = TableConfig(0, "t", _cols(2), (0,))
    img = _image({}, [table])
    nat = Engine(img, "native")
    with pytest.raises(ValueError):
        nat.process(Event.NEW, (1, 2, 3))
    with pytest.raises(ValueError):
        nat.process(Event.ACCEPT, _ev(1))
    with pytest.raises(ValueError):
        nat.process_batch([(Event.LOAD, _ev(1))])
    with pytest.raises(ValueError):
        nat.load_row(0, (1,))


def test_a_missing_compiler_is_a_clear_engine_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    img = _image({}, [TableConfig(0, "t", _cols(2), (0,))])
    with pytest.raises(EngineError, match="C compiler"):
        Engine(img, "native")
    assert Engine(img).backend == "fast"


def test_the_library_is_built_once_into_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    img = _image({}, [TableConfig(0, "t", _cols(2), (0,))])
    Engine(img, "native")
    built = sorted(p.name for p in (tmp_path / "riskgw" / "native").iterdir())
    assert len(built) == 2 and built[0].endswith(".c") and built[1].endswith(".so")
    monkeypatch.setenv("PATH", str(tmp_path))  # no compiler on the path: the cached library serves
    Engine(img, "native").load_row(0, (1, 2))


def test_more_rules_than_a_word_has_bits() -> None:
    from riskgw.doe.image import RuleInfo

    n = 150
    consts = [None, 0, 1, *range(n)]
    # rule i fails when price is i or quantity is i % 7; its id runs backwards from the file order
    new = [
        tuple(Insn(Op.NE, T + i, (5, REG_CONST_BASE + 3 + i)) for i in range(n)),
        tuple(Insn(Op.NE, T + n + i, (6, REG_CONST_BASE + 3 + i % 7)) for i in range(n)),
        tuple(Insn(Op.AND, T + i, (T + i, T + n + i)) for i in range(n)),
        tuple(Insn(Op.RULE, 0, (REG_TRUE, T + i), imm=n - i) for i in range(n)),
    ]
    rules = [RuleInfo(n - i, f"R{i}", 0, i + 1, 1) for i in range(n)]
    table = TableConfig(0, "t", _cols(1), (0,))
    img = Image([table], consts, rules, [], [], {(Event.NEW, 0): new}, 8, 1400)
    img = Image.decode(img.encode())
    ref, nat = Engine(img, "interp"), Engine(img, "native")
    events = [
        (Event.NEW, _ev(1, p, q)) for p in (*range(0, n, 9), None, 64, 65, 127, 128, 1000) for q in range(8)
    ]
    expected = [ref.process(e, inputs) for e, inputs in events]
    assert [nat.process(e, inputs) for e, inputs in events] == expected
    assert nat.process_batch(events) == expected
    assert any(len(d.failed) > 20 for d in expected) and any(d.accepted for d in expected)


def test_bad_input_words_raise_python_errors() -> None:
    nat = Engine(_image({}, [TableConfig(0, "t", _cols(2), (0,))]), "native")
    # the ill-typed words are the point: the C entry points must refuse them as Python would
    with pytest.raises(TypeError):
        nat.process(Event.FILL, ("x",) * 10)  # type: ignore[arg-type]
    with pytest.raises(OverflowError):
        nat.process(Event.FILL, (1 << 64,) * 10)
    with pytest.raises(TypeError):
        nat.load_row(0, (1, "y"))  # type: ignore[arg-type]
    assert nat.process(Event.FILL, _ev(1)) == Decision(True)


def test_replay_uses_native_and_writes_the_same_bytes_as_the_fast_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from riskgw.cli import main
    from riskgw.engine.replay import replay_engine
    from riskgw.scenario import write_events

    rules = [str(p) for p in RULE_SETS["all"]]
    image = compile_files(RULE_SETS["all"]).image
    assert replay_engine(image).backend == "native"
    data = DataSet(n_accounts=20, n_securities=128, holdings_per_account=48)
    data_dir = data.write(tmp_path / "data")
    engine = Engine(image)
    load_data(engine, data_dir)
    rows = Session(data=data, n_orders=400, seed=11).run(
        lambda row: engine.process(EVENT_NAMES[str(row[0])], _inputs(row)).accepted
    )
    events = write_events(tmp_path / "events.csv", rows)
    outputs = {}
    for name in ("native", "fast"):
        if name == "fast":
            monkeypatch.setenv("PATH", str(tmp_path))  # no C compiler: replay falls back to the fast path
            assert replay_engine(image).backend == "fast"
        out, dump = tmp_path / f"{name}.csv", tmp_path / f"{name}_state"
        args = ["replay", *rules, "--data", str(data_dir), "--events", str(events), "--out", str(out)]
        assert main([*args, "--dump-state", str(dump)]) == 0
        outputs[name] = [out.read_bytes(), *(p.read_bytes() for p in sorted(dump.iterdir()))]
    assert outputs["native"] == outputs["fast"]
    assert b"REJECT" in outputs["native"][0] and len(outputs["native"]) > 3


def test_two_processes_building_at_once_both_get_the_library(tmp_path: Path) -> None:
    import subprocess
    import sys

    script = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "from test_engine_native import _cols, _image;"
        "from riskgw.doe.image import TableConfig;"
        "from riskgw.engine.engine import Engine;"
        "Engine(_image({}, [TableConfig(0, 'race', _cols(3), (0, 1))]), 'native').load_row(0, (1, 2, 3))"
    )
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path)}
    tests_dir = str(Path(__file__).parent)
    procs = [subprocess.Popen([sys.executable, "-c", script, tests_dir], env=env) for _ in range(2)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    built = sorted(p.suffix for p in (tmp_path / "riskgw" / "native").iterdir())
    assert built == [".c", ".so"]  # one library, no temporary files left behind


def test_snapshots_move_between_backends() -> None:
    table = TableConfig(0, "t", _cols(3), (0,))
    load: list[Bundle] = [(Insn(Op.ALLOC, T, (0,), table=0),), (Insn(Op.WRITE, 0, (T, 1), table=0, imm=1),)]
    img = _image({(Event.LOAD, 0): load}, [table])
    ref, nat = Engine(img, "interp"), Engine(img, "native")
    for k in range(40):
        ref.load_row(0, (k, k * k, None))
    nat.restore(ref.snapshot())
    _same_state(ref, nat)
    for engine in (ref, nat):
        engine.load_row(0, (1000, 1, None))
        with pytest.raises(DuplicateKeyError):
            engine.load_row(0, (7, 0, None))
    ref.restore(nat.snapshot())
    _same_state(ref, nat)
