"""The reference session through openpit (a pre-trade risk SDK): its SpotFunds policy is the funds
check for buys and the holdings check for sells, with reservations like our frozen amounts.

openpit has no anti-self-trade, price-band or per-order limit policy that reads our tables, so only
the funds and holdings checks run here; the riskgw side of the comparison runs the same two rules
(bench/baselines/__init__.py). Money and quantities are passed as the integers of the data set:
prices in hundredths and balances in hundredths times shares, so `price * quantity <= balance`
means the same on both sides.

Objects are built before timing (Order, ExecutionReport): riskgw is timed on decoded events too.
A fill, exchange reject or cancel of an order that openpit rejected is skipped (the exchange would
never have seen it), and counted.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import openpit  # type: ignore[import-untyped]
from openpit import pretrade
from openpit.param import (  # type: ignore[import-untyped]
    AccountId,
    AdjustmentAmount,
    Fee,
    Pnl,
    PositionSize,
    Price,
    Quantity,
    Side,
    Trade,
    TradeAmount,
)

from riskgw.scenario import DataSet, Row

CASH = "CNY"  # the settlement asset: the reference is a stock-exchange set-up


@dataclass
class Prepared:
    """One event, ready to run: an order (NEW) or an execution report (the rest)."""

    order_id: int
    flow: str
    order: Any = None  # openpit.Order for NEW
    report: Any = None  # openpit.ExecutionReport otherwise


def _instrument(ticket: str) -> Any:
    return openpit.Instrument(ticket, CASH)


def build_engine(data: DataSet) -> Any:
    """A SpotFunds engine seeded with the data set's available cash and holdings."""
    policies = pretrade.policies
    engine = (
        openpit.Engine.builder()
        .no_sync()
        .builtin(policies.build_order_validation())
        .builtin(policies.build_spot_funds())
        .build()
    )
    tables = data.tables()
    balances: dict[int, list[tuple[str, int]]] = {}
    for row in tables["account_info"][1]:
        balances.setdefault(int(str(row[0])), []).append((CASH, int(str(row[1]))))
    for row in tables["account_ticket_info"][1]:
        balances.setdefault(int(str(row[0])), []).append((str(row[1]), int(str(row[2]))))
    for account, amounts in balances.items():
        result = engine.apply_account_adjustment(
            account_id=AccountId.from_int(account),
            adjustments=[
                openpit.AccountAdjustment(
                    operation=openpit.AccountAdjustmentBalanceOperation(asset=asset),
                    amount=openpit.AccountAdjustmentAmount(
                        balance=AdjustmentAmount.absolute(PositionSize(str(amount)))
                    ),
                )
                for asset, amount in amounts
            ],
        )
        if not result.ok:
            raise RuntimeError(f"openpit refused the seed balances of account {account}: {result.rejects}")
    return engine


def prepare(rows: list[tuple[Row, str]]) -> tuple[list[Prepared], int]:
    """The session's events as openpit objects, and how many could not be built (invalid values).

    Each report carries the caller-kept remainder of the order's reservation, as openpit asks:
    quantity less the fills so far. The lock is rebuilt from the order's limit price.
    """
    prepared: list[Prepared] = []
    filled: dict[int, int] = {}
    unbuildable = 0
    for row, flow in rows:
        event, order_id, account, ticket, direction, price, quantity = row[:7]
        exec_price, exec_qty = row[7], row[8]
        oid = int(str(order_id))
        side = Side.BUY if direction == 0 else Side.SELL
        try:
            if event == "NEW":
                filled[oid] = 0
                order = openpit.Order(
                    operation=openpit.OrderOperation(
                        instrument=_instrument(str(ticket)),
                        account_id=AccountId.from_int(int(str(account))),
                        side=side,
                        trade_amount=TradeAmount.quantity(str(quantity)),
                        price=Price(str(price)),
                    )
                )
                prepared.append(Prepared(oid, flow, order=order))
                continue
            done = filled.get(oid, 0)
            trade = None
            if event == "FILL":
                done += int(str(exec_qty))
                filled[oid] = done
                trade = Trade(price=Price(str(exec_price)), quantity=Quantity(str(exec_qty)))
            remaining = max(0, int(str(quantity)) - done)
            final = event != "FILL" or remaining == 0
            report = openpit.ExecutionReport(
                operation=openpit.ExecutionReportOperation(
                    instrument=_instrument(str(ticket)),
                    side=side,
                    account_id=AccountId.from_int(int(str(account))),
                ),
                financial_impact=openpit.FinancialImpact(pnl=Pnl("0"), fee=Fee("0")),
                fill=openpit.ExecutionReportFillDetails(
                    last_trade=trade,
                    remaining_reserved_quantity=Quantity(str(remaining)),
                    lock=pretrade.Lock(entries=[(pretrade.DEFAULT_POLICY_GROUP_ID, Price(str(price)))]),
                    is_final=final,
                ),
            )
            prepared.append(Prepared(oid, flow, report=report))
        except (ValueError, TypeError):
            unbuildable += 1
    return prepared, unbuildable


def _runner(engine: Any, events: list[Prepared]) -> Callable[[Callable[[], int] | None], Any]:
    """run(clock): every event once; with a clock, the latencies per flow and the verdicts."""
    execute = engine.execute_pre_trade
    apply = engine.apply_execution_report

    def run(clock: Callable[[], int] | None) -> tuple[dict[str, list[int]], list[bool], int]:
        open_orders: set[int] = set()
        latencies: dict[str, list[int]] = {}
        verdicts: list[bool] = []
        skipped = 0
        for ev in events:
            if ev.order is not None:
                t = clock() if clock else 0
                result = execute(order=ev.order)
                ok = bool(result)
                if ok:
                    result.reservation.commit()
                if clock:
                    latencies.setdefault(ev.flow, []).append(clock() - t)
                verdicts.append(ok)
                if ok:
                    open_orders.add(ev.order_id)
                else:
                    open_orders.discard(ev.order_id)
                continue
            if ev.order_id not in open_orders:
                skipped += 1
                continue
            t = clock() if clock else 0
            apply(report=ev.report)
            if clock:
                latencies.setdefault(ev.flow, []).append(clock() - t)
            if ev.report.fill.is_final:
                open_orders.discard(ev.order_id)
        return latencies, verdicts, skipped

    return run


def bench_openpit(data: DataSet, rows: list[tuple[Row, str]], reps: int) -> dict[str, Any]:
    """Throughput (median of `reps` runs, each from freshly seeded balances) and per-flow latency."""
    from bench.engine import _percentiles

    t0 = time.perf_counter()
    events, unbuildable = prepare(rows)
    prepare_s = time.perf_counter() - t0
    cpu: list[float] = []
    wall: list[float] = []
    timed = 0
    gc.collect()
    gc.freeze()
    for _ in range(reps):
        run = _runner(build_engine(data), events)
        w0, c0 = time.perf_counter(), time.process_time()
        _, verdicts, skipped = run(None)
        c1, w1 = time.process_time(), time.perf_counter()
        timed = len(events) - skipped
        cpu.append(timed / max(c1 - c0, 1e-9))
        wall.append(timed / max(w1 - w0, 1e-9))
    latencies, verdicts, skipped = _runner(build_engine(data), events)(time.perf_counter_ns)
    gc.unfreeze()
    return {
        "version": metadata.version("openpit"),
        "policies": ["OrderValidation", "SpotFunds (funds for buys, holdings for sells, with reservations)"],
        "events_offered": len(rows),
        "events_timed": timed,
        "skipped_reports_of_orders_openpit_rejected": skipped,
        "unbuildable_events": unbuildable,
        "prepare_s": round(prepare_s, 3),
        "prepare_us_per_event": round(prepare_s / max(len(rows), 1) * 1e6, 2),
        "cpu_events_per_s": statistics.median(cpu),
        "wall_events_per_s": statistics.median(wall),
        "runs": reps,
        "accepted_orders": sum(verdicts),
        "orders": len(verdicts),
        "verdicts": verdicts,
        "flows": {flow: _percentiles(v) for flow, v in sorted(latencies.items())},
        "all": _percentiles([x for v in latencies.values() for x in v]),
    }
