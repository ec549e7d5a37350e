"""The simulated card's host side without Verilator: a stand-in server (tests/sim_card_fake.py)
speaks the ZeroMQ protocol, and the link must see an exit, a crash, a hang, a stopped process and
a dropped connection as CardError, the first ones at once rather than at the deadline."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from riskgw.card.driver import CardError
from riskgw.card.simlink import SimBus, SimLink, SimProcess
from riskgw.card.simproto import decode, encode, zmq_endpoint

FAKE = Path(__file__).with_name("sim_card_fake.py")


def fake(*extra: str) -> SimProcess:
    return SimProcess([sys.executable, str(FAKE), "tcp://127.0.0.1:0", *extra])


@pytest.fixture
def server() -> Iterator[SimProcess]:
    proc = fake()
    yield proc
    proc.stop()


def test_round_trips_and_shutdown(server: SimProcess) -> None:
    address = server.wait_ready(30)
    assert address.startswith("tcp://127.0.0.1:") and not address.endswith(":0")
    link = SimLink(address, timeout=10, process=server)
    assert link.hello()["top"] == "fake"
    bus = SimBus(link)
    bus.write_many([(0x100, 5), (0x104, 0x1_2345_6789)])  # the bus keeps the low 32 bits
    bus.write32(0x108, 7)
    assert bus.read_many([0x104, 0x100, 0x108, 0x10C]) == [0x2345_6789, 5, 7, 0]
    assert bus.read32(0x100) == 5
    assert bus.access_many([(0x100, None), (0x100, 9), (0x100, None), (0x10C, 1 << 32 | 3)]) == [5, 9]
    assert bus.read32(0x10C) == 3
    # a poll reads until it reads the value asked for; one that never does is an error reply
    assert bus.access_many([(0x100, 4), (0x100, None, 4), (0x10C, None)]) == [4, 3]
    with pytest.raises(CardError, match="never read 5"):
        bus.access_many([(0x100, None, 5)])
    reply, packets = link.call(
        {"op": "stream", "sessions": [3, 4], "min_tx": 2, "max_cycles": 10}, [b"ab", b"c"]
    )
    assert reply["sessions"] == [3, 4] and packets == [b"ab", b"c"]
    link.call({"op": "shutdown"})
    assert server.proc.wait(10) == 0
    link.close()
    with pytest.raises(CardError, match="closed"):
        bus.read32(0)


def test_error_reply_is_a_card_error_and_the_link_survives(server: SimProcess) -> None:
    link = SimLink(server.wait_ready(30), timeout=10, process=server)
    with pytest.raises(CardError, match="unknown op 'frobnicate'"):
        link.call({"op": "frobnicate"})
    assert link.hello()["ok"]
    link.close()


def test_a_crash_is_seen_at_once() -> None:
    proc = fake("--crash-on", "read")
    link = SimLink(proc.wait_ready(30), timeout=60, process=proc)
    bus = SimBus(link)
    bus.write32(0, 1)
    start = time.monotonic()
    with pytest.raises(CardError, match="exited with status 3"):
        bus.read32(0)
    assert time.monotonic() - start < 5, "a dead simulator must not wait for the deadline"
    with pytest.raises(CardError, match="exited with status 3"):
        bus.write32(0, 1)  # the link stays broken
    link.close()
    proc.stop()


def test_a_dropped_connection_is_seen_without_a_process_to_watch() -> None:
    proc = fake("--crash-on", "read")
    link = SimLink(proc.wait_ready(30), timeout=60)  # connected by address only
    link.hello()
    start = time.monotonic()
    with pytest.raises(CardError, match="closed the connection"):
        link.call({"op": "read", "addrs": [0]})
    assert time.monotonic() - start < 5
    link.close()
    proc.stop()


def test_a_hang_ends_at_the_deadline() -> None:
    proc = fake("--hang-on", "read")
    link = SimLink(proc.wait_ready(30), timeout=0.5, process=proc)
    start = time.monotonic()
    with pytest.raises(CardError, match="did not answer 'read' within"):
        link.call({"op": "read", "addrs": [0]})
    assert 0.5 <= time.monotonic() - start < 5
    link.close()
    assert proc.stop() == 0  # the stand-in leaves its hang on SIGTERM


def test_a_stopped_simulator_ends_at_the_deadline(server: SimProcess) -> None:
    link = SimLink(server.wait_ready(30), timeout=0.5, process=server)
    link.hello()
    os.kill(server.pid, signal.SIGSTOP)
    try:
        with pytest.raises(CardError, match="stopped or wedged"):
            link.hello()
    finally:
        os.kill(server.pid, signal.SIGCONT)
    link.close()


def test_exit_before_ready_says_why() -> None:
    proc = fake("--exit-before-ready")
    with pytest.raises(CardError, match=r"exited with status 7; its last output: cannot build the model$"):
        proc.wait_ready(30)


def test_sigterm_stops_the_server(server: SimProcess) -> None:
    server.wait_ready(30)
    assert server.stop(10) == 0


def test_protocol_messages() -> None:
    header, blobs = decode(encode({"op": "stream", "sessions": [1]}, [b"\x00\x01"]))
    assert header == {"op": "stream", "sessions": [1]} and blobs == [b"\x00\x01"]
    with pytest.raises(ValueError, match="not JSON"):
        decode([b"\xff"])
    with pytest.raises(ValueError, match="not a JSON object"):
        decode([b"[1]"])
    assert zmq_endpoint("tcp://127.0.0.1:0") == "tcp://127.0.0.1:*"
    assert zmq_endpoint("tcp://127.0.0.1:9200") == "tcp://127.0.0.1:9200"
    for bad in ("127.0.0.1:9200", "tcp://127.0.0.1", "tcp://:1", "tcp://h:99999"):
        with pytest.raises(ValueError, match="expected tcp://HOST:PORT"):
            zmq_endpoint(bad)
