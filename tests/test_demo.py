"""`riskgw demo` (what `make demo` runs) works end to end and shows every flow and every rule, over
TCP through the gateway and, with --offline, in one process."""

from __future__ import annotations

from pathlib import Path

import pytest
from gateway_support import RULES

from riskgw.cli import main
from riskgw.demo_broker import FLOWS
from riskgw.demo_live import ServeProcess
from riskgw.doe.compiler import compile_files
from riskgw.doe.isa import Event
from riskgw.gateway.journal import scan


def test_offline_demo_runs_every_flow_and_rule(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--offline", "--workdir", str(tmp_path), "--orders", "400"]) == 0
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


@pytest.mark.timeout(120)
def test_demo_over_tcp_runs_every_flow_rule_and_control(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo", "--card", "soft", "--workdir", str(tmp_path), "--orders", "600", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    lines = {
        line.split()[0] + " " + line.split()[1]: line for line in out.splitlines() if line.startswith("  ")
    }
    for flow in FLOWS:
        assert int(lines[flow].split()[-1]) > 0, flow
    rules = [r.name for r in compile_files(RULES).image.rules]
    for name in rules:
        row = next(line for line in out.splitlines() if line.strip().startswith(name + " "))
        assert int(row.split()[-1]) > 0, name
    assert "1 KILL_SWITCH" in out
    # the gateway journaled what the broker saw: every order it sent is an event or a reject
    entries = scan(tmp_path / "gateway.journal").entries
    news = sum(e.event is Event.NEW for e in entries)
    sent = int(out.split("orders: ", 1)[1].split()[0])
    assert 0 < news < sent  # KILL_SWITCH rejects never reach the card
    metrics = (tmp_path / "metrics.txt").read_text()
    assert f"riskgw_orders_total {sent}.0" in metrics
    assert f"(riskgw_orders_total {sent}, journal commits " in out  # the summary says it as a count
    # the FIX acceptor ran beside the binary port, and the summary says how to reach it
    fix_port = int(out.split("FIX 4.4 acceptor on 127.0.0.1:", 1)[1].split(":", 1)[0])
    started = f"FIX 4.4 on 127.0.0.1:{fix_port} (sessions BROKER1"  # on loopback alone, as it says
    assert started in (tmp_path / "serve.log").read_text()


def test_demo_fails_with_one_line_when_the_gateway_cannot_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "account_ticket_info.csv").write_text("not,a,table\n")
    assert main(["demo", "--card", "soft", "--workdir", str(tmp_path), "--orders", "10"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("riskgw: error: the gateway did not start:")


@pytest.mark.parametrize("mode", [[], ["--offline"], ["--serve"]])
def test_a_workdir_that_cannot_be_a_directory_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], mode: list[str]
) -> None:
    taken = tmp_path / "a_file"
    taken.write_text("not a directory\n")
    assert main(["demo", "--card", "soft", "--workdir", str(taken), *mode]) == 1
    err = capsys.readouterr().err
    assert err == f"riskgw: error: --workdir {taken}: cannot make it a directory: File exists\n"


@pytest.mark.parametrize("orders", ["0", "-5"])
def test_no_orders_is_refused_before_anything_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], orders: str
) -> None:
    assert main(["demo", "--card", "soft", "--workdir", str(tmp_path / "w"), "--orders", orders]) == 1
    err = capsys.readouterr().err
    assert err == f"riskgw: error: --orders {orders}: the scripted broker needs at least one order\n"
    assert not (tmp_path / "w").exists()  # nothing was started or written


def test_the_gateways_own_error_is_quoted_without_its_prefix(tmp_path: Path) -> None:
    serve = object.__new__(ServeProcess)  # its log alone: no child started
    serve.log_path = tmp_path / "serve.log"
    serve.log_path.write_text("starting\nriskgw: error: work directory X is in use\n\n", encoding="utf-8")
    assert serve.last_log_line() == "work directory X is in use"  # said again after "riskgw: error: ..."
    serve.log_path.write_text("data.csv:1: error: no column 'not'\n", encoding="utf-8")
    assert serve.last_log_line() == "data.csv:1: error: no column 'not'"
