"""Golden-file tests, one folder per pass: tests/fixtures/<pass>/*.sql with the expected output beside.

The IR passes are checked by the IR text after the pass; `level` by the assembly listing. To accept
a deliberate change, run with RISKGW_UPDATE_GOLDEN=1 and review the diff.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from riskgw.doe.asm import disassemble
from riskgw.doe.compiler import PASSES, compile_files
from riskgw.ir.lower import lower
from riskgw.ir.printer import print_program
from riskgw.lang.frontend import parse_files

FIXTURES = Path(__file__).parent / "fixtures"
STAGES = {"lower": 0, "incremental": 1, "fold": 2, "cse": 3}


def _render(stage: str, sql: Path) -> str:
    if stage == "level":
        text = disassemble(compile_files([sql], lanes=4).image)
        # The listing names the source by path; keep the golden file independent of the checkout.
        return text.replace(str(sql), sql.name)
    ir = lower(parse_files([sql]))
    for p in PASSES[: STAGES[stage]]:
        ir = p(ir)
    return print_program(ir)


CASES = sorted((stage, sql) for stage in [*STAGES, "level"] for sql in (FIXTURES / stage).glob("*.sql"))


@pytest.mark.parametrize(("stage", "sql"), CASES, ids=[f"{s}/{p.stem}" for s, p in CASES])
def test_golden(stage: str, sql: Path) -> None:
    expected_path = sql.with_suffix(".asm" if stage == "level" else ".ir")
    actual = _render(stage, sql)
    if os.environ.get("RISKGW_UPDATE_GOLDEN") == "1":
        expected_path.write_text(actual, encoding="utf-8")
    assert expected_path.exists(), f"no golden file {expected_path}: run with RISKGW_UPDATE_GOLDEN=1"
    assert actual == expected_path.read_text(encoding="utf-8")


def test_every_pass_has_golden_files() -> None:
    for stage in [*STAGES, "level"]:
        assert list((FIXTURES / stage).glob("*.sql")), f"no golden inputs for {stage}"
