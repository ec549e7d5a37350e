"""OrderStatusRequest (H), and what the gateway says of a FIX order it placed before a restart once
the order has left the gateway's window of done orders (Gateway.decided keeps every open order and
the last DECIDED_WINDOW done ones): its outcome from the order map's outcome line, or, when that
line is lost, the FIX answer for an unknown order, never "rejected" for an order that was filled."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fix_support import connect, fix_port, fix_stack
from gateway_support import SMALL, run_async

from riskgw.exchange.sim import Behaviour
from riskgw.gateway import server
from riskgw.gateway.fixmap import FILE_NAME
from riskgw.gateway.serve import start_gateway
from riskgw.scenario import ticket

pytestmark = pytest.mark.timeout(120)

WINDOW = 3
FILL_ALL = Behaviour(fill=1.0, partial=0.0, reject=0.0)


def test_status_of_orders_before_and_after_they_leave_the_window(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setattr(server, "DECIDED_WINDOW", WINDOW)

    async def script() -> None:
        async with fix_stack(tmp_path, FILL_ALL) as stack:
            broker = await connect(tmp_path, fix_port(stack))
            symbol = ticket(SMALL.held(1, 0))
            broker.held("a1", account=1)
            placed = await broker.report("0", T11="a1")
            await broker.report("F", T11="a1", T39="2")
            broker.send("H", (11, "a1"), (55, symbol), (54, "1"), (790, "q1"))
            await broker.report("I", T11="a1", T37=placed[37], T39="2", T14="100", T151="0", T790="q1")
            # more done orders than the window holds: a1's record leaves it
            for i in range(WINDOW + 2):
                broker.held(f"b{i}", account=2, k=i)
                await broker.report("0", T11=f"b{i}")
                await broker.report("F", T11=f"b{i}")
            assert (1, int(placed[37])) not in stack.gateway.decided
            assert stack.gateway.forgotten[1] >= int(placed[37])
            # a ClOrdID never used: the FIX answer for an unknown order
            broker.send("H", (11, "nope"), (55, symbol), (54, "1"))
            await broker.report("I", T11="nope", T37="NONE", T39="8", T103="5")

            # after a restart: a1's outcome is its outcome line's, not "rejected"
            await stack.restart()
            await broker.stop()
            assert (1, int(placed[37])) not in stack.gateway.decided
            again = await connect(tmp_path, fix_port(stack))
            again.send("H", (11, "a1"), (55, symbol), (54, "1"))
            status = await again.report("I", T11="a1", T37=placed[37], T39="2", T14="100", T151="0")
            assert 103 not in status
            again.cancel("a1-x", "a1", symbol)
            await again.recv("9", T434="1", T102="0", T39="2", T41="a1")  # too late: filled
            # a recent order is answered from the journal as before
            again.send("H", (11, f"b{WINDOW + 1}"), (55, ticket(SMALL.held(2, WINDOW + 1))), (54, "1"))
            await again.report("I", T11=f"b{WINDOW + 1}", T39="2", T14="100")
            await again.logout()

            # the outcome line lost (a power cut before it reached the disk, say): the gateway
            # does not know what became of a1 and says so the FIX way for an unknown order
            await stack.running.stop()
            orders = stack.config.journal.with_name(stack.config.journal.name + ".fix") / FILE_NAME
            lines = orders.read_text(encoding="utf-8").splitlines()
            kept = [
                line
                for line in lines
                if not (json.loads(line).get("k") == "done" and json.loads(line).get("oid") == placed[37])
            ]
            assert len(kept) == len(lines) - 1
            orders.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
            stack.running = await start_gateway(stack.config, lambda text: None)
            third = await connect(tmp_path, fix_port(stack), store="broker1")
            third.send("H", (11, "a1"), (55, symbol), (54, "1"))
            lost = await third.report("I", T11="a1", T37=placed[37], T39="8", T103="5", T151="0")
            assert "no longer kept" in lost[58] and "riskgw log query" in lost[58]
            third.cancel("a1-y", "a1", symbol)
            rejected = await third.recv("9", T434="1", T102="1", T41="a1")
            assert "no longer kept" in rejected[58]
            # the line is not written again from a guess
            assert not any(
                json.loads(line).get("k") == "done" and json.loads(line).get("oid") == placed[37]
                for line in orders.read_text(encoding="utf-8").splitlines()
            )
            await third.logout()

    run_async(script(), timeout=100)
