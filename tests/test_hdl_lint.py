"""Every HDL top passes `verilator --lint-only -Wall` with its file list."""

from __future__ import annotations

from pathlib import Path

import pytest

from riskgw import hdl_lint


def test_every_top_has_a_file_list() -> None:
    assert "rgw_doe_alu" in hdl_lint.tops()
    for top in hdl_lint.tops():
        files = hdl_lint.filelist(top)
        assert files, top
        assert all(f.exists() for f in files), top
        assert files[-1].name == f"{top}.sv", f"{top}.f should list the top last"


@pytest.mark.parametrize("top", hdl_lint.tops())
def test_lint_clean(top: str) -> None:
    result = hdl_lint.lint(top)
    assert result.returncode == 0, result.stdout + result.stderr


def test_lint_catches_a_warning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "rgw_bad.sv").write_text(
        "`default_nettype none\nmodule rgw_bad(input wire logic a, output wire logic b);\n"
        "logic spare;\nassign b = a;\nendmodule\n",
        encoding="utf-8",
    )
    (tmp_path / "rgw_bad.f").write_text("rgw_bad.sv\n", encoding="utf-8")
    monkeypatch.setattr(hdl_lint, "HDL", tmp_path)
    assert hdl_lint.main(["rgw_bad"]) == 1
