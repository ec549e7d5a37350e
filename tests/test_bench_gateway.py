"""The gateway benchmark stays runnable: the load generator against a live gateway, the CPU run."""

from __future__ import annotations

import asyncio
import json
import select
import sys
from pathlib import Path
from typing import Any

import pytest
from gateway_support import USERS, run_async, start_stack

from bench import gateway as bench_gateway
from bench import gateway_load
from riskgw.exchange.sim import Behaviour
from riskgw.gateway.config import User
from riskgw.scenario import DataSet

pytestmark = pytest.mark.timeout(120)


def test_load_generator_answers_every_order_and_reports_percentiles(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    users = {**USERS, "bench": User("bench", "bench", None)}
    # The generator waits for the next order with select(2), whose timeout takes microseconds;
    # epoll's (Python's selectors on Linux) rounds a wait under 1 ms up to 1 ms.
    waits: list[float] = []
    real_select = select.select

    def recording_select(r: Any, w: Any, x: Any, timeout: float | None = None) -> Any:
        if timeout is not None:
            waits.append(timeout)
        return real_select(r, w, x, timeout)

    monkeypatch.setattr(select, "select", recording_select)

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
    late = result["send_late_us"]
    assert isinstance(late, dict) and 0 <= late["p50"] <= late["max"]
    # at 200 orders/s (5 ms apart) it waits for the next due time, and hands select() waits of a
    # fraction of a millisecond as they are
    assert any(0 < wait < 0.001 for wait in waits) and max(waits) <= 0.01
    # the small data set holds few of the securities it trades: verdicts either way, all answered
    accepted, rejected = result["accepted"], result["rejected"]
    assert isinstance(accepted, int) and isinstance(rejected, int) and accepted + rejected == 100


def test_cpu_run_accepts_every_order(tmp_path: Path) -> None:
    DataSet().write(tmp_path / "data")
    assert asyncio.run(bench_gateway._cpu_per_order(tmp_path, 200, 20)) > 0


@pytest.mark.parametrize(
    ("p99_us", "last_ms", "lost", "held"),
    [(900.0, 1.0, 0, True), (634_000.0, 1.0, 0, False), (900.0, 80.0, 0, False), (900.0, 1.0, 1, False)],
)
def test_a_rate_is_held_only_without_a_queue(p99_us: float, last_ms: float, lost: int, held: bool) -> None:
    # A gateway that fell behind rejects orders for the cash its late fills hold and catches up on
    # those cheap rejects by the end: its last answer is on time, its p99 is not.
    out = {
        "answered": 100 - lost,
        "lost": lost,
        "last_answer_after_last_due_ms": last_ms,
        "latency_us": {"p99": p99_us},
    }
    result = bench_gateway.measure([sys.executable, "-c", f"print({json.dumps(out)!r})"], {})
    assert result["held"] is held


def test_a_mode_runs_riskgw_serve_between_the_native_load_generator_and_exchange(tmp_path: Path) -> None:
    """harness "native": bench/floor.c's load generator and exchange around the real gateway, every
    order answered and filled, figures as with the Python harness (the C compiler is required, as
    for the floor)."""
    DataSet().write(tmp_path / "data")
    mode = bench_gateway.run_mode(tmp_path, "soft", "none", (200,), 0.5, lambda text: None, harness="native")
    assert mode["harness"] == "native" and mode["event_loop"]["exchange"] == "C (bench/floor.c)"
    (run,) = mode["runs"]
    assert run["orders"] == 100 and run["answered"] == 100 and run["lost"] == 0 and run["held"]
    assert run["accepted"] == 100 and run["fills_seen"] > 0  # the orders pass the rules; C fills them
    assert run["gateway_cpu_us_per_order"] > 0 and mode["highest_rate_held"] == 200
