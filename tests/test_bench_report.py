"""bench.report writes the figures from result JSONs, computes its ratios from them, and says
plainly which inputs are missing or stale; bench.run fails a step that leaves no fresh result."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from bench import report, run

FLOWS = ("buy order", "sell order", "buy fill", "sell fill")


def _cycles(lo: int, med: int, hi: int, samples: int = 16) -> dict[str, Any]:
    return {
        "samples": samples,
        "latency_cycles": {"min": lo, "max": hi, "median": med, "mean": med, "jitter": hi - lo},
    }


def hdl_doc(sizes: tuple[int, ...] = (1_000, 1_000_000)) -> dict[str, Any]:
    by_size = {
        str(n): {
            "table_rows": {"order_info": n},
            # the order flows take 15 cycles (20 at the largest size), the fills 90 to 91
            "flows": {
                f: _cycles(15, 15, 15)
                if "order" in f and n < 1_000_000
                else _cycles(20, 20, 20)
                if "order" in f
                else _cycles(90, 90, 91)
                for f in FLOWS
            },
            "jitter_over_all_flows_cycles": 75,
            "max_jitter_within_a_flow_cycles": 1,
        }
        for n in sizes
    }
    return {
        "bench": "hdl",
        "machine": {"cpu": "Test CPU 9000", "cores": 2},
        "flows_by_table_rows": by_size,
        "sizes_skipped": [],
        "rules_sweep": {
            str(r): _cycles(c, c, c, 8) | {"new_section_bundles": c - 6} for r, c in ((4, 10), (128, 55))
        },
        "nesting_sweep": {str(d): _cycles(c, c, c, 8) for d, c in ((2, 10), (20, 27))},
    }


def engine_doc() -> dict[str, Any]:
    def flows(p50: float) -> dict[str, Any]:
        return {
            "backend": "native",
            "cpu_events_per_s": 400_000.0,
            "flows": {f: {"n": 100, "p50_us": p50, "p99_us": 2 * p50, "max_us": 50.0} for f in FLOWS},
            "all": {"n": 400, "p50_us": p50, "p99_us": 2 * p50, "max_us": 50.0},
        }

    return {
        "levels": {
            "1000": {"events": 400, "engine_native": flows(3.0), "engine": flows(6.0), "sqlite": flows(60.0)},
            "1000000": {"events": 400, "engine_native": flows(3.3), "engine": flows(6.5)},
        }
    }


def failover_doc() -> dict[str, Any]:
    return {
        "card": "sim",
        "events": 1500,
        "faults": {"kill": 4, "stall": 1},
        "failovers": 5,
        "failover_ms": {"p50": 1.25, "p99": 4.5, "max": 7.75, "n": 5},
        "detect_ms": {"kill": {"p50": 0.5}, "stall": {"p50": 200.0}},
        "rejoin_s": {"p50": 3.0},
        "lost": 0,
        "duplicated": 0,
        "wrong": 0,
        "state_equal": True,
        "sim_unavailable": None,
    }


def gateway_doc(card: str = "soft", rate: int = 20_000) -> dict[str, Any]:
    run = {
        "rate": rate,
        "orders": 2 * rate,
        "answered": 2 * rate,
        "latency_us": {"p50": 40.0, "p90": 80.0, "p99": 150.0, "p99_9": 300.0, "max": 900.0},
        "held": True,
        "loadavg_1m": 3.5,
    }
    mode = {"card": card, "journal_sync": "none", "runs": [run], "highest_rate_held": rate}
    return {"seconds_per_rate": 2.0, "held_ms": 50.0, "modes": [mode]}


def fix_doc() -> dict[str, Any]:
    return {"path": "FIX", "orders": 1000, "warmup": 100, "p50_us": 120.0, "p99_us": 400.0, "max_us": 2000.0}


def write(results: Path, **docs: dict[str, Any]) -> Path:
    results.mkdir(parents=True, exist_ok=True)
    for name, doc in docs.items():
        (results / f"{name}.json").write_text(json.dumps(doc))
    return results


def make_report(tmp_path: Path, *extra: str, plots: bool = False, **docs: dict[str, Any]) -> tuple[int, str]:
    results = write(tmp_path / "results", **docs)
    argv = ["--results", str(results), "--out", str(tmp_path / "out"), *extra]
    code = report.main(argv if plots else [*argv, "--no-plots"])
    return code, (tmp_path / "out" / "report.md").read_text()


def test_missing_inputs_are_named_and_nothing_is_drawn_for_them(tmp_path: Path) -> None:
    code, text = make_report(tmp_path, hdl=hdl_doc())
    assert code == 0  # nothing required
    assert "**Missing input: `engine.json` is missing; not measured in this run.**" in text
    assert "**Missing input: `failover.json` is missing; not measured in this run.**" in text
    assert "**Missing input: `gateway.json` is missing" in text and "`fix.json` is missing" in text
    assert "| 6. Failover time | missing: `failover.json` is missing |" in text
    assert "`baselines.json` is missing" in text
    # the machine's load during the run is unknown without bench.run: said, not guessed
    assert "The load during the measurements was not recorded." in text
    assert not (tmp_path / "out" / "figures" / "fig6_failover.png").exists()


def test_doe_cycles_become_ns_at_250_mhz_and_ratios_against_the_reference(tmp_path: Path) -> None:
    _, text = make_report(tmp_path, hdl=hdl_doc(), engine=engine_doc())
    # 15 cycles = 60 ns; reference 2 µs / 60 ns = 33.3x; native 3 µs / 60 ns = 50x; SQLite / native = 20x
    assert "| 1,000 | 15 / 60 | 90 / 360 | 3.0 / 6.0 | 6.0 | 60.0 | 33.3x | 50.0x | 20.0x |" in text
    assert "| 1,000,000 | 20 / 80 | 90 / 360 | 3.3 / 6.6 | 6.5 | not run | 25.0x | 41.2x | n/a |" in text
    assert "DOE growth from 1,000 to 1,000,000 orders per account: 5 cycles" in text
    # jitter of a flow = max - min: 1 cycle = 4 ns, a hundredth of... 25x under the reference's 100 ns
    assert "| buy fill | 16 | 90 / 90 / 91 | 360 | 1 / 4 | 25.0x |" in text
    # sweeps: 4 -> 128 rules grows 45 cycles = 180 ns against their 100 ns
    assert "Growth 4 -> 128: 180 ns at 250 MHz; the reference's: +100 ns (ours ÷ theirs: 1.8x)" in text
    assert "Growth 2 -> 20: 68 ns at 250 MHz" in text
    assert "not a claim about a real card" in text
    # the summary's headline, from the largest size measured
    assert (
        "- DOE at 1,000,000 orders per account: order check 20 cycles "
        "(80 ns at 250 MHz; their 2 µs ÷ ours: 25.0x)" in text
    )
    assert "- DOE 4 -> 128 rules: +45 cycles (+180 ns); theirs +100 ns." in text


def test_sizes_not_measured_are_said_not_filled_in(tmp_path: Path) -> None:
    doc = hdl_doc(sizes=(1_000,))
    doc["sizes_skipped"] = [1_000_000]
    doc["why_sizes_are_skipped"] = "too slow to load"
    _, text = make_report(tmp_path, hdl=doc)
    assert "DOE not simulated at 1,000,000 orders per account in this run: too slow to load." in text
    assert "DOE not measured at 1,000,000 in this run; the largest measured, 1,000, is shown." in text
    assert "DOE at 1,000 orders per account" in text


def test_require_fails_on_a_missing_or_stale_figure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    docs = {"hdl": hdl_doc(), "engine": engine_doc(), "failover": failover_doc()}
    # plots named: a **dict of docs could otherwise stand for it as far as the type checker knows
    code, _ = make_report(tmp_path, "--require", "1,2,3,4,6", plots=False, **docs)
    assert code == 0
    code, _ = make_report(tmp_path, "--require", "all", plots=False, **docs)
    assert code == 1
    assert "required figure(s) 5 incomplete" in capsys.readouterr().err

    future = str(os.path.getmtime(tmp_path / "results" / "hdl.json") + 60)
    code, text = make_report(tmp_path, "--require", "3", "--since", future, hdl=hdl_doc())
    assert code == 1
    assert "**Stale input: `hdl.json` was written at" in text and "before this run.**" in text


def test_an_unreadable_input_is_reported_not_raised(tmp_path: Path) -> None:
    results = write(tmp_path / "results", hdl=hdl_doc())
    (results / "failover.json").write_text("{not json")
    code = report.main(
        ["--results", str(results), "--out", str(tmp_path / "out"), "--require", "6", "--no-plots"]
    )
    assert code == 1
    assert "**Missing input: `failover.json` is unreadable" in (tmp_path / "out" / "report.md").read_text()


def test_failover_and_gateway_figures_read_their_results(tmp_path: Path) -> None:
    code, text = make_report(
        tmp_path, "--require", "5,6", failover=failover_doc(), gateway=gateway_doc(), fix=fix_doc()
    )
    assert "| sim | 1,500 | 4 / 1 | 5 | 1.25 | 4.50 | 7.75 | 0.5 / 200.0 | 3.00 |" in text
    assert "| 0 | 0 | 0 | True |" in text
    assert (
        "| soft | none | bench | 20,000 | 40,000 / 40,000 | 40.0 | 80.0 | 150.0 | 300.0 | 900.0 | yes | 3.5 |"
        in text  # results without a harness field ran this benchmark's own generator and exchange-sim
    )
    assert (
        "Soft card at 20,000/s (journal none, bench harness): p99 150.0 µs, budget 200 µs "
        "(p99 ÷ budget: 0.8x)." in text
    )
    assert (
        "Highest rate held (every order answered, the last answer and the p99 within 50 ms): "
        "soft card, journal none: 20,000 orders/s." in text
    )
    assert "FIX p50 ÷ binary p50 (soft card, lowest rate, first journal mode): 3.0x (FIX is timed" in text
    assert "| p50 µs | p90 µs | p99 µs | p99.9 µs | max µs |" in text
    # figure 5 needs the simulated card too
    assert "**Missing input: no simulated-card run" in text
    assert code == 1
    quick = gateway_doc() | {"sim_card": "not run: --quick, or --card sim given"}
    _, text = make_report(tmp_path, gateway=quick)
    assert "**Missing input: no simulated-card run (not run: --quick, or --card sim given)" in text
    code, text = make_report(
        tmp_path, "--require", "5,6", gateway=gateway_doc(), gateway_sim=gateway_doc("sim", 50)
    )
    assert code == 0
    assert "| sim | none | bench | 50 | 100 / 100 |" in text


def test_plots_are_written_for_the_figures_that_have_inputs(tmp_path: Path) -> None:
    docs = {"hdl": hdl_doc(), "engine": engine_doc(), "failover": failover_doc(), "fix": fix_doc()}
    _, text = make_report(tmp_path, plots=True, **docs)
    figures = tmp_path / "out" / "figures"
    names = sorted(p.name for p in figures.iterdir())
    expected = ["fig1_orders.png", "fig2_flows.png", "fig3_rules.png", "fig4_nesting.png"]
    assert names == [*expected, "fig5_gateway.png", "fig6_failover.png"]
    for name in names:
        assert (figures / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"](figures/{name})" in text


def test_run_fails_a_bench_that_writes_no_fresh_result_or_crashes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # each benchmark is a process: here one that writes its result, one that writes none and one
    # that dies of a signal, as a crashing native extension would
    scripts = {
        "good": f"open({str(tmp_path / 'good.json')!r}, 'w').write('{{}}')",
        "silent": "pass",
        "crash": "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)",
    }

    def command(module: str, argv: list[str]) -> list[str]:
        return [sys.executable, "-c", scripts[module]]

    monkeypatch.setattr(run, "command", command)
    monkeypatch.setattr(run, "BENCHES", ("good", "silent", "crash"))
    monkeypatch.setattr(run, "RESULTS", tmp_path)
    assert run.main(["--no-report", "good"]) == 0
    assert run.main(["--no-report"]) == 1
    err = capsys.readouterr().err
    assert "bench.silent: exited 0 but wrote no fresh" in err
    assert "bench.crash: killed by signal 11" in err
    assert "] bench.good: started (load " in err  # progress: one line per step, elapsed time first
    machine = json.loads((tmp_path / "machine.json").read_text())
    assert [machine["steps"][n]["exit"] for n in ("good", "silent", "crash")] == [0, 1, 1]
    assert len(machine["steps"]["good"]["load_before"]) == 3


def test_baselines_are_tabled_with_ratios_against_riskgw_and_the_doe(tmp_path: Path) -> None:
    def backend(p50: float, rate: float) -> dict[str, Any]:
        return {"cpu_events_per_s": rate, "all": {"n": 1000, "p50_us": p50, "p99_us": 4 * p50}}

    level = {
        "events": 1000,
        "orders": 400,
        "riskgw_native": backend(2.0, 400_000),
        "riskgw_fast": {"skipped": "no C compiler"},
        "sqlite": backend(50.0, 16_000),
        "openpit": backend(1.8, 250_000) | {"version": "0.10.0", "events_timed": 990},
        "verdict_agreement": {
            "orders": 400,
            "same_verdict": 380,
            "share": 0.95,
            "only_riskgw_accepts": 15,
            "only_openpit_accepts": 5,
        },
    }
    _, text = make_report(
        tmp_path, hdl=hdl_doc(), baselines={"rules": ["10_funds.sql"], "levels": {"1000": level}}
    )
    # DOE order check at the smallest size: 15 cycles = 60 ns
    assert "| riskgw native | 1,000 | 400,000 | 2.00 | 8.00 | 1.0x | 1.0x | 33.3x |" in text
    assert "| riskgw fast path | no C compiler |" in text
    assert "| SQLite, indexed | 1,000 | 16,000 | 50.00 | 200.00 | 25.0x | 25.0x | 833x |" in text
    assert "| openpit 0.10.0 | 990 | 250,000 | 1.80 | 7.20 | 0.9x | 1.6x | 30.0x |" in text
    assert "agree on 380 of 400 orders (95.0%)" in text


def floor_doc(native_p99: float) -> dict[str, Any]:
    def run(p99: float) -> dict[str, Any]:
        lat = {"p50": 100.0, "p90": 120.0, "p99": p99, "p99_9": 2 * p99, "max": 3 * p99}
        return {"rate": 20_000, "orders": 40_000, "answered": 40_000, "latency_us": lat}

    native = run(native_p99) | {"relay_cpu_us_per_order": 20.0, "loadavg_1m": 1.5}
    bench = run(100.0) | {"relay_cpu_us_per_order": 18.0, "loadavg_1m": 1.6}
    return {"harnesses": [{"harness": "native", "runs": [native]}, {"harness": "bench", "runs": [bench]}]}


def test_gateway_figure_sets_the_budget_against_the_floor(tmp_path: Path) -> None:
    _, text = make_report(tmp_path, gateway=gateway_doc() | {"floor": floor_doc(1_500.0)})
    assert (
        "| native | 20,000 | 40,000 / 40,000 | 100.0 | 120.0 | 1,500 | 3,000 | 4,500 | 20.0 | 1.5 |" in text
    )
    assert (
        "Floor at 20,000/s (native harness): p99 1,500 µs, 7.5x the budget: the budget is below what "
        "this machine's loopback gives three processes doing no work." in text
    )
    # the gateway's p99 150 µs over the bench harness's floor of 100 µs at the same rate
    assert (
        "Gateway (soft card, journal none) ÷ floor, both with the bench harness, same rate: "
        "20,000/s p50 0.4x, p99 1.5x." in text
    )
    assert "both with the native harness" not in text  # no gateway run with the native harness
    # the same gateway run with the C load generator and exchange: set against the native floor
    native = gateway_doc()
    native["modes"][0]["harness"] = "native"
    _, text = make_report(tmp_path, gateway=native | {"floor": floor_doc(1_500.0)})
    assert "| soft | none | native | 20,000 |" in text
    assert "soft card, journal none, C load generator and exchange: 20,000 orders/s" in text
    assert "Gateway, soft card, journal none, C load generator and exchange: highest rate held 20,000" in text
    assert (
        "Gateway (soft card, journal none) ÷ floor, both with the native harness, same rate: "
        "20,000/s p50 0.4x, p99 0.1x." in text
    )
    assert "both with the bench harness" not in text
    _, text = make_report(tmp_path, gateway=gateway_doc() | {"floor": floor_doc(80.0)})
    assert (
        "p99 80.0 µs, 0.4x the budget: 120.0 µs of the budget are left for the gateway's own work at p99."
        in text
    )
    _, text = make_report(tmp_path, gateway=gateway_doc())
    assert "No floor run (bench/floor.py) in these results." in text
