"""bench.hdl and bench.synth stay runnable: their generated rule files compile and fit the DOE
parameters the bench builds, and the resource counting reads yosys's cell names. No figures."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import hdl, synth
from riskgw.card.doeport import DoeParams, image_writes
from riskgw.doe.compiler import compile_files
from riskgw.doe.isa import Event

BENCH_PARAMS = DoeParams(lanes=8, regs=256, tables=8, cols=8, key_words=3, rules=128)


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, list[str]]]:
    return hdl.generated_rules(tmp_path_factory.mktemp("rules"))


def test_rule_sweep_files_compile_and_fit(cases: dict[str, dict[str, list[str]]]) -> None:
    assert sorted(map(int, cases["rules"])) == list(hdl.RULE_COUNTS)
    for n, paths in cases["rules"].items():
        image = compile_files([Path(p) for p in paths], lanes=8).image
        assert len(image.rules) == int(n)
        assert (Event.NEW, 0) in image.code
        image_writes(image, BENCH_PARAMS)  # raises when the image does not fit


def test_nesting_files_nest_as_deep_as_asked(cases: dict[str, dict[str, list[str]]]) -> None:
    for d, paths in cases["nesting"].items():
        text = Path(paths[1]).read_text()
        assert text.count("(") - text.count(")") == 0
        assert text.count("trade_order.quantity") == 1
        # d - 1 nested operations under the comparison, and the rule's own parenthesis
        assert text.split("<=")[0].count("(") == int(d)


def test_reference_rules_fit_the_bench_parameters() -> None:
    image = compile_files(hdl.REFERENCE_RULES, lanes=8).image
    image_writes(image, BENCH_PARAMS)


def test_rows_param_holds_the_orders() -> None:
    for n in hdl.SIZES:
        rows = hdl.rows_param(n, 250)
        assert rows & (rows - 1) == 0 and rows >= n + 500


def test_synth_counts_resources_by_cell_name() -> None:
    cells = {"LUT6": 10, "LUT2": 5, "FDRE": 7, "FDSE": 1, "RAMB36E2": 2, "RAMB18E2": 2, "URAM288": 1}
    cells |= {"DSP48E2": 3, "RAM64M": 2, "CARRY8": 4, "MUXF7": 9}
    r = synth.count(cells)
    assert (r["LUT"], r["LUT_as_memory"], r["FF"]) == (15, 8, 8)
    assert (r["RAMB36"], r["RAMB18"], r["URAM"], r["DSP"]) == (2, 2, 1, 3)
    assert set(r["utilisation_percent"]) == set(synth.U200)
    assert r["fits_in_half_of_u200"]


def test_synth_script_uses_the_slang_front_end(tmp_path: Path) -> None:
    text = synth.script(synth.BASE, tmp_path / "stat.json")
    assert text.startswith("read_slang ")
    assert "-family xcup" in text and "stat -json" in text
    assert all(f"-G {k}=" in text for k in synth.BASE)


def test_synth_estimates_luts_from_unmapped_gates() -> None:
    r = synth.count({"LUT6": 10, "_MUX_": 6, "_AND_": 3, "FDRE": 1})
    assert r["LUT_is_estimate"] and r["unmapped_gates"] == 9
    assert (r["LUT"], r["LUT_lower_estimate"]) == (19, 13)
