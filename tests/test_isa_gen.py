"""The SV package and ISA doc generated from riskgw/doe/isa.py must be committed up to date."""

from __future__ import annotations

from pathlib import Path

import pytest

from riskgw.doe import gen, isa


def test_generated_files_are_current() -> None:
    assert gen.stale() == [], "run `make gen` and commit the result"


def test_check_mode_reports_stale(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "rgw_isa_pkg.sv"
    fake.write_text("// old\n", encoding="utf-8")
    monkeypatch.setattr(gen, "SV_PACKAGE", fake)
    monkeypatch.setattr(gen, "ISA_DOC", tmp_path / "isa.md")
    assert gen.main(["--check"]) == 1
    assert gen.main([]) == 0
    assert gen.main(["--check"]) == 0


def test_package_carries_every_opcode_and_field() -> None:
    text = gen.render_sv_package()
    for op in isa.Op:
        assert f"OP_{op.name} = 8'h{int(op):02x}" in text
    for name, (lo, width) in isa.INSN_FIELDS.items():
        assert f"INSN_{name.upper()}_LSB = {lo};" in text
        assert f"INSN_{name.upper()}_W = {width};" in text
    assert f"ABI_VERSION = {isa.ABI_VERSION};" in text
    assert f"REG_TRUE = {isa.REG_TRUE};" in text
