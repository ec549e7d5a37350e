"""State snapshots: a restart loads the newest good one and replays only the journal after it, and
ends in the state a replay of the whole journal gives."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from fix_support import connect, fix_port, fix_stack, price_text, wait_until
from gateway_support import RULES, SMALL, Client, Stack, held_order, run_async, start_stack

from riskgw.doe.compiler import compile_files
from riskgw.engine.engine import Engine
from riskgw.engine.replay import load_data
from riskgw.exchange.sim import Behaviour
from riskgw.gateway.config import GatewayConfig
from riskgw.gateway.control import request
from riskgw.gateway.deploy import deployments_dir
from riskgw.gateway.journal import scan
from riskgw.gateway.metrics import render
from riskgw.gateway.protocol import Frame, MsgType
from riskgw.gateway.serve import start_gateway
from riskgw.gateway.server import Gateway
from riskgw.gateway.snapfile import read_snapshot, snapshot_files
from riskgw.gateway.snapshot import SnapshotSettings, snapshots_dir
from riskgw.scenario import ref_price, ticket

pytestmark = pytest.mark.timeout(120)

# The exchange keeps the orders of a connection that closes, so a restart's resync changes nothing
# and two gateways started on copies of one journal can be compared after it.
MARKET = Behaviour(fill=0.3, partial=0.3, reject=0.1, seed=7, cancel_on_disconnect=False)
MANUAL = SnapshotSettings(every_events=0, every_seconds=0, keep=3)  # only when asked
TOKEN = "snapshot-token"


async def snap_stack(tmp_path: Path, settings: SnapshotSettings = MANUAL, **kw: Any) -> Stack:
    return await start_stack(tmp_path, MARKET, snapshots=settings, **kw)


async def verdict(client: Client, order_id: int) -> Frame:
    while True:
        f = await client.recv()
        if f.type in (MsgType.ACCEPTED, MsgType.REJECTED) and f["order_id"] == order_id:
            return f


async def trade(
    broker: Client, sent: dict[int, dict[str, Any]], first: int, n: int, reject: bool = False
) -> None:
    """n orders (ids first..first+n-1) on accounts 1 and 2; every fifth fails a rule (price 0), or
    all of them with `reject`. Waits for each verdict."""
    for i in range(n):
        order_id = first + i
        extra = {"price": 0} if reject or i % 5 == 3 else {}
        values = held_order(order_id, 1 + i % 2, k=i % 16, **extra)
        sent[order_id] = values
        broker.send(MsgType.NEW_ORDER, **values)
        await verdict(broker, order_id)
    broker.send(MsgType.HEARTBEAT)  # the exchange's answers so far have come through
    while (await broker.recv()).type is not MsgType.HEARTBEAT:
        pass


def state_of(gw: Gateway) -> dict[str, Any]:
    """Everything a restart rebuilds from the journal (the sessions the orders came on aside)."""
    assert gw.deployer is not None
    return {
        "hash": gw.card.state_hash(),
        "image": gw.card.image.digest(),
        "versions": list(gw.deployer.history),
        "decided": {k: (tuple(v[0]), v[1]) for k, v in gw.decided.items()},
        "answers": {k: list(v) for k, v in gw.history.items()},
        "open": {k: (o.values, o.remaining, o.user) for k, o in gw.open.items()},
        "done": list(gw._done),
        "forgotten": dict(gw.forgotten),
    }


def events_in(journal: Path) -> int:
    return len(scan(journal).entries)


def full_replay_hash(tmp_path: Path, journal: Path) -> str:
    engine = Engine(compile_files(RULES).image)
    load_data(engine, tmp_path / "data")
    for entry in scan(journal).entries:
        engine.process(entry.event, entry.inputs)
    return engine.state_hash()


def copy_journal(config: GatewayConfig, target: Path) -> GatewayConfig:
    """A second gateway's config on a copy of the journal and its deployments, without snapshots."""
    target.mkdir()
    journal = target / config.journal.name
    shutil.copyfile(config.journal, journal)
    if deployments_dir(config.journal).exists():
        shutil.copytree(deployments_dir(config.journal), deployments_dir(journal))
    other = GatewayConfig(**{**vars(config), "journal": journal})
    other.snapshots = SnapshotSettings(every_events=0, every_seconds=0)
    return other


async def ask_again(
    port: int, sent: dict[int, dict[str, Any]], ids: list[int]
) -> list[tuple[str, dict[str, Any]]]:
    """A broker that lost its answers sends orders again: what the gateway answers for each."""
    client = await Client.connect(port)
    client.send(MsgType.LOGON, username="alice", password="pw-a")
    await client.recv_type(MsgType.LOGON_ACK)
    for order_id in ids:
        client.send(MsgType.NEW_ORDER, **sent[order_id])
    client.send(MsgType.HEARTBEAT)
    answers = []
    while (f := await client.recv()).type is not MsgType.HEARTBEAT:
        answers.append((f.type.name, {k: v for k, v in f.values.items() if k != "ts"}))
    await client.close()
    return answers


def test_restart_from_a_snapshot_equals_a_full_replay(tmp_path: Path) -> None:
    async def script() -> None:
        stack = await snap_stack(tmp_path)
        broker = await stack.broker("alice")
        sent: dict[int, dict[str, Any]] = {}
        await trade(broker, sent, 100, 30)
        snapshotter = stack.gateway.snapshots
        assert snapshotter is not None
        answer = await snapshotter.take_now()
        assert answer["ok"], answer
        taken_at = answer["events"]
        assert taken_at == events_in(stack.config.journal)
        await trade(broker, sent, 200, 20)
        await broker.close()
        before = state_of(stack.gateway)
        await stack.running.stop()
        total = events_in(stack.config.journal)
        assert total > taken_at

        full_config = copy_journal(stack.config, tmp_path / "full")
        logged = await stack.restart()
        after = state_of(stack.gateway)  # before any loop turn: no exchange answer is in yet
        assert stack.running.snapshot is not None
        assert stack.running.replayed == total - taken_at
        assert any(
            f"loaded snapshot {Path(answer['file']).name} at record {answer['records']}" in line
            and f"replayed {total - taken_at} events" in line
            for line in logged
        ), logged
        probe = [100, 103, 104, 201, 203, 219]  # accepted and rejected, before and after the snapshot
        again = await ask_again(stack.running.port, sent, probe)
        await stack.running.stop()

        full = await start_gateway(full_config, lambda text: None)
        replayed = state_of(full.gateway)
        assert full.snapshot is None and full.replayed == total
        again_full = await ask_again(full.port, sent, probe)
        await full.stop()

        assert after == replayed
        assert after["open"] and after["answers"]  # the comparison covers a book and answers
        assert {o[2] for o in after["open"].values()} == {"alice"}  # and the login each follows
        assert after["hash"] == before["hash"] == full_replay_hash(tmp_path, stack.config.journal)
        assert {k: v[1] for k, v in after["open"].items()} == {k: v[1] for k, v in before["open"].items()}
        assert again == again_full
        assert {t for t, _ in again} >= {"ACCEPTED", "REJECTED"}
        stack.exchange_server.close()

    run_async(script(), 100)


def test_a_bad_snapshot_is_reported_and_an_older_one_or_the_journal_used(tmp_path: Path) -> None:
    async def script() -> None:
        stack = await snap_stack(tmp_path)
        broker = await stack.broker("alice")
        sent: dict[int, dict[str, Any]] = {}
        snaps = []
        for k in range(2):
            await trade(broker, sent, 100 * (k + 1), 12)
            assert stack.gateway.snapshots is not None
            answer = await stack.gateway.snapshots.take_now()
            snaps.append((Path(answer["file"]), answer["events"]))
        await trade(broker, sent, 300, 8)
        await broker.close()
        journal = stack.config.journal
        state = stack.gateway.card.state_hash()
        await stack.running.stop()
        total = events_in(journal)
        (older, older_at), (newer, _) = snaps

        # one byte of the newest changed: reported in one line, the older one used
        data = bytearray(newer.read_bytes())
        data[len(data) // 2] ^= 0x40
        newer.write_bytes(bytes(data))
        logged = await stack.restart()
        skipped = [line for line in logged if "skipped" in line]
        assert len(skipped) == 1 and str(newer) in skipped[0] and "SHA-256" in skipped[0], logged
        assert stack.running.snapshot is not None and stack.running.snapshot.path == older
        assert stack.running.replayed == total - older_at
        assert stack.gateway.card.state_hash() == state
        await stack.running.stop()

        # the older one cut short too: the whole journal
        older.write_bytes(older.read_bytes()[: older.stat().st_size // 3])
        logged = await stack.restart()
        assert sum("skipped" in line for line in logged) == 2, logged
        assert any(str(older) in line and "truncated" in line for line in logged), logged
        assert stack.running.snapshot is None and stack.running.replayed == total
        assert stack.gateway.card.state_hash() == state
        await stack.running.stop()

        # a good snapshot of a journal that has since been cut shorter than its position
        good = stack.config.journal.with_name("kept.rgws")
        await stack.restart()
        assert stack.gateway.snapshots is not None
        answer = await stack.gateway.snapshots.take_now()
        shutil.copyfile(answer["file"], good)
        await stack.running.stop()
        with journal.open("r+b") as f:
            f.truncate(answer["offset"] - 3)  # a torn last record: cut at start
        logged = await stack.restart()
        assert any(answer["file"] in line and "ends at byte" in line for line in logged), logged
        assert stack.running.snapshot is None  # the older ones are damaged
        cut_events = events_in(journal)
        assert stack.running.replayed == cut_events == answer["events"] - 1
        await stack.running.stop()

        # a snapshot of another journal with the same rules and data, as long as this one: the
        # journal's bytes before its position are not the ones it followed
        journal.rename(journal.with_name("old.journal"))
        await stack.restart()
        broker = await stack.broker("bob")
        while stack.gateway.journal.written < answer["offset"]:
            await trade(broker, sent, 1000 + len(sent), 5)
        await broker.close()
        state = stack.gateway.card.state_hash()
        await stack.running.stop()
        for p in snapshot_files(snapshots_dir(journal, MANUAL)):
            p.unlink()
        shutil.copyfile(good, Path(answer["file"]))
        logged = await stack.restart()
        assert any(answer["file"] in line and "not the ones it followed" in line for line in logged), logged
        assert stack.running.snapshot is None and stack.running.replayed == events_in(journal)
        assert stack.gateway.card.state_hash() == state
        await stack.close()

    run_async(script(), 100)


def test_a_snapshot_across_deployments(tmp_path: Path) -> None:
    cap = tmp_path / "cap.sql"

    async def deploy(stack: Stack, limit: int) -> int:
        cap.write_text(f"Rule OrderCap ( trade_order.quantity <= {limit} )\n", encoding="utf-8")
        assert stack.gateway.deployer is not None
        files = [[p.name, p.read_text(encoding="utf-8")] for p in [*RULES, cap]]
        answer = await stack.gateway.deployer.handle({"cmd": "deploy", "files": files, "who": "test"})
        assert answer["ok"], answer
        return int(answer["version"])

    async def script() -> None:
        # The broker sends nothing while a deployment compiles: a long heartbeat keeps it logged on.
        stack = await snap_stack(tmp_path, heartbeat_ms=60_000)
        broker = await stack.broker("alice")
        sent: dict[int, dict[str, Any]] = {}
        await trade(broker, sent, 100, 10)
        v2 = await deploy(stack, 500)
        assert stack.gateway.snapshots is not None
        answer = await stack.gateway.snapshots.take_now()  # right after the swap: no event since
        assert answer["version"] == v2
        await trade(broker, sent, 200, 10)
        v3 = await deploy(stack, 50)  # the held orders (quantity 100) now fail OrderCap
        await trade(broker, sent, 300, 10)
        await broker.close()
        before = state_of(stack.gateway)
        assert before["versions"] == [1, v2, v3]
        await stack.running.stop()
        full_config = copy_journal(stack.config, tmp_path / "full")

        await stack.restart()
        after = state_of(stack.gateway)
        assert stack.running.snapshot is not None
        assert stack.running.snapshot.meta.versions == [1, v2]
        assert stack.running.replayed == events_in(stack.config.journal) - answer["events"]
        await stack.running.stop()
        full = await start_gateway(full_config, lambda text: None)
        replayed = state_of(full.gateway)
        await full.stop()
        assert after == replayed
        assert after["versions"] == [1, v2, v3] and after["hash"] == before["hash"]
        assert after["image"] == before["image"] != compile_files(RULES).image.digest()
        stack.exchange_server.close()

    run_async(script(), 110)


_WRITER = """
import sys, time
from pathlib import Path
from riskgw.gateway import snapfile
from riskgw.gateway.journal import Position

loaded = snapfile.read_snapshot(Path(sys.argv[1]))
meta = loaded.meta
meta.position = Position(int(sys.argv[3]), meta.position.records + 1000, meta.position.events + 1000)
o = loaded.orders
c = snapfile.Captured(meta, None, loaded.tables, [t["keys"] for t in meta.tables], {k: (*v, None) for k, v in
    o.decided.items()}, {k: tuple(v) for k, v in o.answers.items()}, o.open, o.done, o.forgotten, 0)
c.image = type("I", (), {"digest": lambda self: meta.image_digest})()
orders = snapfile._encode_orders

def stalled(captured):
    for chunk in orders(captured):
        yield chunk
        print("writing", flush=True)
        time.sleep(60)  # killed here, half written

snapfile._encode_orders = stalled
snapfile.write_snapshot(c, Path(sys.argv[2]), Path(sys.argv[1]).parent)
"""


def test_a_snapshot_killed_while_written_is_ignored(tmp_path: Path) -> None:
    async def script() -> None:
        stack = await snap_stack(tmp_path)
        broker = await stack.broker("alice")
        sent: dict[int, dict[str, Any]] = {}
        await trade(broker, sent, 100, 10)
        assert stack.gateway.snapshots is not None
        answer = await stack.gateway.snapshots.take_now()
        await trade(broker, sent, 200, 6)
        await broker.close()
        state = stack.gateway.card.state_hash()
        await stack.running.stop()
        journal = stack.config.journal
        total = events_in(journal)

        # A process writing a snapshot of a later point, killed (-9) in the middle of the file.
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
        writer = subprocess.Popen(
            [sys.executable, "-c", _WRITER, answer["file"], str(journal), str(journal.stat().st_size)],
            stdout=subprocess.PIPE,
            env=env,
        )
        assert writer.stdout is not None
        assert writer.stdout.readline() == b"writing\n"
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        directory = snapshots_dir(journal, MANUAL)
        unfinished = [p for p in directory.iterdir() if p.name.endswith(".tmp")]
        assert len(unfinished) == 1
        assert snapshot_files(directory) == [Path(answer["file"])]

        logged = await stack.restart()
        assert any("removed" in line and unfinished[0].name in line for line in logged), logged
        assert not unfinished[0].exists()
        assert stack.running.snapshot is not None and str(stack.running.snapshot.path) == answer["file"]
        assert stack.running.replayed == total - answer["events"]
        assert stack.gateway.card.state_hash() == state
        await stack.close()

    run_async(script(), 60)


def test_restart_replays_the_tail_however_long_the_journal(tmp_path: Path) -> None:
    """The events replayed at a restart are those after the snapshot, not the journal's."""

    async def script() -> None:
        stack = await snap_stack(tmp_path)
        sent: dict[int, dict[str, Any]] = {}
        replayed = []
        lengths = []
        first = 100
        for n in (10, 80):
            broker = await stack.broker("alice")
            await trade(broker, sent, first, n)
            assert stack.gateway.snapshots is not None
            assert (await stack.gateway.snapshots.take_now())["ok"]
            await trade(broker, sent, first + n, 5, reject=True)  # five NEW events, nothing else
            await broker.close()
            first += 1000
            state = stack.gateway.card.state_hash()
            await stack.restart()
            assert stack.gateway.card.state_hash() == state
            replayed.append(stack.running.replayed)
            lengths.append(events_in(stack.config.journal))
        assert replayed == [5, 5]
        assert lengths[1] > 4 * lengths[0]
        await stack.close()

    run_async(script(), 100)


def test_snapshots_by_count_keep_the_newest_and_show_in_status_and_metrics(tmp_path: Path) -> None:
    async def script() -> None:
        settings = SnapshotSettings(every_events=10, every_seconds=0, keep=2)
        stack = await snap_stack(tmp_path, settings, control=("127.0.0.1", 0), control_token=TOKEN)
        broker = await stack.broker("alice")
        sent: dict[int, dict[str, Any]] = {}
        snapshotter = stack.gateway.snapshots
        assert snapshotter is not None
        for k in range(4):
            await trade(broker, sent, 100 * (k + 1), 12)
            deadline = time.monotonic() + 20  # a forked writer on a loaded machine
            while snapshotter.taken <= k and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        assert snapshotter.taken >= 4
        while snapshotter.status()["writing"]:
            await asyncio.sleep(0.05)
        files = snapshot_files(snapshots_dir(stack.config.journal, settings))
        assert len(files) == 2
        last = snapshotter.last
        assert last is not None and Path(last["file"]) == files[-1]
        assert read_snapshot(files[-1]).meta.position.records == last["records"]

        port = stack.running.control_port
        status = await request("127.0.0.1", port, {"token": TOKEN, "cmd": "status"})
        assert status["snapshots"]["last"]["records"] == last["records"]
        await trade(broker, sent, 900, 3)
        answer = await request("127.0.0.1", port, {"token": TOKEN, "cmd": "snapshot"})
        assert answer["ok"] and answer["records"] > last["records"]
        assert await request("127.0.0.1", port, {"token": "wrong", "cmd": "snapshot"}) == {
            "ok": False,
            "error": "bad token",
        }
        page = render(stack.gateway)
        assert f"riskgw_snapshot_last_records {answer['records']}.0" in page
        assert "riskgw_snapshot_capture_us" in page
        stamp = next(line for line in page.splitlines() if line.startswith("riskgw_snapshot_last_timestamp"))
        assert abs(float(stamp.split()[1]) - time.time()) < 60
        await broker.close()
        await stack.close()

    run_async(script(), 60)


def test_a_snapshot_that_cannot_be_written_is_counted_and_trading_goes_on(tmp_path: Path) -> None:
    async def script() -> None:
        blocker = tmp_path / "not-a-dir"
        blocker.write_text("")
        settings = SnapshotSettings(every_events=0, every_seconds=0, keep=3, dir=blocker / "snapshots")
        stack = await snap_stack(tmp_path, settings)
        broker = await stack.broker("alice")
        sent: dict[int, dict[str, Any]] = {}
        await trade(broker, sent, 100, 4)
        assert stack.gateway.snapshots is not None
        answer = await stack.gateway.snapshots.take_now()
        assert not answer["ok"] and "could not be written" in answer["error"], answer
        status = stack.gateway.status()["snapshots"]
        assert status["failures"] == 1 and status["taken"] == 0 and status["last_error"]
        await trade(broker, sent, 200, 4)  # the order path never noticed
        await broker.close()
        await stack.close()

    run_async(script(), 60)


def test_fix_orders_placed_before_a_snapshot_are_answered_after_a_restart_from_it(tmp_path: Path) -> None:
    """The FIX sessions rebuild their orders from the order map and the state the snapshot holds:
    the open orders, and the ids and answers of those before it."""
    keep = Behaviour(fill=0.0, partial=0.0, reject=0.0, cancel_on_disconnect=False)

    async def script() -> None:
        async with fix_stack(tmp_path, keep, snapshots=MANUAL) as stack:
            broker = await connect(tmp_path, fix_port(stack))
            broker.held("a1", account=1)
            await broker.report("0", T11="a1")
            broker.held("a2", account=1, k=1)
            a2 = await broker.report("0", T11="a2")
            assert stack.gateway.snapshots is not None
            answer = await stack.gateway.snapshots.take_now()
            assert answer["ok"], answer
            await stack.restart()
            await broker.stop()
            assert stack.running.snapshot is not None and stack.running.replayed == 0
            again = await connect(tmp_path, fix_port(stack))
            await wait_until(lambda: stack.gateway.status()["fix"]["sessions"][0]["logged_on"])
            assert stack.gateway.status()["fix"]["sessions"][0]["open_orders"] == 2
            sym = ticket(SMALL.held(1, 1))
            again.replace("a2r", "a2", sym, 100, price_text(ref_price(SMALL.held(1, 1)) - 1))
            await again.report("5", T11="a2r", T41="a2", T37=a2[37], T39="0")
            again.cancel("a2-x", "a2r", sym)
            await again.report("4", T11="a2-x", T41="a2r", T37=a2[37], T39="4")
            again.held("a3", account=1, k=2)  # a new FIX order gets an id above those before
            await again.report("0", T11="a3")
            ids = [oid for _, oid in stack.gateway.decided]
            assert len(ids) == len(set(ids)) == 4  # a1, a2, a2r's leg, a3
            await again.logout()

    run_async(script(), 60)


def test_a_card_with_a_software_standby_restarts_from_a_snapshot(tmp_path: Path) -> None:
    """Both executors take the snapshot's tables; the state is the full replay's, and the card
    decides again in lockstep (or, when its LOAD sections rebuild other aggregates, the standby
    holds the snapshot and says the card rejoins from it)."""
    from riskgw.card.lockstep import LockstepCard, Mode, Settings
    from riskgw.gateway.failover import FailoverConfig

    async def script() -> None:
        stack = await snap_stack(tmp_path, failover=FailoverConfig(True, Settings(failback="manual")))
        broker = await stack.broker("alice")
        sent: dict[int, dict[str, Any]] = {}
        await trade(broker, sent, 100, 20)
        assert stack.gateway.snapshots is not None
        answer = await stack.gateway.snapshots.take_now()
        await trade(broker, sent, 200, 10)
        await broker.close()
        state = stack.gateway.card.state_hash()
        await stack.running.stop()
        logged = await stack.restart()
        card = stack.gateway.card
        assert isinstance(card, LockstepCard)
        assert stack.running.replayed == events_in(stack.config.journal) - answer["events"]
        assert card.state_hash() == state == full_replay_hash(tmp_path, stack.config.journal)
        if card.mode is Mode.LOCKSTEP:
            assert card.card is not None and card.card.state_hash() == state
        else:
            assert any("rejoins from it" in line for line in logged), logged
        broker = await stack.broker("alice")
        await trade(broker, sent, 300, 5)
        await broker.close()
        await stack.close()

    run_async(script(), 60)


def test_a_long_replay_at_start_is_followed_by_a_snapshot(tmp_path: Path) -> None:
    async def script() -> None:
        stack = await snap_stack(tmp_path)
        broker = await stack.broker("alice")
        await trade(broker, {}, 100, 15)
        await broker.close()
        total = events_in(stack.config.journal)
        await stack.restart(snapshots=SnapshotSettings(every_events=total, every_seconds=0, keep=3))
        assert stack.running.replayed == total  # no snapshot yet: the whole journal
        snapshotter = stack.gateway.snapshots
        assert snapshotter is not None
        deadline = time.monotonic() + 20  # a forked writer on a loaded machine
        while snapshotter.last is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert snapshotter.last is not None and snapshotter.last["events"] == total
        await stack.restart()
        assert stack.running.replayed == 0
        await stack.close()

    run_async(script(), 60)
