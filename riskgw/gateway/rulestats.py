"""Rule statistics: how often each rule stops orders, overall and per account.

For every NEW order the card decides:

- a rule's `hits` are the orders that failed it (an order that fails three rules is a hit of each);
- a rule's `sole` rejects are the orders it alone rejected: the orders that would have been
  accepted without it, which is what a risk officer asks before loosening a rule;
- an account's `orders` and `rejects` are its orders the card decided and those it rejected, and its
  hits per rule.

Counts are kept by rule name, so they carry on across deployments: a rule that a deployment keeps
keeps counting, a new one starts at zero, a removed one keeps its final count.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.metrics_core import Metric

from riskgw.gateway.metrics import family


@dataclass
class RuleCount:
    hits: int = 0
    sole: int = 0


@dataclass
class AccountCount:
    orders: int = 0
    rejects: int = 0
    hits: dict[str, int] = field(default_factory=dict)  # rule name -> orders that failed it


class RuleStats:
    def __init__(self) -> None:
        self.rules: dict[str, RuleCount] = {}
        self.accounts: dict[int, AccountCount] = {}

    def program(self, rule_names: list[str]) -> None:
        """Make every rule of the running program show, with zero counts until it fires."""
        for name in rule_names:
            self.rules.setdefault(name, RuleCount())

    def record(self, account: int, failed: tuple[int, ...], rule_names: list[str]) -> None:
        acct = self.accounts.get(account)
        if acct is None:
            acct = self.accounts[account] = AccountCount()
        acct.orders += 1
        if not failed:
            return
        acct.rejects += 1
        for rule in failed:
            name = rule_names[rule]
            count = self.rules.get(name)
            if count is None:
                count = self.rules[name] = RuleCount()
            count.hits += 1
            acct.hits[name] = acct.hits.get(name, 0) + 1
        if len(failed) == 1:
            self.rules[rule_names[failed[0]]].sole += 1

    def as_dict(self) -> dict[str, Any]:
        """For `riskgw ctl status`: JSON keys are strings, so accounts are too."""
        return {
            "rules": {name: {"hits": c.hits, "sole": c.sole} for name, c in self.rules.items()},
            "accounts": {
                str(a): {"orders": c.orders, "rejects": c.rejects, "hits": dict(c.hits)}
                for a, c in sorted(self.accounts.items())
            },
        }

    def metric_families(self) -> Iterator[Metric]:
        """Prometheus counters: riskgw_rule_hits_total, riskgw_rule_sole_rejects_total,
        riskgw_account_orders_total, riskgw_account_rejects_total, riskgw_account_rule_hits_total."""
        rules = self.rules.items()
        yield family(
            "counter",
            "riskgw_rule_hits_total",
            "new orders that failed the rule (by rule name, across deployments)",
            [((n,), c.hits) for n, c in rules],
            ["rule"],
        )
        yield family(
            "counter",
            "riskgw_rule_sole_rejects_total",
            "new orders rejected by this rule alone",
            [((n,), c.sole) for n, c in rules],
            ["rule"],
        )
        accounts = sorted(self.accounts.items())
        yield family(
            "counter",
            "riskgw_account_orders_total",
            "new orders the card decided, by account",
            [((str(a),), c.orders) for a, c in accounts],
            ["account"],
        )
        yield family(
            "counter",
            "riskgw_account_rejects_total",
            "new orders the rules rejected, by account",
            [((str(a),), c.rejects) for a, c in accounts],
            ["account"],
        )
        yield family(
            "counter",
            "riskgw_account_rule_hits_total",
            "new orders of the account that failed the rule",
            [((str(a), n), hits) for a, c in accounts for n, hits in c.hits.items()],
            ["account", "rule"],
        )
