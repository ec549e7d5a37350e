"""The simulated card end to end: `riskgw sim-card` runs rgw_card in Verilator and SimCard drives it
over ZeroMQ. Decisions and the state read back from the card must equal the software engine's;
the server must start quickly with a warm cache, keep its heartbeat running while idle, and a
stopped, crashed or terminated simulator must show at once as CardError or a clean exit."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from sim_card_support import Server, sim_card

from riskgw.card.driver import CardError
from riskgw.card.regmap import Counter, Status
from riskgw.card.simcard import SimCard
from riskgw.card.simlink import SimLink
from riskgw.doe.compiler import compile_files
from riskgw.doe.image import Image
from riskgw.doe.isa import ABI_VERSION, Event
from riskgw.engine.csvdata import EventRow, read_events, read_table
from riskgw.engine.engine import DuplicateKeyError, Engine
from riskgw.engine.replay import load_data
from riskgw.scenario import DataSet, Session, write_events

pytestmark = [pytest.mark.sim, pytest.mark.xdist_group("sim")]
__all__ = ["sim_card"]  # the fixture

REPO = Path(__file__).resolve().parents[1]


def children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(p) for p in text.split()]


@pytest.fixture(scope="module")
def image() -> Image:
    return compile_files(sorted((REPO / "rules").glob("*.sql"))).image


def scenario(tmp: Path, image: Image, n_orders: int) -> tuple[Engine, list[EventRow]]:
    data = DataSet(n_accounts=6, n_securities=16, holdings_per_account=6)
    data.write(tmp / "data")
    write_events(tmp / "events.csv", Session(data, n_orders=n_orders, seed=7).run(lambda _row: True))
    engine = Engine(image, "interp")
    load_data(engine, tmp / "data")
    return engine, read_events(tmp / "events.csv")


def test_starts_within_a_minute_and_identifies(sim_card: Server) -> None:
    assert sim_card.start_s <= 60, f"start-up with a warm cache took {sim_card.start_s:.0f} s"
    card = SimCard.connect(sim_card.address)
    try:
        ident = card.ident
        assert ident.abi_version == ABI_VERSION and ident.data_w == 64 and ident.rows_log2 == 8
        assert (ident.lanes, ident.tables, ident.cols, ident.rules) == (8, 8, 16, 128)
        assert (ident.key_words, ident.ways, ident.scans, ident.in_words) == (6, 4, 16, 16)
    finally:
        card.close()
    assert sim_card.process.exited() is None, "closing a card it did not start leaves the server up"


def test_heartbeat_runs_while_idle(sim_card: Server) -> None:
    card = SimCard.connect(sim_card.address)
    try:
        first = card.regs.heartbeat()
        deadline = time.monotonic() + 30
        while card.regs.heartbeat() == first:
            assert time.monotonic() < deadline, "HEARTBEAT did not move in 30 s of idling"
            time.sleep(0.5)
    finally:
        card.close()


def test_a_rest_stops_the_clock_until_the_next_request(sim_card: Server) -> None:
    """What a spare in a pool (riskgw/card/simpool.py) does while it waits: no simulated cycle, so
    no CPU; the next request starts the clock again."""
    card = SimCard.connect(sim_card.address)
    try:
        before = card.regs.cycles()
        card.rest()
        time.sleep(2.0)
        rested = card.regs.cycles() - before
        assert rested < 256, f"{rested} cycles ran in 2 s of rest"  # the reads' own, and a step or two
        start = card.regs.cycles()
        deadline = time.monotonic() + 30
        while card.regs.cycles() - start < 4 * 256:
            assert time.monotonic() < deadline, "the clock did not run again after a request"
            time.sleep(0.2)
    finally:
        card.close()


def test_decisions_and_state_equal_the_software_engine(
    sim_card: Server, image: Image, tmp_path: Path
) -> None:
    engine, events = scenario(tmp_path, image, n_orders=14)
    card = SimCard.connect(sim_card.address)
    try:
        card.load_image(image)
        for config in image.tables:
            path = tmp_path / "data" / f"{config.name}.csv"
            if path.exists():
                card.load_rows(config.id, [row.words for row in read_table(path, config)])
        assert card.state_hash() == engine.state_hash()
        items = [(ev.event, ev.inputs) for ev in events]
        want = [engine.process(e, i) for e, i in items]
        assert card.process(*items[0]) == want[0]
        got = [want[0], *card.process_many(items[1:])]
        for n, (g, w) in enumerate(zip(got, want, strict=True)):
            assert g == w, f"event {n} ({events[n].event.name} line {events[n].line}): card {g}, engine {w}"
        assert any(not d.accepted for d in want) and any(d.accepted for d in want)
        snap = card.snapshot()
        assert snap.hash == engine.state_hash()
        for got_t, want_t in zip(snap.tables, engine.snapshot().tables, strict=True):
            assert got_t.index == want_t.index
        counters = card.regs.counters()
        assert counters[Counter.NEW] == sum(e is Event.NEW for e, _ in items)
        assert counters[Counter.REJECTED] == sum(not d.accepted for d in want)
        assert counters[Counter.PROTOCOL_ERRORS] == 0 and not card.regs.status() & Status.PROTOCOL_ERROR
        stamps = card.regs.timestamps()
        assert stamps and all(0 < s.latency < 1000 for s in stamps)
        # keys that events inserted are read back from the card before a row load
        order_info = image.table("order_info")
        taken = next(iter(snap.tables[order_info.id].index))
        row: list[int | None] = [None] * len(order_info.columns)
        for c, v in zip(order_info.key, taken, strict=True):
            row[c] = v
        with pytest.raises(DuplicateKeyError):
            card.load_rows(order_info.id, [row])
    finally:
        card.close()


def test_a_stopped_simulator_is_a_card_error(sim_card: Server) -> None:
    (sim,) = children(sim_card.process.pid)
    card = SimCard.connect(sim_card.address, timeout=2)
    os.kill(sim, signal.SIGSTOP)
    try:
        with pytest.raises(CardError, match="stopped or wedged"):
            card.regs.heartbeat()
    finally:
        os.kill(sim, signal.SIGCONT)
    card.close()
    card = SimCard.connect(sim_card.address)  # the server carries on once continued
    card.close()


def test_a_crash_is_seen_at_once_and_sigterm_exits_cleanly() -> None:
    card = SimCard.start(start_timeout=600)
    assert card.server is not None
    (sim,) = children(card.server.pid)
    os.kill(sim, signal.SIGKILL)
    start = time.monotonic()
    with pytest.raises(CardError, match="simulated card"):
        card.regs.heartbeat()
    assert time.monotonic() - start < 5
    card.close()

    card = SimCard.start(start_timeout=600)
    assert card.server is not None
    server = card.server
    (sim,) = children(server.pid)
    assert server.stop(30) == 0
    assert not Path(f"/proc/{sim}").exists(), "the simulator outlived its server"
    with pytest.raises(CardError, match="exited with status 0"):
        card.regs.heartbeat()
    card.close()


def test_link_reports_its_address(sim_card: Server) -> None:
    link = SimLink(sim_card.address, timeout=10)
    assert link.hello()["params"]["ROWS"] == 256
    link.close()
