"""A FIX 4.4 session as one more broker session of the gateway: one order path for both protocols.

Inbound, NewOrderSingle (D), OrderCancelRequest (F) and OrderCancelReplaceRequest (G) become the
gateway's `new_order` and `cancel_request` calls; OrderStatusRequest (H) is answered from the
session's own record of its orders. Outbound, the gateway queues its usual frames to
this session (ACCEPTED, REJECTED, FILL, EXCH_REJECT, CANCELLED, LOGOUT); `frame()` turns each into
FIX messages at the moment it is queued, when the request it answers is still known, and the
gateway's flush hands them to QuickFIX after the journal commit, as it writes bytes to a socket.

A replace is a cancel and then a new order for what is left: the replacement runs through the rules
only once the exchange has cancelled the original, so the two never hold funds at once. A
replacement that fails the rules leaves the order cancelled, and the broker is told so.

Nothing here imports QuickFIX: `riskgw.gateway.fix` owns the engine and turns `Outbound` tuples
into messages.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from riskgw.doe.isa import EventField
from riskgw.gateway.config import User
from riskgw.gateway.fixconfig import FixConfig, FixSessionConfig, Instrument
from riskgw.gateway.fixmap import OrderMap
from riskgw.gateway.journal import Entry
from riskgw.gateway.protocol import FAILED_MASK_BYTES, Frame, MsgType, Reason
from riskgw.gateway.server import BrokerSession, Gateway

# A message to send: (MsgType (35), body fields in order). MsgType "5" is a Logout with Text.
Outbound = tuple[str, list[tuple[int, str]]]
Outcome = tuple[str, int, int]  # a done order's OrdStatus, CumQty and value filled
DONE = ("2", "4", "8")  # OrdStatus of a done order: filled, cancelled, rejected

# Gateway order ids of FIX orders start here, above any a binary-protocol broker plausibly uses,
# because FIX identifies orders by ClOrdID strings and the gateway (and the DuplicateOrderId rule)
# by one integer.
FIX_ORDER_ID_BASE = 1 << 60
I64_MAX = (1 << 63) - 1

# OrdRejReason (103) for the gateway's reasons
ORD_REJ_REASON = {
    Reason.RULE: "3",  # order exceeds limit
    Reason.UNKNOWN_ORDER: "5",
    Reason.SHUTDOWN: "2",  # exchange closed: the gateway has no exchange link
}
UNKNOWN_SYMBOL, DUPLICATE_ORDER, UNSUPPORTED, INCORRECT_QTY, UNKNOWN_ACCOUNT, OTHER = (
    "1",
    "6",
    "11",
    "13",
    "15",
    "99",
)
TEXT = {
    Reason.NOT_PERMITTED: "this session may not trade the account",
    Reason.KILL_SWITCH: "a kill switch is on for the account or the session",
    Reason.UNKNOWN_ORDER: "the order is not open",
    Reason.SHUTDOWN: "the gateway has no exchange connection",
    Reason.EXCHANGE_BACKLOG: "the exchange is not reading what it is sent: no new orders until it does",
    Reason.PROTOCOL: "the order is not valid",
}
SIDES = {"1": 0, "2": 1}  # Side (54) buy, sell -> direction
UNKNOWN_ORDER_REJ, UNKNOWN_ORDER_CXL = "5", "1"  # OrdRejReason (103), CxlRejReason (102)
OUTCOME_LOST = (
    "the order is done, but its outcome is no longer kept (the gateway keeps its last 100,000 done "
    "orders, and this one's outcome line was lost): the audit store (riskgw log query) has it"
)


def first_order_id(entries: Sequence[Entry]) -> int:
    """The first gateway order id for FIX orders: above every FIX order in the journal, and above
    the ids a run that started earlier could have used (one per microsecond since the epoch)."""
    seen = [
        int(e.inputs[EventField.ORDER_ID] or 0)
        for e in entries
        if int(e.inputs[EventField.ORDER_ID] or 0) >= FIX_ORDER_ID_BASE
    ]
    return max(max(seen, default=0) + 1, FIX_ORDER_ID_BASE + time.time_ns() // 1000)


class OrderIds:
    """Gateway order ids for FIX orders, shared by every FIX session of the gateway."""

    def __init__(self, first: int) -> None:
        self._next = first

    def take(self) -> int:
        self._next += 1
        return self._next - 1

    def peek(self) -> int:
        """The id the next FIX order gets."""
        return self._next


class Invalid(ValueError):
    """A request the gateway cannot take; `reason` is the OrdRejReason or CxlRejReason to answer."""

    def __init__(self, reason: str, text: str) -> None:
        super().__init__(text)
        self.reason = reason


def parse_price(text: str | None, scale: int) -> int:
    if text is None:
        raise Invalid(UNSUPPORTED, "Price (44) is required: only limit orders are taken")
    try:
        value = Decimal(text) * (10**scale)
    except InvalidOperation:
        raise Invalid(OTHER, f"Price (44) {text!r} is not a number") from None
    if value != value.to_integral_value():
        raise Invalid(OTHER, f"Price (44) {text} has more than {scale} decimals")
    if abs(value) > I64_MAX:
        raise Invalid(OTHER, f"Price (44) {text} is out of range")
    return int(value)


def format_price(units: int, scale: int) -> str:
    return str(Decimal(units).scaleb(-scale)) if scale else str(units)


def parse_quantity(text: str | None) -> int:
    try:
        value = Decimal(text or "")
    except InvalidOperation:
        raise Invalid(INCORRECT_QTY, f"OrderQty (38) {text!r} is not a number") from None
    if value != value.to_integral_value() or abs(value) > I64_MAX:
        raise Invalid(INCORRECT_QTY, f"OrderQty (38) {text} is not a whole number of units")
    return int(value)


def parse_utc_ns(text: str | None) -> int:
    """UTCTimestamp (YYYYMMDD-HH:MM:SS[.fraction]) as ns since the epoch; now when absent."""
    if not text:
        return time.time_ns()
    whole, _, fraction = text.partition(".")
    try:
        stamp = datetime.strptime(whole, "%Y%m%d-%H:%M:%S").replace(tzinfo=UTC)
        if not fraction.isdigit() and fraction:
            raise ValueError
    except ValueError:
        raise Invalid(OTHER, f"TransactTime (60) {text!r} is not a UTC timestamp") from None
    return int(stamp.timestamp()) * 10**9 + int((fraction or "0").ljust(9, "0")[:9])


@dataclass
class Pending:
    """A cancel (F) or replace (G) sent to the exchange and not answered yet."""

    kind: str  # "F" or "G"
    cl_ord_id: str
    price: int = 0  # G: the replacement's
    quantity: int = 0  # G: the new OrderQty, filled part included
    ts: int = 0


@dataclass
class FixOrder:
    cl_ord_id: str  # the latest accepted ClOrdID
    fix_order_id: str  # OrderID (37): the same through replaces
    account: str
    account_id: int
    instrument: Instrument
    side: str
    price: int
    quantity: int  # OrderQty: the filled part included
    order_id: int  # the gateway's id of the live leg
    cum_qty: int = 0
    cum_value: int = 0  # sum of exec price * exec quantity, in price units
    status: str = "A"  # OrdStatus (39): pending new until the gateway answers
    pending: Pending | None = None
    execs: int = 0
    # Done before a restart, and its outcome is known neither from the journal (the gateway keeps
    # the last DECIDED_WINDOW done orders) nor from an outcome line of the order map: FIX answers
    # about it are those for an unknown order (OrdRejReason 5, CxlRejReason 1), never a made-up state.
    outcome_lost: bool = False
    outcome_recorded: bool = False  # its outcome line is in the order map

    @property
    def leaves(self) -> int:
        return 0 if self.status in DONE else max(self.quantity - self.cum_qty, 0)

    @property
    def done(self) -> bool:
        return self.status in DONE


@dataclass
class Request:
    """What the gateway is answering while a call into it runs (frames are made at queue time)."""

    kind: str  # "new", "cancel", "replace" (its cancel) or "replacement" (its new order)
    order: FixOrder
    cl_ord_id: str
    rej_reason: str | None = None  # for a reject decided here, before the rules
    text: str | None = None
    answered: bool = False
    pending: Pending | None = None


class FixTransport(asyncio.Transport):
    """Where the gateway's flush writes this session's frames: hands their FIX messages to QuickFIX,
    which keeps them in its store and sends them when the broker is logged on (or resends them)."""

    def __init__(self, session: FixSession) -> None:
        super().__init__()
        self._session = session

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._session.deliver(bytes(data))

    def writelines(self, list_of_data: Iterable[bytes | bytearray | memoryview]) -> None:
        for data in list_of_data:  # each is one frame's token: not joined, as a socket's would be
            self._session.deliver(bytes(data))

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    # The gateway stops reading a session whose held replies pass held_replies_limit (see
    # Gateway.flush). QuickFIX reads a FIX session on its own thread, so "not reading" it means its
    # new orders and replaces are refused there, at once (riskgw.gateway.fix, _Application._not_now).
    def pause_reading(self) -> None:
        self._session.readable.clear()

    def resume_reading(self) -> None:
        self._session.readable.set()

    def is_reading(self) -> bool:
        return self._session.readable.is_set()


class FixSession(BrokerSession):
    """One configured FIX session (SenderCompID, TargetCompID); it lives as long as the acceptor, so
    answers for its orders reach it across logouts: QuickFIX stores them for the broker's resend."""

    orders_follow_login = False  # they follow this session, through its order map across restarts

    def __init__(
        self,
        gateway: Gateway,
        config: FixSessionConfig,
        fix: FixConfig,
        ids: OrderIds,
        send: Callable[[list[Outbound]], None],
        orders: OrderMap | None = None,
    ) -> None:
        super().__init__(gateway)
        self.config = config
        self.orders = orders
        self.fix = fix
        self.ids = ids
        self.send_fix = send
        self.user = User(config.sender_comp_id, config.password or "", config.accounts)
        self.transport = FixTransport(self)
        self.peer = f"FIX {config.sender_comp_id}"
        self.logged_on = False
        self.readable = threading.Event()  # clear: QuickFIX's thread refuses D and G (see FixTransport)
        self.readable.set()
        self.by_cl_ord_id: dict[str, FixOrder] = {}
        self.by_order_id: dict[int, FixOrder] = {}
        self._request: Request | None = None
        self._ready: dict[int, list[Outbound]] = {}
        self._tokens = 0
        self._rule_names = [r.name for r in gateway.card.image.rules]

    # ------------------------------------------------------------------ session events

    def on_logon(self) -> None:
        self.logged_on = True
        self.gateway._log(f"{self.peer}: logged on")

    def on_logout(self) -> None:
        """Cancel-on-disconnect: the exchange is asked to cancel this session's open orders."""
        was = self.logged_on
        self.logged_on = False
        gw = self.gateway
        if not was or not self.config.cancel_on_disconnect or gw.closing:
            return
        mine = [key for key, o in gw.open.items() if o.session is self]
        gw._log(f"{self.peer}: logged out with {len(mine)} open orders; cancelling them")
        if gw.exchange is None:
            return
        for account_id, order_id in mine:
            gw.queue(gw.exchange, MsgType.CANCEL_REQUEST, order_id=order_id, account_id=account_id)

    def frames_received(self, items: list[Any]) -> None:  # FIX arrives through received()
        raise AssertionError("a FIX session reads no wire-protocol frames")

    # ------------------------------------------------------------------ inbound

    def received(self, msg_type: str, fields: dict[int, str]) -> None:
        """An application message from the broker (QuickFIX has checked its session layer)."""
        if msg_type == "D":
            self._new_order(fields)
        elif msg_type == "F":
            self._cancel(fields, replace=False)
        elif msg_type == "G":
            self._cancel(fields, replace=True)
        elif msg_type == "H":
            self._status(fields)

    def _status(self, fields: dict[int, str]) -> None:
        """OrderStatusRequest: an ExecutionReport with ExecType I and the order's state; for a
        ClOrdID this session never used, or an order whose outcome is lost (see FixOrder), the
        FIX answer for an unknown order: OrdStatus 8, OrdRejReason 5 and why in Text. It leaves in
        order with the session's other answers (so never before an ACCEPTED still held back)."""
        cl_ord_id = fields.get(11, "")
        order = self.by_cl_ord_id.get(cl_ord_id)
        if order is None or order.outcome_lost:
            out = self._unknown(order, cl_ord_id, fields)
        else:
            out = self._report(order, "I", exec_id="0")
        if 790 in fields:  # OrdStatusReqID, echoed
            out[1].insert(-1, (790, fields[790]))
        self._tokens += 1
        self._ready[self._tokens] = [out]
        self.gateway.queue_raw(self, self._tokens.to_bytes(8, "little"))

    def _unknown(self, order: FixOrder | None, cl_ord_id: str, fields: dict[int, str]) -> Outbound:
        text = f"unknown ClOrdID {cl_ord_id!r}" if order is None else OUTCOME_LOST
        body = [
            (37, order.fix_order_id if order is not None else "NONE"),
            (11, cl_ord_id),
            (17, "0"),
            (150, "I"),
            (39, "8"),
        ]
        account = order.account if order is not None else fields.get(1)
        if account:
            body.append((1, account))
        body += [
            (55, order.instrument.symbol if order is not None else fields.get(55, "")),
            (54, order.side if order is not None else fields.get(54, "1")),
            (151, "0"),
            (14, "0"),
            (6, "0"),
            (103, UNKNOWN_ORDER_REJ),
            (58, text),
            (60, _utc_now()),
        ]
        return ("8", body)

    def _account(self, fields: dict[int, str]) -> tuple[str, int]:
        text = fields.get(1)
        if text is None:
            accounts = self.user.accounts if self.user is not None else None
            if accounts is not None and len(accounts) == 1:
                only = next(iter(accounts))
                return str(only), only
            raise Invalid(UNKNOWN_ACCOUNT, "Account (1) is required")
        try:
            return text, int(text)
        except ValueError:
            raise Invalid(UNKNOWN_ACCOUNT, f"Account (1) {text!r} is not an account id") from None

    def _instrument(self, fields: dict[int, str]) -> Instrument:
        symbol = fields.get(55, "")
        instrument = self.fix.instrument(symbol)
        if instrument is None:
            raise Invalid(UNKNOWN_SYMBOL, f"unknown Symbol (55) {symbol!r}")
        return instrument

    def _new_order(self, fields: dict[int, str]) -> None:
        cl_ord_id = fields.get(11, "")
        order = FixOrder(
            cl_ord_id,
            "NONE",
            fields.get(1, ""),
            0,
            Instrument(fields.get(55, ""), "", 0),
            fields.get(54, "1"),
            0,
            0,
            0,
        )
        try:
            if cl_ord_id in self.by_cl_ord_id:
                raise Invalid(DUPLICATE_ORDER, f"ClOrdID (11) {cl_ord_id!r} was used before")
            order.account, order.account_id = self._account(fields)
            order.instrument = self._instrument(fields)
            if order.side not in SIDES:
                raise Invalid(UNSUPPORTED, f"Side (54) {order.side!r}: only 1 (buy) and 2 (sell)")
            if fields.get(40) != "2":
                raise Invalid(UNSUPPORTED, f"OrdType (40) {fields.get(40)!r}: only 2 (limit)")
            order.price = parse_price(fields.get(44), order.instrument.price_scale)
            order.quantity = parse_quantity(fields.get(38))
            ts = parse_utc_ns(fields.get(60))
        except Invalid as exc:
            self._refuse(order, exc)
            return
        order.order_id = self.ids.take()
        order.fix_order_id = str(order.order_id)
        self._record(
            "new",
            cl=cl_ord_id,
            id=order.order_id,
            acct=order.account,
            aid=order.account_id,
            sym=order.instrument.symbol,
            ticket=order.instrument.ticket_id,
            scale=order.instrument.price_scale,
            side=order.side,
            px=order.price,
            qty=order.quantity,
        )
        self.by_cl_ord_id[cl_ord_id] = order
        self.by_order_id[order.order_id] = order
        self._call(Request("new", order, cl_ord_id), self.gateway.new_order, self._new_frame(order, ts))

    def _new_frame(
        self, order: FixOrder, ts: int, price: int | None = None, quantity: int | None = None
    ) -> Frame:
        values = {
            "order_id": order.order_id,
            "account_id": order.account_id,
            "direction": SIDES[order.side],
            "ticket_id": order.instrument.ticket_id,
            "price": order.price if price is None else price,
            "quantity": order.quantity if quantity is None else quantity,
            "ts": ts,
        }
        return Frame(MsgType.NEW_ORDER, 0, values)

    def _refuse(self, order: FixOrder, exc: Invalid) -> None:
        """An order rejected before the rules: through the gateway's own path for invalid input,
        so it is counted, logged and audited like a bad frame."""
        values = {"order_id": order.order_id, "account_id": order.account_id}
        request = Request("new", order, order.cl_ord_id, exc.reason, str(exc))
        self._call(request, self.gateway.protocol_error, Frame(MsgType.NEW_ORDER, 0, values), str(exc))

    def _cancel(self, fields: dict[int, str], replace: bool) -> None:
        cl_ord_id = fields.get(11, "")
        orig = fields.get(41, "")
        response_to = "2" if replace else "1"
        order = self.by_cl_ord_id.get(orig)
        if order is None:
            self._send(
                [
                    self._cancel_reject(
                        None, cl_ord_id, orig, response_to, "1", f"unknown OrigClOrdID {orig!r}"
                    )
                ]
            )
            return
        try:
            if cl_ord_id in self.by_cl_ord_id:
                raise Invalid("6", f"ClOrdID (11) {cl_ord_id!r} was used before")
            if order.outcome_lost:
                raise Invalid(UNKNOWN_ORDER_CXL, OUTCOME_LOST)
            if order.done:
                raise Invalid("0", "the order is done")
            if order.pending is not None:
                raise Invalid("3", "a cancel or replace of the order is pending")
            pending = Pending("G" if replace else "F", cl_ord_id)
            if replace:
                if fields.get(55) != order.instrument.symbol or fields.get(54) != order.side:
                    raise Invalid(OTHER, "a replace may not change Symbol (55) or Side (54)")
                if fields.get(40) != "2":
                    raise Invalid(OTHER, f"OrdType (40) {fields.get(40)!r}: only 2 (limit)")
                pending.price = parse_price(fields.get(44), order.instrument.price_scale)
                pending.quantity = parse_quantity(fields.get(38))
                pending.ts = parse_utc_ns(fields.get(60))
                if pending.quantity <= order.cum_qty:
                    raise Invalid(OTHER, f"OrderQty (38) must be above the {order.cum_qty} already filled")
        except Invalid as exc:
            self._send([self._cancel_reject(order, cl_ord_id, orig, response_to, exc.reason, str(exc))])
            return
        request = Request("replace" if replace else "cancel", order, cl_ord_id, pending=pending)
        frame = Frame(MsgType.CANCEL_REQUEST, 0, {"order_id": order.order_id, "account_id": order.account_id})
        self._call(request, self.gateway.cancel_request, frame)
        if not request.answered:  # on its way to the exchange
            order.pending = pending
            self.by_cl_ord_id[cl_ord_id] = order
            self._record(
                pending.kind,
                oid=order.fix_order_id,
                cl=cl_ord_id,
                px=pending.price,
                qty=pending.quantity,
                ts=pending.ts,
            )

    def _replacement(self, order: FixOrder) -> None:
        """The original is cancelled: place what is left of the replace as a new order."""
        pending = order.pending
        assert pending is not None and pending.kind == "G"
        order.pending = None
        rest = pending.quantity - order.cum_qty
        if rest <= 0:
            order.status = "4"
            self.by_order_id.pop(order.order_id, None)
            text = "cancelled: the replacement's quantity was filled before the cancel"
            self._send(
                [self._report(order, "4", cl_ord_id=pending.cl_ord_id, orig=order.cl_ord_id, text=text)]
            )
            return
        self.by_order_id.pop(order.order_id, None)
        order.order_id = self.ids.take()
        self._record(
            "leg",
            oid=order.fix_order_id,
            cl=pending.cl_ord_id,
            id=order.order_id,
            px=pending.price,
            qty=pending.quantity,
            cum=order.cum_qty,
            val=order.cum_value,
        )
        self.by_order_id[order.order_id] = order
        request = Request("replacement", order, pending.cl_ord_id, pending=pending)
        frame = self._new_frame(order, pending.ts, pending.price, rest)
        self._call(request, self.gateway.new_order, frame)

    def _record(self, kind: str, **fields: Any) -> None:
        """Make a new mapping durable before the order it names reaches the card."""
        if self.orders is not None:
            self.orders.record(k=kind, s=self.config.sender_comp_id, **fields)

    # ------------------------------------------------------------------ restart

    def restore(self, records: list[dict[str, Any]]) -> None:
        """Rebuild this session's orders from its order-map records and what the gateway restored
        from the journal (decisions, exchange answers, open orders), so answers for orders placed
        before a restart reach this session, and F or G for them work."""
        orders: dict[str, FixOrder] = {}
        legs: dict[str, int] = {}  # fix_order_id -> OrderQty already filled before the live leg
        outcomes: dict[str, Outcome] = {}  # fix_order_id -> its outcome line's
        for record in records:
            try:
                self._apply(record, orders, legs, outcomes)
            except (KeyError, TypeError, ValueError) as exc:  # a line edited by hand: it is skipped
                self.gateway._log(f"{self.peer}: order-map record {record} skipped: {exc!r}")
        for order in orders.values():
            self._settle(order, legs[order.fix_order_id], outcomes.get(order.fix_order_id))

    def record_outcomes(self) -> None:
        """At start, once the order map is open: an outcome line for each done order that has none
        yet (done before the line was written), while the journal still knows the outcome."""
        for order in {id(o): o for o in self.by_cl_ord_id.values()}.values():
            self._record_outcome(order)

    def _record_outcome(self, order: FixOrder) -> None:
        if not order.done or order.outcome_recorded or order.outcome_lost or not order.order_id:
            return
        order.outcome_recorded = True
        if self.orders is not None:
            self.orders.record(
                durable=False,
                k="done",
                s=self.config.sender_comp_id,
                oid=order.fix_order_id,
                st=order.status,
                cum=order.cum_qty,
                val=order.cum_value,
            )

    def _apply(
        self,
        record: dict[str, Any],
        orders: dict[str, FixOrder],
        legs: dict[str, int],
        outcomes: dict[str, Outcome],
    ) -> None:
        """One order-map record: a new order, a replacement leg, a cancel or replace sent, or the
        outcome of an order that is done."""
        kind = record.get("k")
        if kind == "done":
            status = str(record["st"])
            if status not in DONE:
                raise ValueError(f"OrdStatus {status!r} is not a done one")
            outcomes[str(record["oid"])] = (status, int(record["cum"]), int(record["val"]))
            return
        if kind == "new":
            instrument = Instrument(record["sym"], record["ticket"], int(record["scale"]))
            order = FixOrder(
                record["cl"],
                str(record["id"]),
                record["acct"],
                int(record["aid"]),
                instrument,
                record["side"],
                int(record["px"]),
                int(record["qty"]),
                int(record["id"]),
            )
            orders[order.fix_order_id] = order
            legs[order.fix_order_id] = 0
            self.by_cl_ord_id[order.cl_ord_id] = order
            return
        found = orders.get(str(record.get("oid")))
        if found is None:
            return
        self.by_cl_ord_id[record["cl"]] = found
        if kind == "leg":
            # The cancel half of a replace is done: a new leg, whose ClOrdID, price and OrderQty
            # hold only if the rules accepted it.
            decision = self.gateway.decided.get((found.account_id, int(record["id"])))
            found.pending = None
            found.cum_qty, found.cum_value = int(record["cum"]), int(record["val"])
            found.order_id = int(record["id"])
            legs[found.fix_order_id] = found.cum_qty
            if decision is not None and decision[1].accepted:
                found.cl_ord_id = record["cl"]
                found.price, found.quantity = int(record["px"]), int(record["qty"])
        elif kind in ("F", "G"):
            found.pending = Pending(
                kind, record["cl"], int(record["px"]), int(record["qty"]), int(record["ts"])
            )

    def _settle(self, order: FixOrder, before: int, outcome: Outcome | None) -> None:
        """Status and fills of a restored order from its live leg's journaled decision and answers;
        for one the gateway no longer keeps (done before its last 100,000 done orders), from its
        outcome line, or lost when it has none."""
        gw = self.gateway
        key = (order.account_id, order.order_id)
        decision = gw.decided.get(key)
        order.outcome_recorded = outcome is not None
        if decision is None:
            order.pending = None
            if outcome is not None:
                order.status, order.cum_qty, order.cum_value = outcome
            elif order.order_id <= gw.forgotten.get(order.account_id, order.order_id - 1):
                # Its record was dropped (an id at or below the highest dropped one of its account
                # is done, or never reached the card just before a crash): not known to be refused.
                order.status, order.outcome_lost = "8", True
            else:
                order.status = "8"  # never reached the card (the gateway stopped first)
            return
        if not decision[1].accepted:
            order.status, order.pending = "8", None  # refused by the rules
            return
        order.cum_qty = before
        last: MsgType | None = None
        for msg_type, price, qty in gw.history.get(key, ()):
            last = msg_type
            if msg_type is MsgType.FILL:
                order.cum_qty += qty
                order.cum_value += qty * price
        open_order = gw.open.get(key)
        if open_order is not None:
            order.status = "1" if order.cum_qty else "0"
            gw.follow.closed(key, open_order)  # this session's from now on: no login's to follow
            open_order.session = self
            open_order.user = self.config.sender_comp_id
            self.by_order_id[order.order_id] = order
            return
        order.pending = None
        if last is MsgType.CANCELLED:
            order.status = "4"
        elif last is MsgType.EXCH_REJECT:
            order.status = "8"
        else:
            order.status = "2"

    def _call(self, request: Request, method: Callable[..., None], *args: Any) -> None:
        self._request = request
        try:
            method(self, *args)
        finally:
            self._request = None

    # ------------------------------------------------------------------ outbound

    def frame(self, msg_type: MsgType, **values: Any) -> bytes:
        """Called by the gateway's queue(): the FIX messages for this frame, held until the flush."""
        out = self._translate(msg_type, values)
        self._tokens += 1
        self._ready[self._tokens] = out
        return self._tokens.to_bytes(8, "little")

    def deliver(self, token: bytes) -> None:
        out = self._ready.pop(int.from_bytes(token, "little"), None)
        if out:
            self._send(out)

    def _send(self, out: list[Outbound]) -> None:
        self.send_fix(out)

    def close(self) -> None:
        pass  # a FIX session is closed by its Logout, which the LOGOUT frame sends

    def _translate(self, msg_type: MsgType, values: dict[str, Any]) -> list[Outbound]:
        request = self._request
        if msg_type is MsgType.LOGOUT:
            reason = Reason(values.get("reason", 0))
            return [("5", [(58, f"logged out by the gateway: {reason.name}")])]
        if msg_type in (MsgType.ACCEPTED, MsgType.REJECTED) and request is not None:
            request.answered = True
            if msg_type is MsgType.ACCEPTED:
                return self._accepted(request)
            return self._rejected(request, values)
        if msg_type in (MsgType.FILL, MsgType.EXCH_REJECT, MsgType.CANCELLED):
            order = self.by_order_id.get(values["order_id"])
            if order is not None and order.account_id == values["account_id"]:
                return self._execution(order, msg_type, values)
        return []

    def _accepted(self, request: Request) -> list[Outbound]:
        order = request.order
        if request.kind == "replacement":
            assert request.pending is not None
            orig, order.cl_ord_id = order.cl_ord_id, request.cl_ord_id
            order.price, order.quantity = request.pending.price, request.pending.quantity
            order.status = "1" if order.cum_qty else "0"
            return [self._report(order, "5", orig=orig)]
        order.status = "0"
        return [self._report(order, "0")]

    def _rule_text(self, values: dict[str, Any]) -> str:
        mask = int.from_bytes(values.get("failed_mask") or bytes(FAILED_MASK_BYTES), "little")
        names = [name for i, name in enumerate(self._rule_names) if mask >> i & 1]
        return "risk rules failed: " + ", ".join(names)

    def _rejected(self, request: Request, values: dict[str, Any]) -> list[Outbound]:
        order = request.order
        reason = Reason(values["reason"])
        text = request.text or (
            self._rule_text(values) if reason is Reason.RULE else TEXT.get(reason, reason.name)
        )
        code = request.rej_reason or ORD_REJ_REASON.get(reason, OTHER)
        if request.kind in ("cancel", "replace"):
            response_to = "2" if request.kind == "replace" else "1"
            cxl = "1" if reason is Reason.UNKNOWN_ORDER else "99"
            return [self._cancel_reject(order, request.cl_ord_id, order.cl_ord_id, response_to, cxl, text)]
        self.by_order_id.pop(order.order_id, None)
        if request.kind == "replacement":
            order.status = "8"
            text = f"the replacement was rejected ({text}); the original order is cancelled"
            return [
                self._report(
                    order, "8", cl_ord_id=request.cl_ord_id, orig=order.cl_ord_id, text=text, rej=code
                )
            ]
        order.status = "8"
        return [self._report(order, "8", text=text, rej=code)]

    def _execution(self, order: FixOrder, msg_type: MsgType, values: dict[str, Any]) -> list[Outbound]:
        out: list[Outbound] = []
        pending = order.pending
        if msg_type is MsgType.FILL:
            qty, px = int(values["exec_quantity"]), int(values["exec_price"])
            order.cum_qty += qty
            order.cum_value += qty * px
            order.status = "2" if order.cum_qty >= order.quantity else "1"
            out.append(self._report(order, "F", last=(qty, px)))
        elif msg_type is MsgType.EXCH_REJECT:
            order.status = "8"
            out.append(self._report(order, "8", text="rejected by the exchange", rej="0"))
        elif pending is not None and pending.kind == "G":
            # The cancel half of a replace: the new half runs on the next loop turn, after this
            # cancel's journal commit, as a separate order through the rules.
            asyncio.get_running_loop().call_soon(self._replacement, order)
            return out
        else:
            order.status = "4"
            if pending is not None:
                order.pending = None
                out.append(self._report(order, "4", cl_ord_id=pending.cl_ord_id, orig=order.cl_ord_id))
            else:
                out.append(self._report(order, "4", text="cancelled by the gateway or the exchange"))
        if order.done:
            self.by_order_id.pop(order.order_id, None)
            if order.pending is not None:
                late = order.pending
                order.pending = None
                response_to = "2" if late.kind == "G" else "1"
                out.append(
                    self._cancel_reject(
                        order, late.cl_ord_id, order.cl_ord_id, response_to, "0", "the order is done"
                    )
                )
        return out

    def _report(
        self,
        order: FixOrder,
        exec_type: str,
        cl_ord_id: str | None = None,
        orig: str | None = None,
        last: tuple[int, int] | None = None,
        text: str | None = None,
        rej: str | None = None,
        exec_id: str | None = None,  # given: a status report, which is not an execution
    ) -> Outbound:
        if exec_id is None:
            order.execs += 1
        scale = order.instrument.price_scale
        avg = format_price(0, scale)
        if order.cum_qty:
            avg = str(
                (Decimal(order.cum_value) / order.cum_qty)
                .scaleb(-scale)
                .quantize(Decimal(1).scaleb(-scale - 4))
            )
        body = [
            (37, order.fix_order_id),
            (11, cl_ord_id or order.cl_ord_id),
        ]
        if orig is not None:
            body.append((41, orig))
        if exec_id is None:
            exec_id = (
                f"{order.order_id}.{order.execs}"
                if order.order_id
                else f"{order.fix_order_id}.R{time.time_ns()}"
            )
        body += [
            (17, exec_id),
            (150, exec_type),
            (39, order.status),
        ]
        if order.account:
            body.append((1, order.account))
        body += [
            (55, order.instrument.symbol),
            (54, order.side),
            (38, str(order.quantity)),
            (44, format_price(order.price, scale)),
            (40, "2"),
        ]
        if last is not None:
            body += [(32, str(last[0])), (31, format_price(last[1], scale))]
        body += [(151, str(order.leaves)), (14, str(order.cum_qty)), (6, avg)]
        if rej is not None:
            body.append((103, rej))
        if text:
            body.append((58, text))
        body.append((60, _utc_now()))
        self._record_outcome(order)
        return ("8", body)

    def _cancel_reject(
        self, order: FixOrder | None, cl_ord_id: str, orig: str, response_to: str, reason: str, text: str
    ) -> Outbound:
        body = [
            (37, order.fix_order_id if order is not None else "NONE"),
            (11, cl_ord_id),
            (41, orig),
            (39, order.status if order is not None else "8"),
            (434, response_to),
            (102, reason),
            (58, text),
        ]
        return ("9", body)


def _utc_now() -> str:
    now = datetime.now(UTC)
    return now.strftime("%Y%m%d-%H:%M:%S.") + f"{now.microsecond // 1000:03d}"
