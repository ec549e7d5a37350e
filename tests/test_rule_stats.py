"""Rule statistics: hits, sole rejects, per account; kept by rule name across deployments."""

from __future__ import annotations

from riskgw.gateway.metrics import page
from riskgw.gateway.rulestats import RuleStats


def test_hits_sole_rejects_and_accounts() -> None:
    stats = RuleStats()
    names = ["Funds", "Cap", "Rate"]
    stats.program(names)
    stats.record(7, (), names)
    stats.record(7, (0, 1), names)  # two rules: a hit of each, sole of neither
    stats.record(8, (1,), names)
    stats.record(8, (1,), names)
    assert stats.as_dict() == {
        "rules": {
            "Funds": {"hits": 1, "sole": 0},
            "Cap": {"hits": 3, "sole": 2},
            "Rate": {"hits": 0, "sole": 0},
        },
        "accounts": {
            "7": {"orders": 2, "rejects": 1, "hits": {"Funds": 1, "Cap": 1}},
            "8": {"orders": 2, "rejects": 2, "hits": {"Cap": 2}},
        },
    }
    lines = page(stats.metric_families()).splitlines()
    assert 'riskgw_rule_hits_total{rule="Cap"} 3.0' in lines
    assert 'riskgw_rule_sole_rejects_total{rule="Cap"} 2.0' in lines
    assert 'riskgw_account_rejects_total{account="8"} 2.0' in lines
    assert 'riskgw_account_rule_hits_total{account="7",rule="Funds"} 1.0' in lines
    assert "# TYPE riskgw_rule_hits_total counter" in lines


def test_counts_follow_rule_names_across_programs() -> None:
    stats = RuleStats()
    stats.record(1, (1,), ["Funds", "Cap"])
    # a deployment renumbers the rules: Cap is now rule 0, Funds is gone, New is added
    stats.program(["Cap", "New"])
    stats.record(1, (0,), ["Cap", "New"])
    assert stats.as_dict()["rules"] == {"Cap": {"hits": 2, "sole": 2}, "New": {"hits": 0, "sole": 0}}
