"""Prometheus metrics over HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
from gateway_support import STEP, held_order, run_async, start_stack, until
from prometheus_client.parser import text_string_to_metric_families

from riskgw.exchange.sim import Behaviour
from riskgw.gateway.config import User
from riskgw.gateway.metrics import render
from riskgw.gateway.protocol import MsgType

pytestmark = pytest.mark.timeout(60)


async def http_get(port: int, path: str) -> tuple[str, str]:
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), STEP)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    raw = await asyncio.wait_for(reader.read(), STEP)
    writer.close()
    head, _, body = raw.decode().partition("\r\n\r\n")
    return head.splitlines()[0], body


def samples(body: str) -> dict[str, float]:
    out = {}
    for line in body.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def test_metrics_count_what_happened(tmp_path: Path) -> None:
    async def script() -> None:
        stack = await start_stack(
            tmp_path, Behaviour(fill=1.0, partial=0.0, reject=0.0), metrics=("127.0.0.1", 0)
        )
        broker = await stack.broker("alice")
        broker.send(MsgType.NEW_ORDER, **held_order(1, account=1))
        await broker.recv_type(MsgType.ACCEPTED)
        await broker.recv_type(MsgType.FILL)
        broker.send(MsgType.NEW_ORDER, **held_order(2, account=1, price=0))
        await broker.recv_type(MsgType.REJECTED)
        broker.send(MsgType.NEW_ORDER, **held_order(3, account=9))
        await broker.recv_type(MsgType.REJECTED)
        broker.raw(b"\x01" * 11)
        broker.send(MsgType.HEARTBEAT)
        await broker.recv_type(MsgType.REJECTED)
        await broker.recv_type(MsgType.HEARTBEAT)

        status, body = await http_get(stack.running.metrics_port, "/metrics")
        assert status == "HTTP/1.1 200 OK"
        m = samples(body)
        assert m["riskgw_orders_total"] == 3
        assert m['riskgw_order_verdicts_total{verdict="accepted"}'] == 1
        assert m['riskgw_order_verdicts_total{verdict="rejected"}'] == 1
        assert m['riskgw_rejects_total{reason="RULE"}'] == 1
        assert m['riskgw_rejects_total{reason="NOT_PERMITTED"}'] == 1
        assert m['riskgw_rejects_total{reason="PROTOCOL"}'] == 1
        assert m['riskgw_rule_failures_total{rule="PricePositive"}'] == 1
        assert m['riskgw_rule_failures_total{rule="FundsCheck"}'] == 0
        assert m["riskgw_exchange_events_total"] == 1
        assert m["riskgw_journal_records_total"] == 3  # NEW, FILL, NEW
        assert 2 <= m["riskgw_journal_commits_total"] <= 4  # the header, then at most one per event
        assert (
            m["riskgw_sessions"] == 1 and m["riskgw_open_orders"] == 0 and m["riskgw_exchange_connected"] == 1
        )
        assert m['riskgw_card_event_us_count{event="NEW"}'] == 2
        assert m['riskgw_card_event_us_count{event="FILL"}'] == 1
        buckets = [v for k, v in m.items() if k.startswith('riskgw_card_event_us_bucket{event="NEW"')]
        assert buckets == sorted(buckets) and buckets[-1] == 2
        assert re.search(r'riskgw_journal_commit_us_bucket\{le="\+Inf"\} \d+', body)
        # gc = "idle": no full collection yet (the start's own is not counted), and its pause gauge
        assert m['riskgw_gc_full_collections_total{when="quiet"}'] == 0
        assert m['riskgw_gc_full_collections_total{when="forced"}'] == 0
        assert m["riskgw_gc_last_full_ms"] >= 0

        status, _ = await http_get(stack.running.metrics_port, "/other")
        assert status == "HTTP/1.1 404 Not Found"
        await broker.close()
        await stack.close()

    run_async(script())


ODD_LOGINS = ("plain", 'say "hi"', "back\\slash", "two\nlines")  # a config may hold any of these


def test_label_values_from_the_config_are_escaped_as_prometheus_reads_them(tmp_path: Path) -> None:
    async def script() -> None:
        users = {name: User(name, "pw", frozenset({1, 2})) for name in ODD_LOGINS}
        stack = await start_stack(tmp_path, Behaviour(fill=0.0, partial=0.0, reject=0.0), users=users)
        for order_id, name in enumerate(ODD_LOGINS, 1):
            broker = await stack.broker(name)
            broker.send(MsgType.NEW_ORDER, **held_order(order_id, account=1, k=order_id))
            await broker.recv_type(MsgType.ACCEPTED)
            await until(lambda: stack.exchange.resting() == 1, "the order resting")
            await broker.close()  # cancel-on-disconnect: the CANCELLED waits for the login's next LOGON
            await until(lambda: not stack.gateway.open, "the order cancelled")
        page = render(stack.gateway)
        await stack.close()
        waiting = next(f for f in text_string_to_metric_families(page) if f.name == "riskgw_answers_waiting")
        assert sorted((s.labels["login"], s.value) for s in waiting.samples) == sorted(
            (name, 1.0) for name in ODD_LOGINS
        )

    run_async(script())
