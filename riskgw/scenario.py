"""The reference scenario for the example rules in rules/: its data set and a scripted session.

The data set is the reference system's test set-up: 20 accounts, 2048 securities, 1024 holdings
per account, with instruments for the price band and order limits. The session is a broker
sending orders and an exchange answering the accepted ones, so every one of the eight flows
happens (buy / sell orders accepted and rejected, fills and partial fills, exchange rejects,
cancels), and every example rule rejects some orders. Everything is deterministic for a seed.
"""

from __future__ import annotations

import csv
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from riskgw.engine.csvdata import EVENT_HEADER as EVENT_HEADER  # re-exported: the session writes this format

SECOND = 1_000_000_000
POOR_ACCOUNT = 19  # little cash: its buys fail the funds check
Row = list[int | str | None]


def ticket(i: int) -> str:
    return f"{600000 + i:06d}"


def ref_price(i: int) -> int:
    return 1_000 + (i * 7919) % 99_000  # 10.00 .. 1000.00 in hundredths


@dataclass
class DataSet:
    n_accounts: int = 20
    n_securities: int = 2048
    holdings_per_account: int = 1024

    def holds(self, account: int, sec: int) -> bool:
        """Account a holds a window of securities that starts at a * 97 (mod the universe)."""
        start = (account * 97) % self.n_securities
        return (sec - start) % self.n_securities < self.holdings_per_account

    def held(self, account: int, k: int) -> int:
        return ((account * 97) % self.n_securities + k) % self.n_securities

    def tables(self) -> dict[str, tuple[list[str], Iterator[Row]]]:
        def accounts() -> Iterator[Row]:
            for a in range(self.n_accounts):
                cash = 50_000 if a == POOR_ACCOUNT else 2_000_000_000
                yield [a, cash, cash]

        def holdings() -> Iterator[Row]:
            for a in range(self.n_accounts):
                for k in range(self.holdings_per_account):
                    s = self.held(a, k)
                    qty = 1_000 + (a * 31 + s * 17) % 9_000
                    yield [a, ticket(s), qty, qty, ref_price(s), None, None]

        def instruments() -> Iterator[Row]:
            for s in range(self.n_securities):
                notional = 50_000_000 if s % 10 == 3 else 2_000_000_000
                yield [ticket(s), ref_price(s), 1_000, 100_000, notional]

        return {
            "account_info": (["account_id", "available_balance", "total_balance"], accounts()),
            "account_ticket_info": (
                [
                    "account_id",
                    "ticket_id",
                    "avail_quantity",
                    "total_quantity",
                    "avg_price",
                    "buy_top_price",
                    "sell_low_price",
                ],
                holdings(),
            ),
            "instrument_info": (
                ["ticket_id", "ref_price", "band_bps", "max_qty", "max_notional"],
                instruments(),
            ),
        }

    def write(self, directory: Path) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        for name, (header, rows) in self.tables().items():
            with (directory / f"{name}.csv").open("w", newline="", encoding="utf-8") as f:
                w = csv.writer(f)
                w.writerow(header)
                for row in rows:
                    w.writerow(["" if v is None else v for v in row])
        return directory


@dataclass
class _Order:
    order_id: int
    account: int
    sec: int
    direction: int
    price: int
    quantity: int
    ts: int

    def row(self, event: str, exec_price: int | None = None, exec_qty: int | None = None, ts: int = 0) -> Row:
        return [
            event,
            self.order_id,
            self.account,
            ticket(self.sec),
            self.direction,
            self.price,
            self.quantity,
            exec_price,
            exec_qty,
            ts or self.ts,
        ]


@dataclass
class Session:
    """A broker and an exchange. `run(decide)` calls decide(row) -> accepted for every event."""

    data: DataSet = field(default_factory=DataSet)
    n_orders: int = 2_000
    seed: int = 1

    def run(self, decide: Callable[[Row], bool], keep: bool = True) -> list[Row]:
        """The session's events, in order. With keep=False none are kept (a long benchmark session
        that consumes them in `decide`) and the list returned is empty."""
        rnd = random.Random(self.seed)
        events: list[Row] = []
        sent = 0
        resting: list[tuple[_Order, int]] = []  # accepted orders the exchange has not finished
        ts = 34_200 * SECOND  # 09:30
        next_id = 1_000

        def send(row: Row) -> bool:
            nonlocal sent
            sent += 1
            if keep:
                events.append(row)
            return decide(row)

        def exchange(order: _Order, now: int) -> None:
            """Answer an accepted order: fill (maybe in parts), reject, or partly fill and cancel."""
            fate = rnd.random()
            px = (
                order.price - rnd.randrange(0, 3)
                if order.direction == 0
                else order.price + rnd.randrange(0, 3)
            )
            if fate < 0.45:
                first = order.quantity // 2 if fate < 0.15 else order.quantity
                send(order.row("FILL", px, first, now + 1_000))
                if first < order.quantity:
                    send(order.row("FILL", px, order.quantity - first, now + 2_000))
            elif fate < 0.60:
                send(order.row("REJECT", None, None, now + 1_000))
            elif fate < 0.80:
                part = order.quantity // 4
                if part:
                    send(order.row("FILL", px, part, now + 1_000))
                send(order.row("CANCEL", None, order.quantity - part, now + 2_000))
            else:
                resting.append((order, order.quantity))

        for n in range(self.n_orders):
            ts += rnd.randrange(20, 80) * 1_000_000  # 20..80 ms between orders
            account = rnd.randrange(self.data.n_accounts)
            k = rnd.randrange(self.data.holdings_per_account)
            sec = self.data.held(account, k)
            direction = rnd.randrange(2)
            ref = ref_price(sec)
            price = ref + rnd.randrange(-ref // 25, ref // 25 + 1)
            quantity = rnd.randrange(1, 10) * 100
            order_id = next_id
            next_id += 1
            kind = n % 23
            # Orders meant to be rejected by one rule each, among the ordinary ones.
            if kind == 3:
                price = ref * 3 // 2  # outside the 10% band
            elif kind == 5:
                quantity = 100_100  # over max_qty
            elif kind == 7 and direction == 1:
                quantity = 20_000  # more than any holding
            elif kind == 9:
                sec = (self.data.held(account, 0) - 1) % self.data.n_securities  # not held: fail closed
            elif kind == 11:
                price = 0
            elif kind == 13:
                quantity = 0
            elif kind == 15 and sent:
                order_id = 1_000 + rnd.randrange(max(1, next_id - 1_001))  # an id already used
            elif kind == 17:
                account = POOR_ACCOUNT
            elif kind == 19:
                sec = (n * 10 + 3) % self.data.n_securities  # low max_notional securities end in 3
                sec = sec - sec % 10 + 3
                account = next(a for a in range(self.data.n_accounts) if self.data.holds(a, sec))
                ref = ref_price(sec)
                price, quantity = ref, min(99_000, 50_000_000 // ref + 100)
            order = _Order(order_id, account, sec, direction, price, quantity, ts)
            if n == self.n_orders // 2:
                # Orders the exchange leaves resting, 200 ms apart (under the rate limit): from the
                # 17th on, the account has too many open orders.
                account = account % POOR_ACCOUNT  # one with cash
                for i in range(18):
                    s = self.data.held(account, (k + i) % self.data.holdings_per_account)
                    rest = _Order(next_id, account, s, 0, ref_price(s), 100, ts + i * SECOND // 5)
                    next_id += 1
                    if send(rest.row("NEW")):
                        resting.append((rest, rest.quantity))
                ts += 4 * SECOND
                continue
            if kind == 21:
                # A burst from one account inside one second: the rate limit stops it.
                for i in range(10):
                    burst = _Order(next_id, account, sec, 0, price, 100, ts + i * 1_000)
                    next_id += 1
                    if send(burst.row("NEW")):
                        exchange(burst, ts + i * 1_000)
                ts += SECOND
                continue
            accepted = send(order.row("NEW"))
            if kind == 1 and accepted:
                # The other side, priced to cross the account's own open order before the exchange
                # answers it: the anti-self-trade checks (sell under an open buy, buy over an open sell).
                cross = price - 1 if direction == 0 else price + 1
                mirror = _Order(next_id, account, sec, 1 - direction, cross, 100, ts + 500)
                next_id += 1
                if send(mirror.row("NEW")):
                    exchange(mirror, ts + 500)
            if accepted:
                exchange(order, ts)
            if len(resting) > 60:
                order, qty = resting.pop(rnd.randrange(len(resting)))
                send(order.row("CANCEL", None, qty, ts + 3_000))
        for order, qty in resting:
            ts += 1_000_000
            send(order.row("CANCEL", None, qty, ts))
        return events


def write_events(path: Path, events: list[Row]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(EVENT_HEADER)
        for row in events:
            w.writerow(["" if v is None else v for v in row])
    return path
