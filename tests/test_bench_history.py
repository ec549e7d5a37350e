"""bench.history builds the order history a long session leaves: rows in the engine's layout that
lookups find, ids no session uses, and a session replayed on top decides as it would without it."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import engine as bench
from bench import history
from riskgw.doe.compiler import compile_files
from riskgw.doe.image import Image
from riskgw.engine.cbuild import compiler
from riskgw.engine.engine import Backend, Engine
from riskgw.engine.replay import load_data
from riskgw.engine.state import logical_row
from riskgw.scenario import DataSet, ticket

ORDERS = 60  # per account: a session of about 3,500 events
HISTORY = 5_000


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Image, Path, DataSet]:
    data = DataSet()
    return compile_files(bench.RULES).image, data.write(tmp_path_factory.mktemp("data")), data


BACKENDS: list[Backend] = ["fast", "native"] if compiler() is not None else ["fast"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_history_rows_are_order_info_rows_the_index_finds(
    setup: tuple[Image, Path, DataSet], backend: Backend
) -> None:
    image, data_dir, data = setup
    h = history.history(data, HISTORY)
    engine = Engine(image, backend)
    load_data(engine, data_dir)
    history.install(engine, history.table_state(image, data, h))
    table = engine.state.by_name(history.TABLE)
    assert table.n_rows == HISTORY
    for i in (0, 1, HISTORY // 2, HISTORY - 1):
        row = table.lookup((int(h.order_id[i]),))
        assert row == i
        order_id, account, tick, direction, price, open_qty = logical_row(table.config, table.row(i))
        assert (order_id, account, direction, price) == (
            h.order_id[i],
            h.account_id[i],
            h.direction[i],
            h.price[i],
        )
        sec = int(h.sec[i])
        assert isinstance(account, int)  # an INT column reads back as an int
        assert tick == ticket(sec) and data.holds(account, sec) and open_qty == 0
    with pytest.raises(ValueError, match="already holds"):
        history.install(engine, history.table_state(image, data, h))


def test_a_session_on_top_of_the_history_decides_as_without_it(setup: tuple[Image, Path, DataSet]) -> None:
    image, data_dir, data = setup
    events = bench.record_session(image, data_dir, data, ORDERS)
    assert max(inp[0] or 0 for _, inp, _, _ in events) < history.FIRST_ID
    verdicts = []
    for with_history in (False, True):
        engine = Engine(image, "fast")
        load_data(engine, data_dir)
        if with_history:
            history.install(engine, history.table_state(image, data, history.history(data, HISTORY)))
        verdicts.append([engine.process(e, inp).accepted for e, inp, _, _ in events])
        assert engine.state.by_name(history.TABLE).n_rows > (HISTORY if with_history else 0)
    assert verdicts[0] == verdicts[1]


def test_sqlite_rows_match_the_engine_rows(setup: tuple[Image, Path, DataSet]) -> None:
    image, _, data = setup
    h = history.history(data, 50)
    state = history.table_state(image, data, h)
    config = next(t for t in image.tables if t.name == history.TABLE)
    engine_rows = [logical_row(config, [int(w[i]) for w in state.words]) for i in range(state.n_rows)]
    assert [tuple(r) for r in history.sqlite_rows(h)] == engine_rows


def test_progress_lines_pass_over_a_skipped_backend(capsys: pytest.CaptureFixture[str]) -> None:
    timed = {"backend": "native", "cpu_events_per_s": 1e5, "wall_events_per_s": 5e4}
    timed |= {"all": {"p50_us": 2.0, "p99_us": 4.0}, "table_memory": {"total_mb": 1.0}, "peak_rss_mb": 9.0}
    bench._report({"engine": {"skipped": "too big"}, "engine_native": timed, "sqlite": {"skipped": "x"}})
    err = capsys.readouterr().err
    assert "native: 100,000 events/s" in err and "fast" not in err
