"""NEW_ORDERs that arrive together go through the soft card's batch entry, with exactly the
replies, in the same order, and the journal that one order at a time gives."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from gateway_support import RULES, SMALL, USERS, held_order, run_async, start_stack

from riskgw.card.soft import SoftCard
from riskgw.card.tables import load_data_dir
from riskgw.doe.compiler import compile_files
from riskgw.exchange.sim import Behaviour
from riskgw.gateway.journal import JournalHeader, open_journal, scan
from riskgw.gateway.link import MemoryTransport
from riskgw.gateway.protocol import Frame, FrameReader, MsgType, encode
from riskgw.gateway.serve import make_card
from riskgw.gateway.server import BrokerSession, ExchangeUplink, Gateway

pytestmark = pytest.mark.timeout(60)

Reply = tuple[str, int, int, bytes]  # type, order id, reason, failed-rule mask


def frames() -> list[bytes]:
    """alice's frames: orders that pass, fail rules, are not hers, repeat an id, a stale seq, a
    heartbeat among them."""
    out: list[bytes] = []
    seq = 1  # the LOGON is seq 1
    for order_id in range(100, 260):
        seq += 1
        account = 1 + order_id % 2
        kw: dict[str, Any] = {}
        if order_id % 7 == 0:
            kw["price"] = 0  # a rule fails
        if order_id % 11 == 0:
            kw["quantity"] = 10**9  # others fail
        if order_id % 29 == 0:
            account = 3  # not alice's: NOT_PERMITTED
        if order_id % 31 == 0:
            order_id -= 1  # the id just used again: already open, or decided
        out.append(encode(MsgType.NEW_ORDER, seq, **held_order(order_id, account, k=order_id % 16, **kw)))
        if order_id % 37 == 0:
            seq += 1
            out.append(encode(MsgType.HEARTBEAT, seq))
        if order_id % 41 == 0:
            out.append(encode(MsgType.HEARTBEAT, seq))  # a stale seq: a protocol error
    return out


async def replies(tmp_path: Path, together: bool) -> tuple[list[Reply], list[Any]]:
    # the exchange rests every order: no answers, so the card sees only these NEWs in both runs
    stack = await start_stack(tmp_path, Behaviour(fill=0.0, partial=0.0, reject=0.0), heartbeat_ms=600_000)
    assert isinstance(stack.gateway.card, SoftCard)
    broker = await stack.broker("alice")
    got: list[Reply] = []
    sent = frames()
    if together:
        broker.raw(b"".join(sent))
    n_answers = 0
    for k, data in enumerate(sent):
        if not together:
            broker.raw(data)
        # every frame here is answered by one frame (ACCEPTED, REJECTED or HEARTBEAT)
        while n_answers <= k:
            f = await broker.recv()
            got.append(
                (
                    f.type.name,
                    f.values.get("order_id", 0),
                    f.values.get("reason", 0),
                    f.values.get("failed_mask", b""),
                )
            )
            n_answers += 1
    await broker.close()
    await stack.close()
    journal = [(e.event, e.inputs, e.decision) for e in scan(tmp_path / "gw.journal").entries]
    return got, journal


def count_batches(monkeypatch: Any) -> list[int]:
    """The size of each call of the soft card's batch entry, in order."""
    batches: list[int] = []
    inner = SoftCard.process_many

    def process_many(self: SoftCard, items: Any) -> Any:
        batches.append(len(items))
        return inner(self, items)

    monkeypatch.setattr(SoftCard, "process_many", process_many)
    return batches


def test_orders_that_arrive_together_are_decided_as_one_at_a_time(tmp_path: Path, monkeypatch: Any) -> None:
    SMALL.write(tmp_path / "data")
    batches = count_batches(monkeypatch)
    (tmp_path / "one").mkdir()
    (tmp_path / "together").mkdir()
    for run in ("one", "together"):
        (tmp_path / run / "data").symlink_to(tmp_path / "data")
    one, journal_one = run_async(replies(tmp_path / "one", together=False))
    assert batches == []  # one order a time never takes the batch entry
    together, journal_together = run_async(replies(tmp_path / "together", together=True))
    assert sum(batches) > 100 and max(batches) > 4, batches  # most orders went through it
    kinds = {r[0] for r in one} | {(r[0], r[2]) for r in one if r[0] == "REJECTED"}
    assert {"ACCEPTED", "REJECTED", "HEARTBEAT"} <= kinds and len(kinds) >= 6, kinds
    assert together == one
    assert journal_together == journal_one


async def exchange_side(workdir: Path, together: bool) -> tuple[list[Any], list[Any], list[Any]]:
    """The gateway in process: orders one at a time, then the exchange's answers on them (partial
    and full fills, rejects, cancels, a heartbeat, an unknown order), together or one by one."""
    image = compile_files(RULES).image
    card = make_card("soft")
    card.load_image(image)
    load_data_dir(card, workdir / "data")
    opened = open_journal(
        workdir / "gw.journal", JournalHeader(image.digest(), card.state_hash()), fsync=False
    )
    gw = Gateway(card, opened.journal, dict(USERS), 600_000, lambda text: None)
    exchange, to_exchange = ExchangeUplink(gw), MemoryTransport()
    exchange.connection_made(to_exchange)
    gw.exchange = exchange
    broker, to_broker = BrokerSession(gw), MemoryTransport()
    broker.connection_made(to_broker)
    broker.data_received(encode(MsgType.LOGON, 1, username="alice", password="pw-a"))
    for i, order_id in enumerate(range(100, 180)):
        broker.data_received(encode(MsgType.NEW_ORDER, i + 2, **held_order(order_id, 1 + i % 2, k=i % 16)))
        gw.flush()
    forwards = [f for f in FrameReader().feed(b"".join(to_exchange.out)) if isinstance(f, Frame)]
    answers: list[bytes] = []
    for n, f in enumerate(forwards):
        v = f.values
        if n % 5 == 0:  # a partial fill, then the rest: the same order twice among the answers
            answers.append(encode(MsgType.FILL, 0, **v, exec_price=v["price"], exec_quantity=40))
            answers.append(encode(MsgType.FILL, 0, **v, exec_price=v["price"] + 1, exec_quantity=60))
        elif n % 5 == 1:
            answers.append(encode(MsgType.EXCH_REJECT, 0, **v, exec_price=0, exec_quantity=0))
        elif n % 5 == 2:
            answers.append(encode(MsgType.CANCELLED, 0, **v, exec_price=0, exec_quantity=v["quantity"]))
        else:
            answers.append(encode(MsgType.FILL, 0, **v, exec_price=v["price"], exec_quantity=v["quantity"]))
        if n == 7:
            answers.append(encode(MsgType.HEARTBEAT, 0))
        if n == 11:
            answers.append(encode(MsgType.FILL, 0, **{**v, "order_id": 999}, exec_price=1, exec_quantity=1))
    if together:
        exchange.data_received(b"".join(answers))
        gw.flush()
    else:
        for data in answers:
            exchange.data_received(data)
            gw.flush()
    opened.journal.close()
    card.close()
    replies = [  # a REJECTED's ts is the gateway's clock
        (f.type, {k: v for k, v in f.values.items() if not (k == "ts" and f.type is MsgType.REJECTED)})
        for f in FrameReader().feed(b"".join(to_broker.out))
        if isinstance(f, Frame)
    ]
    journal = [(e.event, e.inputs, e.decision) for e in scan(workdir / "gw.journal").entries]
    book = sorted((key, o.remaining) for key, o in gw.open.items())
    return replies, journal, [book, sorted(gw.history.items()), vars(gw.counters)]


def test_exchange_answers_that_arrive_together_are_decided_as_one_at_a_time(
    tmp_path: Path, monkeypatch: Any
) -> None:
    SMALL.write(tmp_path / "data")
    batches = count_batches(monkeypatch)
    runs = {}
    for together in (False, True):
        workdir = tmp_path / str(together)
        workdir.mkdir()
        (workdir / "data").symlink_to(tmp_path / "data")
        runs[together] = asyncio.run(exchange_side(workdir, together))
        if not together:
            assert batches == []
    assert sum(batches) > 20 and max(batches) >= 4, batches  # most answers went through it
    one, joined = runs[False], runs[True]
    assert len(one[1]) > 80 and {e[0].name for e in one[1]} == {"NEW", "FILL", "REJECT", "CANCEL"}
    for part, (a, b) in enumerate(zip(one, joined, strict=True)):
        assert a == b, (part, next((x, y) for x, y in zip(a, b, strict=False) if x != y))
