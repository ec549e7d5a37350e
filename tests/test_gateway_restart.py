"""A restarted gateway rebuilds its state from the journal; a bad tail is cut and reported."""

from __future__ import annotations

import asyncio
import errno
import os
import random
import shutil
from pathlib import Path

import pytest
from gateway_support import RULES, Client, Stack, held_order, run_async, start_stack

from riskgw.doe.compiler import compile_files
from riskgw.engine.engine import Engine
from riskgw.engine.replay import load_data
from riskgw.errors import UserError
from riskgw.exchange.sim import Behaviour
from riskgw.gateway.journal import scan
from riskgw.gateway.protocol import MsgType, Reason

pytestmark = pytest.mark.timeout(60)


async def trade(stack: Stack, broker: Client, n: int, seed: int) -> None:
    """n orders that the rules and the exchange answer in every way; waits for each verdict."""
    rnd = random.Random(seed)
    for i in range(n):
        account = rnd.randrange(1, 3)
        extra: dict[str, int] = {}
        if i % 5 == 3:
            extra["price"] = 0
        if i % 7 == 4:
            extra["direction"] = 1
        order_id = 100 + i
        broker.send(MsgType.NEW_ORDER, **held_order(order_id, account, k=rnd.randrange(16), **extra))
        while True:
            f = await broker.recv()
            if f.type in (MsgType.ACCEPTED, MsgType.REJECTED) and f["order_id"] == order_id:
                break
    broker.send(MsgType.HEARTBEAT)
    while (await broker.recv()).type is not MsgType.HEARTBEAT:
        pass


def replayed_hash(tmp_path: Path, n_entries: int) -> str:
    engine = Engine(compile_files(RULES).image)
    load_data(engine, tmp_path / "data")
    for entry in scan(tmp_path / "gw.journal").entries[:n_entries]:
        engine.process(entry.event, entry.inputs)
    return engine.state_hash()


def test_restart_rebuilds_the_same_state_and_cuts_a_bad_tail(tmp_path: Path) -> None:
    async def script() -> None:
        stack = await start_stack(tmp_path, Behaviour(seed=4))
        initial = stack.gateway.card.state_hash()
        broker = await stack.broker("alice")
        await trade(stack, broker, 30, seed=1)
        await broker.close()
        state = stack.gateway.card.state_hash()
        assert state != initial
        book = {key: (o.values, o.remaining) for key, o in stack.gateway.open.items()}
        assert book  # some orders rest at the exchange

        logged = await stack.restart()
        assert {key: (o.values, o.remaining) for key, o in stack.gateway.open.items()} == book
        n = len(scan(stack.config.journal).entries)
        assert stack.running.replayed == n > 30
        assert stack.gateway.card.state_hash() == state
        assert not any("cut" in line for line in logged)

        # the restarted gateway trades on from there, and a second restart still agrees
        broker = await stack.broker("alice")
        await trade(stack, broker, 10, seed=2)
        await broker.close()
        state = stack.gateway.card.state_hash()
        await stack.restart()
        assert stack.gateway.card.state_hash() == state
        n = stack.running.replayed

        # a torn last record: cut, reported, and the state is that of the events before it
        await stack.running.stop()
        journal = stack.config.journal
        with journal.open("r+b") as f:
            f.truncate(journal.stat().st_size - 5)
        await stack.restart()
        assert stack.running.replayed == n - 1
        assert stack.running.cut is not None and "torn" in stack.running.cut
        assert stack.gateway.card.state_hash() == replayed_hash(tmp_path, n - 1)

        # garbage appended after a crash: cut and reported, nothing of it replayed
        await stack.running.stop()
        with journal.open("ab") as f:
            f.write(b"\x30\x00\x00\x00\xde\xad\xbe\xef" + b"x" * 20)
        await stack.restart()
        assert stack.running.replayed == n - 1
        assert stack.running.cut is not None and f"after {n - 1} events" in stack.running.cut
        await stack.close()

    run_async(script())


def test_journal_of_other_rules_or_other_data_is_refused(tmp_path: Path) -> None:
    async def script() -> None:
        stack = await start_stack(tmp_path, Behaviour(seed=1))
        broker = await stack.broker("alice")
        await trade(stack, broker, 3, seed=1)
        await broker.close()
        await stack.running.stop()
        before = stack.config.journal.read_bytes()
        stack.config.rules = [p for p in RULES if "rate" not in p.name]
        with pytest.raises(UserError, match="program image"):
            await stack.restart()
        stack.config.rules = list(RULES)
        other = tmp_path / "other"
        shutil.copytree(tmp_path / "data", other)
        (other / "account_info.csv").write_text("account_id,available_balance,total_balance\n1,5,5\n")
        stack.config.data = other
        with pytest.raises(UserError, match="other initial tables"):
            await stack.restart()
        assert stack.config.journal.read_bytes() == before
        stack.exchange_server.close()

    run_async(script())


def test_no_reply_leaves_when_the_journal_cannot_be_written(tmp_path: Path) -> None:
    async def script() -> None:
        stack = await start_stack(tmp_path, Behaviour(fill=1.0, partial=0.0, reject=0.0))
        broker = await stack.broker("alice")
        broker.send(MsgType.NEW_ORDER, **held_order(1, account=1))
        await broker.recv_type(MsgType.ACCEPTED)
        await broker.recv_type(MsgType.FILL)
        state = stack.gateway.card.state_hash()
        journal = stack.gateway.journal
        full = os.open("/dev/full", os.O_WRONLY)  # every write fails with ENOSPC
        os.dup2(full, journal._fd)
        os.close(full)
        broker.send(MsgType.NEW_ORDER, **held_order(2, account=1, k=1))
        await asyncio.wait_for(stack.gateway.stopped.wait(), 5)
        assert isinstance(stack.gateway.failed, OSError) and stack.gateway.failed.errno == errno.ENOSPC
        # no ACCEPTED for order 2: the broker is told why, and the gateway closes the session
        assert (await broker.recv_type(MsgType.LOGOUT))["reason"] == Reason.JOURNAL_FAILED
        with pytest.raises(ConnectionError):
            await broker.recv()
        assert stack.exchange.orders_seen == 1  # order 2 never left
        await broker.close()
        # the journal holds what was confirmed; a restart comes back to that state
        await stack.restart()
        assert stack.gateway.card.state_hash() == state
        await stack.close()

    run_async(script())
