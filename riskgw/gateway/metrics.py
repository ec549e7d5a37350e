"""Prometheus metrics over HTTP (`riskgw serve --metrics HOST:PORT`, then GET /metrics).

Latencies are histograms in microseconds: the card's time per event (by event type) and the
journal commit per batch (its write, and its fsync with journal_sync = "commit"), the two costs on the
order path that the gateway controls.
"""

from __future__ import annotations

import asyncio
import bisect
from collections.abc import Callable
from typing import TYPE_CHECKING

from riskgw.card.select import card_kind
from riskgw.errors import UserError

if TYPE_CHECKING:
    from riskgw.gateway.server import Gateway

BUCKETS_US = (1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1_000.0, 5_000.0, 20_000.0)


class Histogram:
    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS_US) + 1)  # the last one is +Inf
        self.sum_us = 0.0

    def observe_ns(self, ns: int) -> None:
        us = ns / 1_000
        self.counts[bisect.bisect_left(BUCKETS_US, us)] += 1
        self.sum_us += us

    @property
    def count(self) -> int:
        return sum(self.counts)

    def lines(self, name: str, labels: str = "") -> list[str]:
        sep = "," if labels else ""
        out, running = [], 0
        for bound, n in zip((*BUCKETS_US, float("inf")), self.counts, strict=True):
            running += n
            le = "+Inf" if bound == float("inf") else f"{bound:g}"
            out.append(f'{name}_bucket{{{labels}{sep}le="{le}"}} {running}')
        suffix = f"{{{labels}}}" if labels else ""
        out.append(f"{name}_sum{suffix} {self.sum_us:.3f}")
        out.append(f"{name}_count{suffix} {running}")
        return out


def label(value: str) -> str:
    """A label value as Prometheus' text format writes one: backslash, quote and newline escaped
    (logins and SenderCompIDs come from the config and may hold any of them)."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render(gw: Gateway) -> str:
    c = gw.counters
    lines: list[str] = []

    def metric(name: str, kind: str, help_text: str, samples: list[tuple[str, float | int]]) -> None:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            lines.append(f"{name}{{{labels}}} {value}" if labels else f"{name} {value}")

    metric("riskgw_orders_total", "counter", "NEW_ORDER frames from brokers", [("", c.orders)])
    metric(
        "riskgw_order_verdicts_total",
        "counter",
        "orders the card accepted or rejected",
        [('verdict="accepted"', c.accepted), ('verdict="rejected"', c.rejected)],
    )
    metric(
        "riskgw_rejects_total",
        "counter",
        "REJECTED frames sent, by reason",
        [(f'reason="{reason}"', n) for reason, n in sorted(gw.rejects_by_reason.items())],
    )
    names = [r.name for r in gw.card.image.rules]
    metric(
        "riskgw_rule_failures_total",
        "counter",
        "orders each rule failed",
        [(f'rule="{names[i]}"', n) for i, n in enumerate(gw.rule_failures)],
    )
    lines.extend(gw.rule_stats.metric_lines())
    if gw.deployer is not None:
        lines.extend(gw.deployer.metric_lines())
    if gw.snapshots is not None:
        lines.extend(gw.snapshots.metric_lines())
    metric(
        "riskgw_protocol_errors_total",
        "counter",
        "malformed or unexpected broker frames",
        [("", c.protocol_errors)],
    )
    metric(
        "riskgw_exchange_events_total",
        "counter",
        "fills, rejects, cancels from the exchange",
        [("", c.exchange_events)],
    )
    metric("riskgw_journal_records_total", "counter", "journal records written", [("", gw.journal.records)])
    metric(
        "riskgw_journal_commits_total",
        "counter",
        "journal commits (one write each, and one fsync with journal_sync = commit)",
        [("", gw.journal.commits)],
    )
    metric("riskgw_sessions", "gauge", "broker connections", [("", len(gw.sessions))])
    metric("riskgw_open_orders", "gauge", "orders open at the exchange", [("", len(gw.open))])
    metric(
        "riskgw_answers_waiting",
        "gauge",
        "exchange answers kept for a login none of whose sessions is on, until its next LOGON",
        [(f'login="{label(login)}"', n) for login, n in gw.follow.waiting().items()],
    )
    metric(
        "riskgw_exchange_connected",
        "gauge",
        "1 while the exchange link is up",
        [("", int(gw.exchange is not None))],
    )
    backlog = gw.backlog_status()
    metric(
        "riskgw_exchange_backlog_bytes",
        "gauge",
        "bytes written to the exchange that it has not read and the kernel did not take",
        [("", backlog["bytes"])],
    )
    metric(
        "riskgw_exchange_backlog_refusing",
        "gauge",
        "1 while new orders are refused with EXCHANGE_BACKLOG (the exchange is not reading)",
        [("", int(backlog["refusing"]))],
    )
    metric(
        "riskgw_held_replies",
        "gauge",
        "replies to brokers held until the exchange has read the orders they answer",
        [("", backlog["held_replies"])],
    )
    metric(
        "riskgw_sessions_not_read",
        "gauge",
        "broker sessions not read from because their held replies passed held_replies_limit",
        [("", backlog["sessions_not_read"])],
    )
    metric("riskgw_kill_all", "gauge", "1 while the gateway-wide kill switch is on", [("", int(gw.kill.all))])
    metric(
        "riskgw_card_info",
        "gauge",
        "1 for the executor that decides orders: pynq (a U200), sim or soft",
        [(f'kind="{card_kind(gw.card)}"', 1)],
    )
    fix = gw.status_parts.get("fix")
    if fix is not None:
        sessions = fix()["sessions"]
        metric(
            "riskgw_fix_session_logged_on",
            "gauge",
            "1 while the FIX session (its broker's SenderCompID) is logged on",
            [(f'sender_comp_id="{label(f["sender_comp_id"])}"', int(f["logged_on"])) for f in sessions],
        )
        metric(
            "riskgw_fix_session_open_orders",
            "gauge",
            "orders of the FIX session open at the exchange",
            [(f'sender_comp_id="{label(f["sender_comp_id"])}"', f["open_orders"]) for f in sessions],
        )
    collector = gw.status_parts.get("gc")
    gc = collector() if collector is not None else {}
    if gc.get("mode") == "idle":
        metric(
            "riskgw_gc_full_collections_total",
            "counter",
            "Python's full garbage collections since the start; forced: while orders flowed",
            [('when="quiet"', gc["full_collections"] - gc["forced"]), ('when="forced"', gc["forced"])],
        )
        metric(
            "riskgw_gc_last_full_ms",
            "gauge",
            "the pause of the last full garbage collection, milliseconds",
            [("", gc["last_full_ms"])],
        )
    _standby_metrics(gw, metric, lines)
    lines.append("# HELP riskgw_card_event_us time the card took per event, microseconds")
    lines.append("# TYPE riskgw_card_event_us histogram")
    for event, hist in sorted(gw.card_latency.items()):
        lines.extend(hist.lines("riskgw_card_event_us", f'event="{event}"'))
    lines.append(
        "# HELP riskgw_journal_commit_us time of one journal commit (its write, and its fsync with "
        "journal_sync = commit), microseconds"
    )
    lines.append("# TYPE riskgw_journal_commit_us histogram")
    lines.extend(gw.commit_latency.lines("riskgw_journal_commit_us"))
    return "\n".join(lines) + "\n"


def _standby_metrics(
    gw: Gateway, metric: Callable[[str, str, str, list[tuple[str, float | int]]], None], lines: list[str]
) -> None:
    from riskgw.card.lockstep import LockstepCard

    card = gw.card
    if not isinstance(card, LockstepCard):
        return
    n = card.counters
    primary: list[tuple[str, float | int]] = [("", int(card.primary == "card"))]
    metric(
        "riskgw_card_primary", "gauge", "1 while the card decides, 0 while the software engine does", primary
    )
    metric(
        "riskgw_card_halted",
        "gauge",
        "1 while new orders are halted after a mismatch",
        [("", int(card.halted))],
    )
    for name, help_text, value in (
        ("riskgw_card_failovers_total", "switches from the card to the software engine", n.failovers),
        ("riskgw_card_failbacks_total", "times the card became primary again", n.failbacks),
        (
            "riskgw_card_mismatches_total",
            "answers the card and the software engine disagreed on",
            n.mismatches,
        ),
        ("riskgw_card_hash_mismatches_total", "state-hash comparisons that differed", n.hash_mismatches),
        ("riskgw_card_errors_total", "driver errors (timeouts, disconnects, the card's exit)", n.card_errors),
        (
            "riskgw_card_heartbeat_misses_total",
            "heartbeats stopped for longer than the timeout",
            n.heartbeat_misses,
        ),
        (
            "riskgw_card_rejoin_failures_total",
            "cards not brought back or failed on probation",
            n.rejoin_failures,
        ),
    ):
        metric(name, "counter", help_text, [("", value)])
    hist = Histogram()
    for f in card.failovers:
        hist.observe_ns(f.duration_ns)
    lines.append(
        "# HELP riskgw_failover_us detection to the first decision by the software engine, microseconds"
    )
    lines.append("# TYPE riskgw_failover_us histogram")
    lines.extend(hist.lines("riskgw_failover_us"))


async def start_metrics(host: str, port: int, page: Callable[[], str]) -> asyncio.Server:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readline(), 10)
            while (await asyncio.wait_for(reader.readline(), 10)) not in (b"\r\n", b"\n", b""):
                pass
            parts = request.split()
            if len(parts) >= 2 and parts[0] == b"GET" and parts[1].split(b"?")[0] == b"/metrics":
                status, body = "200 OK", page().encode()
                ctype = "text/plain; version=0.0.4; charset=utf-8"
            else:
                status, body, ctype = "404 Not Found", b"try /metrics\n", "text/plain"
            head = (
                f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode() + body)
            await writer.drain()
        except (TimeoutError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()

    try:
        return await asyncio.start_server(serve, host, port)
    except OSError as exc:
        raise UserError(f"cannot listen for metrics on {host}:{port}: {exc.strerror}") from None
