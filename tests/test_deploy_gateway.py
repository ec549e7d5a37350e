"""`riskgw deploy` / `rollback` against a running gateway: under load, across restarts, by the CLI."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

import pytest
from gateway_support import RULES, Client, Stack, held_order, run_async, start_stack

from riskgw.cli import main as cli_main
from riskgw.doe.compiler import compile_files
from riskgw.doe.isa import Event, EventField
from riskgw.engine.engine import Engine
from riskgw.engine.replay import load_data
from riskgw.exchange.sim import Behaviour
from riskgw.gateway.control import request
from riskgw.gateway.journal import scan
from riskgw.gateway.metrics import render
from riskgw.gateway.protocol import Frame, MsgType, Reason

pytestmark = pytest.mark.timeout(600)

TOKEN = "deploy-token"
MARKET = Behaviour(fill=0.3, partial=0.2, reject=0.1, seed=5)


def cap_rule(tmp_path: Path, cap: int) -> Path:
    path = tmp_path / f"cap_{cap}.sql"
    path.write_text(f"Rule OrderCap ( trade_order.quantity <= {cap} )\n", encoding="utf-8")
    return path


async def deploy_stack(tmp_path: Path) -> Stack:
    # Brokers here send nothing while a deployment compiles: a long heartbeat keeps them logged on.
    return await start_stack(
        tmp_path, MARKET, control=("127.0.0.1", 0), control_token=TOKEN, heartbeat_ms=60_000
    )


async def verdict(client: Client) -> Frame:
    """The next ACCEPTED or REJECTED, past the heartbeats and the exchange's reports."""
    while (f := await client.recv()).type not in (MsgType.ACCEPTED, MsgType.REJECTED):
        pass
    return f


async def ctl(stack: Stack, timeout: float = 300.0, **message: Any) -> dict[str, Any]:
    return await request("127.0.0.1", stack.running.control_port, {"token": TOKEN, **message}, timeout)


def files(paths: list[Path]) -> list[list[str]]:
    return [[p.name, p.read_text(encoding="utf-8")] for p in paths]


def test_deploy_under_load_loses_no_order_and_mixes_no_program(tmp_path: Path) -> None:
    """A broker sends orders without pause while the rules are deployed four times. Every order gets
    one answer, and every decision is the one its version's program makes on a replay of the
    journaled events split at the journaled swap points."""
    caps = [None, 500, 300, None, 700]  # v1: the example rules; then OrderCap at 500, 300, none, 700
    versions: list[list[Path]] = [
        list(RULES) if cap is None else [*RULES, cap_rule(tmp_path, cap)] for cap in caps
    ]

    async def script() -> tuple[dict[int, str], list[dict[str, Any]], str, list[int]]:
        stack = await deploy_stack(tmp_path)
        broker = await stack.broker("bob")
        answers: dict[int, list[str]] = {}
        sent: list[int] = []
        deploying = sending = True

        async def read(client: Client) -> None:
            while sending or len(answers) < len(sent):
                f = await client.recv(30)
                if f.type is MsgType.ACCEPTED:
                    answers.setdefault(f["order_id"], []).append("ACCEPT")
                elif f.type is MsgType.REJECTED:
                    assert f["reason"] == Reason.RULE, f.values
                    answers.setdefault(f["order_id"], []).append("REJECT")

        async def send() -> None:
            nonlocal sending
            rnd = random.Random(3)
            order_id = 10_000
            tail = 150  # orders after the last deployment
            while deploying or tail:
                if not deploying:
                    tail -= 1
                account = rnd.randrange(20)
                values = held_order(
                    order_id, account, k=rnd.randrange(16), ts=34_200 * 10**9 + order_id * 10**7
                )
                values["quantity"] = rnd.randrange(1, 10) * 100
                values["direction"] = rnd.randrange(2)
                broker.send(MsgType.NEW_ORDER, **values)
                sent.append(order_id)
                order_id += 1
                if order_id % 4 == 0:
                    await asyncio.sleep(0.001)
            sending = False

        reader = asyncio.create_task(read(broker))
        sender = asyncio.create_task(send())
        deployed = []
        await asyncio.sleep(0.3)
        for paths in versions[1:4]:
            deployed.append(await ctl(stack, cmd="deploy", files=files(paths), who="test", message="load"))
            await asyncio.sleep(0.2)
        deployed.append(await ctl(stack, cmd="rollback", version=2, who="test"))  # v5: v2's rules again
        deploying = False
        await sender
        await asyncio.wait_for(reader, 60)
        await asyncio.sleep(0.1)  # a second answer to any order would have arrived by now
        while broker._ready:
            f = broker._ready.pop(0)
            assert f.type not in (MsgType.ACCEPTED, MsgType.REJECTED), f.values
        assert all(d["ok"] for d in deployed), deployed
        assert len(sent) > 400
        # exactly one answer per order
        assert sorted(answers) == sent
        assert all(len(a) == 1 for a in answers.values())
        state = stack.gateway.card.state_hash()
        await stack.restart()  # replays the journal, redoing every deployment where it happened
        assert stack.gateway.card.state_hash() == state
        assert stack.gateway.deployer is not None
        history = list(stack.gateway.deployer.history)
        await stack.close()
        return {k: v[0] for k, v in answers.items()}, deployed, state, history

    verdicts, deployed, state, history = run_async(script(), 500)
    assert [d["version"] for d in deployed] == [2, 3, 4, 5]
    assert history == [1, 2, 3, 4, 5]

    found = scan(tmp_path / "gw.journal")
    assert [m.version for m in found.marks] == [2, 3, 4, 5]
    assert [m.state_hash for m in found.marks] == [d["state_hash"] for d in deployed]
    # the program of each segment: v5 is v2's rules
    programs = [versions[0], versions[1], versions[2], versions[3], versions[1]]
    segment_caps = [caps[0], caps[1], caps[2], caps[3], caps[1]]
    engines = [Engine(compile_files(p).image) for p in programs]
    load_data(engines[0], tmp_path / "data")
    bounds = [0, *(m.position for m in found.marks), len(found.entries)]
    assert bounds == sorted(bounds)
    news_per_segment = []
    for k, engine in enumerate(engines):
        if k:
            engine.restore(engines[k - 1].snapshot())  # same tables in every version here
        cap = segment_caps[k]
        names = [r.name for r in engine.image.rules]
        news = 0
        for entry in found.entries[bounds[k] : bounds[k + 1]]:
            decision = engine.process(entry.event, entry.inputs)
            assert decision == entry.decision, (k, entry)
            if entry.event is not Event.NEW:
                continue
            news += 1
            order_id = int(entry.inputs[EventField.ORDER_ID] or 0)
            assert verdicts[order_id] == ("ACCEPT" if decision.accepted else "REJECT")
            # attributable to this version alone: OrderCap fails exactly above this version's cap
            quantity = int(entry.inputs[EventField.QUANTITY] or 0)
            failed_cap = "OrderCap" in [names[r] for r in decision.failed]
            assert failed_cap == (cap is not None and quantity > cap), (k, quantity, decision)
        news_per_segment.append(news)
        assert engine.state_hash() == (found.marks[k].state_hash if k < len(found.marks) else state)
    assert sum(news_per_segment) == len(verdicts)
    assert all(n > 0 for n in news_per_segment[1:]), news_per_segment  # orders ran under every version


NEW_COLUMN = """
create table account_limits (
    account_id   INT   not null ,
    max_orders   INT   null     ,
)
Rule OrderCap ( trade_order.quantity <= coalesce((select max_order_qty from instrument_info
                                                  where ticket_id = trade_order.ticket_id), 0) )
Rule AccountKnown ( (select max_orders from account_limits where account_id = trade_order.account_id) > 0 )
"""


def test_a_schema_change_is_migrated_and_replayed_after_a_restart(tmp_path: Path) -> None:
    """A new column with a default and a new table from a data file: the live tables carry over, the
    decisions use them, and a restart reaches the same state through the journal."""
    schema = (Path(__file__).resolve().parent.parent / "rules" / "00_schema.sql").read_text(encoding="utf-8")
    widened = schema.replace(
        "    max_notional        INT8         null     , /* largest price * quantity of one order */\n",
        "    max_notional        INT8         null     , /* largest price * quantity of one order */\n"
        "    max_order_qty       INT8         null     ,\n",
    )
    assert widened != schema
    new_rules = [tmp_path / "00_schema.sql", *RULES[1:], tmp_path / "70_new.sql"]
    new_rules[0].write_text(widened, encoding="utf-8")
    new_rules[-1].write_text(NEW_COLUMN, encoding="utf-8")

    async def script() -> None:
        stack = await deploy_stack(tmp_path)
        broker = await stack.broker("bob")
        broker.send(MsgType.NEW_ORDER, **held_order(1, 1, quantity=300))
        assert (await verdict(broker)).type is MsgType.ACCEPTED

        refused = await ctl(
            stack, cmd="deploy", files=files(new_rules), who="t", data={"account_limits": "account_id\nx\n"}
        )
        assert refused == {
            "ok": False,
            "error": "data for account_limits: line 2: column account_id: 'x' is not an integer",
        }
        # the new table from its data file: accounts 1 to 3 only
        answer = await ctl(
            stack,
            cmd="deploy",
            files=files(new_rules),
            who="t",
            defaults={"instrument_info.max_order_qty": "400"},
            data={
                "account_limits": "account_id,max_orders\n1,5\n2,5\n3,0\n",
                "account_info": "account_id\n1\n",
            },
        )
        assert answer["ok"], answer
        assert answer["changes"] == [
            "new column instrument_info.max_order_qty = 400",
            "new table account_limits",
            "account_info.csv not loaded: its table keeps its live rows",
        ]
        for order_id, account, qty, expected in [
            (2, 1, 300, MsgType.ACCEPTED),
            (3, 1, 500, MsgType.REJECTED),  # over the new column's default
            (4, 3, 100, MsgType.REJECTED),  # max_orders 0
            (5, 4, 100, MsgType.REJECTED),  # no row in the new table
        ]:
            broker.send(MsgType.NEW_ORDER, **held_order(order_id, account, k=order_id, quantity=qty))
            f = await verdict(broker)
            assert (f["order_id"], f.type) == (order_id, expected)
        status = await ctl(stack, cmd="status")
        assert status["program"] == 2
        assert status["rules"]["OrderCap"] == {"hits": 1, "sole": 1}
        assert status["rules"]["AccountKnown"] == {"hits": 2, "sole": 2}
        assert status["rules"]["FundsCheck"] == {"hits": 0, "sole": 0}
        assert status["accounts"]["1"] == {"orders": 3, "rejects": 1, "hits": {"OrderCap": 1}}
        assert status["accounts"]["4"] == {"orders": 1, "rejects": 1, "hits": {"AccountKnown": 1}}
        page = render(stack.gateway).splitlines()
        for line in (
            "riskgw_program_version 2.0",
            "riskgw_deployments_total 1.0",
            'riskgw_rule_hits_total{rule="AccountKnown"} 2.0',
            'riskgw_rule_sole_rejects_total{rule="OrderCap"} 1.0',
            'riskgw_account_rule_hits_total{account="1",rule="OrderCap"} 1.0',
        ):
            assert line in page
        state = stack.gateway.card.state_hash()
        await stack.restart()
        assert stack.gateway.card.state_hash() == state
        assert (await ctl(stack, cmd="status"))["program"] == 2
        await stack.close()

    run_async(script(), 200)


def test_refusals_change_nothing(tmp_path: Path) -> None:
    broken = tmp_path / "broken.sql"
    broken.write_text("Rule Bad ( trade_order.nope > 1 )\n", encoding="utf-8")
    noted = tmp_path / "00_schema.sql"
    schema = RULES[0].read_text(encoding="utf-8")
    noted.write_text(
        schema.replace(
            "    total_balance       INT8         null     , /* all cash */\n",
            "    total_balance       INT8         null     , /* all cash */\n    note INT null,\n",
        ),
        encoding="utf-8",
    )

    async def script() -> None:
        stack = await deploy_stack(tmp_path)
        added = await ctl(stack, cmd="deploy", files=files([noted, *RULES[1:]]), who="t")
        assert added["changes"] == ["new column account_info.note (NULL in existing rows)"]
        before, records = stack.gateway.card.state_hash(), stack.gateway.journal.records

        bad = await ctl(stack, cmd="deploy", files=files([*RULES, broken]), who="t")
        assert not bad["ok"]
        assert bad["error"].startswith("broken.sql:1:")
        assert all(": error: " in line for line in bad["error"].splitlines())
        drop = await ctl(stack, cmd="deploy", files=files(RULES), who="t")
        assert drop["error"] == (
            "column account_info.note would be dropped with its values: deploy with --allow-drop to drop them"
        )
        assert (await ctl(stack, cmd="rollback", version=2, who="t"))[
            "error"
        ] == "v2 is the version running now"
        assert (await ctl(stack, cmd="deploy", files=files(RULES), who="t", token="x")) == {
            "ok": False,
            "error": "bad token",
        }
        assert (stack.gateway.card.state_hash(), stack.gateway.journal.records) == (before, records)
        assert stack.gateway.deployer is not None and stack.gateway.deployer.history == [1, 2]
        assert (await ctl(stack, cmd="deployments"))["current"] == 2
        # dropping, when asked for, is allowed
        assert (await ctl(stack, cmd="deploy", files=files(RULES), who="t", allow_drop=True))["changes"] == [
            "dropped column account_info.note"
        ]
        await stack.close()

    run_async(script(), 120)
    assert [m.version for m in scan(tmp_path / "gw.journal").marks] == [2, 3]
    assert sorted(p.name for p in (tmp_path / "gw.journal.deployments").iterdir()) == [
        "v0001",
        "v0002",
        "v0003",
    ]


def test_the_deploy_commands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`riskgw deploy`, `riskgw deployments` and `riskgw rollback` as an operator types them."""
    monkeypatch.setenv("RISKGW_CONTROL_TOKEN", TOKEN)
    cap = cap_rule(tmp_path, 200)
    broken = tmp_path / "broken.sql"
    broken.write_text("Rule Bad (\n  trade_order.nope > 1 )\n", encoding="utf-8")

    async def script() -> None:
        stack = await deploy_stack(tmp_path)
        control = f"127.0.0.1:{stack.running.control_port}"
        loop = asyncio.get_running_loop()

        async def cli(*argv: str) -> tuple[int, str, str]:
            code = await loop.run_in_executor(None, cli_main, [*argv, "--control", control])
            out = capsys.readouterr()
            return code, out.out, out.err

        code, out, err = await cli("deploy", *map(str, RULES), str(broken))
        assert code == 1
        assert err.splitlines() == [
            f"{broken}:2:3: error: trade_order has no field nope; its fields are order_id, account_id, "
            "ticket_id, direction, price, quantity, exec_price, exec_quantity, ts",
            "1 error(s): nothing deployed",
        ]
        code, out, err = await cli("deploy", *map(str, RULES), str(cap), "-m", "cap at 200", "--dry-run")
        assert (code, err) == (0, "")
        assert out.startswith("ok: would deploy source ") and out.rstrip().endswith("nothing changed")
        code, out, err = await cli("deploy", *map(str, RULES), str(cap), "-m", "cap at 200")
        assert code == 0, err
        lines = out.splitlines()
        assert lines[0].startswith("deployed v2 (source ") and "13 rules) by " in lines[0]
        assert lines[0].endswith("replacing v1")
        assert lines[1].startswith("  swap ") and " ms between two events, " in lines[1]
        broker = await stack.broker("bob")
        broker.send(MsgType.NEW_ORDER, **held_order(1, 1, quantity=300))
        f = await verdict(broker)
        assert (f.type, f["reason"]) == (MsgType.REJECTED, Reason.RULE)
        code, out, err = await cli("deployments")
        rows = out.splitlines()
        assert len(rows) == 2 and rows[0].startswith("  v1 ") and rows[1].startswith("* v2 ")
        assert rows[1].endswith("cap at 200")
        code, out, err = await cli("rollback")
        assert code == 0 and out.startswith("deployed v3 ") and out.splitlines()[0].endswith("replacing v2")
        broker.send(MsgType.NEW_ORDER, **held_order(2, 1, k=1, quantity=300))
        assert (await verdict(broker)).type is MsgType.ACCEPTED
        code, out, err = await cli("deployments")
        assert out.splitlines()[-1].startswith("* v3 ") and out.splitlines()[-1].endswith(
            "rollback to v1 (rollback to v1)"
        )
        code, out, err = await cli("rollback", "v9")
        assert code == 1 and err.startswith("riskgw: error: the gateway refused: no deployment v9 in ")
        await stack.close()

    run_async(script(), 200)
