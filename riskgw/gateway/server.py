"""`riskgw serve`: the gateway. Brokers on one side, the exchange on the other, the card between.

Order path, all on one asyncio loop:

- A broker's NEW_ORDER from a logged-on session, for an account the session may trade, runs as a
  NEW event on the card. Accepted: ACCEPTED to the broker and NEW_ORDER to the exchange, and the
  order joins the open-order book (by account and order id). Rejected: REJECTED with reason RULE
  and the failed-rule mask.
- FILL, EXCH_REJECT and CANCELLED from the exchange run as FILL, REJECT and CANCEL events with the
  fields the gateway recorded for the order (the exchange's echo is not trusted), and go on to the
  session that sent the order.
- A broker's CANCEL_REQUEST for an open order goes to the exchange; otherwise REJECTED UNKNOWN_ORDER.
- An order's answers follow its login once the session that sent it is gone (riskgw.gateway.follow).

Every card event and its decision goes to the journal first. Replies and forwarded frames wait in
an outbox; one callback per loop turn commits the journal (one write, one fsync for everything that
arrived together, from every connection) and only then writes the outbox. So nothing leaves
before its event is on disk, and the fsync cost is shared by a burst.
"""

from __future__ import annotations

import asyncio
import hmac
import struct
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from riskgw.card.driver import CardDriver
from riskgw.card.lockstep import LockstepCard
from riskgw.card.select import card_kind
from riskgw.card.soft import SoftCard
from riskgw.doe.isa import Event, EventField
from riskgw.doe.values import decode_char
from riskgw.engine.engine import EVENTS, Decision, event_inputs
from riskgw.engine.table import Value
from riskgw.gateway.audit import AuditLog
from riskgw.gateway.config import EXCHANGE_BACKLOG_LIMIT, HELD_REPLIES_LIMIT, User
from riskgw.gateway.fastpath import EXEC_FIELDS, clean_body, order_inputs
from riskgw.gateway.follow import Follow, followed_login, takes_answers
from riskgw.gateway.journal import Entry, Journal
from riskgw.gateway.jsync import JournalSyncer
from riskgw.gateway.kill import KillSwitches
from riskgw.gateway.link import FrameLink, order_values
from riskgw.gateway.metrics import Histogram
from riskgw.gateway.protocol import (
    FAILED_MASK_BYTES,
    HEADER,
    LAYOUTS,
    Frame,
    MsgType,
    ProtocolError,
    Reason,
    encode,
)
from riskgw.gateway.rulestats import RuleStats

if TYPE_CHECKING:
    from riskgw.gateway.deploy import Deployer
    from riskgw.gateway.snapshot import Snapshotter

OrderKey = tuple[int, int]  # (account_id, order_id)
DECIDED_WINDOW = 100_000  # done orders whose answers a repeat of the order gets (Gateway.decided)
_ANSWER_OF = {Event.FILL: MsgType.FILL, Event.REJECT: MsgType.EXCH_REJECT, Event.CANCEL: MsgType.CANCELLED}
_EVENT_OF = {answer: event for event, answer in _ANSWER_OF.items()}
_EXEC_PRICE, _EXEC_QUANTITY = int(EventField.EXEC_PRICE), int(EventField.EXEC_QUANTITY)
# REJECTED's fields after the header, for a rule reject's frame built without encode()
_REJECTED = struct.Struct("<" + "".join(f.fmt for f in LAYOUTS[MsgType.REJECTED].fields))
if HEADER.size + _REJECTED.size != LAYOUTS[MsgType.REJECTED].frame_struct.size:
    raise ImportError("REJECTED's layout has padding: see _REJECTED")
MAX_RULES = FAILED_MASK_BYTES * 8
_MIN_BATCH = 4  # NEW_ORDERs arrived together from which the card's batch entry is worth its setup


def failed_mask(decision: Decision) -> bytes:
    mask = 0
    for rule in decision.failed:
        mask |= 1 << rule
    return mask.to_bytes(FAILED_MASK_BYTES, "little")


@dataclass(slots=True)
class OpenOrder:
    values: dict[str, Any]
    session: BrokerSession | None  # None: accepted before a restart (see riskgw.gateway.follow)
    remaining: int
    user: str | None = None  # the login that sent it (None: not known, see Gateway.restore_open_orders)
    body: bytes | None = None  # its NEW_ORDER's body when that is what encoding its values gives
    inputs: tuple[Value, ...] | None = None  # its NEW's input words (None: not known yet)


def _order_from_inputs(inputs: Sequence[Value]) -> dict[str, Any]:
    words = [int(w or 0) for w in inputs[EventField.TICKET_ID_W0 : EventField.TICKET_ID_W1 + 1]]
    return {
        "order_id": inputs[EventField.ORDER_ID],
        "account_id": inputs[EventField.ACCOUNT_ID],
        "direction": inputs[EventField.DIRECTION],
        "ticket_id": decode_char(words),
        "price": inputs[EventField.PRICE],
        "quantity": inputs[EventField.QUANTITY],
        "ts": inputs[EventField.TS],
    }


@dataclass
class Counters:
    orders: int = 0
    accepted: int = 0
    rejected: int = 0
    protocol_errors: int = 0
    exchange_events: int = 0
    unknown_exchange_events: int = 0
    resync_cancels: int = 0  # orders open here that the exchange no longer held after a reconnect
    resync_mismatches: int = 0  # orders the exchange held less (or more) of than the gateway
    repeated: int = 0  # NEW_ORDERs identical to one already decided, answered again
    replies_held: int = 0  # sessions' replies held until the exchange's socket drained (see flush)
    backlogs: int = 0  # times new orders began to be refused because the exchange did not read
    sessions_held_back: int = 0  # times a session was not read from for its held replies
    cancels_merged: int = 0  # cancel requests for an order whose cancel still waited for the exchange
    answers_kept: int = 0  # answers kept for a login none of whose sessions was on (follow.py)
    answers_delivered: int = 0  # of those, sent at the login's next LOGON
    answers_dropped: int = 0  # kept ones dropped past ANSWERS_KEPT, or any for a login not in the config


def _exec_values(frame: Frame) -> dict[str, Any]:
    return {"exec_price": frame["exec_price"], "exec_quantity": frame["exec_quantity"]}


def _sender(session: BrokerSession) -> str | None:
    """The login journaled with a session's NEW: its orders' answers follow it across sessions and
    restarts. None for a session whose orders do not follow their login (a FIX session's follow
    its order map)."""
    return session.user.name if session.user is not None and session.orders_follow_login else None


def _write(link: FrameLink, frames: list[bytes | None], now: float) -> bool:
    """Write a connection's frames with one call; None closes it there (later frames are dropped).
    False: the connection is gone or closing, and nothing was written."""
    transport = link.transport
    if transport is None or transport.is_closing():
        return False
    closing = None in frames
    if closing:
        frames = frames[: frames.index(None)]
    data = cast(list[bytes], frames)
    if len(data) == 1:
        transport.write(data[0])
    elif data:
        transport.writelines(data)  # one write for a socket; one frame at a time for a FIX session
    link.last_tx = now
    if closing:
        link.close()
    return True


class Gateway:
    def __init__(
        self,
        card: CardDriver,
        journal: Journal,
        users: dict[str, User],
        heartbeat_ms: int,
        log: Callable[[str], None] | None = None,
        heartbeat_timeout: int = 3,
    ) -> None:
        self.card = card
        self._lockstep = card if isinstance(card, LockstepCard) else None
        # a card whose process_many is one call for the batch (not a loop, nor a lockstep pair)
        self._batch_card = card if isinstance(card, SoftCard) else None
        self.journal = journal
        self.users = users
        self.heartbeat_ms = heartbeat_ms
        self.heartbeat_timeout = heartbeat_timeout  # heartbeat intervals of silence before a logout
        self.watchdog: asyncio.Task[None] | None = None
        self.syncer: JournalSyncer | None = None  # journal_sync = "interval"
        self.open: dict[OrderKey, OpenOrder] = {}
        # NEWs decided, by account and order id, with their inputs and the session that sent them:
        # a broker that sends the same order again on another connection (it lost the answer, e.g.
        # across a restart) gets the same answer again. Kept: every open order, and the last
        # `decided_window` orders that are done (rejected, filled, cancelled, rejected by the
        # exchange); an older one's record is dropped and its account's `forgotten` id rises to
        # its id, so an order sent again with an id at or below it is refused, never run twice.
        self.decided: dict[OrderKey, tuple[tuple[Value, ...], Decision, BrokerSession | None]] = {}
        # The exchange's answers on each order (type, exec_price, exec_quantity), to go with the
        # recorded ACCEPTED when an order is sent again: its sender may have missed them too.
        self.history: dict[OrderKey, list[tuple[MsgType, int, int]]] = {}
        self.decided_window = DECIDED_WINDOW
        self._done: deque[OrderKey] = deque()  # orders done, oldest first, whose records are kept
        self.forgotten: dict[int, int] = {}  # account -> highest order id whose record was dropped
        self.exchange: ExchangeUplink | None = None
        self.exchange_address: tuple[str, int] | None = None  # set: reconnect when the link drops
        self.resyncing: set[OrderKey] = set()  # orders asked about with STATUS_REQUEST
        self.reconnecting: asyncio.Task[None] | None = None
        self.closing = False
        self.write_buffer_high = 1 << 20  # bytes of unread replies before a broker is not read from
        self.exchange_backlog_limit = EXCHANGE_BACKLOG_LIMIT
        self.held_replies_limit = HELD_REPLIES_LIMIT
        # Set (the loop time it began) while new orders are refused with EXCHANGE_BACKLOG: the
        # exchange's unread bytes passed exchange_backlog_limit; cleared when it has read them all.
        self.backlog_since: float | None = None
        self._backlog_refused = 0  # orders refused in the current backlog, for its log line
        # Orders a CANCEL_REQUEST was queued for since the exchange link last had nothing waiting in
        # user space: while it has, another cancel of the same order adds nothing and is not sent.
        self._cancels_waiting: set[OrderKey] = set()
        self.sessions: set[BrokerSession] = set()
        self.counters = Counters()
        self.kill = KillSwitches()
        self.rejects_by_reason: dict[str, int] = {}
        self.rule_failures = [0] * len(card.image.rules)
        self.card_latency: dict[str, Histogram] = {e.name: Histogram() for e in EVENTS}
        self._card_latency = {e: self.card_latency[e.name] for e in EVENTS}  # the same, by event
        self.commit_latency = Histogram()
        self.audit: AuditLog | None = None
        self._rule_names = [r.name for r in card.image.rules]
        self.rule_stats = RuleStats()
        self.rule_stats.program(self._rule_names)
        self.deployer: Deployer | None = None  # set when the gateway keeps deployments
        self.snapshots: Snapshotter | None = None  # set when the gateway takes state snapshots
        self.status_parts: dict[str, Callable[[], Any]] = {}  # more sections of status(), e.g. "fix"
        self.failed: BaseException | None = None  # set when the journal cannot be written
        self.stopped = asyncio.Event()
        self._log = log or (lambda text: print(f"gateway: {text}", file=sys.stderr, flush=True))
        # Frames waiting for the next flush, by connection in the order they were first queued
        # to (None: close the connection there), and the connections queued an ACCEPTED since.
        self._out: dict[FrameLink, list[bytes | None]] = {}
        self._accepting: set[FrameLink] = set()
        # Sessions' frames held until the exchange's socket drains (see flush), in order.
        self._held: dict[FrameLink, list[bytes | None]] = {}
        self._held_back: set[BrokerSession] = set()  # not read from until their held frames leave
        # Sessions read since the last flush, and those not read again until the next (see
        # BrokerSession.data_received).
        self._read: set[BrokerSession] = set()
        self._read_twice: list[BrokerSession] = []
        self._flush_pending = False
        self.follow = Follow(self)  # where answers go once an order's session is gone

    def restore_open_orders(self, entries: Sequence[Entry]) -> None:
        """Rebuild the open-order book from journaled events, as the card's state was rebuilt."""
        for entry in entries:
            key = (int(entry.inputs[EventField.ACCOUNT_ID] or 0), int(entry.inputs[EventField.ORDER_ID] or 0))
            answer = _ANSWER_OF.get(entry.event)
            if answer is not None and key in self.decided:
                price, qty = (
                    int(entry.inputs[f] or 0) for f in (EventField.EXEC_PRICE, EventField.EXEC_QUANTITY)
                )
                self.history.setdefault(key, []).append((answer, price, qty))
            if entry.event is Event.NEW:
                self.decided[key] = (tuple(entry.inputs), entry.decision, None)
                if entry.decision.accepted:
                    values = _order_from_inputs(entry.inputs)
                    opened = self.open[key] = OpenOrder(values, None, values["quantity"], entry.sender)
                    self.follow.opened(key, opened)
                else:
                    self._order_done(key)
            elif entry.event is Event.FILL:
                order = self.open.get(key)
                if order is not None:
                    order.remaining -= int(entry.inputs[EventField.EXEC_QUANTITY] or 0)
                    if order.remaining <= 0:
                        del self.open[key]
                        self.follow.closed(key, order)
                        self._order_done(key)
            elif (gone := self.open.pop(key, None)) is not None:
                self.follow.closed(key, gone)
                self._order_done(key)

    def _order_done(self, key: OrderKey) -> None:
        """An order is done (no longer open): its record joins the window of done orders kept, and
        the oldest one past `decided_window` is dropped."""
        done = self._done
        done.append(key)
        while len(done) > self.decided_window:
            old = done.popleft()
            if old in self.open:
                continue  # its id was decided again (a rejected order's, with other fields): it is open
            self.decided.pop(old, None)
            self.history.pop(old, None)
            account, order_id = old
            if order_id > self.forgotten.get(account, order_id - 1):
                self.forgotten[account] = order_id

    async def connect_exchange(self) -> ExchangeUplink:
        """Open the exchange link (OSError when the exchange cannot be reached)."""
        assert self.exchange_address is not None
        loop = asyncio.get_running_loop()
        _, uplink = await loop.create_connection(lambda: ExchangeUplink(self), *self.exchange_address)
        self.exchange = uplink
        return uplink

    async def reconnect(self) -> None:
        """Try the exchange again, backing off from 50 ms to 2 s, until it answers or the gateway stops."""
        delay = 0.05
        while not self.closing:
            try:
                await self.connect_exchange()
            except OSError:
                await asyncio.sleep(delay)
                delay = min(2 * delay, 2.0)
                continue
            self._log(f"exchange connection back ({len(self.open)} orders open): asking for their state")
            self.resync()
            return

    def resync(self) -> None:
        """Ask the exchange about every order open here, after the link dropped or the gateway
        restarted (answers sent meanwhile may be lost); each ORDER_STATUS settles one order."""
        if self.exchange is None:
            return
        for account, order_id in self.open:
            self.resyncing.add((account, order_id))
            self.queue(self.exchange, MsgType.STATUS_REQUEST, order_id=order_id, account_id=account)

    def _order_status(self, frame: Frame) -> None:
        key = (frame["account_id"], frame["order_id"])
        if key not in self.resyncing:
            self._log(f"exchange: ORDER_STATUS for order {key[1]} of account {key[0]}, not asked about")
            return
        self.resyncing.discard(key)
        order = self.open.get(key)
        left = frame["exec_quantity"]
        if order is None or left == order.remaining:
            return  # settled by an answer that came first, or open on both sides alike
        if left == 0:
            # The exchange holds none of it (it cancels a dropped connection's orders): the rest is
            # cancelled here too, through the card's CANCEL flow, and the broker is told.
            self.counters.resync_cancels += 1
            self._log(f"exchange holds none of order {key[1]} of account {key[0]}: cancelled here")
            values = {**order.values, "exec_price": 0, "exec_quantity": order.remaining}
            self.exchange_frame(Frame(MsgType.CANCELLED, 0, values))
            return
        # Fills may have been lost with the link; their prices are unknown here, so the order is left
        # as the gateway has it and an operator is told.
        self.counters.resync_mismatches += 1
        self._log(
            f"exchange holds {left} of order {key[1]} of account {key[0]}, the gateway {order.remaining}: "
            "fills may have been lost while the link was down; check the order at the exchange"
        )

    # ------------------------------------------------------------------ sessions

    async def watch_heartbeats(self) -> None:
        """Log out sessions silent for heartbeat_timeout intervals (a LOGON counts from the connect),
        and send a HEARTBEAT to logged-on sessions that were sent nothing for an interval."""
        loop = asyncio.get_running_loop()
        interval = self.heartbeat_ms / 1_000
        limit = interval * self.heartbeat_timeout
        while not self.closing:
            await asyncio.sleep(interval / 2)
            now = loop.time()
            for session in list(self.sessions):
                if session.paused_at is not None or not session.is_open or session.leaving:
                    continue  # a broker held back for not reading is not silent; it is not read
                if now - session.last_rx > limit:
                    self._log(
                        f"{session.peer}: nothing for {now - session.last_rx:.1f} s "
                        f"({self.heartbeat_timeout} heartbeats of {self.heartbeat_ms} ms): logging it out"
                    )
                    self.queue(session, MsgType.LOGOUT, reason=int(Reason.HEARTBEAT_TIMEOUT))
                    self.queue_close(session)
                elif session.user is not None and now - session.last_tx >= interval:
                    self.queue(session, MsgType.HEARTBEAT)

    def session_closed(self, session: BrokerSession) -> None:
        """The replies it was never written follow its login (riskgw.gateway.follow); then
        cancel-on-disconnect: ask the exchange to cancel the open orders the session sent, when its
        login says so (their answers run through the card and follow the login too)."""
        self.sessions.discard(session)
        unsent = [*self._held.pop(session, ()), *self._out.pop(session, ())]
        self._accepting.discard(session)
        self._held_back.discard(session)
        self.follow.session_gone(session, unsent)
        user = session.user
        if user is None or not user.cancel_on_disconnect or self.closing:
            return
        mine = [key for key, order in self.open.items() if order.session is session]
        if not mine:
            return
        self._log(f"{session.peer}: {user.name} disconnected with {len(mine)} open orders: cancelling them")
        if self.exchange is None:
            return
        for key in mine:
            self.cancel_at_exchange(key)

    # ------------------------------------------------------------------ control

    def set_kill(
        self, on: bool, account: int | None, user: str | None, everything: bool, cancel_open: bool = False
    ) -> int:
        """Turn a kill switch on or off (saved before this returns); with cancel_open, also ask the
        exchange to cancel the open orders the switch covers. Returns the number of cancels sent."""
        self.kill.set(on, account, user, everything)
        scope = "everything" if everything else f"account {account}" if user is None else f"user {user}"
        self._log(f"kill switch {'on' if on else 'off'} for {scope}")
        if not (on and cancel_open) or self.exchange is None:
            return 0
        sent = 0
        for key, order in self.open.items():
            if everything or key[0] == account or (user is not None and order.user == user):
                sent += self.cancel_at_exchange(key)
        return sent

    def cancel_at_exchange(self, key: OrderKey) -> bool:
        """Ask the exchange to cancel an open order. Not sent again (False) while a cancel of it
        still waits in the link's user-space buffer: the exchange has not read that one yet, and
        repeats would only grow the backlog of an exchange that does not read."""
        assert self.exchange is not None
        if key in self._cancels_waiting and self.exchange.backed_up:
            self.counters.cancels_merged += 1
            return False
        self._cancels_waiting.add(key)
        self.queue(self.exchange, MsgType.CANCEL_REQUEST, order_id=key[1], account_id=key[0])
        return True

    def program_changed(self) -> None:
        """A deployment swapped the card's program: rule ids change, counts by rule name carry on."""
        names = [r.name for r in self.card.image.rules]
        by_name = dict(zip(self._rule_names, self.rule_failures, strict=True))
        self.rule_failures = [by_name.get(n, 0) for n in names]
        self._rule_names = names
        self.rule_stats.program(names)

    def status(self) -> dict[str, Any]:
        return {
            "program": None if self.deployer is None else self.deployer.version,
            **self.rule_stats.as_dict(),
            "kill": self.kill.as_dict(),
            "sessions": len(self.sessions),
            "logged_on": sorted(s.user.name for s in self.sessions if s.user is not None),
            "open_orders": len(self.open),
            "answers_waiting": self.follow.waiting(),
            "exchange": self.exchange is not None,
            "exchange_backlog": self.backlog_status(),
            "journal_records": self.journal.records,
            "state_hash": self.card.state_hash(),
            "card": self.card.status() if isinstance(self.card, LockstepCard) else None,
            "card_kind": card_kind(self.card),
            "counters": vars(self.counters).copy(),
            **{name: part() for name, part in self.status_parts.items()},
        }

    def backlog_status(self) -> dict[str, Any]:
        """What waits for the exchange to read: bytes in the link's user-space buffer, whether new
        orders are refused for it (and for how long), and the replies held back meanwhile."""
        since = self.backlog_since
        return {
            "bytes": self.exchange.buffered if self.exchange is not None else 0,
            "limit": self.exchange_backlog_limit,
            "refusing": since is not None,
            "seconds": 0.0 if since is None else round(asyncio.get_running_loop().time() - since, 3),
            "held_replies": sum(len(frames) for frames in self._held.values()),
            "held_sessions": len(self._held),
            "sessions_not_read": len(self._held_back),
        }

    # ------------------------------------------------------------------ outbox

    def queue(self, link: FrameLink, msg_type: MsgType, **values: Any) -> None:
        out = self._out.get(link)
        if out is None:
            out = self._out[link] = []
            self._schedule()
        out.append(link.frame(msg_type, **values))
        if msg_type is MsgType.ACCEPTED:
            self._accepting.add(link)

    def queue_body(self, link: FrameLink, msg_type: MsgType, body: bytes) -> None:
        out = self._out.get(link)
        if out is None:
            out = self._out[link] = []
            self._schedule()
        out.append(link.frame_body(msg_type, body))
        if msg_type is MsgType.ACCEPTED:
            self._accepting.add(link)

    def queue_raw(self, link: FrameLink, data: bytes) -> None:
        """Bytes already made for the link (a FIX session's token for its own messages), to leave in
        order with its other frames: held with them while the exchange is backed up."""
        out = self._out.get(link)
        if out is None:
            out = self._out[link] = []
            self._schedule()
        out.append(data)

    def queue_close(self, link: FrameLink) -> None:
        link.leaving = True  # it takes no more answers, and nothing more it sends is run
        out = self._out.get(link)
        if out is None:
            out = self._out[link] = []
            self._schedule()
        out.append(None)

    def _schedule(self) -> None:
        if not self._flush_pending:
            self._flush_pending = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        """Commit the journal, then write what waited for it: the exchange's frames first, then
        each other connection's, one write per connection.

        A session's frames that carry an ACCEPTED wait (with every later frame to that session)
        while the exchange's socket holds a forward in user space: they leave when the kernel has
        taken all of it (`release_held`). So an ACCEPTED never leaves before its order's NEW_ORDER
        is in the kernel's socket buffer, where a killed gateway cannot lose it."""
        self._flush_pending = False
        self._read.clear()
        if self._read_twice:
            again, self._read_twice = self._read_twice, []
            for session in again:
                session.read_again()
        try:
            if self.syncer is not None and self.syncer.failed is not None:
                raise self.syncer.failed
            if self.journal.pending:
                start = time.perf_counter_ns()
                self.journal.commit()
                self.commit_latency.observe_ns(time.perf_counter_ns() - start)
        except OSError as exc:
            # Without the journal no reply may leave: drop them, tell every broker why, and stop.
            self._out.clear()
            self._accepting.clear()
            self._held.clear()
            self._held_back.clear()  # every session is logged out below
            if self.failed is None:
                self.failed = exc
                self._log(f"cannot write the journal {self.journal.path}: {exc.strerror}; stopping")
                for session in list(self.sessions):
                    session.send(MsgType.LOGOUT, reason=int(Reason.JOURNAL_FAILED))
                    session.close()
                self.stopped.set()
            return
        out, self._out = self._out, {}
        accepting, self._accepting = self._accepting, set()
        now = asyncio.get_running_loop().time()
        exchange = self.exchange
        blocked = False
        if exchange is not None:
            frames = out.pop(exchange, None)
            if frames is not None:
                _write(exchange, frames, now)
            backlog = exchange.buffered
            blocked = backlog > 0
            if not blocked:
                self._cancels_waiting.clear()  # every cancel queued is in the kernel
            elif backlog > self.exchange_backlog_limit and self.backlog_since is None:
                self._backlog_began(backlog, now)
        held = self._held
        limit = self.held_replies_limit
        for link, frames in out.items():
            waiting = held.get(link)
            if waiting is not None:
                waiting.extend(frames)  # behind what already waits: frames leave in order
            elif blocked and link in accepting:
                waiting = held[link] = frames
                self.counters.replies_held += 1
            else:
                self._write_session(link, frames, now)
                continue
            if len(waiting) > limit and isinstance(link, BrokerSession) and link not in self._held_back:
                # It sends faster than its answers may leave: it is not read from until they do.
                self._held_back.add(link)
                self.counters.sessions_held_back += 1
                self._log(
                    f"{link.peer}: {len(waiting)} replies wait for the exchange to read "
                    f"(held_replies_limit {limit}): not reading this session until they leave"
                )
                link.hold_back()

    def _write_session(self, link: FrameLink, frames: list[bytes | None], now: float) -> None:
        """A session's frames; a session found gone keeps its replies for its login (follow.py)."""
        if not _write(link, frames, now) and isinstance(link, BrokerSession):
            self.follow.unsent(link, frames)

    def _backlog_began(self, backlog: int, now: float) -> None:
        self.backlog_since = now
        self._backlog_refused = 0
        self.counters.backlogs += 1
        self._log(
            f"the exchange is not reading: {backlog} bytes wait for it (exchange_backlog_limit "
            f"{self.exchange_backlog_limit}); new orders are refused with EXCHANGE_BACKLOG until it "
            "has read them"
        )

    def release_held(self, read: bool = True) -> None:
        """The exchange's socket took every byte given to it (`read`), or the link is gone and the
        resync of its reconnect settles the orders whose forwards it lost: the backlog is over,
        the held frames leave, and the sessions held back for them are read from again."""
        self._cancels_waiting.clear()
        since = self.backlog_since
        if since is not None:
            self.backlog_since = None
            took = asyncio.get_running_loop().time() - since
            how = "has read its backlog" if read else "connection dropped with its backlog"
            self._log(
                f"the exchange {how} after {took:.1f} s ({self._backlog_refused} new orders refused "
                "with EXCHANGE_BACKLOG meanwhile)"
            )
        if self._held:
            held, self._held = self._held, {}
            now = asyncio.get_running_loop().time()
            for link, frames in held.items():
                self._write_session(link, frames, now)
        if self._held_back:
            sessions, self._held_back = self._held_back, set()
            for session in sessions:
                session.let_go()

    # ------------------------------------------------------------------ card

    def _audit(
        self, source: str, event: str, values: dict[str, Any], verdict: str, reason: str, rules: str
    ) -> None:
        if self.audit is not None:
            get = values.get
            self.audit.record(
                (
                    time.time_ns(),
                    source,
                    event,
                    get("order_id"),
                    get("account_id"),
                    get("ticket_id"),
                    get("direction"),
                    get("price"),
                    get("quantity"),
                    get("exec_price"),
                    get("exec_quantity"),
                    verdict,
                    reason,
                    rules,
                )
            )

    def _run(
        self,
        event: Event,
        values: dict[str, Any],
        inputs: Sequence[Value] | None = None,
        source: str = "exchange",
        exec_values: dict[str, Any] | None = None,
        sender: str | None = None,
    ) -> Decision:
        """Run an event on the card and journal it; `exec_values` add to `values` (for the audit)."""
        if inputs is None:
            inputs = order_inputs(values if exec_values is None else {**values, **exec_values})
        start = time.perf_counter_ns()
        decision = self.card.process(event, inputs)
        self._card_latency[event].observe_ns(time.perf_counter_ns() - start)
        self._record(event, values, inputs, decision, source, exec_values, sender)
        return decision

    def _record(
        self,
        event: Event,
        values: dict[str, Any],
        inputs: Sequence[Value],
        decision: Decision,
        source: str = "exchange",
        exec_values: dict[str, Any] | None = None,
        sender: str | None = None,
    ) -> None:
        """A decided event: the journal (with `sender`, see _sender), the counts by rule, the audit."""
        self.journal.append(event, inputs, decision, sender)
        for rule in decision.failed:
            self.rule_failures[rule] += 1
        if event is Event.NEW:
            self.rule_stats.record(int(inputs[EventField.ACCOUNT_ID] or 0), decision.failed, self._rule_names)
        if self.audit is not None:
            if event is not Event.NEW:
                verdict, reason = "APPLIED", ""
            elif decision.accepted:
                verdict, reason = "ACCEPT", ""
            else:
                verdict, reason = "REJECT", Reason.RULE.name
            rules = ";".join(self._rule_names[r] for r in decision.failed)
            if exec_values is not None:
                values = {**values, **exec_values}
            self._audit(source, event.name, values, verdict, reason, rules)

    # ------------------------------------------------------------------ broker side

    def _reject(
        self, session: BrokerSession, frame: Frame | None, reason: Reason, decision: Decision | None = None
    ) -> None:
        values = frame.values if frame is not None else {}
        self.rejects_by_reason[reason.name] = self.rejects_by_reason.get(reason.name, 0) + 1
        if decision is None and self.audit is not None:  # rule rejects are audited where they are decided
            event = (
                "GARBAGE" if frame is None else "NEW" if frame.type is MsgType.NEW_ORDER else frame.type.name
            )
            self._audit(session.user.name if session.user else "", event, values, "REJECT", reason.name, "")
        if decision is not None and frame is not None and frame.body:
            # A rule reject of an order that came over the wire protocol (a FIX session's has no
            # body and is translated from the fields): the bytes encode() gives, packed at once.
            mask = failed_mask(decision)
            body = _REJECTED.pack(
                values["order_id"], values["account_id"], reason, len(decision.failed), mask, time.time_ns()
            )
            self.queue_body(session, MsgType.REJECTED, body)
            return
        self.queue(
            session,
            MsgType.REJECTED,
            order_id=values.get("order_id", 0),
            account_id=values.get("account_id", 0),
            reason=int(reason),
            n_failed=len(decision.failed) if decision else 0,
            failed_mask=failed_mask(decision) if decision else b"",
            ts=time.time_ns(),
        )

    def protocol_error(self, session: BrokerSession, frame: Frame | None, why: str) -> None:
        self.counters.protocol_errors += 1
        self._log(f"{session.peer}: protocol error: {why}")
        self._reject(session, frame, Reason.PROTOCOL)

    def new_order(self, session: BrokerSession, frame: Frame) -> None:
        self.counters.orders += 1
        values = order_values(frame)
        key = (values["account_id"], values["order_id"])
        if session.user is None or not session.user.may_trade(values["account_id"]):
            self._reject(session, frame, Reason.NOT_PERMITTED)
            return
        known = self.decided.get(key)
        if known is not None and known[2] is not session and self._same_inputs(values, known[0]):
            self._answer_again(session, frame, key, known[1])
            return
        if known is None and key[1] <= self.forgotten.get(key[0], key[1] - 1):
            self.protocol_error(
                session,
                frame,
                f"order {key[1]} of account {key[0]}: ids up to {self.forgotten[key[0]]} belong to "
                f"orders done before the last {self.decided_window} (their answers are no longer "
                "kept); a new order needs a higher id",
            )
            return
        if self.kill.blocks(session.user.name, values["account_id"]):
            self._reject(session, frame, Reason.KILL_SWITCH)
            return
        if self._lockstep is not None and self._lockstep.halted:
            self._reject(session, frame, Reason.SHUTDOWN)
            return
        if self.exchange is None or self.failed is not None:
            self._reject(session, frame, Reason.SHUTDOWN)
            return
        if self.backlog_since is not None:
            self._backlog_refused += 1
            self._reject(session, frame, Reason.EXCHANGE_BACKLOG)
            return
        if key in self.open:
            # The book and the exchange know an order by account and id; a second open one with the
            # same id could not be told apart, so it never reaches the card.
            self.protocol_error(session, frame, f"order {key[1]} of account {key[0]} is already open")
            return
        try:
            inputs = order_inputs(values)
        except ValueError as exc:  # a ticket_id that is not valid text for a CHAR column
            self.protocol_error(session, frame, f"ticket_id: {exc}")
            return
        decision = self._run(Event.NEW, values, inputs, session.user.name, sender=_sender(session))
        self._new_decided(session, frame, values, key, inputs, decision)

    def _new_decided(
        self,
        session: BrokerSession,
        frame: Frame,
        values: dict[str, Any],
        key: OrderKey,
        inputs: tuple[Value, ...],
        decision: Decision,
    ) -> None:
        """What follows a NEW's decision: the record, the book, the replies and the forward."""
        assert session.user is not None and self.exchange is not None
        self.decided[key] = (inputs, decision, session)
        if not decision.accepted:
            self._order_done(key)
            self.counters.rejected += 1
            self._reject(session, frame, Reason.RULE, decision)
            return
        self.counters.accepted += 1
        body = clean_body(frame, values)
        order = self.open[key] = OpenOrder(
            values, session, values["quantity"], session.user.name, body, inputs
        )
        self.follow.opened(key, order)
        if body is None:
            self.queue(session, MsgType.ACCEPTED, **values)
            self.queue(self.exchange, MsgType.NEW_ORDER, **values)
        else:  # the bytes encode() would give, without encoding them twice more
            self.queue_body(session, MsgType.ACCEPTED, body)
            self.queue_body(self.exchange, MsgType.NEW_ORDER, body)

    def new_orders(self, session: BrokerSession, frames: list[Frame]) -> None:
        """NEW_ORDERs that arrived together on one session: as `new_order` on each in turn, but
        the run of orders that go straight to the card (no reject, repeat or known id before it)
        is decided by one call of the card's batch entry when it has one (the soft card's native
        engine). A frame that needs anything else first ends the run: the run is decided, then
        that frame goes through `new_order`, so replies keep their order."""
        if self._batch_card is None or len(frames) < _MIN_BATCH:
            for frame in frames:
                self.new_order(session, frame)
            return
        run: list[tuple[Frame, dict[str, Any], OrderKey, tuple[Value, ...]]] = []
        keys: set[OrderKey] = set()
        for frame in frames:
            item = self._straight_to_card(session, frame)
            if item is None or item[2] in keys:
                self._decide_run(session, run)
                run, keys = [], set()
                self.new_order(session, frame)
                continue
            run.append(item)
            keys.add(item[2])
        self._decide_run(session, run)

    def _straight_to_card(
        self, session: BrokerSession, frame: Frame
    ) -> tuple[Frame, dict[str, Any], OrderKey, tuple[Value, ...]] | None:
        """The order's values, key and input words when `new_order` would send it to the card
        without a reply or a record first; None otherwise. Changes nothing."""
        user = session.user
        values = order_values(frame)
        account = values["account_id"]
        key = (account, values["order_id"])
        if user is None or not user.may_trade(account) or key in self.decided or key in self.open:
            return None
        if key[1] <= self.forgotten.get(account, key[1] - 1) or self.kill.blocks(user.name, account):
            return None
        if self.exchange is None or self.failed is not None or self.backlog_since is not None:
            return None
        try:
            return frame, values, key, order_inputs(values)
        except ValueError:
            return None

    def _decide_run(
        self, session: BrokerSession, run: list[tuple[Frame, dict[str, Any], OrderKey, tuple[Value, ...]]]
    ) -> None:
        if not run:
            return
        assert self._batch_card is not None and session.user is not None
        sender = _sender(session)
        if len(run) == 1:
            frame, values, key, inputs = run[0]
            self.counters.orders += 1
            decision = self._run(Event.NEW, values, inputs, session.user.name, sender=sender)
            self._new_decided(session, frame, values, key, inputs, decision)
            return
        start = time.perf_counter_ns()
        decisions = self._batch_card.process_many([(Event.NEW, item[3]) for item in run])
        each = (time.perf_counter_ns() - start) // len(run)
        latency = self._card_latency[Event.NEW]
        for (frame, values, key, inputs), decision in zip(run, decisions, strict=True):
            self.counters.orders += 1
            latency.observe_ns(each)  # the batch's time, shared by its events
            self._record(Event.NEW, values, inputs, decision, session.user.name, sender=sender)
            self._new_decided(session, frame, values, key, inputs, decision)

    @staticmethod
    def _same_inputs(values: dict[str, Any], inputs: tuple[Value, ...]) -> bool:
        try:
            return event_inputs(values) == inputs
        except ValueError:
            return False

    def _answer_again(self, session: BrokerSession, frame: Frame, key: OrderKey, decision: Decision) -> None:
        """The recorded answer to an order decided before; it is not run nor forwarded again. An open
        order's later fills, rejects and cancels go to this session from now on. The order keeps the
        login the journal has for it (a restart from the journal alone gives it that one)."""
        self.counters.repeated += 1
        self.follow.answered_again(session, key)
        if not decision.accepted:
            self._reject(session, frame, Reason.RULE, decision)
            return
        order = self.open.get(key)
        if order is not None and (order.session is None or not takes_answers(order.session)):
            self.follow.closed(key, order)
            order.session = session
            if order.user is None:
                order.user = session.user.name if session.user else None
            self.follow.opened(key, order)
        self.queue(session, MsgType.ACCEPTED, **order_values(frame))
        for msg_type, price, qty in self.history.get(key, ()):
            self.queue(session, msg_type, **order_values(frame), exec_price=price, exec_quantity=qty)

    def cancel_request(self, session: BrokerSession, frame: Frame) -> None:
        key = (frame["account_id"], frame["order_id"])
        if session.user is None or not session.user.may_trade(key[0]):
            self._reject(session, frame, Reason.NOT_PERMITTED)
        elif key not in self.open:
            self._reject(session, frame, Reason.UNKNOWN_ORDER)
        elif self.exchange is None:
            self._reject(session, frame, Reason.SHUTDOWN)
        else:
            self.cancel_at_exchange(key)

    def logon(self, session: BrokerSession, frame: Frame) -> None:
        user = self.users.get(frame["username"])
        given = str(frame["password"]).encode()
        if user is None or not hmac.compare_digest(given, user.password.encode()):
            self._log(f"{session.peer}: bad credentials for {frame['username']!r}")
            self.queue(session, MsgType.LOGOUT, reason=int(Reason.BAD_CREDENTIALS))
            self.queue_close(session)
            return
        session.user = user
        if user.name in self.follow.kept and session not in self._out and session not in self._held:
            # Kept answers follow, and their ACCEPTEDs may be held behind an exchange backlog: the
            # LOGON_ACK, which waits for nothing, leaves now (nothing was queued before it).
            session.send(MsgType.LOGON_ACK, heartbeat_ms=self.heartbeat_ms)
        else:
            self.queue(session, MsgType.LOGON_ACK, heartbeat_ms=self.heartbeat_ms)
        if session.orders_follow_login:
            self.follow.logged_on(session)

    # ------------------------------------------------------------------ exchange side

    def exchange_frame(self, frame: Frame) -> None:
        if frame.type is MsgType.ORDER_STATUS:
            self._order_status(frame)
            return
        event = _EVENT_OF.get(frame.type)
        if event is None:
            if frame.type is not MsgType.HEARTBEAT:
                self._log(f"exchange: ignored a {frame.type.name} frame")
            return
        key = (frame["account_id"], frame["order_id"])
        order = self.open.get(key)
        if order is None:
            self.counters.unknown_exchange_events += 1
            self._log(
                f"exchange: {frame.type.name} for order {key[1]} of account {key[0]}, which is not open"
            )
            return
        self.counters.exchange_events += 1
        inputs = self._exec_inputs(order, frame)
        self._run(event, order.values, inputs, exec_values=_exec_values(frame))
        self._exec_decided(frame, event, key, order)

    @staticmethod
    def _exec_inputs(order: OpenOrder, frame: Frame) -> Sequence[Value]:
        """The order's NEW input words with the execution's: what order_inputs gives for the
        order's values and the frame's exec_price and exec_quantity."""
        fields = frame.values
        price, qty = fields["exec_price"], fields["exec_quantity"]
        words = order.inputs
        if words is None:
            words = order.inputs = order_inputs(order.values)
        if price.__class__ is int and qty.__class__ is int:
            return (*words[:_EXEC_PRICE], price, qty, *words[_EXEC_QUANTITY + 1 :])
        return order_inputs({**order.values, **_exec_values(frame)})

    def exchange_frames(self, frames: list[Frame]) -> None:
        """Frames that arrived together from the exchange: as `exchange_frame` on each in turn, but
        a run of answers on distinct open orders is decided by one call of the card's batch entry
        when it has one; any other frame ends the run, which is decided first."""
        if self._batch_card is None or len(frames) < _MIN_BATCH:
            for frame in frames:
                self.exchange_frame(frame)
            return
        run: list[tuple[Frame, Event, OrderKey, OpenOrder]] = []
        keys: set[OrderKey] = set()
        for frame in frames:
            event = _EVENT_OF.get(frame.type)
            key = (frame["account_id"], frame["order_id"]) if event is not None else (0, 0)
            order = self.open.get(key) if event is not None else None
            if event is None or order is None or key in keys:
                self._decide_exec_run(run)
                run, keys = [], set()
                self.exchange_frame(frame)
                continue
            run.append((frame, event, key, order))
            keys.add(key)
        self._decide_exec_run(run)

    def _decide_exec_run(self, run: list[tuple[Frame, Event, OrderKey, OpenOrder]]) -> None:
        if not run:
            return
        if len(run) == 1:
            self.exchange_frame(run[0][0])
            return
        assert self._batch_card is not None
        inputs = [self._exec_inputs(order, frame) for frame, _, _, order in run]
        start = time.perf_counter_ns()
        decisions = self._batch_card.process_many(
            [(item[1], words) for item, words in zip(run, inputs, strict=True)]
        )
        each = (time.perf_counter_ns() - start) // len(run)
        for (frame, event, key, order), words, decision in zip(run, inputs, decisions, strict=True):
            self.counters.exchange_events += 1
            self._card_latency[event].observe_ns(each)  # the batch's time, shared by its events
            self._record(event, order.values, words, decision, exec_values=_exec_values(frame))
            self._exec_decided(frame, event, key, order)

    def _exec_decided(self, frame: Frame, event: Event, key: OrderKey, order: OpenOrder) -> None:
        """What follows an exchange answer's run on the card: the history, the book, the session."""
        fields = frame.values
        price, qty = fields["exec_price"], fields["exec_quantity"]
        if key in self.decided:
            self.history.setdefault(key, []).append((frame.type, price, qty))
        if event is Event.FILL:
            order.remaining -= qty
        if event is not Event.FILL or order.remaining <= 0:
            del self.open[key]
            self.follow.closed(key, order)
            self._order_done(key)
        session = order.session
        # Its close queued or its connection lost: the answer follows the login (follow.py). A reset
        # not seen yet is seen by the flush, which gives what it could not write to follow.unsent.
        if session is None or (session.leaving and session.orders_follow_login):
            login = followed_login(order)
            if login is not None:
                if order.body is None:
                    whole = encode(frame.type, 0, **order.values, exec_price=price, exec_quantity=qty)
                    body = whole[HEADER.size :]
                else:
                    body = order.body + EXEC_FIELDS.pack(price, qty)
                self.follow.order_answer(order, login, frame.type, body)
            self._schedule()  # perhaps nothing was queued: the flush still commits the journal
            return
        if order.body is None:
            self.queue(session, frame.type, **order.values, exec_price=price, exec_quantity=qty)
        else:
            self.queue_body(session, frame.type, order.body + EXEC_FIELDS.pack(price, qty))


class BrokerSession(FrameLink):
    # Its orders' answers go to another session of its login once it is gone (riskgw.gateway.follow).
    orders_follow_login = True

    def __init__(self, gateway: Gateway) -> None:
        super().__init__()
        self.gateway = gateway
        self.user: User | None = None
        self.last_seq = 0
        self.paused = 0  # times its replies backed up
        self.paused_at: float | None = None  # loop time it was last held back, while it is
        self.last_rx = asyncio.get_running_loop().time()
        # Why it is not read from: "writes" (it does not read its replies), "held" (its replies
        # wait for the exchange to read, see Gateway.flush), "turn" (it was read twice since the
        # last flush, see data_received). Read again when none holds.
        self._holds: set[str] = set()

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        transport.set_write_buffer_limits(high=self.gateway.write_buffer_high)
        self.gateway.sessions.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.leaving = True
        self.gateway.session_closed(self)

    def data_received(self, data: bytes) -> None:
        self.last_rx = asyncio.get_running_loop().time()
        super().data_received(data)
        # One read per session between two flushes, as asyncio's own loop reads each connection at
        # most once a turn: uvloop (libuv) reads a connection again in the same turn while each
        # read fills its buffer, up to 32 times, so a broker that floods the gateway could pass
        # held_replies_limit by that much before a flush held it back.
        gw = self.gateway
        if self not in gw._read:
            gw._read.add(self)
            return
        self._hold("turn")
        gw._read_twice.append(self)
        gw._schedule()  # a read that queued nothing schedules no flush

    # A broker that does not read its replies is not read from either until it catches up, so its
    # backlog stays bounded (by its open orders' exchange answers) and costs no one else anything.
    def pause_writing(self) -> None:
        self.paused += 1
        self._hold("writes")

    def resume_writing(self) -> None:
        self._release("writes")

    def hold_back(self) -> None:
        """Not read from until the gateway's held replies to it leave (`let_go`)."""
        self._hold("held")

    def let_go(self) -> None:
        self._release("held")

    def read_again(self) -> None:
        """Read from again after a flush (see data_received)."""
        self._release("turn")

    def _hold(self, why: str) -> None:
        if not self._holds:
            self.paused_at = asyncio.get_running_loop().time()
            if self.transport is not None:
                self.transport.pause_reading()
        self._holds.add(why)

    def _release(self, why: str) -> None:
        if why not in self._holds:
            return
        self._holds.discard(why)
        if self._holds:
            return
        self.paused_at = None
        self.last_rx = asyncio.get_running_loop().time()  # its silence while held back was ours
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def frames_received(self, items: list[Frame | ProtocolError]) -> None:
        gw = self.gateway
        news: list[Frame] = []  # NEW_ORDERs in a row, decided together before anything after them
        for item in items:
            if self.leaving:
                break  # after its LOGOUT (or a close the gateway queued) nothing more it sent is run
            if news and (
                isinstance(item, ProtocolError)
                or item.type is not MsgType.NEW_ORDER
                or item.seq <= self.last_seq
            ):
                gw.new_orders(self, news)
                news = []
            if isinstance(item, ProtocolError):
                gw.protocol_error(self, None, str(item))
                continue
            if item.seq <= self.last_seq:
                # A repeated or stale frame: processing it again could send an order twice.
                gw.protocol_error(self, item, f"seq {item.seq} after {self.last_seq}")
                continue
            self.last_seq = item.seq
            kind = item.type
            if kind is MsgType.NEW_ORDER:
                news.append(item)
            elif kind is MsgType.CANCEL_REQUEST:
                gw.cancel_request(self, item)
            elif kind is MsgType.HEARTBEAT:
                gw.queue(self, MsgType.HEARTBEAT)
            elif kind is MsgType.LOGON:
                if self.user is not None:
                    gw.protocol_error(self, item, "LOGON on a session that is logged on")
                else:
                    gw.logon(self, item)
            elif kind is MsgType.LOGOUT:
                gw.queue(self, MsgType.LOGOUT, reason=int(Reason.NONE))
                gw.queue_close(self)
            else:
                gw.protocol_error(self, item, f"a broker may not send {kind.name}")
        if news:
            gw.new_orders(self, news)


class ExchangeUplink(FrameLink):
    """The exchange link. Its transport keeps nothing in user space without telling: with a high
    water mark of 0, any byte the kernel did not take pauses it, and resume_writing says when the
    kernel has taken them all (the gateway's flush holds ACCEPTEDs meanwhile)."""

    def __init__(self, gateway: Gateway) -> None:
        super().__init__()
        self.gateway = gateway

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        assert self.transport is not None
        self.transport.set_write_buffer_limits(high=0, low=0)

    @property
    def buffered(self) -> int:
        """Bytes written to the link that still wait in user space (the kernel's buffer was full)."""
        transport = self.transport
        return 0 if transport is None else transport.get_write_buffer_size()

    @property
    def backed_up(self) -> bool:
        return self.buffered > 0

    def pause_writing(self) -> None:
        pass  # the gateway's flush asks `backed_up` after each write

    def resume_writing(self) -> None:
        self.gateway.release_held()

    def frames_received(self, items: list[Frame | ProtocolError]) -> None:
        frames: list[Frame] = []  # in a row, decided together before anything after them
        for item in items:
            if isinstance(item, ProtocolError):
                if frames:
                    self.gateway.exchange_frames(frames)
                    frames = []
                self.gateway._log(f"exchange: {item}")
            else:
                frames.append(item)
        if frames:
            self.gateway.exchange_frames(frames)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        gw = self.gateway
        gw.release_held(read=False)
        if gw.exchange is self:
            gw.exchange = None
            if gw.exchange_address is not None and not gw.closing:
                gw._log("lost the exchange connection: rejecting new orders with SHUTDOWN until it is back")
                gw.reconnecting = asyncio.get_running_loop().create_task(gw.reconnect())
