"""An order's answers follow its login: to another session of it that is on, to its next session
(with the answers that came meanwhile), and across a restart (the login is in the journal and in
snapshots)."""

from __future__ import annotations

import asyncio
import hashlib
import socket
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from fix_support import connect, fix_port, fix_stack, price_text
from gateway_support import (
    SMALL,
    USERS,
    Client,
    Stack,
    StalledExchange,
    held_order,
    run_async,
    snapshot_now,
    start_stack,
    until,
)
from prometheus_client.parser import text_string_to_metric_families
from test_gateway_backlog import stalled_gateway

from riskgw.doe.isa import N_EVENT_REGS, Event
from riskgw.engine.engine import Decision
from riskgw.exchange.sim import Behaviour
from riskgw.gateway import follow
from riskgw.gateway.config import User
from riskgw.gateway.journal import (
    JournalHeader,
    decode_entry,
    encode_entry,
    encode_header,
    open_journal,
    scan,
)
from riskgw.gateway.metrics import render
from riskgw.gateway.protocol import MsgType, encode
from riskgw.gateway.server import BrokerSession, Gateway
from riskgw.gateway.snapfile import SnapshotError, read_snapshot
from riskgw.gateway.snapshot import SnapshotSettings
from riskgw.scenario import ref_price

pytestmark = pytest.mark.timeout(90)

REST_ALL = Behaviour(fill=0.0, partial=0.0, reject=0.0)
FILL_ALL = Behaviour(fill=1.0, partial=0.0, reject=0.0)
# The exchange keeps a closed connection's orders, so they stay open across a gateway restart.
REST_AND_KEEP = Behaviour(fill=0.0, partial=0.0, reject=0.0, cancel_on_disconnect=False)
KEEPER = User("keeper", "pw-k", frozenset({5}), cancel_on_disconnect=False)
USERS_AND_KEEPER = {**USERS, "keeper": KEEPER}


def kept_order(order_id: int) -> dict[str, Any]:
    return held_order(order_id, account=5, k=order_id)


def waiting_metric(gw: Gateway) -> dict[str, float]:
    """riskgw_answers_waiting's samples on the metrics page, by login."""
    return {
        sample.labels["login"]: sample.value
        for family in text_string_to_metric_families(render(gw))
        for sample in family.samples
        if sample.name == "riskgw_answers_waiting"
    }


async def keeper_with_orders(tmp_path: Path, ids: Sequence[int]) -> tuple[Stack, Client]:
    """A gateway whose exchange rests every order and keeps it across disconnects, and keeper
    (cancel_on_disconnect off) logged on, its orders `ids` on account 5 accepted."""
    stack = await start_stack(tmp_path, REST_AND_KEEP, users=dict(USERS_AND_KEEPER))
    keeper = await stack.broker("keeper")
    for order_id in ids:
        keeper.send(MsgType.NEW_ORDER, **kept_order(order_id))
        await keeper.recv_type(MsgType.ACCEPTED)
    return stack, keeper


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
        assert waiting_metric(stack.gateway) == {"alice": 2}

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
        assert waiting_metric(stack.gateway) == {}
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
    async def script() -> None:
        stack, keeper = await keeper_with_orders(tmp_path, (1, 2, 3))
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
        keeper.send(MsgType.NEW_ORDER, **kept_order(4))
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
    async def script() -> None:
        stack = await start_stack(
            tmp_path,
            REST_AND_KEEP,
            users=dict(USERS_AND_KEEPER),
            snapshots=SnapshotSettings(every_events=0, every_seconds=0),
        )
        keeper, alice = await stack.broker("keeper"), await stack.broker("alice")
        keeper.send(MsgType.NEW_ORDER, **held_order(1, account=5))
        await keeper.recv_type(MsgType.ACCEPTED)
        alice.send(MsgType.NEW_ORDER, **held_order(2, account=1))
        await alice.recv_type(MsgType.ACCEPTED)
        answer = await snapshot_now(stack.gateway)
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

        def snapshot(body: bytes, version: int) -> Path:
            head = struct.pack("<4sHHQ32s", b"RGWS", version, 0, len(body), hashlib.sha256(body).digest())
            path = tmp_path / f"edited-{version}.rgws"
            path.write_bytes(head + struct.pack("<I", zlib.crc32(head)) + body)
            return path

        names_part = 8 + 2 * 2 + len(b"alice") + len(b"keeper")
        v1 = read_snapshot(snapshot(data[52 : len(data) - (names_part + 8 + 2 * 24)], 1))
        assert v1.orders.logins == {}
        assert v1.orders.open == loaded.orders.open and v1.orders.decided == loaded.orders.decided
        # a login given to an order that is not open, or an index past its names, is refused
        last = len(data) - 24  # the last (account, order id, login index) of the logins section
        for at, value, why in ((last + 8, 99, "not one of its open orders"), (last + 16, 2, "not one of")):
            edited = data[52:at] + struct.pack("<q", value) + data[at + 8 :]
            with pytest.raises(SnapshotError, match=why):
                read_snapshot(snapshot(edited, 2))

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


async def _closed(stack: Stack, name: str) -> None:
    await until(
        lambda: not any(s.user and s.user.name == name for s in stack.gateway.sessions), f"{name} gone"
    )


def _fill(values: dict[str, Any], qty: int = 100) -> bytes:
    return encode(MsgType.FILL, 10_000, **values, exec_price=values["price"], exec_quantity=qty)


def test_an_answer_in_the_turn_of_the_brokers_logout_is_kept_not_queued_after_its_close(
    tmp_path: Path,
) -> None:
    async def script() -> None:
        stack, keeper = await keeper_with_orders(tmp_path, (1,))
        gw, values = stack.gateway, kept_order(1)
        session = next(iter(gw.follow.on["keeper"]))
        # the broker's LOGOUT, then an order it sent after it, and the exchange's FILL, in one turn
        session.data_received(
            encode(MsgType.LOGOUT, keeper.seq + 1, reason=0)
            + encode(MsgType.NEW_ORDER, keeper.seq + 2, **kept_order(2))
        )
        assert gw.exchange is not None
        gw.exchange.data_received(_fill(values))
        assert (await keeper.recv()).type is MsgType.LOGOUT
        with pytest.raises(ConnectionError):
            await keeper.recv()  # nothing after the LOGOUT: the FILL was not queued behind the close
        await _closed(stack, "keeper")
        assert [e.inputs[0] for e in scan(stack.config.journal).entries if e.event is Event.NEW] == [1]
        again = await stack.broker("keeper")
        assert (await again.recv_type(MsgType.FILL))["order_id"] == 1
        assert (gw.counters.answers_kept, gw.counters.answers_delivered) == (1, 1)
        await again.close()
        await stack.close()

    run_async(script())


def test_replies_queued_to_a_session_that_dies_before_the_flush_are_kept(tmp_path: Path) -> None:
    async def script() -> None:
        stack, _ = await keeper_with_orders(tmp_path, (1,))
        gw, values = stack.gateway, kept_order(1)
        session = next(iter(gw.follow.on["keeper"]))
        assert gw.exchange is not None and session.transport is not None
        gw.exchange.data_received(_fill(values, 40))  # queued for the session ...
        session.transport.abort()  # ... which is reset before the flush writes it
        await _closed(stack, "keeper")
        again = await stack.broker("keeper")
        fill = await again.recv_type(MsgType.FILL)
        assert (fill["order_id"], fill["exec_quantity"]) == (1, 40)
        await again.close()
        await stack.close()

    run_async(script())


def test_a_logon_adopts_the_orders_restored_for_its_login(tmp_path: Path) -> None:
    """Adopted: when that session goes, cancel-on-disconnect cancels them as its own orders."""

    async def script() -> None:
        stack, keeper = await keeper_with_orders(tmp_path, (1, 2))
        await keeper.close()
        stack.config.users = {**USERS, "keeper": User("keeper", "pw-k", frozenset({5}))}  # cancels now
        await stack.restart()
        keeper = await stack.broker("keeper")
        session = next(iter(stack.gateway.follow.on["keeper"]))
        assert all(o.session is session for o in stack.gateway.open.values())
        await keeper.close()
        await until(lambda: not stack.gateway.open, "the adopted orders cancelled on disconnect")
        again = await stack.broker("keeper")
        got = [await again.recv_type(MsgType.CANCELLED) for _ in range(2)]
        assert sorted(f["order_id"] for f in got) == [1, 2]
        await again.close()
        await stack.close()

    run_async(script())


def test_kept_answers_are_bounded_and_a_login_the_config_lost_keeps_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(follow, "ANSWERS_KEPT", 3)

    async def script() -> None:
        logged: list[str] = []
        stack, keeper = await keeper_with_orders(tmp_path, (1, 2))
        gw = stack.gateway
        gw._log = logged.append
        sent = [kept_order(i) for i in (1, 2)]
        await keeper.close()
        await _closed(stack, "keeper")
        assert gw.exchange is not None
        for qty in (10, 20, 30, 40):  # four partial fills of order 1, kept: the first is dropped
            gw.exchange.data_received(_fill(sent[0], qty))
        await until(lambda: gw.counters.answers_kept == 4, "four fills kept")
        assert gw.counters.answers_dropped == 1 and gw.follow.waiting() == {"keeper": 3}
        assert sum("answers wait for logins that are away" in line for line in logged) == 1
        again = await stack.broker("keeper")
        assert [(await again.recv_type(MsgType.FILL))["exec_quantity"] for _ in range(3)] == [20, 30, 40]
        await again.close()
        await _closed(stack, "keeper")

        stack.config.users = dict(
            USERS
        )  # keeper is gone from the config: its answers have no one to wait for
        await stack.restart()
        gw = stack.gateway
        gw._log = logged.append
        assert gw.exchange is not None
        gw.exchange.data_received(_fill(sent[1]))
        await until(lambda: not gw.open.get((5, 2)), "order 2 filled")
        assert gw.follow.waiting() == {} and gw.counters.answers_dropped == 1
        assert any("a login the config does not have" in line for line in logged)
        await stack.close()

    run_async(script())


def test_a_fix_sessions_orders_are_journaled_without_a_login(tmp_path: Path) -> None:
    async def script() -> None:
        async with fix_stack(tmp_path, FILL_ALL) as stack:
            broker = await connect(tmp_path, fix_port(stack))
            sec = SMALL.held(1, 0)
            broker.new_order("c1", "ACME", "1", 100, price_text(ref_price(sec)), 1, 34_201.5)
            await broker.report("0", T39="0", T11="c1")
            await broker.report("F", T39="2", T11="c1")
            news = [e for e in scan(stack.config.journal).entries if e.event is Event.NEW]
            assert [e.sender for e in news] == [None]  # its answers follow its FIX session, not a login
            assert stack.gateway.follow.orders == {} and stack.gateway.follow.waiting() == {}
            await broker.logout()

    run_async(script())


def test_journal_records_refuse_a_bad_login() -> None:
    inputs = list(range(N_EVENT_REGS))
    good = encode_entry(Event.NEW, inputs, Decision(True, ()), "alice")
    assert decode_entry(good).sender == "alice"
    with pytest.raises(ValueError, match="wrong length"):
        decode_entry(good[:-1])  # a torn login
    with pytest.raises(ValueError, match="not UTF-8"):
        decode_entry(good[:-5] + b"\xff" * 5)
    with pytest.raises(ValueError, match="up to 255"):
        encode_entry(Event.NEW, inputs, Decision(True, ()), "x" * 256)


async def a_fill_held_behind_a_backlog(
    gw: Gateway, exchange: StalledExchange, conn: socket.socket, port: int, quantity: int
) -> tuple[Client, BrokerSession, dict[str, Any], int]:
    """Login keeper on a gateway whose exchange reads nothing: order 1 accepted (before the
    backlog), 2,999 more behind it whose ACCEPTEDs are held, then a FILL of `quantity` on order 1
    decided and held behind them. Its client, session, order 1 and the exchange events before."""
    keeper = await Client.connect(port)
    keeper.send(MsgType.LOGON, username="keeper", password="pw-k")
    await keeper.recv_type(MsgType.LOGON_ACK)
    first = held_order(1, 1)
    keeper.send(MsgType.NEW_ORDER, **first)
    await keeper.recv_type(MsgType.ACCEPTED)  # it left before the backlog
    for order_id in range(2, 3_001):  # the exchange reads none of these: their ACCEPTEDs are held
        keeper.send(MsgType.NEW_ORDER, **held_order(order_id, order_id % 20, k=order_id % 16))
    session = next(iter(gw.follow.on["keeper"]))
    await until(lambda: session in gw._held and session.last_seq == keeper.seq, "ACCEPTEDs held")
    events = gw.counters.exchange_events
    await exchange.answer(conn, MsgType.FILL, **first, exec_price=first["price"], exec_quantity=quantity)
    await until(lambda: gw.counters.exchange_events == events + 1, "the FILL decided")
    return keeper, session, first, events


def test_an_answer_held_behind_an_exchange_backlog_is_kept_when_its_session_goes(tmp_path: Path) -> None:
    async def script() -> None:
        anyone = User("keeper", "pw-k", None, cancel_on_disconnect=False)
        exchange, conn, running = await stalled_gateway(
            tmp_path, [], users={**USERS, "keeper": anyone}, held_replies_limit=1_000_000
        )
        gw = running.gateway
        keeper, session, _, _ = await a_fill_held_behind_a_backlog(gw, exchange, conn, running.port, 100)
        held = gw._held[session]
        assert held[-1] is not None and held[-1][0] == MsgType.FILL  # it waits behind the ACCEPTEDs
        replies = len(held)  # ACCEPTEDs, REJECTEDs (EXCHANGE_BACKLOG) and the FILL, all unwritten
        assert None not in held and {f[0] for f in held if f} == {
            MsgType.ACCEPTED,
            MsgType.REJECTED,
            MsgType.FILL,
        }
        await keeper.close()  # the broker goes before the exchange reads
        await until(lambda: session not in gw.sessions, "keeper's session gone")
        assert gw.follow.waiting() == {"keeper": replies}
        serving = None
        try:
            again = await Client.connect(running.port)
            again.send(MsgType.LOGON, username="keeper", password="pw-k")
            await again.recv_type(MsgType.LOGON_ACK)  # at once: it waits for nothing
            assert not gw.follow.waiting() and gw.counters.answers_delivered == replies
            # the ACCEPTEDs still wait for the exchange to read their NEW_ORDERs, as they did before
            new = next(iter(gw.follow.on["keeper"]))
            assert len(gw._held[new]) == replies
            serving = asyncio.get_running_loop().create_task(exchange.serve(conn))
            got = [await again.recv() for _ in range(replies)]
            assert got[-1].type is MsgType.FILL and got[-1]["order_id"] == 1
            assert {f.type for f in got} == {MsgType.ACCEPTED, MsgType.REJECTED, MsgType.FILL}
            await again.close()
        finally:
            if serving is None:
                conn.close()
            await running.stop()
            if serving is not None:
                await serving

    run_async(script(), timeout=50)


def test_an_orders_answers_keep_their_order_behind_a_leaving_sessions_unwritten_replies(
    tmp_path: Path,
) -> None:
    """A FILL waits behind held ACCEPTEDs; the session sends LOGOUT (leaving) and the exchange
    cancels the rest: the CANCELLED waits behind the held FILL, and when the connection goes both
    follow the login in that order."""

    async def script() -> None:
        anyone = User("keeper", "pw-k", None, cancel_on_disconnect=False)
        exchange, conn, running = await stalled_gateway(
            tmp_path, [], users={**USERS, "keeper": anyone}, held_replies_limit=1_000_000
        )
        gw = running.gateway
        try:
            keeper, session, first, events = await a_fill_held_behind_a_backlog(
                gw, exchange, conn, running.port, 40
            )
            keeper.send(MsgType.LOGOUT, reason=0)
            await until(lambda: session.leaving, "the session leaving")
            await exchange.answer(conn, MsgType.CANCELLED, **first, exec_price=0, exec_quantity=60)
            await until(lambda: gw.counters.exchange_events == events + 2, "CANCELLED decided")
            assert gw.follow.deferred[session] and gw.follow.waiting() == {}
            await keeper.close()
            await until(lambda: session not in gw.sessions, "the session gone")
            kept = [t for t, _ in gw.follow.kept["keeper"] if t in (MsgType.FILL, MsgType.CANCELLED)]
            assert kept == [MsgType.FILL, MsgType.CANCELLED]
            assert session not in gw.follow.deferred
        finally:
            conn.close()
            await running.stop()

    run_async(script(), timeout=60)


def test_cancel_on_disconnect_covers_every_order_the_leaving_session_sent(tmp_path: Path) -> None:
    """Its LOGOUT and a partial FILL of order 1 read in one turn, another session of the login on:
    the FILL goes to that session, and the order stays the leaving one's, so its disconnect
    cancels both orders it sent."""

    async def script() -> None:
        coder = User("coder", "pw-c", frozenset({5}), cancel_on_disconnect=True)
        stack = await start_stack(tmp_path, REST_ALL, users={**USERS, "coder": coder})
        gw = stack.gateway
        s1 = await stack.broker("coder")
        for order_id in (1, 2):
            s1.send(MsgType.NEW_ORDER, **kept_order(order_id))
            await s1.recv_type(MsgType.ACCEPTED)
        s2 = await stack.broker("coder")
        (session,) = [s for s in gw.follow.on["coder"] if s.last_seq == s1.seq]
        session.data_received(encode(MsgType.LOGOUT, s1.seq + 1, reason=0))
        assert gw.exchange is not None
        gw.exchange.data_received(_fill(kept_order(1), 10))
        await until(lambda: not gw.open, "both of its orders cancelled on its disconnect")
        got = [await s2.recv() for _ in range(3)]
        assert (got[0].type, got[0]["order_id"], got[0]["exec_quantity"]) == (MsgType.FILL, 1, 10)
        # (the simulated exchange never saw the FILL given to the gateway: it cancels all of order 1)
        assert sorted(f["order_id"] for f in got[1:] if f.type is MsgType.CANCELLED) == [1, 2]
        await s2.close()
        await stack.close()

    run_async(script())


def test_a_logon_skips_an_index_entry_for_an_order_no_longer_open(tmp_path: Path) -> None:
    async def script() -> None:
        stack, keeper = await keeper_with_orders(tmp_path, (1,))
        await keeper.close()
        await _closed(stack, "keeper")
        stack.gateway.follow.orders["keeper"].add((5, 99))  # not an open order
        again = await stack.broker("keeper")  # the LOGON is answered and adopts order 1
        assert stack.gateway.open[(5, 1)].session is next(iter(stack.gateway.follow.on["keeper"]))
        await again.close()
        await stack.close()

    run_async(script())


def test_a_fill_is_not_told_twice_to_a_broker_that_sends_its_order_again(tmp_path: Path) -> None:
    """The old session is leaving with its FILL unwritten behind a backlog when the broker sends the
    order again on a new session: the repeat's history tells the FILL, the old session's copy is
    dropped when its connection goes."""

    async def script() -> list[int]:
        anyone = User("keeper", "pw-k", None, cancel_on_disconnect=False)
        exchange, conn, running = await stalled_gateway(
            tmp_path, [], users={**USERS, "keeper": anyone}, held_replies_limit=1_000_000
        )
        gw = running.gateway
        serving = None
        try:
            s1, session, first, _ = await a_fill_held_behind_a_backlog(gw, exchange, conn, running.port, 40)
            s1.send(MsgType.LOGOUT, reason=0)
            await until(lambda: session.leaving, "s1 leaving")
            # the broker, not sure of order 1, sends it again on a new connection
            s2 = await Client.connect(running.port)
            s2.send(MsgType.LOGON, username="keeper", password="pw-k")
            await s2.recv_type(MsgType.LOGON_ACK)
            s2.send(MsgType.NEW_ORDER, **first)
            await until(lambda: gw.counters.repeated == 1, "answered again")
            await s1.close()
            await until(lambda: session not in gw.sessions, "s1 gone")
            serving = asyncio.get_running_loop().create_task(exchange.serve(conn))
            s2.send(MsgType.HEARTBEAT)
            fills = []
            while (f := await s2.recv(timeout=10)).type is not MsgType.HEARTBEAT:
                if f.type is MsgType.FILL and f["order_id"] == 1:
                    fills.append(f["exec_quantity"])
            await s2.close()
            return fills
        finally:
            if serving is None:
                conn.close()
            await running.stop()
            if serving is not None:
                await serving

    fills = run_async(script(), 80)
    assert fills == [40], fills
