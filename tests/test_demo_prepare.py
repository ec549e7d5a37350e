"""`riskgw demo --prepare`: the card's build alone, sized as the demo's gateway will ask for it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from riskgw.card.simgw import card_params, data_shape, fits
from riskgw.card.simserver import CardParams
from riskgw.cli import main
from riskgw.demo_serve import REPO_RULES, prepare_workdir
from riskgw.doe.compiler import compile_files


def test_the_soft_card_needs_nothing_built(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--prepare", "--card", "soft"]) == 0
    assert "needs nothing built" in capsys.readouterr().out


def test_the_sim_card_is_built_with_the_parameters_the_demo_starts_it_with(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    built: list[CardParams] = []

    def fake_build(params: CardParams, log: Any = None) -> Path:
        built.append(params)
        return tmp_path / "model"

    monkeypatch.setattr("riskgw.card.simserver.build", fake_build)
    assert main(["demo", "--prepare", "--card", "sim"]) == 0
    assert len(built) == 1
    # what the demo's gateway computes from the data set it writes (riskgw.card.simgw.sim_card_pool)
    image = compile_files(sorted(REPO_RULES.glob("*.sql"))).image
    shape = data_shape(image, prepare_workdir(tmp_path / "demo"))
    assert built[0] == card_params(shape, lambda text: None)
    assert fits(shape, built[0].doe.rows, built[0].doe.ways)
    assert str(tmp_path / "model") in capsys.readouterr().out
