"""`riskgw demo --prepare`: the card's build alone, sized as the demo's gateway will ask for it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from riskgw.card.simgw import data_shape, fits
from riskgw.card.simserver import CardParams, build_dir
from riskgw.cli import main
from riskgw.demo_serve import REPO_RULES
from riskgw.doe.compiler import compile_files
from riskgw.errors import UserError


def test_the_soft_card_needs_nothing_built(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--prepare", "--card", "soft"]) == 0
    assert "needs nothing built" in capsys.readouterr().out


def test_the_sim_card_is_built_with_the_parameters_the_demo_starts_it_with(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """What --prepare builds, against what `riskgw demo --serve` then starts its card with (a
    stand-in for the card's start stops it there)."""
    built: list[CardParams] = []

    def fake_build(params: CardParams, log: Any = None) -> Path:
        built.append(params)
        return tmp_path / "model"

    monkeypatch.setattr("riskgw.card.simserver.build", fake_build)
    assert main(["demo", "--prepare", "--card", "sim"]) == 0
    assert str(tmp_path / "model") in capsys.readouterr().out

    started: list[CardParams] = []

    class Card:
        @classmethod
        def start(cls, params: CardParams, **kwargs: Any) -> None:
            started.append(params)
            raise UserError("the card's start stands in for the test")

    monkeypatch.setattr("riskgw.card.simgw.SimCard", Card)
    workdir = tmp_path / "demo"
    assert main(["demo", "--serve", "--card", "sim", "--ports", "any", "--workdir", str(workdir)]) == 1
    assert "the card's start stands in for the test" in capsys.readouterr().err
    assert len(built) == 1 and started == built
    assert build_dir(built[0]) == build_dir(started[0])  # the same model, not one built again
    image = compile_files(sorted(REPO_RULES.glob("*.sql"))).image
    assert fits(data_shape(image, workdir / "data"), built[0].doe.rows, built[0].doe.ways)
