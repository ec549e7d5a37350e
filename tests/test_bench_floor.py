"""The benchmark's floor program: its relay passes the bytes it should, its load generator speaks
the wire protocol to a real gateway, and the three together answer every order."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest
from gateway_support import USERS, run_async, start_stack

from bench import floor
from riskgw.exchange.sim import Behaviour
from riskgw.gateway.config import User
from riskgw.gateway.protocol import Frame, FrameReader, MsgType, encode

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def program() -> Path:
    return floor.build()


def _read_frames(sock: socket.socket, count: int) -> list[Frame]:
    reader, frames = FrameReader(), list[Frame]()
    while len(frames) < count:
        chunk = sock.recv(4096)
        assert chunk, "the connection closed"
        frames += [f for f in reader.feed(chunk) if isinstance(f, Frame)]
    return frames


def test_relay_forwards_orders_as_they_came_and_answers_accepted(program: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as exchange_listener:
        relay = subprocess.Popen(
            [str(program), "relay", "0", str(exchange_listener.getsockname()[1])],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert relay.stdout is not None
            port = int(relay.stdout.readline())
            exchange, _ = exchange_listener.accept()
            with exchange, socket.create_connection(("127.0.0.1", port)) as broker:
                broker.sendall(encode(MsgType.LOGON, 1, username="u", password="p"))
                (ack,) = _read_frames(broker, 1)
                assert ack.type is MsgType.LOGON_ACK
                order = encode(
                    MsgType.NEW_ORDER, 2, order_id=7, account_id=3, direction=1, ticket_id="600000",
                    price=1_000, quantity=100, ts=5,
                )  # fmt: skip
                broker.sendall(order)
                exchange.settimeout(10)
                got = b""
                while len(got) < len(order):
                    got += exchange.recv(4096)
                assert got == order  # the NEW_ORDER reaches the exchange byte for byte
                (accepted,) = _read_frames(broker, 1)
                assert accepted.type is MsgType.ACCEPTED
                assert accepted.values["order_id"] == 7 and accepted.values["ticket_id"] == "600000"
                fill = encode(MsgType.FILL, 9, **accepted.values, exec_price=1_000, exec_quantity=100)
                exchange.sendall(fill)
                (back,) = _read_frames(broker, 1)
                assert back.type is MsgType.FILL and back.values["exec_quantity"] == 100
        finally:
            relay.kill()
            relay.wait()


def test_native_floor_answers_every_order_and_fills_it(program: Path, tmp_path: Path) -> None:
    result = floor.run_harness(program, "native", (500,), 0.5, tmp_path, lambda text: None)
    (run,) = result["runs"]
    assert run["orders"] == 250 and run["answered"] == 250 and run["lost"] == 0 and run["accepted"] == 250
    assert 0 < run["fills_seen"] <= 250  # the last fills may come after the last verdict
    lat = run["latency_us"]
    assert 0 < lat["p50"] <= lat["p99"] <= lat["max"]
    assert run["relay_cpu_us_per_order"] >= 0 and run["held"]


def test_native_load_generator_speaks_to_the_gateway(program: Path, tmp_path: Path) -> None:
    users = {**USERS, "bench": User("bench", "bench", None)}
    frames = floor._frames(tmp_path / "orders.bin", 100, 1)

    async def script() -> dict[str, Any]:
        stack = await start_stack(tmp_path, Behaviour(fill=1.0, partial=0.0, reject=0.0), users=users)
        argv = [str(program), "load", str(stack.running.port), "200", "0.5", str(frames)]
        done = await asyncio.to_thread(subprocess.run, argv, capture_output=True, text=True, check=True)
        await stack.close()
        return dict(json.loads(done.stdout))

    result = run_async(script(), timeout=60)
    assert result["orders"] == 100 and result["answered"] == 100 and result["lost"] == 0
    # the small test data set holds few of the securities traded: verdicts either way, all answered
    assert result["accepted"] + result["rejected"] == 100
    assert result["fills_seen"] <= result["accepted"]


def test_load_generator_refuses_a_frames_file_too_short(program: Path, tmp_path: Path) -> None:
    frames = floor._frames(tmp_path / "orders.bin", 10, 1)
    done = subprocess.run(
        [str(program), "load", "1", "100", "1", str(frames)], capture_output=True, text=True
    )
    assert done.returncode == 1 and "fewer orders than RATE x SECONDS" in done.stderr
