"""SoftCard behind the CardDriver interface agrees with the engine it wraps."""

from __future__ import annotations

from pathlib import Path

import pytest

from riskgw.card.driver import CardError
from riskgw.card.soft import SoftCard
from riskgw.card.tables import load_data_dir
from riskgw.doe.compiler import compile_files
from riskgw.doe.isa import Event
from riskgw.engine.csvdata import EVENT_HEADER
from riskgw.engine.engine import Engine, event_inputs
from riskgw.engine.replay import load_data
from riskgw.errors import InputError
from riskgw.scenario import DataSet, Session

RULES = sorted((Path(__file__).resolve().parent.parent / "rules").glob("*.sql"))


def test_soft_card_matches_engine(tmp_path: Path) -> None:
    image = compile_files(RULES).image
    data = DataSet(n_accounts=20, n_securities=64, holdings_per_account=16).write(tmp_path / "data")
    card = SoftCard()
    card.load_image(image)
    engine = Engine(image)
    assert load_data_dir(card, data) == load_data(engine, data) > 0
    assert card.state_hash() == engine.state_hash()
    verdicts: list[bool] = []

    def decide(row: list[int | str | None]) -> bool:
        fields = dict(zip(EVENT_HEADER[1:], row[1:], strict=True))
        inputs = event_inputs(fields)
        a = card.process(Event[str(row[0])], inputs)
        b = engine.process(Event[str(row[0])], inputs)
        assert a == b
        verdicts.append(a.accepted)
        return a.accepted

    Session(DataSet(n_accounts=20, n_securities=64, holdings_per_account=16), n_orders=200).run(decide)
    assert set(verdicts) == {True, False}, "the session accepts some orders and rejects others"
    assert card.snapshot().hash == card.state_hash() == engine.state_hash()


def test_card_without_image_or_closed_refuses() -> None:
    card = SoftCard()
    with pytest.raises(CardError, match="no program image"):
        card.state_hash()
    card.load_image(compile_files(RULES).image)
    card.close()
    with pytest.raises(CardError, match="closed"):
        card.process(Event.NEW, event_inputs({}))


def test_duplicate_data_row_is_reported_with_its_line(tmp_path: Path) -> None:
    card = SoftCard()
    card.load_image(compile_files(RULES).image)
    (tmp_path / "account_info.csv").write_text("account_id,available_balance\n1,5\n2,6\n1,7\n")
    with pytest.raises(InputError, match=r"account_info.csv:4: error: duplicate key"):
        load_data_dir(card, tmp_path)
