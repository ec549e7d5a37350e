"""Prometheus metrics over HTTP (`riskgw serve --metrics HOST:PORT`, then GET /metrics).

Latencies are histograms in microseconds: the card's time per event (by event type) and the
journal commit per batch (its write, and its fsync with journal_sync = "commit"), the two costs on the
order path that the gateway controls.

The order path keeps its own plain counters and `Histogram`s (an int add, no lock); the page is
made from them at scrape time, on the event loop, by a prometheus-client collector whose metric
families prometheus-client writes out in its text format (names, escaping of label values).
"""

from __future__ import annotations

import asyncio
import bisect
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Literal

from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import CollectorRegistry

from riskgw.card.select import card_kind
from riskgw.errors import UserError

if TYPE_CHECKING:
    from riskgw.gateway.server import Gateway

BUCKETS_US = (1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1_000.0, 5_000.0, 20_000.0)
_LE = (*(f"{bound:g}" for bound in BUCKETS_US), "+Inf")


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

    def add_to(self, family: HistogramMetricFamily, label_values: Sequence[str] = ()) -> None:
        """Add this histogram to `family` as one child: cumulative buckets by `le`, the sum in µs."""
        running, buckets = 0, []
        for le, n in zip(_LE, self.counts, strict=True):
            running += n
            buckets.append((le, float(running)))
        family.add_metric(label_values, buckets, round(self.sum_us, 3))


Sample = tuple[Sequence[str], float]  # label values (in the family's label order), value


def family(
    kind: Literal["counter", "gauge"],
    name: str,
    help_text: str,
    samples: Iterable[Sample],
    labels: Sequence[str] = (),
) -> Metric:
    """A counter or gauge family from its samples. Counter names keep their `_total`: the page
    shows them as given (prometheus-client takes the suffix off the family and puts it back on
    the samples and on # HELP / # TYPE)."""
    made = (CounterMetricFamily if kind == "counter" else GaugeMetricFamily)(name, help_text, labels=labels)
    for values, value in samples:
        made.add_metric(values, value)
    return made


def counter(name: str, help_text: str, value: float) -> Metric:
    return family("counter", name, help_text, [((), value)])


def gauge(name: str, help_text: str, value: float) -> Metric:
    return family("gauge", name, help_text, [((), value)])


def page(families: Iterable[Metric]) -> str:
    """The families in Prometheus' text format (version 0.0.4), as GET /metrics serves them."""

    class Families:
        def collect(self) -> Iterable[Metric]:
            return families

    registry = CollectorRegistry(auto_describe=False)  # describe-less: collected once, per scrape
    registry.register(Families())
    return generate_latest(registry).decode()


def render(gw: Gateway) -> str:
    return page(gateway_families(gw))


def gateway_families(gw: Gateway) -> Iterator[Metric]:
    c = gw.counters
    yield counter("riskgw_orders_total", "NEW_ORDER frames from brokers", c.orders)
    yield family(
        "counter",
        "riskgw_order_verdicts_total",
        "orders the card accepted or rejected",
        [(("accepted",), c.accepted), (("rejected",), c.rejected)],
        ["verdict"],
    )
    yield family(
        "counter",
        "riskgw_rejects_total",
        "REJECTED frames sent, by reason",
        [((reason,), n) for reason, n in sorted(gw.rejects_by_reason.items())],
        ["reason"],
    )
    names = [r.name for r in gw.card.image.rules]
    yield family(
        "counter",
        "riskgw_rule_failures_total",
        "orders each rule failed",
        [((names[i],), n) for i, n in enumerate(gw.rule_failures)],
        ["rule"],
    )
    yield from gw.rule_stats.metric_families()
    if gw.deployer is not None:
        yield from gw.deployer.metric_families()
    if gw.snapshots is not None:
        yield from gw.snapshots.metric_families()
    yield counter("riskgw_protocol_errors_total", "malformed or unexpected broker frames", c.protocol_errors)
    yield counter(
        "riskgw_exchange_events_total", "fills, rejects, cancels from the exchange", c.exchange_events
    )
    yield counter("riskgw_journal_records_total", "journal records written", gw.journal.records)
    yield counter(
        "riskgw_journal_commits_total",
        "journal commits (one write each, and one fsync with journal_sync = commit)",
        gw.journal.commits,
    )
    yield from _journal_lag(gw)
    yield gauge("riskgw_sessions", "broker connections", len(gw.sessions))
    yield gauge("riskgw_open_orders", "orders open at the exchange", len(gw.open))
    yield family(
        "gauge",
        "riskgw_answers_waiting",
        "exchange answers kept for a login none of whose sessions is on, until its next LOGON",
        [((login,), n) for login, n in gw.follow.waiting().items()],
        ["login"],
    )
    yield gauge("riskgw_exchange_connected", "1 while the exchange link is up", int(gw.exchange is not None))
    backlog = gw.backlog_status()
    yield gauge(
        "riskgw_exchange_backlog_bytes",
        "bytes written to the exchange that it has not read and the kernel did not take",
        backlog["bytes"],
    )
    yield gauge(
        "riskgw_exchange_backlog_refusing",
        "1 while new orders are refused with EXCHANGE_BACKLOG (the exchange is not reading)",
        int(backlog["refusing"]),
    )
    yield gauge(
        "riskgw_held_replies",
        "replies to brokers held until the exchange has read the orders they answer",
        backlog["held_replies"],
    )
    yield gauge(
        "riskgw_sessions_not_read",
        "broker sessions not read from because their held replies passed held_replies_limit",
        backlog["sessions_not_read"],
    )
    yield gauge("riskgw_kill_all", "1 while the gateway-wide kill switch is on", int(gw.kill.all))
    yield family(
        "gauge",
        "riskgw_card_info",
        "1 for the executor that decides orders: pynq (a U200), sim or soft",
        [((card_kind(gw.card),), 1)],
        ["kind"],
    )
    fix = gw.status_parts.get("fix")
    if fix is not None:
        sessions = fix()["sessions"]
        yield family(
            "gauge",
            "riskgw_fix_session_logged_on",
            "1 while the FIX session (its broker's SenderCompID) is logged on",
            [((f["sender_comp_id"],), int(f["logged_on"])) for f in sessions],
            ["sender_comp_id"],
        )
        yield family(
            "gauge",
            "riskgw_fix_session_open_orders",
            "orders of the FIX session open at the exchange",
            [((f["sender_comp_id"],), f["open_orders"]) for f in sessions],
            ["sender_comp_id"],
        )
    collector = gw.status_parts.get("gc")
    gc = collector() if collector is not None else {}
    if gc.get("mode") == "idle":
        yield family(
            "counter",
            "riskgw_gc_full_collections_total",
            "Python's full garbage collections since the start; forced: while orders flowed",
            [(("quiet",), gc["full_collections"] - gc["forced"]), (("forced",), gc["forced"])],
            ["when"],
        )
        yield gauge(
            "riskgw_gc_last_full_ms",
            "the pause of the last full garbage collection, milliseconds",
            gc["last_full_ms"],
        )
    yield from _standby_families(gw)
    events = HistogramMetricFamily(
        "riskgw_card_event_us", "time the card took per event, microseconds", labels=["event"]
    )
    for event, hist in sorted(gw.card_latency.items()):
        hist.add_to(events, [event])
    yield events
    commits = HistogramMetricFamily(
        "riskgw_journal_commit_us",
        "time of one journal commit (its write, and its fsync with journal_sync = commit), microseconds",
        labels=[],
    )
    gw.commit_latency.add_to(commits)
    yield commits


def _journal_lag(gw: Gateway) -> Iterator[Metric]:
    """How far the journal on disk is behind what the gateway has written (and so may have
    acknowledged): what a power loss or a kernel crash would take, by journal_sync mode."""
    journal, syncer = gw.journal, gw.syncer
    synced, synced_at = journal.synced, journal.synced_at
    if syncer is not None:  # "interval": the thread's fsyncs
        synced, synced_at = max(synced, syncer.synced), max(synced_at, syncer.synced_at)
    mode = "interval" if syncer is not None else "commit" if journal.fsync else "none"
    yield family(
        "gauge",
        "riskgw_journal_sync_mode",
        "1 for the journal_sync mode running: commit (each commit fsynced before its replies leave), "
        "interval (fsynced every journal_sync_ms by a thread), none (never fsynced)",
        [((mode,), 1)],
        ["mode"],
    )
    yield gauge(
        "riskgw_journal_unsynced_bytes",
        "journal bytes written whose fsync has not completed (their replies may have left): a power "
        "loss or kernel crash could lose them, a gateway crash cannot; 0 after each commit with "
        "journal_sync = commit",
        max(0, journal.written - synced),
    )
    yield gauge(
        "riskgw_journal_sync_age_seconds",
        "seconds since the journal's last completed fsync (since it was opened before the first, "
        "and always with journal_sync = none); old with 0 unsynced bytes just means no new records",
        round(time.monotonic() - synced_at, 3),
    )


def _standby_families(gw: Gateway) -> Iterator[Metric]:
    from riskgw.card.lockstep import LockstepCard

    card = gw.card
    if not isinstance(card, LockstepCard):
        return
    n = card.counters
    yield gauge(
        "riskgw_card_primary",
        "1 while the card decides, 0 while the software engine does",
        int(card.primary == "card"),
    )
    yield gauge("riskgw_card_halted", "1 while new orders are halted after a mismatch", int(card.halted))
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
        yield counter(name, help_text, value)
    hist = Histogram()
    for f in card.failovers:
        hist.observe_ns(f.duration_ns)
    failover = HistogramMetricFamily(
        "riskgw_failover_us",
        "detection to the first decision by the software engine, microseconds",
        labels=[],
    )
    hist.add_to(failover)
    yield failover


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
