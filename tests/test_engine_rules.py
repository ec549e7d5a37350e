"""Both executors on compiled rule programs: the example rules and the seed fixture.

A scripted session over a small version of the reference data set runs through the reference
interpreter; the fast path must reach the same decision on every event and the same state hash.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from riskgw.doe.compiler import compile_files
from riskgw.engine.csvdata import EVENT_NAMES
from riskgw.engine.engine import Decision, Engine, event_inputs
from riskgw.engine.replay import load_data
from riskgw.scenario import EVENT_HEADER, DataSet, Row, Session

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = Path("/work/shared/fixtures/seed_rules.sql")
RULE_SETS = {
    "all": sorted((ROOT / "rules").glob("*.sql")),
    "reference": [
        ROOT / "rules" / n
        for n in ("00_schema.sql", "10_funds.sql", "20_holdings.sql", "30_self_trade.sql", "90_flows.sql")
    ],
    "seed": [FIXTURE],
}


def _inputs(row: Row) -> tuple[int | None, ...]:
    return event_inputs(dict(zip(EVENT_HEADER[1:], row[1:], strict=True)))


@pytest.mark.parametrize("rule_set", sorted(RULE_SETS))
def test_fast_path_matches_interpreter_on_compiled_rules(rule_set: str, tmp_path: Path) -> None:
    image = compile_files(RULE_SETS[rule_set]).image
    data = DataSet(n_accounts=20, n_securities=128, holdings_per_account=48)
    data_dir = data.write(tmp_path / "data")
    tables = {t.name for t in image.tables}
    for path in data_dir.glob("*.csv"):
        if path.stem not in tables:
            path.unlink()  # the seed fixture declares only two of the tables
    ref, fast = Engine(image, "interp"), Engine(image, "fast")
    for engine in (ref, fast):
        load_data(engine, data_dir)
    assert ref.state_hash() == fast.state_hash()

    decisions: list[tuple[Decision, Decision]] = []

    def decide(row: Row) -> bool:
        event, inputs = EVENT_NAMES[str(row[0])], _inputs(row)
        pair = ref.process(event, inputs), fast.process(event, inputs)
        decisions.append(pair)
        return pair[0].accepted

    rows = Session(data=data, n_orders=600, seed=3).run(decide)
    for i, (a, b) in enumerate(decisions):
        assert a == b, f"event {i}: {rows[i]}"
    assert ref.state_hash() == fast.state_hash()
    kinds = {(str(r[0]), d[0].accepted) for r, d in zip(rows, decisions, strict=True)}
    # the session must reach both verdicts and every event kind, or the comparison proves little
    assert {("NEW", True), ("NEW", False), ("FILL", True), ("REJECT", True), ("CANCEL", True)} <= kinds
