"""`riskgw serve --card sim` with its hot standby: a deployment, whose program the spare card the
gateway keeps started (`[failover] spares`) loads in the background; then the simulated card's
process SIGKILLed under the gateway, the software engine taking over, and an operator's failback
bringing back the spare, which decides again. Every verdict and the final state are those of a
software engine run alone through the same orders and deployment; after the gateway stops, no
simulated card process it started is left.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from gateway_support import RULES, USERS, Client, order, run_async

from riskgw.card.lockstep import LockstepCard, Settings
from riskgw.card.simcard import SimCard
from riskgw.card.soft import SoftCard
from riskgw.card.tables import load_data_dir
from riskgw.doe.compiler import compile_files
from riskgw.doe.isa import Event
from riskgw.engine.engine import event_inputs
from riskgw.exchange.sim import Behaviour, start_exchange
from riskgw.gateway.config import GatewayConfig
from riskgw.gateway.control import request
from riskgw.gateway.deploy import swap
from riskgw.gateway.failover import FailoverConfig
from riskgw.gateway.protocol import MsgType
from riskgw.gateway.serve import start_gateway
from riskgw.scenario import DataSet, ref_price, ticket

pytestmark = [pytest.mark.sim, pytest.mark.timeout(1800), pytest.mark.xdist_group("sim")]

REST_ALL = Behaviour(fill=0.0, partial=0.0, reject=0.0)  # the exchange sends nothing back: NEWs only
TINY = DataSet(n_accounts=6, n_securities=16, holdings_per_account=6)  # fits 256 rows per table
TOKEN = "t0ken"
PROBATION = 3
WAIT_S = 600.0  # a card's read-back of its tables, at nice 19 on a loaded machine


def orders(first: int, n: int) -> list[dict[str, Any]]:
    """Orders on held securities, at and far from the reference price, in and out of size."""
    out = []
    for i in range(n):
        oid = first + i
        account = 1 + oid % 5
        sec = TINY.held(account, oid % 6)
        out.append(
            order(
                oid,
                account_id=account,
                ticket=ticket(sec),
                price=ref_price(sec) * (50 if oid % 4 == 3 else 1),
                quantity=10**9 if oid % 7 == 5 else 500 if oid % 3 == 0 else 100,
                ts=34_200 * 10**9 + oid * 10**8,
            )
        )
    return out


def sim_card_groups() -> set[int]:
    """Process groups of `riskgw sim-card` processes that are children of this one (each is a
    session leader: its group holds it and its simulator)."""
    me = os.getpid()
    out = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[1]) == me and b"sim-card" in argv:
            out.add(int(fields[2]))
    return out


def alive_in(groups: set[int]) -> list[str]:
    """The processes still in any of `groups`, and this process's children there that nobody
    reaped (a killed card's simulator, reparented, is init's to reap)."""
    me = os.getpid()
    left = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] == "Z" and int(fields[1]) != me:
            continue
        if int(fields[2]) in groups:
            left.append(stat[: stat.rindex(")") + 3])
    return left


async def until(
    cond: Callable[[], bool], what: str, send: Callable[[], Awaitable[None]] | None = None
) -> None:
    deadline = time.monotonic() + WAIT_S
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        if send is not None:
            await send()
        await asyncio.sleep(0.05)


def test_a_killed_card_fails_over_and_back_to_a_spare_from_the_pool(tmp_path: Path) -> None:
    TINY.write(tmp_path / "data")
    cap = tmp_path / "95_cap.sql"
    cap.write_text("Rule OrderCap ( trade_order.quantity <= 300 )\n", encoding="utf-8")
    deployed = [*RULES, cap]
    before = sim_card_groups()  # a card server other tests of this worker keep running
    settings = Settings(
        failback="manual",
        probation_events=PROBATION,
        hash_every=0,
        # a loaded machine steps the simulated clock slowly: the kill is seen by the next event's
        # driver error, not by a heartbeat that merely moved late
        heartbeat_timeout_ms=60_000,
        rejoin_ms=0,
    )
    logged: list[str] = []
    sent: list[dict[str, Any]] = []
    verdicts: dict[int, bool] = {}
    groups: set[int] = set()
    deploy_after: list[int] = []  # the orders sent before the deployment

    async def script() -> tuple[str, dict[str, Any]]:
        server, _exchange = await start_exchange("127.0.0.1", 0, REST_ALL)
        config = GatewayConfig(
            rules=list(RULES),
            listen=("127.0.0.1", 0),
            exchange=("127.0.0.1", server.sockets[0].getsockname()[1]),
            card="sim",
            data=tmp_path / "data",
            journal=tmp_path / "gw.journal",
            users=dict(USERS),
            fsync=False,
            heartbeat_ms=600_000,  # the broker sends no heartbeats while a spare starts
            failover=FailoverConfig(True, settings, spares=1),
            control=("127.0.0.1", 0),
            control_token=TOKEN,
        )
        running = await start_gateway(config, logged.append)

        async def ctl(**message: Any) -> dict[str, Any]:
            return await request("127.0.0.1", running.control_port, {"token": TOKEN, **message}, WAIT_S)

        try:
            lock = running.gateway.card
            assert isinstance(lock, LockstepCard)
            assert lock.primary == "card", lock.status()
            broker = await Client.connect(running.port)
            broker.send(MsgType.LOGON, username="bob", password=USERS["bob"].password)
            await broker.recv_type(MsgType.LOGON_ACK)

            async def decide(values: list[dict[str, Any]]) -> None:
                for v in values:
                    broker.send(MsgType.NEW_ORDER, **v)
                    sent.append(v)
                    frame = await broker.recv(timeout=WAIT_S)
                    while frame.type not in (MsgType.ACCEPTED, MsgType.REJECTED):
                        frame = await broker.recv(timeout=WAIT_S)
                    assert frame["order_id"] == v["order_id"]
                    verdicts[v["order_id"]] = frame.type is MsgType.ACCEPTED

            await decide(orders(1, 6))  # the card decides
            assert lock.primary == "card" and lock.counters.mismatches == 0, lock.status()
            # the gateway's card and the spare the pool started ahead
            await until(lambda: running.gateway.status()["spares"]["ready"] == 1, "the spare")
            first_image = lock.image.digest()[:12]
            assert (await ctl(cmd="status"))["spares"]["image"] == first_image
            files = [[p.name, p.read_text(encoding="utf-8")] for p in deployed]
            answer = await ctl(cmd="deploy", files=files, who="test", message="order cap")
            assert answer["ok"], answer
            deploy_after.append(len(sent))
            new_image = lock.image.digest()[:12]
            assert new_image != first_image
            # the spare loads the new program in the background
            await until(
                lambda: running.gateway.status()["spares"]["image"] == new_image, "the spare's reload"
            )
            await decide(orders(7, 6))  # the card decides, under the new program
            groups.update(sim_card_groups() - before)
            assert len(groups) == 2, groups
            first = lock.card
            assert isinstance(first, SimCard) and first.server is not None
            os.killpg(first.server.pid, signal.SIGKILL)  # the server and its simulator
            await decide(orders(13, 6))  # the first meets the dead card: software decides it
            assert lock.primary == "software" and lock.counters.failovers == 1, lock.status()
            assert lock.failovers[0].reason.startswith("driver error"), lock.failovers[0]

            answer = await ctl(cmd="failback")
            assert answer["ok"], answer
            next_id = 19

            async def one_more() -> None:  # a few events while the card loads: caught up after
                nonlocal next_id
                if next_id < 22:
                    await decide(orders(next_id, 1))
                    next_id += 1

            await until(lambda: lock.mode.value == "shadow", "the card back in shadow", one_more)
            await decide(orders(next_id, PROBATION))  # probation: software decides, the card is checked
            next_id += PROBATION
            await until(lambda: lock.primary == "card", "the end of probation")
            second = lock.card
            assert isinstance(second, SimCard) and second is not first and second.server is not None
            assert second.server.pid in groups, "the card that came back is the spare started ahead"
            assert second.image.digest()[:12] == new_image
            await decide(orders(next_id, 6))  # the card decides again
            assert lock.primary == "card", lock.status()
            status = await ctl(cmd="status")
            await broker.close()
            groups.update(sim_card_groups() - before)  # the next spare, started after the take
            return running.gateway.card.state_hash(), status
        finally:
            await running.stop()
            print("\n".join(logged))  # shown when the test fails
            server.close()
            await server.wait_closed()

    state, status = run_async(script(), timeout=1700)

    # the software engine alone, through the same orders and the same deployment between them
    engine = SoftCard("fast")
    engine.load_image(compile_files(RULES).image)
    load_data_dir(engine, tmp_path / "data")
    want: dict[int, bool] = {}
    for n, v in enumerate(sent):
        if n == deploy_after[0]:
            swap(engine, compile_files(deployed).image, {}, False, {})
        want[v["order_id"]] = engine.process(Event.NEW, event_inputs(v)).accepted
    assert verdicts == want
    assert set(want.values()) == {True, False}, "the session accepts some orders and rejects others"
    assert state == engine.state_hash()
    card = status["card"]
    counters = card["counters"]
    assert (card["primary"], counters["failovers"], counters["failbacks"]) == ("card", 1, 1), card
    assert counters["mismatches"] == 0 and counters["rejoin_failures"] == 0, card
    assert status["spares"]["taken"] == 2, status["spares"]  # the gateway's card, then the failback's
    assert status["spares"]["started"] == 3, status["spares"]
    assert any("took a spare simulated card from the pool (2 taken" in line for line in logged), logged
    assert len(groups) == 3, groups
    assert alive_in(groups) == [], "a simulated card outlived the gateway"
