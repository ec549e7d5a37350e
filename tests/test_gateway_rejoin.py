"""An order's answers follow its login: to another session of it that is on, to its next session
(with the answers that came meanwhile), and across a restart (the login is in the journal and in
snapshots)."""

from __future__ import annotations

import hashlib
import struct
import zlib
from pathlib import Path

import pytest
from gateway_support import USERS, held_order, run_async, start_stack, until

from riskgw.doe.isa import N_EVENT_REGS, Event
from riskgw.engine.engine import Decision
from riskgw.exchange.sim import Behaviour
from riskgw.gateway.config import User
from riskgw.gateway.journal import JournalHeader, encode_entry, encode_header, open_journal, scan
from riskgw.gateway.metrics import render
from riskgw.gateway.protocol import MsgType
from riskgw.gateway.snapfile import read_snapshot
from riskgw.gateway.snapshot import SnapshotSettings

pytestmark = pytest.mark.timeout(90)

REST_ALL = Behaviour(fill=0.0, partial=0.0, reject=0.0)
# The exchange keeps a closed connection's orders, so they stay open across a gateway restart.
REST_AND_KEEP = Behaviour(fill=0.0, partial=0.0, reject=0.0, cancel_on_disconnect=False)
KEEPER = User("keeper", "pw-k", frozenset({5}), cancel_on_disconnect=False)


def test_answers_kept_while_a_login_is_away_come_at_its_next_logon(tmp_path: Path) -> None:
    async def script() -> None:
        stack = await start_stack(tmp_path, REST_ALL)
        alice = await stack.broker("alice")
        for order_id, account in ((1, 1), (2, 2)):
            alice.send(MsgType.NEW_ORDER, **held_order(order_id, account=account))
            await alice.recv_type(MsgType.ACCEPTED)
        await until(lambda: stack.exchange.resting() == 2, "both orders resting")
        await alice.close()  # cancel-on-disconnect: the exchange's CANCELLEDs find no session of hers
        await until(lambda: not stack.gateway.open, "both orders cancelled")
        counters = stack.gateway.counters
        assert (counters.answers_kept, counters.answers_delivered) == (2, 0)
        assert stack.gateway.status()["answers_waiting"] == {"alice": 2}
        assert 'riskgw_answers_waiting{login="alice"} 2\n' in render(stack.gateway)

        bob = await stack.broker("bob")  # another login gets none of them
        again = await stack.broker("alice")
        got = [await again.recv_type(MsgType.CANCELLED) for _ in range(2)]
        assert [(f["order_id"], f["account_id"], f["exec_quantity"]) for f in got] == [
            (1, 1, 100),
            (2, 2, 100),
        ]
        assert got[0]["ticket_id"] == held_order(1, account=1)["ticket_id"]
        assert (counters.answers_kept, counters.answers_delivered) == (2, 2)
        assert stack.gateway.status()["answers_waiting"] == {}
        assert "riskgw_answers_waiting{" not in render(stack.gateway)
        bob.send(MsgType.HEARTBEAT)
        assert (await bob.recv()).type is MsgType.HEARTBEAT
        # delivered once: a third session of hers gets nothing but its LOGON_ACK and a HEARTBEAT
        third = await stack.broker("alice")
        third.send(MsgType.HEARTBEAT)
        assert (await third.recv()).type is MsgType.HEARTBEAT
        for client in (bob, again, third):
            await client.close()
        await stack.close()

    run_async(script())


def test_answers_go_to_another_session_of_the_login_that_is_on(tmp_path: Path) -> None:
    async def script() -> None:
        stack = await start_stack(tmp_path, REST_ALL)
        first, second = await stack.broker("alice"), await stack.broker("alice")
        first.send(MsgType.NEW_ORDER, **held_order(7, account=1))
        await first.recv_type(MsgType.ACCEPTED)
        await until(lambda: stack.exchange.resting() == 1, "the order resting")
        await first.close()  # its order is cancelled: the answer goes to the session still on
        cancelled = await second.recv_type(MsgType.CANCELLED)
        assert cancelled["order_id"] == 7
        assert stack.gateway.counters.answers_kept == 0
        await second.close()
        await stack.close()

    run_async(script())


def test_a_restarted_gateway_sends_an_open_orders_answers_to_its_logins_new_session(tmp_path: Path) -> None:
    users = {**USERS, "keeper": KEEPER}

    async def script() -> None:
        stack = await start_stack(tmp_path, REST_AND_KEEP, users=users)
        keeper = await stack.broker("keeper")
        for order_id in (1, 2, 3):
            keeper.send(MsgType.NEW_ORDER, **held_order(order_id, account=5, k=order_id))
            await keeper.recv_type(MsgType.ACCEPTED)
        await keeper.close()
        news = [e for e in scan(stack.config.journal).entries if e.event is Event.NEW]
        assert [e.sender for e in news] == ["keeper"] * 3

        await stack.restart()
        assert {key: o.user for key, o in stack.gateway.open.items()} == {(5, i): "keeper" for i in (1, 2, 3)}
        assert all(o.session is None for o in stack.gateway.open.values())
        # a kill switch on the login cancels them, as it would have before the restart
        assert stack.gateway.set_kill(True, None, "keeper", False, cancel_open=True) == 3
        assert stack.gateway.set_kill(False, None, "keeper", False) == 0
        await until(lambda: len(stack.gateway.open) == 0, "keeper's orders cancelled")
        keeper = await stack.broker("keeper")
        got = [await keeper.recv_type(MsgType.CANCELLED) for _ in range(3)]
        assert sorted(f["order_id"] for f in got) == [1, 2, 3]
        assert stack.gateway.counters.answers_delivered == 3
        keeper.send(MsgType.NEW_ORDER, **held_order(4, account=5, k=4))
        await keeper.recv_type(MsgType.ACCEPTED)
        await keeper.close()
        await stack.restart()
        keeper = await stack.broker("keeper")
        keeper.send(MsgType.CANCEL_REQUEST, order_id=4, account_id=5)
        cancelled = await keeper.recv_type(MsgType.CANCELLED)
        assert (cancelled["order_id"], cancelled["exec_quantity"]) == (4, 100)
        await keeper.close()
        await stack.close()

    run_async(script())


def test_a_snapshot_keeps_the_login_of_each_open_order(tmp_path: Path) -> None:
    users = {**USERS, "keeper": KEEPER}

    async def script() -> None:
        stack = await start_stack(
            tmp_path, REST_AND_KEEP, users=users, snapshots=SnapshotSettings(every_events=0, every_seconds=0)
        )
        keeper, alice = await stack.broker("keeper"), await stack.broker("alice")
        keeper.send(MsgType.NEW_ORDER, **held_order(1, account=5))
        await keeper.recv_type(MsgType.ACCEPTED)
        alice.send(MsgType.NEW_ORDER, **held_order(2, account=1))
        await alice.recv_type(MsgType.ACCEPTED)
        assert stack.gateway.snapshots is not None
        answer = await stack.gateway.snapshots.take_now()
        assert answer["ok"], answer
        loaded = read_snapshot(Path(answer["file"]))
        assert loaded.orders.logins == {(5, 1): "keeper", (1, 2): "alice"}
        await keeper.close()
        await alice.close()

        await stack.restart()  # from the snapshot: nothing after it to replay
        assert stack.running.snapshot is not None and stack.running.replayed == 0
        assert stack.gateway.open[(5, 1)].user == "keeper"
        keeper = await stack.broker("keeper")
        keeper.send(MsgType.CANCEL_REQUEST, order_id=1, account_id=5)
        assert (await keeper.recv_type(MsgType.CANCELLED))["order_id"] == 1
        await keeper.close()
        await stack.close()

        # A version 1 snapshot (no logins section) is still read: its open orders follow no login.
        data = Path(answer["file"]).read_bytes()
        names_part = 8 + 2 * 2 + len(b"alice") + len(b"keeper")
        body = data[52 : len(data) - (names_part + 8 + 2 * 24)]
        head = struct.pack("<4sHHQ32s", b"RGWS", 1, 0, len(body), hashlib.sha256(body).digest())
        old = tmp_path / "old.rgws"
        old.write_bytes(head + struct.pack("<I", zlib.crc32(head)) + body)
        v1 = read_snapshot(old)
        assert v1.orders.logins == {}
        assert v1.orders.open == loaded.orders.open and v1.orders.decided == loaded.orders.decided

    run_async(script())


def test_a_version_1_journal_is_appended_to_as_version_1(tmp_path: Path) -> None:
    path = tmp_path / "old.journal"
    header = JournalHeader("ab" * 32, "cd" * 32)
    inputs = list(range(N_EVENT_REGS))
    records = [encode_header(header, version=1), encode_entry(Event.NEW, inputs, Decision(True, ()))]
    path.write_bytes(b"".join(struct.pack("<II", len(p), zlib.crc32(p)) + p for p in records))

    opened = open_journal(path, header, fsync=False)
    assert opened.journal.version == 1 and len(opened.entries) == 1
    opened.journal.append(Event.NEW, inputs, Decision(True, ()), sender="alice")
    opened.journal.close()
    found = scan(path)
    assert found.problem is None and found.version == 1
    assert [e.sender for e in found.entries] == [None, None]  # a version 1 reader could read it all

    fresh = tmp_path / "new.journal"
    opened = open_journal(fresh, header, fsync=False)
    opened.journal.append(Event.NEW, inputs, Decision(False, (3,)), sender="alice")
    opened.journal.close()
    found = scan(fresh)
    assert found.version == 2 and found.entries[0].sender == "alice"
    assert found.entries[0].decision == Decision(False, (3,))


def test_a_journal_of_an_unknown_version_is_refused_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "future.journal"
    header = JournalHeader("ab" * 32, "cd" * 32)
    payload = encode_header(header, version=3)
    data = struct.pack("<II", len(payload), zlib.crc32(payload)) + payload
    path.write_bytes(data)
    with pytest.raises(Exception, match="journal version 3, this gateway reads 1 and 2"):
        open_journal(path, header, fsync=False)
    assert path.read_bytes() == data
