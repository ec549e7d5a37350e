"""An order's answers follow its login (wire-protocol sessions; a FIX session's orders follow it).

The answers on an order (ACCEPTED, FILL, EXCH_REJECT, CANCELLED, REJECTED) go to the session that
sent it while that session takes answers: it is connected and the gateway has not queued its close
(after a LOGOUT, a heartbeat timeout, bad credentials). Once it does not:

- while the session still has frames the gateway has not written (held behind an exchange
  backlog, or queued for this turn's flush), the answer waits behind them: they reach the broker
  if it reads them, or follow the login if the connection goes, and the answer after them, so an
  order's answers never change order;
- otherwise it goes to another session of the same login that takes answers, which has the order
  from then on once the old session's connection is gone (until then the order stays the old
  session's, so its cancel-on-disconnect covers every order it sent);
- with none, it is kept for the login, with the replies the gone session was queued or held but
  never written, and all of them are sent, oldest first, right after the LOGON_ACK of the login's
  next session; that LOGON also gives the new session the login's open orders whose session's
  connection is gone.

Kept answers are bounded (ANSWERS_KEPT in all; past that the oldest of the login keeping most are
dropped, counted and logged once per login) and live in memory only. A login the config does not
have (an order journaled under a login since removed) can never log on: its answers are dropped
and counted. Indexes keep the work per LOGON and per answer to the login's own orders and sessions.
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING

from riskgw.gateway.protocol import HEADER, MsgType

if TYPE_CHECKING:
    from riskgw.gateway.server import BrokerSession, Gateway, OpenOrder, OrderKey

ANSWERS_KEPT = 100_000  # answers kept in all for logins none of whose sessions is on (~50 MB)
# The replies a session that is gone was queued or held but never written, kept for its login.
REPLIES = frozenset(
    {MsgType.ACCEPTED, MsgType.REJECTED, MsgType.FILL, MsgType.EXCH_REJECT, MsgType.CANCELLED}
)


_KEY = struct.Struct("<qi")  # every reply's body starts with order_id, account_id


def _key(body: bytes) -> OrderKey:
    order_id, account_id = _KEY.unpack_from(body)
    return account_id, order_id


def followed_login(order: OpenOrder) -> str | None:
    """The login an order's answers follow once its session is gone: its sender's, for an order
    from the wire protocol whose login is known; None otherwise (a FIX session's orders follow
    its order map)."""
    if order.session is not None and not order.session.orders_follow_login:
        return None
    return order.user


def takes_answers(session: BrokerSession) -> bool:
    return session.is_open and not session.leaving


class Follow:
    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self.kept: dict[str, deque[tuple[MsgType, bytes]]] = {}  # by login, oldest first
        self.n_kept = 0
        self.orders: dict[str, set[OrderKey]] = {}  # open orders that follow each login
        self.on: dict[str, set[BrokerSession]] = {}  # wire-protocol sessions logged on, by login
        self._said: set[str] = set()  # logins whose dropped answers were logged
        # Answers behind the unwritten frames of a session that is leaving, until its connection goes.
        self.deferred: dict[BrokerSession, list[tuple[MsgType, bytes]]] = {}
        # Orders whose whole history was sent again to the login (a repeated NEW_ORDER) while a
        # session of it was leaving: what that session has unwritten on them would repeat it.
        self.superseded: dict[BrokerSession, set[OrderKey]] = {}

    # ------------------------------------------------------------------ the book

    def opened(self, key: OrderKey, order: OpenOrder) -> None:
        login = followed_login(order)
        if login is not None:
            self.orders.setdefault(login, set()).add(key)

    def closed(self, key: OrderKey, order: OpenOrder) -> None:
        # Keys are unique among open orders: discarding under its user whatever its session is safe.
        if order.user is not None:
            keys = self.orders.get(order.user)
            if keys is not None:
                keys.discard(key)

    # ------------------------------------------------------------------ sessions

    def logged_on(self, session: BrokerSession) -> None:
        """A login's wire-protocol session is on (its LOGON_ACK queued or sent): it takes the login's
        open orders whose session's connection is gone, and the answers kept for it, oldest first."""
        assert session.user is not None
        name = session.user.name
        self.on.setdefault(name, set()).add(session)
        gw = self.gw
        for key in self.orders.get(name, ()):
            order = gw.open.get(key)
            if order is not None and (order.session is None or order.session.transport is None):
                order.session = session
        kept = self.kept.pop(name, None)
        self._said.discard(name)  # a later overflow is logged again
        if kept:
            self.n_kept -= len(kept)
            gw._log(f"{session.peer}: {name} logged on: sending {len(kept)} answers kept for it")
            for msg_type, body in kept:
                gw.queue_body(session, msg_type, body)
            gw.counters.answers_delivered += len(kept)

    def session_gone(self, session: BrokerSession, unsent: Iterable[bytes | None]) -> None:
        """A session's connection is gone: the replies it was queued or held but never written are
        kept for its login (or go to another session of it that is on)."""
        user = session.user
        if user is None or not session.orders_follow_login:
            return
        on = self.on.get(user.name)
        if on is not None:
            on.discard(session)
            if not on:
                del self.on[user.name]
        self.unsent(session, unsent)
        self.superseded.pop(session, None)
        for msg_type, body in self.deferred.pop(session, ()):
            self.answer(user.name, msg_type, body)

    def unsent(self, session: BrokerSession, frames: Iterable[bytes | None]) -> None:
        """Frames a session that is gone was never written: its replies follow its login."""
        user = session.user
        if user is None or not session.orders_follow_login:
            return
        skip = self.superseded.get(session, ())
        for frame in frames:
            if frame is not None and frame[0] in REPLIES:
                body = frame[HEADER.size :]
                if not skip or _key(body) not in skip:
                    self.answer(user.name, MsgType(frame[0]), body)

    def answered_again(self, session: BrokerSession, key: OrderKey) -> None:
        """A repeated NEW_ORDER gets the order's whole history on `session`: the same order's
        replies that a leaving session of the login has not written would tell it twice."""
        user = session.user
        if user is None or not session.orders_follow_login:
            return
        for other in self.on.get(user.name, ()):
            if other is not session and not takes_answers(other):
                self.superseded.setdefault(other, set()).add(key)
                waiting = self.deferred.get(other)
                if waiting:
                    self.deferred[other] = [(t, body) for t, body in waiting if _key(body) != key]

    def order_answer(self, order: OpenOrder, login: str, msg_type: MsgType, body: bytes) -> None:
        """An answer on an order whose session is leaving or gone (see the module's docstring)."""
        old = order.session
        gw = self.gw
        if old is not None and old.transport is not None and (old in gw._held or old in gw._out):
            self.deferred.setdefault(old, []).append((msg_type, body))
            return
        session = self.answer(login, msg_type, body)
        if session is not None and (old is None or old.transport is None):
            order.session = session

    def answer(self, login: str, msg_type: MsgType, body: bytes) -> BrokerSession | None:
        """An answer for a login: to a session of it that takes answers (returned), else kept for
        its next LOGON (None)."""
        for session in self.on.get(login, ()):
            if takes_answers(session):
                self.gw.queue_body(session, msg_type, body)
                return session
        self.keep(login, msg_type, body)
        return None

    def keep(self, login: str, msg_type: MsgType, body: bytes) -> None:
        gw = self.gw
        if login not in gw.users:
            gw.counters.answers_dropped += 1
            self._say(login, f"answers for {login!r}, a login the config does not have, are dropped")
            return
        if self.n_kept >= ANSWERS_KEPT:
            most = max(self.kept, key=lambda name: len(self.kept[name]))
            self.kept[most].popleft()
            self.n_kept -= 1
            gw.counters.answers_dropped += 1
            self._say(
                most,
                f"more than {ANSWERS_KEPT} answers wait for logins that are away: dropping the oldest of "
                f"{most!r} (sending an order again gets its answers so far)",
            )
        self.kept.setdefault(login, deque()).append((msg_type, body))
        self.n_kept += 1
        gw.counters.answers_kept += 1

    def _say(self, login: str, text: str) -> None:
        if login not in self._said:
            self._said.add(login)
            self.gw._log(text)

    def waiting(self) -> dict[str, int]:
        return {login: len(kept) for login, kept in sorted(self.kept.items()) if kept}
