"""A small, deterministic reference data set for the example rules in rules/, and order sessions.

Accounts, holdings and instruments in the shape rules/00_schema.sql declares, with the corners the
rules care about: an account whose balance is NULL, a security with no instrument row, holdings of
zero, an account with no holdings row for a security. Same seed, same files.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from oracle.replay import Value, write_events, write_table_csv

TICKETS = ("600000", "600036", "000001", "300750")
NO_INSTRUMENT = "688981"  # held by some accounts, absent from instrument_info: fails closed
N_ACCOUNTS = 4
NULL_BALANCE_ACCOUNT = 3  # available_balance NULL: every buy fails closed
SECOND_NS = 1_000_000_000


@dataclass
class RefData:
    tables: dict[str, tuple[list[str], list[list[Value]]]] = field(default_factory=dict)

    def write(self, directory: Path) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        for name, (cols, rows) in self.tables.items():
            write_table_csv(directory / f"{name}.csv", cols, rows)
        return directory

    def rows(self, table: str) -> list[list[Value]]:
        return self.tables[table][1]


def ref_price(ticket: str) -> int:
    return 1000 + 250 * TICKETS.index(ticket)


def reference_data(seed: int = 7) -> RefData:
    rnd = random.Random(seed)
    data = RefData()
    accounts: list[list[Value]] = []
    for a in range(N_ACCOUNTS):
        cash = 2_000_000 + 500_000 * a
        accounts.append([a, None if a == NULL_BALANCE_ACCOUNT else cash, cash])
    data.tables["account_info"] = (["account_id", "available_balance", "total_balance"], accounts)

    holdings: list[list[Value]] = []
    for a in range(N_ACCOUNTS):
        for t in (*TICKETS, NO_INSTRUMENT):
            if a == 2 and t == TICKETS[-1]:
                continue  # account 2 is not registered for the last security
            qty = 0 if (a + len(t)) % 3 == 0 else rnd.randrange(100, 2000, 100)
            holdings.append([a, t, qty, qty, ref_price(t) if t in TICKETS and qty else None, None, None])
    data.tables["account_ticket_info"] = (
        [
            "account_id",
            "ticket_id",
            "avail_quantity",
            "total_quantity",
            "avg_price",
            "buy_top_price",
            "sell_low_price",
        ],
        holdings,
    )

    instruments: list[list[Value]] = [[t, ref_price(t), 500, 1000, 800_000] for t in TICKETS]
    data.tables["instrument_info"] = (
        ["ticket_id", "ref_price", "band_bps", "max_qty", "max_notional"],
        instruments,
    )
    return data


def session(seed: int, n_orders: int, start_ts: int = 10 * SECOND_NS) -> list[tuple[str, dict[str, Value]]]:
    """A trading session: new orders, mostly sensible, with fills, exchange rejects and cancels of
    earlier orders (some of which the rules rejected: those events must change nothing)."""
    rnd = random.Random(seed)
    events: list[tuple[str, dict[str, Value]]] = []
    sent: list[dict[str, Value]] = []
    ts = start_ts
    oid = 1000
    burst = 0
    for _ in range(n_orders):
        if burst:
            burst -= 1  # an order storm: many orders within microseconds
            ts += rnd.choice((1, 1000))
        else:
            ts += rnd.choice((1000, 50_000_000, 400_000_000, 1_300_000_000))
            if rnd.random() < 0.05:
                burst = rnd.randrange(10, 40)
        if sent and rnd.random() < 0.45:
            o = rnd.choice(sent)
            price = o["price"]
            qty = o["quantity"]
            assert isinstance(price, int) and isinstance(qty, int)
            kind = rnd.choice(("FILL", "FILL", "REJECT", "CANCEL"))
            exec_qty = rnd.choice((qty, max(qty // 2, 1), 1, qty + 1))
            exec_price = (
                price - rnd.choice((0, 0, 1, 5)) if o["direction"] == 0 else price + rnd.choice((0, 2))
            )
            ev = dict(o, ts=ts, exec_price=exec_price if kind == "FILL" else None, exec_quantity=exec_qty)
            if kind == "REJECT":
                ev["exec_quantity"] = None
            events.append((kind, ev))
            continue
        oid += 1
        account = rnd.randrange(N_ACCOUNTS)
        ticket = rnd.choice((*TICKETS, *TICKETS, NO_INSTRUMENT))
        direction = rnd.randrange(2)
        ref = ref_price(ticket) if ticket in TICKETS else 1000
        price = (
            ref + rnd.choice((-60, -20, -5, 0, 3, 10, 45, 55)) if rnd.random() > 0.03 else rnd.choice((0, -5))
        )
        qty = rnd.choice((100, 100, 200, 500, 900, 1200, 0))
        order: dict[str, Value] = {
            "order_id": oid,
            "account_id": account,
            "ticket_id": ticket,
            "direction": direction,
            "price": price,
            "quantity": qty,
            "exec_price": None,
            "exec_quantity": None,
            "ts": ts,
        }
        if rnd.random() < 0.02 and sent:
            order["order_id"] = rnd.choice(sent)["order_id"]  # a resent order id
        sent.append(order)
        events.append(("NEW", dict(order)))
    return events


def write_session(path: Path, events: Sequence[tuple[str, dict[str, Value]]]) -> Path:
    write_events(path, events)
    return path
