"""`kill -9` of the gateway process under load, then a restart on the same journal (once with a torn
record at its tail): the state rebuilt from the journal is the state every answered order saw, a
broker that sends its unanswered orders again learns the fate of each exactly once, no order
reaches the exchange twice, and the journal's events give SQLite's state."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import socket
import sys
from pathlib import Path
from typing import Any

import pytest
from failover_support import OracleRun, fields_of, same_state
from gateway_support import RULES, SMALL, Client, StalledExchange, held_order, run_async

from riskgw.doe.compiler import compile_files
from riskgw.engine.engine import Decision, Engine
from riskgw.engine.replay import load_data
from riskgw.exchange.sim import Behaviour, start_exchange
from riskgw.gateway.control import request
from riskgw.gateway.journal import scan
from riskgw.gateway.protocol import MsgType

pytestmark = pytest.mark.timeout(180)

TOKEN = "crash-test-token"


class Gateway:
    """`riskgw serve` as a child process."""

    def __init__(self, config: Path) -> None:
        self.config = config
        self.proc: asyncio.subprocess.Process | None = None
        self.lines: list[str] = []
        self.port = 0
        self.control = 0

    async def start(self) -> None:
        env = {**os.environ, "RISKGW_CONTROL_TOKEN": TOKEN}
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "riskgw.cli", "serve", "--config", str(self.config),
            stderr=asyncio.subprocess.PIPE, env=env,
        )  # fmt: skip
        assert self.proc.stderr is not None
        while True:
            raw = await asyncio.wait_for(self.proc.stderr.readline(), 60)
            if not raw:
                raise AssertionError("the gateway exited:\n" + "\n".join(self.lines))
            line = raw.decode().rstrip()
            self.lines.append(line)
            if "listening on" in line:
                self.port = int(line.split("listening on ", 1)[1].split(",", 1)[0].rsplit(":", 1)[1])
                break
        asyncio.get_running_loop().create_task(self._drain())
        self.control = int(json.loads(self.config.with_suffix(".port").read_text())["control"])

    async def _drain(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        while raw := await self.proc.stderr.readline():
            self.lines.append(raw.decode().rstrip())

    async def status(self) -> dict[str, Any]:
        return await request("127.0.0.1", self.control, {"token": TOKEN, "cmd": "status"})

    async def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()

    async def stop(self) -> None:
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(self.proc.wait(), 30)


Answer = tuple[MsgType, tuple[int, ...]]  # ACCEPTED or REJECTED, and the failed rules


class Broker:
    """bob over successive connections: every order it sent, every answer it got."""

    def __init__(self) -> None:
        self.sent: dict[int, dict[str, Any]] = {}
        self.answers: dict[int, list[Answer]] = {}
        self.client: Client | None = None

    async def connect(self, port: int) -> None:
        self.client = await Client.connect(port)
        self.client.send(MsgType.LOGON, username="bob", password="pw-b")
        await self.client.recv_type(MsgType.LOGON_ACK)

    def unanswered(self) -> list[int]:
        return [o for o in self.sent if o not in self.answers]

    def send(self, order_id: int, values: dict[str, Any]) -> None:
        assert self.client is not None
        self.sent[order_id] = values
        self.client.send(MsgType.NEW_ORDER, **values)

    async def read_until(self, order_ids: set[int], repeats: dict[int, Answer] | None = None) -> bool:
        """Read answers until each of order_ids has one; False when the connection dropped. The
        answers to orders in `repeats` (sent again though answered) go there instead."""
        assert self.client is not None
        waiting = {o for o in order_ids if o not in self.answers} | set(repeats or ())
        try:
            while waiting:
                f = await self.client.recv(timeout=10)
                if f.type not in (MsgType.ACCEPTED, MsgType.REJECTED):
                    continue
                answer = (f.type, _rules(f["failed_mask"]) if f.type is MsgType.REJECTED else ())
                if repeats is not None and f["order_id"] in repeats and f["order_id"] in self.answers:
                    repeats[f["order_id"]] = answer
                else:
                    self.answers.setdefault(f["order_id"], []).append(answer)
                waiting.discard(f["order_id"])
        except (ConnectionError, OSError):
            return False
        return True


def _rules(mask_bytes: bytes) -> tuple[int, ...]:
    mask = int.from_bytes(mask_bytes, "little")
    return tuple(i for i in range(len(mask_bytes) * 8) if mask >> i & 1)


def write_config(tmp_path: Path, exchange_port: int) -> Path:
    config = tmp_path / "gw.toml"
    # the control port must be known before the gateway says where it listens: take a free one
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        control = s.getsockname()[1]
    rules = ", ".join(f'"{p}"' for p in RULES)
    config.write_text(
        f'listen = "127.0.0.1:0"\nexchange = "127.0.0.1:{exchange_port}"\nrules = [{rules}]\n'
        f'data = "data"\njournal = "gw.journal"\nfsync = false\ncontrol = "127.0.0.1:{control}"\n'
        f"[failover]\nstandby = true\nhash_every = 100\n"
        f'[users.bob]\npassword = "pw-b"\naccounts = "*"\ncancel_on_disconnect = false\n'
    )
    config.with_suffix(".port").write_text(json.dumps({"control": control}))
    return config


def journal_state(tmp_path: Path) -> tuple[str, dict[tuple[int, int], Decision]]:
    """The state hash the journal's events give, and each NEW's decision by (account, order id)."""
    engine = Engine(compile_files(RULES).image)
    load_data(engine, tmp_path / "data")
    decided: dict[tuple[int, int], Decision] = {}
    for entry in scan(tmp_path / "gw.journal").entries:
        engine.process(entry.event, entry.inputs)
        if entry.event.name == "NEW":
            fields = fields_of(entry.inputs)
            decided[(int(fields["account_id"] or 0), int(fields["order_id"] or 0))] = entry.decision
    return engine.state_hash(), decided


def test_gateway_killed_three_times_under_load(tmp_path: Path) -> None:
    SMALL.write(tmp_path / "data")

    async def script() -> None:
        server, exchange = await start_exchange("127.0.0.1", 0, Behaviour(fill=0.3, partial=0.2, reject=0.1))
        seen: list[tuple[int, int]] = []
        inner = exchange.new_order

        def new_order(link: Any, frame: Any) -> None:
            seen.append((frame["account_id"], frame["order_id"]))
            inner(link, frame)

        exchange.new_order = new_order  # type: ignore[method-assign]
        config = write_config(tmp_path, server.sockets[0].getsockname()[1])
        gw = Gateway(config)
        broker = Broker()
        rnd = random.Random(11)
        next_id = 1
        repeated = unanswered = 0
        await gw.start()
        for crash in range(3):
            await broker.connect(gw.port)
            # orders the gateway lost the answers of, sent again: same fields, same id; and two
            # answered ones, as a broker that lost the answers would
            resent = broker.unanswered()
            unanswered += len(resent)
            repeats: dict[int, Answer] = (
                {o: (MsgType.HEARTBEAT, ()) for o in rnd.sample(sorted(broker.answers), 2)}
                if broker.answers
                else {}
            )
            for order_id in [*resent, *repeats]:
                broker.send(order_id, broker.sent[order_id])
            assert await broker.read_until(set(resent), repeats)
            for order_id, again in repeats.items():
                assert again == broker.answers[order_id][0], f"order {order_id} answered otherwise again"
            repeated += len(repeats)
            # new orders in bursts; the gateway dies with a burst in flight
            kill_after = rnd.randrange(4, 9)
            for n in range(kill_after + 1):
                burst = []
                for _ in range(200 if n == kill_after else 25):
                    account = rnd.randrange(SMALL.n_accounts)
                    extra = {"price": 0} if rnd.random() < 0.1 else {}
                    values = held_order(next_id, account, k=rnd.randrange(16), **extra)
                    broker.send(next_id, values)
                    burst.append(next_id)
                    next_id += 1
                if n == kill_after:
                    await asyncio.sleep(rnd.random() * 0.005)
                    await gw.kill9()
                    await broker.read_until(set(burst))  # what left before the kill
                else:
                    assert await broker.read_until(set(burst))
            assert broker.client is not None
            await broker.client.close()
            # what the journal holds covers every answer that left, with the same decision
            state, decided = journal_state(tmp_path)
            for order_id, got in broker.answers.items():
                account = broker.sent[order_id]["account_id"]
                decision = decided[(account, order_id)]
                assert got[0] == (
                    MsgType.ACCEPTED if decision.accepted else MsgType.REJECTED,
                    decision.failed,
                ), order_id
            if crash == 1:
                # a torn last write: the restart cuts it and says so
                with (tmp_path / "gw.journal").open("ab") as f:
                    f.write(b"\x40\x00\x00\x00\x01\x02\x03\x04" + b"\x02" * 17)
            await gw.start()
            if crash == 1:
                assert any("cut 25 bytes" in line for line in gw.lines), gw.lines[-5:]
            # the state right after the replay (then the gateway asks the exchange about its open
            # orders and cancels those the exchange dropped with the connection: new events)
            listening = next(line for line in reversed(gw.lines) if "listening on" in line)
            assert listening.endswith(f"state {state[:12]}"), (listening, state)
            status = await gw.status()
            assert status["card"]["primary"] == "card"
        # the last round: every order still unanswered is answered now, once
        await broker.connect(gw.port)
        resent = broker.unanswered()
        for order_id in resent:
            broker.send(order_id, broker.sent[order_id])
        assert await broker.read_until(set(resent))
        # An accepted order whose forward was still in the killed gateway's socket buffer never
        # reached the exchange. The restarted gateway asks the exchange about its open orders; the
        # exchange holds none of it, and the gateway cancels it through the card. Its sender learns
        # that by sending it again: the recorded ACCEPTED, then the CANCELLED.
        await asyncio.sleep(0.5)
        accepted = {
            (broker.sent[o]["account_id"], o)
            for o, a in broker.answers.items()
            if a[0][0] is MsgType.ACCEPTED
        }
        never_sent = sorted(accepted - set(seen))
        for _, order_id in never_sent:
            broker.send(order_id, broker.sent[order_id])
        learnt: dict[int, list[MsgType]] = {}
        assert broker.client is not None
        while sum(len(v) for v in learnt.values()) < 2 * len(never_sent):
            frame = await broker.client.recv()
            if frame.type in (MsgType.ACCEPTED, MsgType.CANCELLED):
                learnt.setdefault(frame["order_id"], []).append(frame.type)
        assert all(learnt[o] == [MsgType.ACCEPTED, MsgType.CANCELLED] for _, o in never_sent), learnt
        await broker.client.close()
        status = await gw.status()
        await gw.stop()
        server.close()

        assert sorted(broker.answers) == list(range(1, next_id)), "an order was never answered"
        assert all(len(a) == 1 for a in broker.answers.values()), "an order was answered twice"
        assert len(seen) == len(set(seen)), "an order reached the exchange twice"
        assert set(seen) <= accepted, "the exchange saw an order no one accepted"
        assert repeated == 4  # two answered orders sent again after each of the last two restarts
        assert unanswered > 0  # the kills caught orders in flight
        # the whole journal through SQLite: the same decisions and the same final state
        run = OracleRun(RULES, tmp_path / "data")
        entries = scan(tmp_path / "gw.journal").entries
        cancels = {
            (int(f["account_id"] or 0), int(f["order_id"] or 0))
            for f in (fields_of(e.inputs) for e in entries if e.event.name == "CANCEL")
        }
        assert set(never_sent) <= cancels
        for entry in entries:
            run.check(entry.event, fields_of(entry.inputs), entry.decision)
        assert run.differences == [], run.differences[:3]
        engine = Engine(compile_files(RULES).image)
        load_data(engine, tmp_path / "data")
        for entry in entries:
            engine.process(entry.event, entry.inputs)
        assert engine.state_hash() == status["state_hash"]
        assert same_state(engine.image, engine.snapshot(), run) is None

    run_async(script(), timeout=170)


def test_no_accepted_leaves_before_its_forward(tmp_path: Path) -> None:
    """kill -9 while the exchange does not read: every order whose ACCEPTED the broker received
    reaches the exchange, once, although the gateway still held forwards of orders it accepted."""
    SMALL.write(tmp_path / "data")

    async def script() -> None:
        exchange = StalledExchange()
        gw = Gateway(write_config(tmp_path, exchange.port))
        await gw.start()
        first = await exchange.accept()
        broker = Broker()
        await broker.connect(gw.port)
        # a few orders, then cancel requests for those accepted (forwarded, never answered) until
        # the forwards fill the kernel's buffers, then orders whose forwards wait behind them
        n = 1500
        for order_id in range(1, 41):
            broker.send(order_id, held_order(order_id, order_id % SMALL.n_accounts, k=order_id % 16))
        assert await broker.read_until(set(broker.sent))
        assert broker.client is not None
        first_accepted = [o for o, a in broker.answers.items() if a[0][0] is MsgType.ACCEPTED]
        # (a kernel takes up to about 4 MB for a socket the peer does not read: 200,000 frames of
        # 24 bytes are more)
        cancels = [
            (o, broker.sent[o]["account_id"])
            for o in first_accepted
            for _ in range(200_000 // len(first_accepted))
        ]
        for order_id, account in cancels:
            broker.client.send(MsgType.CANCEL_REQUEST, order_id=order_id, account_id=account)
        for order_id in range(41, n + 1):
            broker.send(order_id, held_order(order_id, order_id % SMALL.n_accounts, k=order_id % 16))
        # every answer the gateway lets out, until it is quiet
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(broker.read_until(set(broker.sent)), 3)
        # and not before every order was decided: on a loaded machine the 200,000 cancels ahead of
        # orders 41.. can outlast the window above, and a kill before any of them was decided (their
        # forwards held behind the cancels) would leave nothing accepted-but-unforwarded to check
        for _ in range(300):
            if (await gw.status())["counters"]["orders"] == n:
                break
            await asyncio.sleep(0.1)
        accepted = {
            (broker.sent[o]["account_id"], o)
            for o, a in broker.answers.items()
            if a[0][0] is MsgType.ACCEPTED
        }
        await gw.kill9()
        await broker.client.close()
        # the killed gateway's socket still hands the exchange all the kernel had of it
        await asyncio.wait_for(exchange.serve(first), 30)
        _, decided = journal_state(tmp_path)
        accepted_here = {key for key, d in decided.items() if d.accepted}
        assert accepted, "no ACCEPTED left the gateway: the test shows nothing"
        assert all(exchange.orders[key] == 1 for key in accepted), sorted(accepted - set(exchange.orders))[:5]
        assert len(accepted_here) > len(accepted), "every forward reached the kernel: the test shows nothing"

        # a restart: the exchange holds what it received; the rest is cancelled through the card,
        # and a broker that sends its unanswered orders again learns their fate from the record
        received = set(exchange.orders)
        restart = asyncio.get_running_loop().create_task(gw.start())
        second = await exchange.accept()
        serving = asyncio.get_running_loop().create_task(exchange.serve(second, holding=received))
        await restart
        await broker.connect(gw.port)
        resent = broker.unanswered()
        for order_id in resent:
            broker.send(order_id, broker.sent[order_id])
        assert await broker.read_until(set(resent))
        status = await gw.status()
        await gw.stop()
        await asyncio.wait_for(serving, 30)

        assert sorted(broker.answers) == list(range(1, n + 1))
        assert all(len(a) == 1 for a in broker.answers.values()), "an order was answered twice"
        assert max(exchange.orders.values()) == 1, "an order reached the exchange twice"
        _, decided = journal_state(tmp_path)
        assert set(exchange.orders) <= {key for key, d in decided.items() if d.accepted}
        assert status["counters"]["resync_cancels"] == len(accepted_here - received)

    run_async(script(), timeout=170)
