"""The Grafana dashboard in docs/ asks only for metrics the gateway serves."""

from __future__ import annotations

import json
import re
from pathlib import Path

from gateway_support import run_async, start_stack

from riskgw.exchange.sim import Behaviour
from riskgw.gateway import metrics as metrics_module
from riskgw.gateway.metrics import render

DASHBOARD = Path(__file__).resolve().parent.parent / "docs" / "grafana-gateway.json"


def test_every_metric_on_the_dashboard_is_served(tmp_path: Path) -> None:
    async def served() -> set[str]:
        stack = await start_stack(tmp_path, Behaviour())
        text = render(stack.gateway)
        await stack.close()
        return {m.group(1) for m in re.finditer(r"^# TYPE (\S+) ", text, re.M)}

    names = run_async(served())
    # the hot standby's metrics appear only with a card under a standby, the FIX sessions' only with
    # a FIX port: take those from the source
    source = Path(metrics_module.__file__).read_text(encoding="utf-8")
    names |= set(re.findall(r'"(riskgw_(?:card|fix)_[a-z_]+)"', source))
    dash = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    asked = {re.sub(r"_(bucket|sum|count)$", "", m) for e in exprs for m in re.findall(r"riskgw_[a-z_]+", e)}
    assert asked and asked <= names, sorted(asked - names)
    assert len({p["id"] for p in dash["panels"]}) == len(dash["panels"])
