"""`riskgw serve --card sim | sim:tcp://HOST:PORT`: the gateway on the simulated card.

The card's decisions through the gateway must equal the software engine's on the same data, a
started card gets tables sized for its data, and every wrong card setting is a one-line error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from gateway_support import RULES, USERS, Client, order, run_async
from sim_card_support import Server, sim_card

from riskgw.card.doeport import hash_bucket
from riskgw.card.select import card_kind, resolve_auto
from riskgw.card.simgw import DataShape, data_shape, fits, rows_for
from riskgw.cli import main as cli_main
from riskgw.doe.compiler import compile_files
from riskgw.doe.isa import Event
from riskgw.engine.engine import Engine, event_inputs
from riskgw.engine.replay import load_data
from riskgw.errors import UserError
from riskgw.exchange.sim import Behaviour, start_exchange
from riskgw.gateway.config import CARDS, GatewayConfig
from riskgw.gateway.protocol import MsgType
from riskgw.gateway.serve import start_gateway
from riskgw.scenario import DataSet, ref_price, ticket

__all__ = ["sim_card"]  # the fixture

REST_ALL = Behaviour(fill=0.0, partial=0.0, reject=0.0)
TINY = DataSet(n_accounts=6, n_securities=16, holdings_per_account=6)  # fits 256 rows per table


def test_rows_are_sized_for_the_data_and_the_doe_hash(tmp_path: Path) -> None:
    image = compile_files(RULES).image
    DataSet(n_accounts=3, n_securities=40, holdings_per_account=5).write(tmp_path / "d")
    shape = data_shape(image, tmp_path / "d")
    assert shape.most_rows == 40 and rows_for(shape) == (256, 4)
    assert data_shape(image, None) == DataShape(0, ())
    assert rows_for(DataShape(171, ())) == (512, 4)  # half as much again for the rows events add
    # a bucket of four ways takes four keys; a fifth that hashes there needs another table size
    same = [k for k in range(1, 200_000) if hash_bucket((k,), 9) == hash_bucket((1,), 9)][:5]
    assert fits(DataShape(4, ((*((k,) for k in same[:4]),),)), 256, 4)
    crowded = DataShape(5, (tuple((k,) for k in same),))
    assert not fits(crowded, 256, 4) and rows_for(crowded) == (256, 8) and fits(crowded, 256, 8)
    # the reference data set: its 20 x 1024 holdings fit 4-way buckets from 32768 rows (more in
    # tests/test_doe_hash.py), and too few rows is refused whatever the ways
    DataSet().write(tmp_path / "ref")
    ref = data_shape(image, tmp_path / "ref")
    assert ref.most_rows == 20 * 1024
    assert rows_for(ref) == (32768, 4) and fits(ref, 65536, 4)
    assert not fits(ref, 16384, 8)


@pytest.mark.parametrize(
    ("card", "message"),
    [
        ("sim:localhost:9200", "expected tcp://HOST:PORT"),
        ("sim:tcp://127.0.0.1:0", "give the port the running sim-card listens on"),
        ("simulated", "cards: soft, sim, pynq, auto, sim:tcp://HOST:PORT"),
    ],
)
def test_a_bad_card_setting_is_one_line(
    card: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli_main(["serve", "--rules", str(RULES[0]), "--card", card, "--journal", str(tmp_path / "j")])
    err = capsys.readouterr().err
    assert code != 0 and message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_auto_falls_back_to_the_simulated_card_before_soft() -> None:
    logged: list[str] = []
    assert "sim" in CARDS
    assert resolve_auto(CARDS, logged.append) == "sim"
    assert "running on the simulated card" in logged[0]


def test_a_card_with_too_small_tables_is_refused(sim_card: Server, tmp_path: Path) -> None:
    DataSet(n_accounts=20, n_securities=16, holdings_per_account=16).write(tmp_path / "data")
    config = GatewayConfig(
        rules=list(RULES), card=f"sim:{sim_card.address}", data=tmp_path / "data", journal=tmp_path / "j"
    )
    with pytest.raises(
        UserError, match=r"tables \(256 rows\) cannot hold .* 320 rows\): run it with --rows 512"
    ):
        run_async(start_gateway(config, lambda _text: None))


def orders() -> list[dict[str, Any]]:
    """Orders on held securities at and far from the reference price, in and out of size."""
    out = []
    for n, (account, k, price_x, qty) in enumerate(
        [(1, 0, 1, 100), (2, 1, 1, 10**9), (3, 2, 50, 100), (4, 0, 1, 200), (5, 3, 1, 100)]
    ):
        sec = TINY.held(account, k)
        out.append(
            order(
                2001 + n,
                account_id=account,
                ticket=ticket(sec),
                price=ref_price(sec) * price_x,
                quantity=qty,
                ts=34_200 * 10**9 + n * 10**8,
            )
        )
    return out


def gateway_verdicts(tmp_path: Path, card: str) -> tuple[list[bool], str, str, list[str]]:
    """Each order's verdict through a gateway on `card`, what decided them, the final state hash."""
    logged: list[str] = []

    async def script() -> tuple[list[bool], str, str]:
        server, _exchange = await start_exchange("127.0.0.1", 0, REST_ALL)
        config = GatewayConfig(
            rules=list(RULES),
            listen=("127.0.0.1", 0),
            exchange=("127.0.0.1", server.sockets[0].getsockname()[1]),
            card=card,
            data=tmp_path / "data",
            journal=tmp_path / f"{card[:3]}.journal",
            users=dict(USERS),
            fsync=False,
        )
        running = await start_gateway(config, logged.append)
        try:
            broker = await Client.connect(running.port)
            broker.send(MsgType.LOGON, username="bob", password=USERS["bob"].password)
            await broker.recv_type(MsgType.LOGON_ACK)
            verdicts = []
            for values in orders():
                broker.send(MsgType.NEW_ORDER, **values)
                frame = await broker.recv(timeout=60)
                assert frame.type in (MsgType.ACCEPTED, MsgType.REJECTED), frame.type
                verdicts.append(frame.type is MsgType.ACCEPTED)
            await broker.close()
            return verdicts, card_kind(running.gateway.card), running.gateway.card.state_hash()
        finally:
            await running.stop()
            server.close()
            await server.wait_closed()

    verdicts, kind, state = run_async(script(), timeout=600)
    return verdicts, kind, state, logged


def engine_verdicts(tmp_path: Path) -> tuple[list[bool], str]:
    engine = Engine(compile_files(RULES).image)
    load_data(engine, tmp_path / "data")
    verdicts = [engine.process(Event.NEW, event_inputs(v)).accepted for v in orders()]
    return verdicts, engine.state_hash()


@pytest.mark.sim
@pytest.mark.xdist_group("sim")
def test_serve_on_a_running_simulated_card_decides_as_the_engine(sim_card: Server, tmp_path: Path) -> None:
    TINY.write(tmp_path / "data")
    want, want_state = engine_verdicts(tmp_path)
    assert set(want) == {True, False}, "the session accepts some orders and rejects others"
    got, kind, state, logged = gateway_verdicts(tmp_path, f"sim:{sim_card.address}")
    assert (got, kind, state) == (want, "sim", want_state)
    assert any("256 rows per table" in line for line in logged)
    assert sim_card.process.exited() is None, "the gateway stopped a card it did not start"


@pytest.mark.sim
@pytest.mark.xdist_group("sim")
def test_serve_starts_its_own_simulated_card(tmp_path: Path) -> None:
    TINY.write(tmp_path / "data")
    want, want_state = engine_verdicts(tmp_path)
    got, kind, state, logged = gateway_verdicts(tmp_path, "sim")
    assert (got, kind, state) == (want, "sim", want_state)
    started = "starting the simulated card (256 rows per table, 4 hash ways, 512-bit TOE)"
    assert any(started in line for line in logged)
