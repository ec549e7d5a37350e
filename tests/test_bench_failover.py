"""bench.failover stays runnable: its short soak on the software double writes the figures the
report reads, and finds nothing lost, duplicated or decided otherwise than by the reference."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import failover

pytestmark = pytest.mark.timeout(300)


def test_quick_soak_on_the_double_writes_its_figures(tmp_path: Path) -> None:
    out = tmp_path / "failover.json"
    assert failover.main(["--quick", "--card", "faulty", "--timeout-ms", "20", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["card"] == "faulty" and result["quick"] is True
    assert result["events"] > 1_000
    assert result["faults"]["injected"] == result["failovers"] == 5
    assert result["failbacks"] == 4  # none after the last fault in the short form
    assert set(result["failover_ms"]) == {"p50", "p99", "max", "n"} and result["failover_ms"]["n"] == 5
    assert 0 < result["failover_ms"]["p50"] <= result["failover_ms"]["p99"] <= result["failover_ms"]["max"]
    assert result["detect_ms"]["stall"]["p50"] >= 20  # the driver's deadline
    assert (result["lost"], result["duplicated"], result["wrong"]) == (0, 0, 0)
    assert result["state_equal"] is True and result["mismatches"] == 0
