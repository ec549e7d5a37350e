"""One simulated card server for the tests that need the HDL (`riskgw sim-card`, started once per
test worker; the tests that use it are in one xdist group, so Verilator builds never collide)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from riskgw.card.simlink import SimProcess, sim_card_argv
from riskgw.card.simserver import CardParams, build

BUILD_TIMEOUT_S = 1800.0  # a cold Verilator build on a busy machine


@dataclass
class Server:
    address: str
    process: SimProcess
    start_s: float  # spawn to ready line, with the model already built


@pytest.fixture(scope="session")
def sim_card() -> Iterator[Server]:
    build(CardParams())  # first, so the start-up below is timed with a warm cache
    start = time.monotonic()
    process = SimProcess(sim_card_argv("tcp://127.0.0.1:0"))
    address = process.wait_ready(BUILD_TIMEOUT_S)
    yield Server(address, process, time.monotonic() - start)
    process.stop()
