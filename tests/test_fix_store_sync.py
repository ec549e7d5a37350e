"""The FIX store reaches the disk before a message leaves (riskgw/gateway/fixsync.py).

os.fdatasync is wrapped for the test: each call on a file of the FIX store records what the file
held at that moment, then the real fdatasync runs. A message the broker received must have been in
the store's body file, and its sequence number in the seqnums file, when a sync of those files ran.
"""

from __future__ import annotations

import errno
import os
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import quickfix
from fix_support import connect, fix_config, fix_port, fix_stack, wait_until
from gateway_support import held_order, run_async

from riskgw.exchange.sim import Behaviour
from riskgw.gateway import fix as fix_module
from riskgw.gateway import fixsync
from riskgw.gateway.protocol import MsgType
from riskgw.gateway.serve import start_gateway

pytestmark = pytest.mark.timeout(120)

REST_ALL = Behaviour(fill=0.0, partial=0.0, reject=0.0)
FILL_ALL = Behaviour(fill=1.0, partial=0.0, reject=0.0)
SOH = "\x01"


class SyncRecorder:
    """Replaces os.fdatasync; keeps (file name, content) for each call on a file under `store`."""

    def __init__(self, store: Path, fail: bool = False) -> None:
        self.store = store.resolve()
        self.fail = fail
        self.calls: list[tuple[str, str]] = []
        self.received: set[int] = set()  # MsgSeqNums the broker has had (see watch)
        self.before: dict[int, bool] = {}  # MsgSeqNum -> the body was synced before the broker had it
        self.lock = threading.Lock()
        self.real: Callable[[int], None] = os.fdatasync

    def __call__(self, fd: int) -> None:
        path = Path(os.readlink(f"/proc/self/fd/{fd}"))
        if path.parent == self.store:
            text = path.read_text(encoding="latin-1")
            with self.lock:
                self.calls.append((path.name, text))
                if path.suffix == ".body" and text:
                    seq = last_message(text)
                    self.before.setdefault(seq, seq not in self.received)
            if self.fail:
                raise OSError(errno.EIO, os.strerror(errno.EIO))
        self.real(fd)

    def watch(self, broker: Any) -> None:
        """Note each MsgSeqNum the broker's engine hands its application (on QuickFIX's thread)."""
        delivered = broker.fromApp

        def from_app(message: Any, sid: Any) -> None:
            with self.lock:
                self.received.add(int(message.getHeader().getField(34)))
            delivered(message, sid)

        broker.fromApp = from_app  # the SWIG director looks the method up on the instance

    def synced(self, suffix: str) -> list[str]:
        with self.lock:
            return [text for name, text in self.calls if name.endswith(suffix)]


def next_sender(seqnums: str) -> int:
    """The gateway's next outbound MsgSeqNum, from FileStore's seqnums file ("SENDER : TARGET")."""
    return int(seqnums.split(":")[0])


def last_message(body: str) -> int:
    """The MsgSeqNum of the last message in FileStore's body file (messages back to back)."""
    last = body.rsplit(f"8=FIX.4.4{SOH}", 1)[-1]
    return int(last.split(f"{SOH}34=", 1)[1].split(SOH, 1)[0])


def test_each_message_is_synced_before_the_broker_has_it(tmp_path: Path, monkeypatch: Any) -> None:
    recorder = SyncRecorder(tmp_path / "gw.journal.fix")
    monkeypatch.setattr(os, "fdatasync", recorder)

    async def script() -> None:
        async with fix_stack(tmp_path, REST_ALL) as stack:
            fix = stack.gateway.status()["fix"]
            assert fix["store_sync"] is True and fix["store_sync_failures"] == 0
            broker = await connect(tmp_path, fix_port(stack))
            recorder.watch(broker)
            received = []
            for i in range(3):
                broker.held(f"s{i}", account=1, k=i)
                received.append(await broker.report("0", T11=f"s{i}"))
            for report in received:
                seq = int(report[34])
                assert recorder.before[seq] is True and seq in recorder.received
                # synced with this message as the last one written, and the next number after it
                assert any(last_message(body) == seq for body in recorder.synced(".body"))
                assert any(header.split()[-1].startswith(f"{seq},") for header in recorder.synced(".header"))
                assert seq + 1 in {next_sender(s) for s in recorder.synced(".seqnums")}
            assert {name.rsplit(".", 1)[1] for name, _ in recorder.calls} == {"body", "header", "seqnums"}
            assert stack.gateway.status()["fix"]["store_sync_failures"] == 0

    run_async(script(), timeout=60)


def test_store_sync_false_syncs_nothing(tmp_path: Path, monkeypatch: Any) -> None:
    recorder = SyncRecorder(tmp_path / "gw.journal.fix")
    monkeypatch.setattr(os, "fdatasync", recorder)
    config = fix_config()
    config.store_sync = False

    async def script() -> None:
        async with fix_stack(tmp_path, REST_ALL, fix=config) as stack:
            assert stack.gateway.status()["fix"]["store_sync"] is False
            broker = await connect(tmp_path, fix_port(stack))
            broker.held("n1", account=1)
            await broker.report("0", T11="n1")
        assert recorder.calls == []

    run_async(script(), timeout=60)


def test_a_failing_sync_is_reported_once_and_messages_still_leave(tmp_path: Path, monkeypatch: Any) -> None:
    recorder = SyncRecorder(tmp_path / "gw.journal.fix", fail=True)

    async def script() -> None:
        async with fix_stack(tmp_path, REST_ALL) as stack:
            logged = await stack.restart()  # the first start logs nowhere; this one into `logged`
            monkeypatch.setattr(os, "fdatasync", recorder)
            broker = await connect(tmp_path, fix_port(stack))
            for i in range(2):
                broker.held(f"f{i}", account=1, k=i)
                await broker.report("0", T11=f"f{i}")
            await wait_until(lambda: any("cannot sync the store" in line for line in logged))
            failures = stack.gateway.status()["fix"]["store_sync_failures"]
            assert failures >= 3  # Logon, two ExecutionReports
            assert sum("cannot sync the store" in line for line in logged) == 1
            assert any("Input/output error" in line for line in logged)

    run_async(script(), timeout=60)


def test_store_files_are_named_as_quickfix_names_them() -> None:
    sid = quickfix.SessionID("FIX.4.4", "RISKGW", "BROKER1")
    assert [p.name for p in fixsync.store_files(Path("/s"), sid)] == [
        "FIX.4.4-RISKGW-BROKER1.body",
        "FIX.4.4-RISKGW-BROKER1.header",
        "FIX.4.4-RISKGW-BROKER1.seqnums",
    ]
    qualified = quickfix.SessionID("FIX.4.4", "RISKGW", "BROKER1", "Q")
    assert fixsync.store_files(Path("/s"), qualified)[2] == Path("/s/FIX.4.4-RISKGW-BROKER1-Q.seqnums")


def test_a_store_that_lost_its_last_messages_is_refused_by_the_broker(tmp_path: Path) -> None:
    """What a power cut without store_sync can do, and what docs/operations.md says the broker sees:
    the gateway's store forgets its last messages (here: its seqnums file is set back by two, as
    if the last two writes never reached the disk), so its Logon comes with a MsgSeqNum lower than
    the broker expects. The broker's engine answers with a Logout and disconnects. Each refused
    attempt uses up gateway numbers (its Logon, its Logout), so once as many are used as were lost,
    a Logon gets through."""

    async def script() -> None:
        # Orders that fill: none is open when the broker leaves, so no cancel-on-disconnect answer
        # is sent while it is away (each would use a number, and could fill the gap)
        async with fix_stack(tmp_path, FILL_ALL) as stack:
            broker = await connect(tmp_path, fix_port(stack))
            for i in range(2):
                broker.held(f"p{i}", account=1, k=i)
                await broker.report("0", T11=f"p{i}")
                await broker.report("F", T11=f"p{i}")
            # The broker's engine first, so that it does not try to log on again (it reconnects
            # every second) while the gateway stops.
            await broker.stop()
            await stack.running.stop()
            seqnums = tmp_path / "gw.journal.fix" / "FIX.4.4-RISKGW-BROKER1.seqnums"
            sender, target = (int(part) for part in seqnums.read_text().split(":"))  # the next ones
            seqnums.write_text(f"{sender - 2:010d} : {target:010d}")
            stack.running = await start_gateway(stack.config, lambda text: None)
            again = await connect(tmp_path, fix_port(stack), logon=False)
            sent = tmp_path / "broker1" / "FIX.4.4-BROKER1-RISKGW.body"
            # The broker expects `sender`, or one less when the gateway's answer to its Logout did
            # not reach it before its engine stopped.
            refusal = re.compile(f"{SOH}58=MsgSeqNum too low, expecting ([0-9]+) but received ([0-9]+){SOH}")
            await wait_until(lambda: refusal.search(sent.read_text(encoding="latin-1")) is not None)
            found = refusal.search(sent.read_text(encoding="latin-1"))
            assert found is not None
            expecting, received = int(found[1]), int(found[2])
            assert received < expecting and expecting in (sender - 1, sender)
            await again.next(("logon",))
            await wait_until(lambda: stack.gateway.status()["fix"]["sessions"][0]["logged_on"])

    run_async(script(), timeout=60)


def test_a_slow_store_sync_holds_up_no_binary_session(tmp_path: Path, monkeypatch: Any) -> None:
    # Replies go to QuickFIX on the acceptor's sender thread: while a FIX reply waits for the disk,
    # the loop goes on deciding the other sessions' orders. The reply's sync is held until the
    # binary order has its answer (not slowed by a fixed time, which a loaded machine could match):
    # were the loop the one syncing, the answer would come only after the sync gave up waiting.
    store = (tmp_path / "gw.journal.fix").resolve()
    real = os.fdatasync
    slow = threading.Event()
    release = threading.Event()
    syncing = threading.Event()  # a store sync is held right now
    gave_up: list[bool] = []

    def slow_sync(fd: int) -> None:
        if slow.is_set() and Path(os.readlink(f"/proc/self/fd/{fd}")).parent == store:
            syncing.set()
            gave_up.append(not release.wait(15))
            syncing.clear()
        real(fd)

    monkeypatch.setattr(os, "fdatasync", slow_sync)

    async def script() -> None:
        async with fix_stack(tmp_path, REST_ALL) as stack:
            broker = await connect(tmp_path, fix_port(stack))
            binary = await stack.broker("alice")
            slow.set()  # the FIX reply's syncs now wait for `release`
            broker.held("slow1", account=1)
            await wait_until(lambda: syncing.is_set() or bool(gave_up))
            binary.send(MsgType.NEW_ORDER, **held_order(7, account=2))
            await binary.recv_type(MsgType.ACCEPTED)
            assert syncing.is_set() and not any(gave_up), "the binary order waited for a FIX reply's sync"
            release.set()
            await broker.report("0", T11="slow1")
            slow.clear()
            assert gave_up and not any(gave_up)
            await binary.close()

    run_async(script(), timeout=60)


def test_stop_does_not_wait_for_a_send_that_never_returns(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setattr(fix_module, "SENDER_WAIT_S", 0.2)
    release = threading.Event()

    async def script() -> list[str]:
        async with fix_stack(tmp_path, REST_ALL) as stack:
            logged = await stack.restart()
            fix = stack.running.fix
            assert fix is not None
            real = fix._send_now

            def stuck(sid: Any, out: Any) -> None:
                release.wait(40)  # a send that does not come back (a broker not reading, say)
                real(sid, out)

            monkeypatch.setattr(fix, "_send_now", stuck)
            broker = await connect(tmp_path, fix_port(stack))
            broker.held("stuck1", account=1)
            await wait_until(lambda: stack.gateway.counters.orders == 1)
            start = time.monotonic()
            await fix.stop()
            # well short of the stuck send (it returns only when released, or after 40 s): stop's
            # own waits (0.2 s for the sender, up to 2 s for Logouts) with room for a loaded machine
            assert time.monotonic() - start < 20.0
            release.set()
            return logged

    logged = run_async(script(), timeout=60)
    assert any("replies not sent at stop: a send did not return within 0.2 s" in line for line in logged)
