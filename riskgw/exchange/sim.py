"""`riskgw exchange-sim`: an exchange for the gateway to talk to, over the wire protocol.

    riskgw exchange-sim --listen 127.0.0.1:9100 [--seed N] [--fill F --partial P --reject R]
                        [--keep-on-disconnect] [--event-loop uvloop|asyncio]

Each NEW_ORDER first trades against the resting orders of the other side of its security's book
(price-time priority, at the resting order's price), then its remainder meets the simulated market:
with probability `fill` it fills in full at its limit price, `partial` fills half and rests the
rest, `reject` is refused with EXCH_REJECT (only when nothing has traded yet), and otherwise it
rests. One random draw per order from a generator seeded with `seed`, so a given sequence of
orders always gets the same answers. A CANCEL_REQUEST for a resting order removes it and answers
CANCELLED with the cancelled quantity; one for an order that is not resting is ignored (its fill
or reject is already on the way). Every answer repeats the order's fields. A connection that
closes takes its resting orders with it (cancel on disconnect), unless `--keep-on-disconnect`:
then they stay in the book. A STATUS_REQUEST is answered with ORDER_STATUS, whose exec_quantity
is the quantity still resting (0 for an order that is not); a resting order asked about moves to
the connection that asked, so its later fills go there.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import itertools
import random
import signal
import sys
from dataclasses import dataclass, field
from typing import Any

from riskgw.errors import UserError
from riskgw.gateway.link import FrameLink, order_values, parse_host_port
from riskgw.gateway.loops import EXCHANGE_SIM_EVENT_LOOP, loop_name, run
from riskgw.gateway.protocol import Frame, MsgType, ProtocolError

OrderKey = tuple[int, int]  # (account_id, order_id)


@dataclass(frozen=True)
class Behaviour:
    fill: float = 0.4
    partial: float = 0.2
    reject: float = 0.1
    seed: int = 1
    cancel_on_disconnect: bool = True  # a closed connection's resting orders leave the book

    def __post_init__(self) -> None:
        shares = (self.fill, self.partial, self.reject)
        if any(s < 0 for s in shares) or sum(shares) > 1.0 + 1e-9:
            raise UserError("--fill, --partial and --reject must be >= 0 and add up to at most 1")


@dataclass
class Resting:
    values: dict[str, Any]
    remaining: int
    owner: ExchangeLink
    rank: tuple[int, int] = (0, 0)  # sort key in its side of the book: better price first, then time


@dataclass
class Book:
    """One security: bids best (highest) first, asks best (lowest) first, each in time order."""

    bids: list[Resting] = field(default_factory=list)
    asks: list[Resting] = field(default_factory=list)


class Exchange:
    def __init__(self, behaviour: Behaviour) -> None:
        self.behaviour = behaviour
        self._rng = random.Random(behaviour.seed)
        self._books: dict[str, Book] = {}
        self._orders: dict[OrderKey, Resting] = {}
        self._time = itertools.count()
        self.orders_seen = 0

    def resting(self) -> int:
        return len(self._orders)

    def new_order(self, link: ExchangeLink, frame: Frame) -> None:
        self.orders_seen += 1
        values = order_values(frame)
        key = (values["account_id"], values["order_id"])
        fate = self._rng.random()
        b = self.behaviour
        if key in self._orders or values["quantity"] <= 0 or values["price"] <= 0:
            link.send(MsgType.EXCH_REJECT, **values, exec_price=0, exec_quantity=0)
            return
        if b.fill + b.partial <= fate < b.fill + b.partial + b.reject:
            link.send(MsgType.EXCH_REJECT, **values, exec_price=0, exec_quantity=0)
            return
        order = Resting(values, values["quantity"], link)
        self._match(order)
        if order.remaining == 0:
            return
        if fate < b.fill:
            self._fill(order, values["price"], order.remaining)
            return
        if fate < b.fill + b.partial and order.remaining > 1:
            self._fill(order, values["price"], order.remaining // 2)
        self._rest(order)

    def cancel(self, frame: Frame) -> None:
        order = self._orders.pop((frame["account_id"], frame["order_id"]), None)
        if order is None:
            return
        self._remove_from_book(order)
        order.owner.send(MsgType.CANCELLED, **order.values, exec_price=0, exec_quantity=order.remaining)

    def status(self, link: ExchangeLink, frame: Frame) -> None:
        key = (frame["account_id"], frame["order_id"])
        order = self._orders.get(key)
        if order is None:
            link.send(MsgType.ORDER_STATUS, order_id=key[1], account_id=key[0], exec_quantity=0)
            return
        order.owner = link
        link.send(MsgType.ORDER_STATUS, **order.values, exec_price=0, exec_quantity=order.remaining)

    def drop_link(self, link: ExchangeLink) -> None:
        if not self.behaviour.cancel_on_disconnect:
            return
        for key, order in list(self._orders.items()):
            if order.owner is link:
                del self._orders[key]
                self._remove_from_book(order)

    # ------------------------------------------------------------------ book

    def _fill(self, order: Resting, price: int, qty: int) -> None:
        order.remaining -= qty
        order.owner.send(MsgType.FILL, **order.values, exec_price=price, exec_quantity=qty)

    def _match(self, order: Resting) -> None:
        book = self._books.get(order.values["ticket_id"])
        if book is None:
            return
        buy = order.values["direction"] == 0
        side = book.asks if buy else book.bids
        while side and order.remaining:
            best = side[0]
            crosses = (
                best.values["price"] <= order.values["price"]
                if buy
                else best.values["price"] >= order.values["price"]
            )
            if not crosses:
                break
            qty = min(order.remaining, best.remaining)
            price = best.values["price"]
            self._fill(order, price, qty)
            self._fill(best, price, qty)
            if best.remaining == 0:
                side.pop(0)
                del self._orders[(best.values["account_id"], best.values["order_id"])]

    def _rest(self, order: Resting) -> None:
        book = self._books.setdefault(order.values["ticket_id"], Book())
        buy = order.values["direction"] == 0
        order.rank = (-order.values["price"] if buy else order.values["price"], next(self._time))
        side = book.bids if buy else book.asks
        bisect.insort(side, order, key=lambda o: o.rank)
        self._orders[(order.values["account_id"], order.values["order_id"])] = order

    def _remove_from_book(self, order: Resting) -> None:
        book = self._books[order.values["ticket_id"]]
        side = book.bids if order.values["direction"] == 0 else book.asks
        side.remove(order)


class ExchangeLink(FrameLink):
    def __init__(self, exchange: Exchange, log: bool) -> None:
        super().__init__()
        self.exchange = exchange
        self.log = log

    def frames_received(self, items: list[Frame | ProtocolError]) -> None:
        for item in items:
            if isinstance(item, ProtocolError):
                self._say(f"{self.peer}: {item}")
            elif item.type is MsgType.NEW_ORDER:
                self.exchange.new_order(self, item)
            elif item.type is MsgType.CANCEL_REQUEST:
                self.exchange.cancel(item)
            elif item.type is MsgType.STATUS_REQUEST:
                self.exchange.status(self, item)
            elif item.type is MsgType.HEARTBEAT:
                self.send(MsgType.HEARTBEAT)
            else:
                self._say(f"{self.peer}: ignored a {item.type.name} frame")

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.exchange.drop_link(self)

    def _say(self, text: str) -> None:
        if self.log:
            print(f"exchange-sim: {text}", file=sys.stderr, flush=True)


async def start_exchange(
    host: str, port: int, behaviour: Behaviour, log: bool = False
) -> tuple[asyncio.Server, Exchange]:
    exchange = Exchange(behaviour)
    loop = asyncio.get_running_loop()
    try:
        server = await loop.create_server(lambda: ExchangeLink(exchange, log), host, port)
    except OSError as exc:
        raise UserError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    return server, exchange


async def _serve(host: str, port: int, behaviour: Behaviour) -> None:
    server, exchange = await start_exchange(host, port, behaviour, log=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    bound = server.sockets[0].getsockname()
    print(
        f"exchange-sim: listening on {bound[0]}:{bound[1]} (seed {behaviour.seed}, "
        f"event loop {loop_name(loop)})",
        file=sys.stderr,
        flush=True,
    )
    async with server:
        await stop.wait()
    print(
        f"exchange-sim: stopped after {exchange.orders_seen} orders, {exchange.resting()} resting",
        file=sys.stderr,
        flush=True,
    )


def run_exchange_sim(args: argparse.Namespace) -> int:
    try:
        host, port = parse_host_port(args.listen)
    except ValueError as exc:
        raise UserError(f"--listen: {exc}") from None
    behaviour = Behaviour(
        fill=args.fill,
        partial=args.partial,
        reject=args.reject,
        seed=args.seed,
        cancel_on_disconnect=not getattr(args, "keep_on_disconnect", False),
    )
    run(
        _serve(host, port, behaviour),
        getattr(args, "event_loop", EXCHANGE_SIM_EVENT_LOOP),
        lambda text: print(f"exchange-sim: {text}", file=sys.stderr, flush=True),
    )
    return 0
