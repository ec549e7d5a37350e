"""The gateway with a failing card: brokers and the exchange see every order exactly once, the
software engine takes over and hands back, and the journal's events give SQLite's state."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

import pytest
from failover_support import OracleRun, fields_of, same_state
from gateway_support import RULES, SMALL, Client, Stack, held_order, run_async, start_stack

from riskgw.card.driver import CardDriver
from riskgw.card.faulty import FaultyCard
from riskgw.card.lockstep import LockstepCard, Settings
from riskgw.exchange.sim import Behaviour
from riskgw.gateway import serve
from riskgw.gateway.control import handle
from riskgw.gateway.failover import FailoverConfig
from riskgw.gateway.journal import scan
from riskgw.gateway.metrics import render
from riskgw.gateway.protocol import MsgType, Reason

pytestmark = pytest.mark.timeout(120)

TOKEN = "t0ken"


def faulty_cards(monkeypatch: pytest.MonkeyPatch, stall_timeout_s: float = 0.02) -> list[FaultyCard]:
    cards: list[FaultyCard] = []

    def make_card(kind: str) -> CardDriver:
        card = FaultyCard(stall_timeout_s=stall_timeout_s)
        cards.append(card)
        return card

    monkeypatch.setattr(serve, "make_card", make_card)
    return cards


class Exchanged:
    """Every NEW_ORDER the exchange received, by (account, order id)."""

    def __init__(self, stack: Stack) -> None:
        self.keys: list[tuple[int, int]] = []
        exchange = stack.exchange
        inner = exchange.new_order

        def new_order(link: Any, frame: Any) -> None:
            self.keys.append((frame["account_id"], frame["order_id"]))
            inner(link, frame)

        exchange.new_order = new_order  # type: ignore[method-assign]


async def burst(broker: Client, orders: list[dict[str, Any]], answers: dict[int, list[MsgType]]) -> None:
    """Send the orders, then read until each has its ACCEPTED or REJECTED."""
    for values in orders:
        broker.send(MsgType.NEW_ORDER, **values)
    waiting = {v["order_id"] for v in orders}
    while waiting:
        f = await broker.recv()
        if f.type in (MsgType.ACCEPTED, MsgType.REJECTED):
            answers.setdefault(f["order_id"], []).append(f.type)
            waiting.discard(f["order_id"])


def random_orders(first_id: int, n: int, rnd: random.Random) -> list[dict[str, Any]]:
    out = []
    for i in range(n):
        account = rnd.randrange(SMALL.n_accounts)
        extra: dict[str, int] = {}
        if i % 9 == 4:
            extra["price"] = 0  # fails a rule
        if i % 5 == 2:
            extra["direction"] = 1
        out.append(held_order(first_id + i, account, k=rnd.randrange(16), **extra))
    return out


def check_journal(tmp_path: Path, lock: LockstepCard) -> int:
    """The journal's events through SQLite give the journal's decisions and the gateway's state."""
    run = OracleRun(RULES, tmp_path / "data")
    entries = scan(tmp_path / "gw.journal").entries
    for entry in entries:
        run.check(entry.event, fields_of(entry.inputs), entry.decision)
    assert run.differences == [], run.differences[:3]
    assert same_state(lock.image, lock.snapshot(), run) is None
    return len(entries)


def test_card_killed_and_stalled_under_load_loses_and_duplicates_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cards = faulty_cards(monkeypatch)
    settings = Settings(
        failback="auto", probation_events=30, hash_every=25, heartbeat_timeout_ms=40, rejoin_ms=0
    )

    async def script() -> None:
        stack = await start_stack(
            tmp_path,
            Behaviour(fill=0.4, partial=0.2, reject=0.1, seed=3),
            failover=FailoverConfig(True, settings),
        )
        lock = stack.gateway.card
        assert isinstance(lock, LockstepCard) and lock.primary == "card"
        exchanged = Exchanged(stack)
        broker = await stack.broker("bob")
        rnd = random.Random(5)
        answers: dict[int, list[MsgType]] = {}
        faults = ["kill", "kill-after", "stall", "heartbeat", "kill", "kill-after"]
        next_id = 1
        for fault in faults:
            await burst(broker, random_orders(next_id, 60, rnd), answers)
            next_id += 60
            # the card is primary again before each fault
            for _ in range(200):
                if lock.primary == "card":
                    break
                await burst(broker, random_orders(next_id, 5, rnd), answers)
                next_id += 5
                await asyncio.sleep(0.01)
            assert lock.primary == "card", lock.status()
            card = cards[-1]
            if fault == "kill":
                card.kill()
            elif fault == "kill-after":
                card.kill(after=True)
            elif fault == "stall":
                card.stall()  # the next event waits for the driver's timeout
            else:
                card.stall()  # nothing is sent: the watchdog sees the heartbeat stop
                card.stall_timeout_s = 0.0
                for _ in range(100):
                    await asyncio.sleep(0.01)
                    if lock.primary != "card":
                        break
                assert lock.counters.heartbeat_misses == 1
        await burst(broker, random_orders(next_id, 60, rnd), answers)
        next_id += 60
        broker.send(MsgType.HEARTBEAT)
        while (await broker.recv()).type is not MsgType.HEARTBEAT:
            pass
        await asyncio.sleep(0.1)  # the exchange's last answers

        assert sorted(answers) == list(range(1, next_id)), "an order without an answer"
        assert all(len(a) == 1 for a in answers.values()), "an order answered twice"
        accepted = {o for o, t in answers.items() if t == [MsgType.ACCEPTED]}
        assert len(exchanged.keys) == len(set(exchanged.keys)), "an order reached the exchange twice"
        assert {k[1] for k in exchanged.keys} == accepted, "an accepted order was lost"
        assert 0 < len(accepted) < len(answers)
        assert lock.counters.failovers == len(faults)
        assert lock.counters.mismatches == 0 and lock.counters.hash_mismatches == 0
        assert lock.counters.failbacks >= len(faults) - 1
        status = handle(stack.gateway, TOKEN, {"token": TOKEN, "cmd": "status"})
        assert status["card"]["counters"]["failovers"] == len(faults)
        page = render(stack.gateway)
        assert f"riskgw_card_failovers_total {len(faults)}.0" in page
        assert "riskgw_failover_us_count" in page
        await broker.close()
        n = check_journal(tmp_path, lock)
        assert n > len(answers)
        await stack.close()

    run_async(script(), timeout=100)


def test_halt_rejects_new_orders_until_the_operator_acts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cards = faulty_cards(monkeypatch)
    settings = Settings(policy="halt", failback="manual", probation_events=5, hash_every=0, rejoin_ms=0)

    async def script() -> None:
        stack = await start_stack(
            tmp_path, Behaviour(fill=1.0, partial=0.0, reject=0.0), failover=FailoverConfig(True, settings)
        )
        lock = stack.gateway.card
        assert isinstance(lock, LockstepCard)
        broker = await stack.broker("bob")
        answers: dict[int, list[MsgType]] = {}
        await burst(broker, [held_order(1, 1)], answers)
        cards[-1].corrupt_next()
        await burst(broker, [held_order(2, 1, k=1)], answers)
        assert answers[2] == [MsgType.ACCEPTED]  # the software engine's answer stands
        assert lock.halted and lock.primary == "software"
        broker.send(MsgType.NEW_ORDER, **held_order(3, 1, k=2))
        r = await broker.recv()
        while r.type is not MsgType.REJECTED:
            r = await broker.recv()
        assert (r["order_id"], r["reason"]) == (3, Reason.SHUTDOWN)
        assert "riskgw_card_halted 1.0" in render(stack.gateway)
        # the operator brings a card back: orders flow again, decided by software until probation ends
        answer = handle(stack.gateway, TOKEN, {"token": TOKEN, "cmd": "failback"})
        assert answer["ok"], answer
        assert not lock.halted
        for _ in range(100):
            await asyncio.sleep(0.01)
            if lock.status()["mode"] == "shadow":
                break
        await burst(broker, [held_order(10 + i, 2, k=i) for i in range(8)], answers)
        for _ in range(100):  # the watchdog's next round ends the probation
            await asyncio.sleep(0.01)
            if lock.primary == "card":
                break
        assert lock.primary == "card" and len(cards) == 2, lock.status()
        await broker.close()
        check_journal(tmp_path, lock)
        await stack.close()

    run_async(script())


def test_failover_settings_are_checked_with_one_line_messages() -> None:
    from riskgw.errors import UserError
    from riskgw.gateway.failover import parse_failover

    got = parse_failover(
        {"standby": True, "policy": "halt", "failback": "auto", "heartbeat_timeout_ms": 50, "hash_every": 0}
    )
    assert got.settings == Settings(policy="halt", failback="auto", heartbeat_timeout_ms=50, hash_every=0)
    assert got.wanted("soft") is True and FailoverConfig().wanted("soft") is False
    assert FailoverConfig().wanted("sim") is True
    assert got.spares == 1 and parse_failover({"spares": 0}).spares == 0
    for table, message in (
        ({"spares": -1}, "failover.spares must be a whole number from 0 to 8"),
        ({"spares": 9}, "failover.spares must be a whole number from 0 to 8"),
        ({"spares": True}, "failover.spares must be a whole number from 0 to 8"),
        ({"policy": "panic"}, "failover.policy must be one of failover, halt, alarm"),
        ({"failback": "sometimes"}, "failover.failback must be one of auto, manual"),
        ({"heartbeat_timeout_ms": 0}, "failover.heartbeat_timeout_ms must be a whole number >= 1"),
        ({"hash_every": True}, "failover.hash_every must be a whole number >= 0"),
        ({"standby": "yes"}, "failover.standby must be true or false"),
        ({"polcy": "halt"}, "failover: unknown setting 'polcy'"),
        ("halt", "failover must be a [failover] table"),
    ):
        with pytest.raises(UserError) as info:
            parse_failover(table)
        assert str(info.value).startswith(message) and "\n" not in str(info.value)
