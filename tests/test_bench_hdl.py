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
    cells |= {"DSP48E2": 3, "RAM64M": 2, "CARRY8": 4, "MUXF7": 9, "INV": 2}
    r = synth.count(cells)
    assert (r["LUT"], r["LUT_as_memory"], r["FF"]) == (17, 8, 8)
    assert (r["RAMB36"], r["RAMB18"], r["URAM"], r["DSP"]) == (2, 2, 1, 3)
    assert set(r["utilisation_percent"]) == set(synth.U200)
    assert r["fits_in_half_of_u200"]


def test_synth_script_uses_the_slang_front_end(tmp_path: Path) -> None:
    text = synth.script(synth.BASE, tmp_path / "stat.json")
    assert "\nread_slang " in text
    assert "-family xcup" in text and "stat -json" in text
    assert all(f"-G {k}=" in text for k in synth.BASE)


def test_synth_unmapped_gates_never_count_as_a_fit() -> None:
    r = synth.count({"LUT6": 10, "_MUX_": 6, "_AND_": 3, "FDRE": 1})
    assert r["unmapped_cells"] == {"_MUX_": 6, "_AND_": 3}
    assert r["LUT"] == 10 and not r["fits_in_half_of_u200"]
    assert "unmapped_cells" not in synth.count({"LUT6": 10, "FDRE": 1})


def test_synth_script_maps_luts(tmp_path: Path) -> None:
    text = synth.script(synth.BASE, tmp_path / "stat.json")
    # the script runs synth_xilinx to its end (abc9 included), not up to map_luts
    assert "-run map_memory:\n" in text and "map_luts" not in text


def test_tables_grown_in_stages_hold_the_rows_of_one_load() -> None:
    from bench import hdl_tb

    image = compile_files(hdl.REFERENCE_RULES, lanes=8).image
    sizes = [300, 1_000, 2_500]
    staged: list[tuple[int, tuple[int | None, ...]]] = []
    for n, after in zip(sizes, [0, *sizes[:-1]], strict=True):
        rows = [(t, tuple(w)) for _, t, w in hdl_tb.reference_rows(image, n, after)]
        assert len(rows) == hdl_tb.stage_rows(n, after)
        staged += rows
    whole = [(t, tuple(w)) for _, t, w in hdl_tb.reference_rows(image, sizes[-1])]
    assert len(staged) == len(whole) == len(set(staged))

    def keys(rows: list[tuple[int, tuple[int | None, ...]]]) -> dict[int, set[tuple[int | None, ...]]]:
        out: dict[int, set[tuple[int | None, ...]]] = {}
        for t, w in rows:
            config = next(c for c in image.tables if c.id == t)
            out.setdefault(t, set()).add(tuple(w[k] for k in config.key))
        return out

    # the same keys in every table; an order may sit on another holding
    assert keys(staged) == keys(whole)


def test_rows_file_lines_hold_table_nulls_and_words(tmp_path: Path) -> None:
    from bench import hdl_tb

    words = 8
    rows: list[tuple[int, int, list[int | None]]] = [
        (5, 3, [7, None, -1]),
        (5, 1, [None] * 8),
        (5, 0, list(range(1, 9))),
    ]
    path = tmp_path / "rows.hex"
    assert hdl_tb.write_rows_file(path, rows, words) == 3
    for line, (_, table, values) in zip(path.read_text().splitlines(), rows, strict=True):
        v = int(line, 16)
        assert len(line) == (8 + words + 64 * words + 3) // 4
        assert v >> (65 * words) == table
        nulls = (v >> (64 * words)) & ((1 << words) - 1)
        for i in range(words):
            x = values[i] if i < len(values) else None
            assert bool(nulls >> i & 1) == (x is None)
            assert (v >> (64 * i)) & (2**64 - 1) == (0 if x is None else x & (2**64 - 1))
    with pytest.raises(ValueError, match="streamer holds"):
        hdl_tb.write_rows_file(path, [(5, 0, [1] * 9)], words)


def test_quick_form_runs_on_the_doe_suites_default_build() -> None:
    import sys

    root = Path(__file__).resolve().parents[1]
    sys.path[:0] = [str(root / "sim"), str(root / "sim" / "doe")]
    try:
        import test_doe
    finally:
        del sys.path[:2]
    assert test_doe.PARAM_SETS["default"] == hdl.QUICK_PARAMS
    assert hdl.rows_param(max(hdl.QUICK_SIZES), hdl.QUICK_SAMPLES) <= hdl.QUICK_PARAMS.rows


def test_synth_progress_names_the_pass_yosys_is_in(tmp_path: Path) -> None:
    log = tmp_path / "yosys.log"
    assert synth.last_pass(log) == "starting"
    passes = ["1. Executing Verilog frontend.", "x" * 100_000, "9.19.14.5. Executing ABC9.", "y"]
    log.write_text("\n".join(passes))
    assert synth.last_pass(log) == "9.19.14.5. Executing ABC9"
    log.write_text("no pass yet\n")
    assert synth.last_pass(log) == "reading the sources"
