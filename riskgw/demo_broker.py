"""The demo's scripted broker: orders over TCP through every flow, every rule and the controls.

One logon that may trade every account sends a few thousand orders, deterministic for a seed,
with up to WINDOW of them waiting for a verdict at a time. Among ordinary orders (held
securities, near the reference price) it sends orders meant to fail one rule each, as
riskgw.scenario's session does: outside the price band, over max_qty, more than the holdings, a
security not held, price 0, quantity 0, an id open under another account, a buy from the account
with no cash, over max_notional, a crossing order on the other side of the account's own open
order (anti-self-trade), ten orders inside one second (rate limit) and eighteen orders of one
account at once (open-order limit). The exchange simulator fills, partly fills, rejects or rests
them; the broker cancels resting orders now and then and everything still open at the end. Three
quarters of the way in it turns a kill switch on for one account through the control port (with
cancel-open), sees an order for it rejected, and turns the switch off.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from riskgw.gateway.control import request as control_request
from riskgw.gateway.protocol import (
    FAILED_MASK_BYTES,
    Frame,
    FrameReader,
    MsgType,
    ProtocolError,
    Reason,
    encode,
)
from riskgw.scenario import POOR_ACCOUNT, SECOND, DataSet, ref_price, ticket

WINDOW = 16  # orders waiting for a verdict at most; a pipelining broker
STEP_S = 10.0  # the longest any one reply may take before the demo gives up
OrderKey = tuple[int, int]
SIDES = ("buy", "sell")
FLOWS = tuple(f"{side} {what}" for what in ("order", "fill", "reject", "cancel") for side in SIDES)


@dataclass
class Tally:
    """What the broker saw, for the summary."""

    sent: int = 0
    accepted: int = 0
    rejected_by_reason: Counter[str] = field(default_factory=Counter)
    rejected_by_rule: Counter[int] = field(default_factory=Counter)
    flows: Counter[str] = field(default_factory=Counter)  # the eight flows, as in FLOWS
    latencies_us: list[float] = field(default_factory=list)  # NEW_ORDER sent -> ACCEPTED/REJECTED
    cancels_sent: int = 0
    late_cancels: int = 0  # cancel requests for orders that were done by the time they arrived
    kill_switch: str = ""
    wall_s: float = 0.0


@dataclass
class _Open:
    direction: int
    remaining: int


class Broker:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.seq = 0
        self.tally = Tally()
        self.pending: dict[OrderKey, tuple[int, int]] = {}  # NEW sent: (direction, sent at ns)
        self.open: dict[OrderKey, _Open] = {}
        self.cancelling: set[OrderKey] = set()
        self.changed = asyncio.Event()
        self.closed: str | None = None
        self.logged_on = False
        self._out = bytearray()

    # ------------------------------------------------------------------ sending

    def _frame(self, msg_type: MsgType, **values: Any) -> None:
        self.seq += 1
        self._out += encode(msg_type, self.seq, **values)

    def order(self, values: dict[str, Any]) -> None:
        self._frame(MsgType.NEW_ORDER, **values)
        self.pending[(values["account_id"], values["order_id"])] = (values["direction"], 0)
        self.tally.sent += 1

    def cancel(self, key: OrderKey) -> None:
        self._frame(MsgType.CANCEL_REQUEST, account_id=key[0], order_id=key[1])
        self.cancelling.add(key)
        self.tally.cancels_sent += 1

    async def flush(self) -> None:
        """Write what was queued in one write; the orders in it are timed from now."""
        now = time.perf_counter_ns()
        for key, (direction, sent) in self.pending.items():
            if not sent:
                self.pending[key] = (direction, now)
        self.writer.write(bytes(self._out))
        self._out.clear()
        await self.writer.drain()

    async def wait_for(self, done: Any, what: str) -> None:
        """Wait until done() holds; fails after STEP_S without progress."""
        while not done():
            if self.closed is not None:
                raise ConnectionError(f"the gateway closed the session ({self.closed}) while {what}")
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), STEP_S)
            except TimeoutError:
                raise TimeoutError(f"no reply from the gateway for {STEP_S:.0f} s while {what}") from None

    # ------------------------------------------------------------------ receiving

    async def read_loop(self) -> None:
        frames = FrameReader()
        try:
            while True:
                data = await self.reader.read(1 << 16)
                if not data:
                    self.closed = self.closed or "connection closed"
                    break
                now = time.perf_counter_ns()
                for item in frames.feed(data):
                    if isinstance(item, ProtocolError):
                        raise ConnectionError(f"the gateway sent garbage: {item}")
                    self._handle(item, now)
                self.changed.set()
        except ConnectionError as exc:
            self.closed = str(exc)
        self.changed.set()

    def _handle(self, frame: Frame, now: int) -> None:
        t = self.tally
        kind = frame.type
        if kind is MsgType.LOGON_ACK:
            self.logged_on = True
            return
        if kind is MsgType.HEARTBEAT:
            return
        if kind is MsgType.LOGOUT:
            self.closed = f"LOGOUT {Reason(frame['reason']).name}"
            return
        key = (frame["account_id"], frame["order_id"])
        if kind is MsgType.ACCEPTED:
            direction, sent = self.pending.pop(key)
            t.latencies_us.append((now - sent) / 1_000)
            t.accepted += 1
            t.flows[f"{SIDES[direction]} order"] += 1
            self.open[key] = _Open(direction, frame["quantity"])
        elif kind is MsgType.REJECTED:
            if key not in self.pending:  # a cancel request for an order done meanwhile
                self.cancelling.discard(key)
                t.late_cancels += 1
                return
            direction, sent = self.pending.pop(key)
            t.latencies_us.append((now - sent) / 1_000)
            t.flows[f"{SIDES[direction]} order"] += 1
            reason = Reason(frame["reason"])
            t.rejected_by_reason[reason.name] += 1
            mask = int.from_bytes(frame["failed_mask"], "little")
            for rule in range(FAILED_MASK_BYTES * 8):
                if mask >> rule & 1:
                    t.rejected_by_rule[rule] += 1
        else:
            side = SIDES[frame["direction"]]
            order = self.open.get(key)
            if kind is MsgType.FILL:
                t.flows[f"{side} fill"] += 1
                if order is not None:
                    order.remaining -= frame["exec_quantity"]
                    if order.remaining > 0:
                        return
            elif kind is MsgType.EXCH_REJECT:
                t.flows[f"{side} reject"] += 1
            elif kind is MsgType.CANCELLED:
                t.flows[f"{side} cancel"] += 1
            self.open.pop(key, None)
            self.cancelling.discard(key)


@dataclass
class Script:
    """The order stream; `next_id` and `ts` run on across the steps."""

    data: DataSet
    rnd: random.Random
    next_id: int = 1_000
    ts: int = 34_200 * SECOND  # 09:30, in the orders' own clock (the rate limit reads it)

    def new_id(self) -> int:
        self.next_id += 1
        return self.next_id

    def values(
        self, account: int, sec: int, direction: int, price: int, quantity: int, **kw: Any
    ) -> dict[str, Any]:
        out = dict(
            order_id=self.new_id(),
            account_id=account,
            direction=direction,
            ticket_id=ticket(sec),
            price=price,
            quantity=quantity,
            ts=self.ts,
        )
        out.update(kw)
        return out

    def ordinary(self, account: int | None = None) -> dict[str, Any]:
        rnd, data = self.rnd, self.data
        if account is None:
            account = rnd.randrange(POOR_ACCOUNT)  # accounts with cash
        sec = data.held(account, rnd.randrange(data.holdings_per_account))
        ref = ref_price(sec)
        price = ref + rnd.randrange(-ref // 25, ref // 25 + 1)
        return self.values(account, sec, rnd.randrange(2), price, rnd.randrange(1, 10) * 100)


async def run_broker(
    port: int, control_port: int, token: str, user: str, password: str, n_orders: int, seed: int
) -> Tally:
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), STEP_S)
    broker = Broker(reader, writer)
    reading = asyncio.get_running_loop().create_task(broker.read_loop())
    start = time.perf_counter()
    try:
        broker._frame(MsgType.LOGON, username=user, password=password)
        await broker.flush()
        await broker.wait_for(lambda: broker.logged_on, "logging on")
        await _script(broker, control_port, token, n_orders, seed)
    finally:
        broker.tally.wall_s = time.perf_counter() - start
        writer.close()
        reading.cancel()
    return broker.tally


async def _script(broker: Broker, control_port: int, token: str, n_orders: int, seed: int) -> None:
    s = Script(DataSet(), random.Random(seed))
    rnd, data = s.rnd, s.data
    kill_at = n_orders * 3 // 4
    burst_at = n_orders // 2

    async def step() -> None:
        await broker.flush()
        await broker.wait_for(lambda: len(broker.pending) <= WINDOW, "waiting for verdicts")

    for n in range(n_orders):
        s.ts += rnd.randrange(20, 80) * 1_000_000
        kind = n % 23
        if n == burst_at:
            # Eighteen orders of one account in one write, 200 ms apart in their own clock (under
            # the rate limit): the gateway decides them all before the exchange answers any, so
            # the 17th and later find 16 open and fail the open-order limit.
            account = rnd.randrange(POOR_ACCOUNT)
            for i in range(18):
                sec = data.held(account, i)
                broker.order(s.values(account, sec, 0, ref_price(sec), 100, ts=s.ts + i * SECOND // 5))
            s.ts += 4 * SECOND
            await step()
            continue
        if n == kill_at:
            await _kill_switch(broker, s, control_port, token)
            continue
        if kind == 21:
            # Ten orders of one account inside one second of their clock: the rate limit stops the
            # ninth and tenth.
            first = s.ordinary()
            for i in range(10):
                broker.order(
                    {**first, "order_id": s.new_id(), "direction": 0, "quantity": 100, "ts": s.ts + i}
                )
            s.ts += SECOND
            await step()
            continue
        values = s.ordinary()
        account, sec = values["account_id"], 0
        ref = 0
        if kind == 3:
            ref = ref_price(_sec_of(values))
            values["price"] = ref * 3 // 2  # outside the 10% band
        elif kind == 5:
            values["quantity"] = 100_100  # over max_qty
        elif kind == 7:
            values.update(direction=1, quantity=20_000)  # more than any holding
        elif kind == 9:
            sec = (data.held(account, 0) - 1) % data.n_securities  # not held: fails closed
            values.update(ticket_id=ticket(sec), price=ref_price(sec))
        elif kind == 11:
            values["price"] = 0
        elif kind == 13:
            values["quantity"] = 0
        elif kind == 15:
            # The id of an order open under another account: the gateway's book keys orders by
            # account and id, the rule by id alone.
            others = [k for k in broker.open if k[0] != account]
            if others:
                values["order_id"] = rnd.choice(others)[1]
        elif kind == 17:
            sec = data.held(POOR_ACCOUNT, rnd.randrange(data.holdings_per_account))
            values.update(account_id=POOR_ACCOUNT, direction=0, ticket_id=ticket(sec), price=ref_price(sec))
        elif kind == 19:
            sec = (n * 10 + 3) % data.n_securities
            sec = sec - sec % 10 + 3  # securities ending in 3 have a low max_notional
            holder = next(a for a in range(POOR_ACCOUNT) if data.holds(a, sec))
            ref = ref_price(sec)
            values.update(
                account_id=holder,
                ticket_id=ticket(sec),
                price=ref,
                quantity=min(99_000, 50_000_000 // ref + 100),
            )
        broker.order(values)
        if kind == 1:
            # The other side, priced to cross this order, in the same write: the anti-self-trade
            # rules see the first order open.
            cross = values["price"] - 1 if values["direction"] == 0 else values["price"] + 1
            broker.order(
                {**values, "order_id": s.new_id(), "direction": 1 - values["direction"], "price": cross}
            )
        cancellable = [k for k in broker.open if k not in broker.cancelling]
        if len(cancellable) > 40:
            broker.cancel(rnd.choice(cancellable))
        await step()
    # Cancel whatever is still open and wait until the exchange has answered for every order.
    await broker.wait_for(lambda: not broker.pending, "waiting for the last verdicts")
    for key in list(broker.open):
        if key not in broker.cancelling:
            broker.cancel(key)
    await broker.flush()
    await broker.wait_for(lambda: not broker.open, "waiting for the last cancels")


def _sec_of(values: dict[str, Any]) -> int:
    return int(values["ticket_id"]) - 600_000


async def _kill_switch(broker: Broker, s: Script, control_port: int, token: str) -> None:
    """Kill one account with cancel-open, see its next order rejected, then resume it."""
    await broker.wait_for(lambda: not broker.pending, "waiting for verdicts before the kill switch")
    accounts = Counter(k[0] for k in broker.open)
    account = accounts.most_common(1)[0][0] if accounts else 0
    answer = await control_request(
        "127.0.0.1", control_port, {"token": token, "cmd": "kill", "account": account, "cancel_open": True}
    )
    if not answer.get("ok"):
        raise ConnectionError(f"the control port refused the kill switch: {answer.get('error')}")
    cancels = int(answer.get("cancels_sent", 0) or 0)
    for key in broker.open:
        if key[0] == account:
            broker.cancelling.add(key)
    broker.order(s.ordinary(account))
    await broker.flush()
    await broker.wait_for(lambda: not broker.pending, "waiting for the order behind the kill switch")
    blocked = broker.tally.rejected_by_reason["KILL_SWITCH"]
    answer = await control_request(
        "127.0.0.1", control_port, {"token": token, "cmd": "resume", "account": account}
    )
    if not answer.get("ok"):
        raise ConnectionError(f"the control port refused to resume: {answer.get('error')}")
    broker.tally.kill_switch = (
        f"account {account}: on with cancel-open ({cancels} open orders cancelled at the exchange), "
        f"{blocked} order(s) rejected KILL_SWITCH, then off again"
    )
