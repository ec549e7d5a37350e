"""NEW_ORDERs that arrive together go through the soft card's batch entry, with exactly the
replies, in the same order, and the journal that one order at a time gives."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from gateway_support import SMALL, held_order, run_async, start_stack

from riskgw.card.soft import SoftCard
from riskgw.exchange.sim import Behaviour
from riskgw.gateway.journal import scan
from riskgw.gateway.protocol import MsgType, encode

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


def test_orders_that_arrive_together_are_decided_as_one_at_a_time(tmp_path: Path, monkeypatch: Any) -> None:
    SMALL.write(tmp_path / "data")
    batches: list[int] = []
    inner = SoftCard.process_many

    def process_many(self: SoftCard, items: Any) -> Any:
        batches.append(len(items))
        return inner(self, items)

    monkeypatch.setattr(SoftCard, "process_many", process_many)
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
