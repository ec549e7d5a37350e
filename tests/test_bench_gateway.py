"""The gateway benchmark stays runnable: the load generator against a live gateway, the CPU run."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from gateway_support import USERS, run_async, start_stack

from bench import gateway as bench_gateway
from bench import gateway_load
from riskgw.exchange.sim import Behaviour
from riskgw.gateway.config import User
from riskgw.scenario import DataSet

pytestmark = pytest.mark.timeout(120)


def test_load_generator_answers_every_order_and_reports_percentiles(tmp_path: Path) -> None:
    users = {**USERS, "bench": User("bench", "bench", None)}

    async def script() -> dict[str, object]:
        stack = await start_stack(tmp_path, Behaviour(fill=1.0, partial=0.0, reject=0.0), users=users)
        result = await asyncio.to_thread(
            gateway_load.run, stack.running.port, 200.0, 0.5, 1, "bench", "bench", 2.0
        )
        await stack.close()
        return result

    result = run_async(script(), timeout=60)
    assert result["orders"] == 100 and result["answered"] == 100 and result["lost"] == 0
    lat = result["latency_us"]
    assert isinstance(lat, dict) and 0 < lat["p50"] <= lat["p99"] <= lat["max"]
    # the small data set holds few of the securities it trades: verdicts either way, all answered
    assert result["accepted"] + result["rejected"] == 100


def test_cpu_run_accepts_every_order(tmp_path: Path) -> None:
    DataSet().write(tmp_path / "data")
    assert asyncio.run(bench_gateway._cpu_per_order(tmp_path, 200, 20)) > 0
