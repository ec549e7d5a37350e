"""`riskgw replay --backend sim` writes exactly what `--backend soft` writes (OUT.csv and every
--dump-state file), for the rule sets in rules/ and the reference rule file, on a small data set
and a scripted broker and exchange session. The card's state is read back from the card."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sim_card_support import Server, sim_card

from riskgw.cli import main
from riskgw.scenario import DataSet, Session, write_events

pytestmark = [pytest.mark.sim, pytest.mark.xdist_group("sim")]
__all__ = ["sim_card"]  # the fixture

REPO = Path(__file__).resolve().parents[1]
RULES = sorted((REPO / "rules").glob("*.sql"))
SCHEMA, FLOWS = REPO / "rules" / "00_schema.sql", REPO / "rules" / "90_flows.sql"
SEED = Path("/work/shared/fixtures/seed_rules.sql")
RULE_SETS = {
    "all": RULES,
    "seed_rules": [SEED],
    # each rule file alone with the schema and the state-keeping triggers
    **{p.stem: [SCHEMA, p, FLOWS] for p in RULES if p not in (SCHEMA, FLOWS)},
}
# Reading every table back from the simulated card takes most of a run's time, so the final
# state is compared for these; the others compare OUT.csv, whose verdicts depend on that state.
DUMPED = ("all", "seed_rules")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("replay-sim")
    # 20 accounts (the last one poor), a few holdings each: small tables to read back, and 23
    # orders, enough for the session to send an order that each rule file rejects
    data = DataSet(n_accounts=20, n_securities=8, holdings_per_account=2)
    data.write(root / "data")
    write_events(root / "events.csv", Session(data, n_orders=23, seed=11).run(lambda _row: True))
    return root


def replay(rules: list[Path], inputs: Path, out: Path, dump: bool, *backend: str) -> dict[str, str]:
    out.mkdir(parents=True)
    data = inputs / "data"
    if rules == [SEED]:  # the reference file has two of the tables
        data = out / "data"
        data.mkdir()
        for name in ("account_info", "account_ticket_info"):
            (data / f"{name}.csv").write_text((inputs / "data" / f"{name}.csv").read_text())
    argv = ["replay", *map(str, rules), "--data", str(data), "--events", str(inputs / "events.csv")]
    argv += ["--out", str(out / "out.csv"), *backend]
    if dump:
        argv += ["--dump-state", str(out / "state")]
    assert main(argv) == 0
    files = {"out.csv": (out / "out.csv").read_text()}
    if dump:
        files |= {p.name: p.read_text() for p in sorted((out / "state").iterdir())}
    return files


@pytest.mark.parametrize("name", sorted(RULE_SETS))
def test_sim_equals_soft(name: str, sim_card: Server, inputs: Path, tmp_path: Path) -> None:
    rules = RULE_SETS[name]
    dump = name in DUMPED
    soft = replay(rules, inputs, tmp_path / "soft", dump, "--backend", "soft")
    start = time.monotonic()
    card = ("--card-address", sim_card.address)
    sim = replay(rules, inputs, tmp_path / "sim", dump, "--backend", "sim", *card)
    print(f"{name}: replay on the simulated card took {time.monotonic() - start:.1f} s")
    assert sorted(sim) == sorted(soft) and (len(soft) > 1) == dump
    for file, text in soft.items():
        assert sim[file] == text, f"{name}: {file} differs"
    verdicts = [line.split(",")[2] for line in soft["out.csv"].splitlines()[1:]]
    assert "REJECT" in verdicts and "ACCEPT" in verdicts


def test_an_event_no_frame_can_carry_fails_before_any_card(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events = tmp_path / "events.csv"
    header = "event,order_id,account_id,ticket_id,direction,price,quantity,exec_price,exec_quantity,ts"
    events.write_text(f"{header}\nNEW,1,1,600000,0,,100,,,5\n")  # the rules read the price
    argv = ["replay", *map(str, RULES), "--events", str(events), "--out", str(tmp_path / "out.csv")]
    start = time.monotonic()
    # nothing listens there: the input check must come first
    assert main([*argv, "--backend", "sim", "--card-address", "tcp://127.0.0.1:9"]) == 1
    assert time.monotonic() - start < 20
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"{events}:2: error: --backend sim: price is empty, and the rules read it:"
        " a NEW_ORDER frame cannot carry it"
    ]
    assert not (tmp_path / "out.csv").exists()


def test_card_address_needs_the_sim_backend(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["replay", str(SEED), "--events", str(tmp_path / "e.csv"), "--out", str(tmp_path / "o.csv")]
    assert main([*argv, "--card-address", "tcp://127.0.0.1:9"]) == 1
    assert capsys.readouterr().err.strip() == "riskgw: error: --card-address is for --backend sim"


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("127.0.0.1:9", "expected tcp://HOST:PORT"),
        ("tcp://127.0.0.1", "expected tcp://HOST:PORT"),
        ("tcp://127.0.0.1:0", "give the port the running sim-card listens on"),
    ],
)
def test_a_malformed_card_address_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], address: str, why: str
) -> None:
    argv = ["replay", str(SEED), "--events", str(tmp_path / "e.csv"), "--out", str(tmp_path / "o.csv")]
    assert main([*argv, "--backend", "sim", "--card-address", address]) == 1
    assert capsys.readouterr().err == f"riskgw: error: --card-address {address!r}: {why}\n"
