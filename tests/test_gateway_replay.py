"""The gateway's live decisions agree with `riskgw replay` on the events it journaled."""

from __future__ import annotations

import csv
import random
from pathlib import Path

import pytest
from gateway_support import RULES, SMALL, Client, Stack, held_order, run_async, start_stack

from riskgw.cli import main as cli_main
from riskgw.doe.compiler import compile_files
from riskgw.engine.csvdata import read_events
from riskgw.engine.engine import Engine
from riskgw.engine.replay import load_data
from riskgw.exchange.sim import Behaviour
from riskgw.gateway.journal import scan
from riskgw.gateway.protocol import MsgType, Reason
from riskgw.scenario import ticket

pytestmark = pytest.mark.timeout(90)

Verdicts = dict[int, tuple[str, frozenset[int]]]  # order_id -> (ACCEPT / REJECT, failed rule ids)


async def session(stack: Stack, broker: Client, n: int) -> Verdicts:
    """Orders that hit every rule now and then, bursts that hit the rate limit, and cancels."""
    rnd = random.Random(11)
    verdicts: Verdicts = {}
    accepted: list[tuple[int, int]] = []
    ts = 34_200 * 10**9
    for i in range(n):
        burst = i % 40 < 16  # orders from one account 1 ms apart: over the rate limit
        ts += 1_000_000 if burst else 150_000_000
        account = i // 40 % 4 if burst else rnd.randrange(0, 4)
        values = held_order(5_000 + i, account, k=rnd.randrange(16), ts=ts, direction=rnd.randrange(2))
        values["price"] += rnd.randrange(-20, 21)
        values["quantity"] = rnd.randrange(1, 10) * 100
        kind = i % 13
        if kind == 1:
            values["price"] = 0
        elif kind == 2:
            values["price"] = values["price"] * 3 // 2
        elif kind == 4:
            values["quantity"] = 150_000
        elif kind == 6:
            values["ticket_id"] = ticket((SMALL.held(account, 0) - 1) % SMALL.n_securities)
        elif kind == 8:
            values["quantity"] = 0
        elif kind == 10 and i > 20:
            values["order_id"] = 5_000 + rnd.randrange(i)  # an id used before
        elif kind == 12:
            values["account_id"] = 19  # little cash
        broker.send(MsgType.NEW_ORDER, **values)
        order_id = values["order_id"]
        while True:
            f = await broker.recv()
            if f.type in (MsgType.ACCEPTED, MsgType.REJECTED) and f["order_id"] == order_id:
                break
        if f.type is MsgType.ACCEPTED:
            verdicts[order_id] = ("ACCEPT", frozenset())
            accepted.append((values["account_id"], order_id))
        elif f["reason"] == Reason.RULE:
            mask = int.from_bytes(f["failed_mask"], "little")
            verdicts[order_id] = ("REJECT", frozenset(r for r in range(256) if mask >> r & 1))
        if i % 25 == 24 and accepted:
            account, oid = accepted[rnd.randrange(len(accepted))]
            broker.send(MsgType.CANCEL_REQUEST, order_id=oid, account_id=account)
    broker.send(MsgType.HEARTBEAT)
    while (await broker.recv()).type is not MsgType.HEARTBEAT:
        pass
    return verdicts


def test_gateway_decisions_match_riskgw_replay(tmp_path: Path) -> None:
    async def script() -> tuple[Verdicts, str]:
        stack = await start_stack(tmp_path, Behaviour(fill=0.2, partial=0.2, reject=0.1, seed=9))
        broker = await stack.broker("bob")
        verdicts = await session(stack, broker, 260)
        await broker.close()
        state = stack.gateway.card.state_hash()
        await stack.close()
        return verdicts, state

    verdicts, state = run_async(script(), timeout=80)
    entries = scan(tmp_path / "gw.journal").entries
    events = tmp_path / "events.csv"
    assert cli_main(["journal", "export", str(tmp_path / "gw.journal"), "--out", str(events)]) == 0
    out = tmp_path / "out.csv"
    args = [
        "replay",
        *map(str, RULES),
        "--data",
        str(tmp_path / "data"),
        "--events",
        str(events),
        "--out",
        str(out),
    ]
    assert cli_main(args) == 0

    image = compile_files(RULES).image
    names = {r.name: r.id for r in image.rules}
    replayed: Verdicts = {}
    with out.open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if row["event"] == "NEW":
                failed = frozenset(names[n] for n in row["rules"].split(";") if n)
                replayed[int(row["order_id"])] = (row["verdict"], failed)
    assert replayed == verdicts
    kinds = {v for v, _ in verdicts.values()}
    assert kinds == {"ACCEPT", "REJECT"}
    assert set().union(*(f for _, f in verdicts.values())) == set(
        names.values()
    )  # every rule rejected something
    assert {e.event.name for e in entries} == {"NEW", "FILL", "REJECT", "CANCEL"}

    engine = Engine(image)
    load_data(engine, tmp_path / "data")
    for ev in read_events(events):
        engine.process(ev.event, ev.inputs)
    assert engine.state_hash() == state
