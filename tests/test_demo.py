"""`riskgw demo` (what `make demo` runs) works end to end and shows every flow and every rule."""

from __future__ import annotations

from pathlib import Path

import pytest

from riskgw.cli import main


def test_demo_runs_every_flow_and_rule(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--workdir", str(tmp_path), "--orders", "400"]) == 0
    out = capsys.readouterr().out
    for flow in (
        "buy order accepted",
        "sell order rejected",
        "buy fill",
        "sell fill",
        "buy reject",
        "sell cancel",
    ):
        assert flow in out
    assert "reached the same" in out
    for name in ("prog.bin", "events.csv", "out.csv"):
        assert (tmp_path / name).exists()
    assert (tmp_path / "state" / "account_info.csv").exists()
