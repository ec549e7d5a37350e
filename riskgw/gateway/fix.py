"""The FIX 4.4 acceptor: QuickFIX runs the session layer, `FixSession` joins the gateway's order path.

QuickFIX (the optional extra `fix`) does Logon, heartbeats, test requests, resend requests and gap
fills, sequence numbers (kept in a FileStore, so they survive restarts; synced to disk before each
message leaves unless `store_sync = false`, see riskgw.gateway.fixsync) and the session-level
checks: a garbled message, a wrong checksum or body length is ignored as the FIX spec says (its
sequence number then shows up as a gap and is asked for again), a missing required tag or a bad
value gets a session Reject (3), wrong CompIDs a Reject and a Logout. Messages other than D, F, G
and H get a BusinessMessageReject (j).

QuickFIX calls the Application on its own thread. Each callback copies what it needs out of the
message (QuickFIX owns it) and hands it to the gateway's asyncio loop; replies go back through
`Session.sendToTarget` on the acceptor's sender thread, in the order the loop gave them: a send
stores the message and, with `store_sync`, waits about a millisecond for the disk, which the loop,
deciding every session's orders, does not. An exception escaping a callback would end the process
(the SWIG director calls Py_Exit), so every callback catches everything it does not mean to raise.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import queue
import re
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from riskgw.errors import UserError
from riskgw.gateway.fixconfig import FixConfig, FixSessionConfig
from riskgw.gateway.fixmap import OrderMap
from riskgw.gateway.fixsession import FixSession, OrderIds, Outbound
from riskgw.gateway.fixsync import StoreSyncLogFactory, sync_directory
from riskgw.gateway.server import Gateway

try:
    import quickfix
except ImportError:  # the optional extra is not installed
    quickfix = None

PATCHED = "+riskgw"  # in the version of the QuickFIX build that survives malformed first messages
# The local version of a QuickFIX build that binds SocketAcceptAddress (tools/patch_quickfix.py): 2 on.
PATCH_LEVEL = re.compile(r"\+riskgw\.(\d+)$")
BINDS_ADDRESS_FROM = 2

BEGIN_STRING = "FIX.4.4"
APP_MESSAGES = {"D", "F", "G", "H"}
# The fields read from inbound application messages (all four types).
INBOUND_TAGS = (1, 11, 38, 40, 41, 44, 54, 55, 59, 60, 790)
# BusinessRejectReason (380) "Application not available", with this Text (58), for a D, G or H that
# arrives while the gateway does not read its session (see _Application._not_now)
NOT_AVAILABLE = "4"
NOT_NOW_TEXT = (
    "not taken: this session's earlier answers wait for the exchange to read the orders they answer "
    "(exchange backlog); send it again later"
)
BIND_TRIES = 20  # port 0: free ports tried before giving up (another process may take one first)
LOGOUT_WAIT_S = 2.0  # at stop, how long brokers get to answer our Logout
SENDER_WAIT_S = 5.0  # how long stop() waits for the replies already given to the sender thread


def data_dictionary() -> Path:
    """FIX44.xml as the quickfix package installs it (under the environment's share/quickfix)."""
    for prefix in (sys.prefix, sys.base_prefix):
        path = Path(prefix) / "share" / "quickfix" / "FIX44.xml"
        if path.exists():
            return path
    raise UserError("the FIX 4.4 data dictionary (share/quickfix/FIX44.xml) is missing: reinstall quickfix")


def _settings_text(config: FixConfig, store: Path, port: int) -> str:
    lines = [
        "[DEFAULT]",
        "ConnectionType=acceptor",
        f"SocketAcceptPort={port}",
        *([f"SocketAcceptAddress={config.host}"] if config.one_address else []),
        f"FileStorePath={store}",
        "NonStopSession=Y",
        "UseDataDictionary=Y",
        f"DataDictionary={data_dictionary()}",
        "ValidateUserDefinedFields=N",
        "ResetOnLogon=N",
        "ResetOnLogout=N",
        "ResetOnDisconnect=N",
        "PersistMessages=Y",
        "SocketNodelay=Y",
        "TimestampPrecision=3",
    ]
    for session in config.sessions:
        lines += [
            "[SESSION]",
            f"BeginString={BEGIN_STRING}",
            f"SenderCompID={session.target_comp_id}",
            f"TargetCompID={session.sender_comp_id}",
        ]
    return "\n".join(lines) + "\n"


def _quickfix_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("quickfix")
    except PackageNotFoundError:
        return "unknown"


def binds_address(quickfix_version: str) -> bool:
    """Whether this QuickFIX build binds the acceptor to SocketAcceptAddress (1.16 takes the key and
    listens on every interface all the same)."""
    level = PATCH_LEVEL.search(quickfix_version)
    return level is not None and int(level.group(1)) >= BINDS_ADDRESS_FROM


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class FixAcceptor:
    """QuickFIX's ThreadedSocketAcceptor (a thread per connection, so a stalled peer holds up no
    other session) with one FixSession per configured session.

    The build `make venv` installs (quickfix 1.16.0+riskgw.2) drops a connection whose first
    message is malformed; QuickFIX 1.16 itself lets that exception end the process. That build also
    binds the port to `fix.listen`'s address, which 1.16 ignores: with an address, any other build
    is refused at start rather than left listening on every interface. The
    single-threaded SocketAcceptor does not have that bug but has another: its stop() from another
    thread races its own thread over the listening socket and crashes now and then.
    """

    def __init__(
        self,
        gateway: Gateway,
        config: FixConfig,
        store: Path,
        ids: OrderIds,
        log: Callable[[str], None],
    ) -> None:
        if quickfix is None:
            raise UserError("FIX needs the quickfix package: run make venv (it builds QuickFIX once)")
        if config.one_address and not binds_address(_quickfix_version()):
            raise UserError(
                f"the FIX port is to listen on {config.host} alone, which quickfix {_quickfix_version()} "
                f"cannot do (it listens on every interface; 1.16.0+riskgw.{BINDS_ADDRESS_FROM} and later "
                "can): run make venv"
            )
        if PATCHED not in _quickfix_version():
            log(
                f"FIX: quickfix {_quickfix_version()} is not the build make venv installs: "
                "a malformed first message on a connection can end the gateway"
            )
        self.gateway = gateway
        self.config = config
        self.store = store
        self.log = log
        self.loop = asyncio.get_running_loop()
        self.port = 0
        self.ids = ids
        self.orders = OrderMap(store)
        self.sessions: dict[tuple[str, str], FixSession] = {}
        self._ids: dict[tuple[str, str], Any] = {}  # (sender, target) as the broker sends -> SessionID
        for sc in config.sessions:
            self._add(sc, ids)
        self._app = _Application(self)
        self._acceptor: Any = None
        self._keep: tuple[Any, ...] = ()
        self._sync: StoreSyncLogFactory | None = None
        # Replies the loop gave and the sender thread has not sent yet; None ends the thread.
        self._outbox: queue.SimpleQueue[tuple[Any, list[Outbound]] | None] = queue.SimpleQueue()
        self._sender: threading.Thread | None = None

    def _add(self, sc: FixSessionConfig, ids: OrderIds) -> None:
        key = (sc.sender_comp_id, sc.target_comp_id)
        sid = quickfix.SessionID(BEGIN_STRING, sc.target_comp_id, sc.sender_comp_id)
        self._ids[key] = sid
        self.sessions[key] = FixSession(
            self.gateway, sc, self.config, ids, functools.partial(self.send, sid), self.orders
        )

    def session_for(self, sid: Any) -> FixSession | None:
        return self.sessions.get((sid.getTargetCompID().getValue(), sid.getSenderCompID().getValue()))

    def start(self) -> None:
        try:
            self.store.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"cannot create the FIX store {self.store}: {exc.strerror}") from None
        self._restore()
        try:
            self._bind()
        except UserError:
            self.orders.close()
            raise
        self._sender = threading.Thread(target=self._send_all, name="FIX sender", daemon=True)
        self._sender.start()

    def _bind(self) -> None:
        tries = BIND_TRIES if self.config.port == 0 else 1
        host = self.config.host
        for attempt in range(tries):
            try:
                port = self.config.port or _free_port(host)
            except OSError as exc:
                raise UserError(f"cannot open the FIX port on {host}: {exc.strerror}") from None
            cfg = self.store / "acceptor.cfg"
            cfg.write_text(_settings_text(self.config, self.store, port), encoding="utf-8")
            try:
                settings = quickfix.SessionSettings(str(cfg))
                store = quickfix.FileStoreFactory(settings)
            except quickfix.ConfigError as exc:
                raise UserError(f"FIX settings {cfg}: {exc}") from None
            acceptor = None
            sync = None
            if self.config.store_sync:
                sync = StoreSyncLogFactory(self.store, functools.partial(self.hand_over, self.log))
            failed: UserError | None = None
            started = False
            try:
                if sync is None:
                    acceptor = quickfix.ThreadedSocketAcceptor(self._app, store, settings)
                else:
                    acceptor = quickfix.ThreadedSocketAcceptor(self._app, store, settings, sync)
                acceptor.start()
                started = True
            except quickfix.ConfigError as exc:
                failed = UserError(f"FIX settings {cfg}: {exc}")
            except quickfix.RuntimeError as exc:
                if attempt + 1 == tries:
                    failed = UserError(f"cannot open the FIX port {host}:{port}: {exc}")
            if not started:
                # Raised here, not in the except clause: QuickFIX's exception holds the acceptor (its
                # start() frame), and an acceptor not destroyed keeps its sessions registered in
                # QuickFIX's process-wide table, so a later acceptor of the same sessions in this
                # process (a retry, a restart in process) would not get them. Dropped before the
                # settings and store it refers to.
                acceptor = None
                if failed is not None:
                    raise failed
                continue
            # The C++ acceptor keeps references, not copies, of its settings, store and log
            # factories: they must live as long as it does.
            self._acceptor, self._keep, self.port = acceptor, (settings, store, sync), port
            self._sync = sync
            if sync is not None:
                self._sync_directory()
            self.gateway.status_parts["fix"] = self.status
            return

    def _sync_directory(self) -> None:
        try:
            sync_directory(self.store)
        except OSError as exc:
            self.log(f"FIX: cannot sync the store directory {self.store}: {exc.strerror}")

    def status(self) -> dict[str, Any]:
        """The `fix` section of the gateway's status (`riskgw ctl status`)."""
        sessions = []
        for (sender, target), session in self.sessions.items():
            mine = sum(1 for o in self.gateway.open.values() if o.session is session)
            sessions.append(
                {
                    "sender_comp_id": sender,
                    "target_comp_id": target,
                    "logged_on": session.logged_on,
                    "open_orders": mine,
                }
            )
        return {
            "address": self.config.host,
            "port": self.port,
            "store": str(self.store),
            "store_sync": self._sync is not None,
            "store_sync_failures": 0 if self._sync is None else self._sync.failures(),
            "unsent": self._outbox.qsize(),  # replies waiting for the sender thread
            "sessions": sessions,
        }

    def _restore(self) -> None:
        """Give each session back its orders from before a restart (see riskgw.gateway.fixmap)."""
        records = self.orders.load()
        for (sender, _), session in self.sessions.items():
            session.restore([r for r in records if r.get("s") == sender])
        restored = sum(1 for o in self.gateway.open.values() if isinstance(o.session, FixSession))
        if records:
            self.log(f"FIX: {len(records)} order-map records read, {restored} open FIX orders restored")
        self.orders.open()
        for session in self.sessions.values():
            session.record_outcomes()

    async def stop(self) -> None:
        """Log every broker out (waiting briefly for their Logouts), then stop QuickFIX."""
        if self._acceptor is None:
            self.orders.close()
            return
        acceptor, self._acceptor = self._acceptor, None
        self.gateway.status_parts.pop("fix", None)
        sender = self._sender
        if sender is not None:  # what the loop gave leaves before the Logouts, in order
            self._outbox.put(None)
            await self.loop.run_in_executor(None, sender.join, SENDER_WAIT_S)
            if sender.is_alive():  # a send that does not return: stop without what is behind it
                self.log(
                    f"FIX: {self._outbox.qsize()} replies not sent at stop: a send did not return "
                    f"within {SENDER_WAIT_S:g} s"
                )
            else:
                self._sender = None  # from now on a reply is sent at once, on the loop
                while True:  # the replies given while the thread finished, behind the None
                    try:
                        item = self._outbox.get_nowait()
                    except queue.Empty:
                        break
                    if item is not None:
                        self._send_now(*item)
        live = [quickfix.Session.lookupSession(sid) for sid in self._ids.values()]
        live = [s for s in live if s is not None and s.isLoggedOn()]
        for s in live:
            s.logout("the gateway is stopping")
        deadline = time.monotonic() + LOGOUT_WAIT_S
        while any(s.isLoggedOn() for s in live) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        await self.loop.run_in_executor(None, acceptor.stop, True)
        self.orders.close()

    # ------------------------------------------------------------------ loop and sender threads

    def send(self, sid: Any, out: list[Outbound]) -> None:
        """Replies for a session, sent in order on the sender thread (here when it is not running)."""
        if self._sender is not None:
            self._outbox.put((sid, out))
        else:
            self._send_now(sid, out)

    def _send_all(self) -> None:
        while (item := self._outbox.get()) is not None:
            try:
                self._send_now(*item)
            except Exception as exc:  # a bug must cost one reply, not the sender thread
                self.hand_over(self.log, f"FIX: sending failed: {type(exc).__name__}: {exc}")

    def _send_now(self, sid: Any, out: list[Outbound]) -> None:
        for msg_type, body in out:
            if msg_type == "5":
                session = quickfix.Session.lookupSession(sid)
                if session is not None and session.isLoggedOn():
                    session.logout(dict(body).get(58, ""))
                continue
            message = quickfix.Message()
            header = message.getHeader()
            header.setField(quickfix.BeginString(BEGIN_STRING))
            header.setField(quickfix.MsgType(msg_type))
            for tag, value in body:
                message.setField(tag, value)
            try:
                quickfix.Session.sendToTarget(message, sid)
            except quickfix.SessionNotFound:
                self.hand_over(self.log, f"FIX: no session {sid} to send a {msg_type} to")

    def hand_over(self, fn: Callable[..., None], *args: Any) -> None:
        """From a QuickFIX thread: run fn on the gateway's loop (dropped once the loop is gone)."""
        with contextlib.suppress(RuntimeError):  # the loop is closed: the gateway has stopped
            self.loop.call_soon_threadsafe(self._run, fn, *args)

    def _run(self, fn: Callable[..., None], *args: Any) -> None:
        try:
            fn(*args)
        except Exception as exc:  # a bug must cost one message, not the gateway
            self.log(f"FIX: {type(exc).__name__}: {exc}")


class _Application(quickfix.Application if quickfix is not None else object):  # type: ignore[misc]
    """QuickFIX's callbacks, on its thread."""

    def __init__(self, acceptor: FixAcceptor) -> None:
        super().__init__()
        self.acceptor = acceptor

    def onCreate(self, sid: Any) -> None:
        pass

    def onLogon(self, sid: Any) -> None:
        session = self._session(sid)
        if session is not None:
            self.acceptor.hand_over(session.on_logon)

    def onLogout(self, sid: Any) -> None:
        session = self._session(sid)
        if session is not None:
            self.acceptor.hand_over(session.on_logout)

    def toAdmin(self, message: Any, sid: Any) -> None:
        pass

    def toApp(self, message: Any, sid: Any) -> None:
        pass

    def fromAdmin(self, message: Any, sid: Any) -> None:
        try:
            session = self._session(sid)
            if message.getHeader().getField(35) != "A" or session is None:
                return
            password = session.config.password
            given = message.getField(554) if message.isSetField(554) else None
        except Exception as exc:
            self.acceptor.log(f"FIX: {type(exc).__name__} reading an admin message: {exc}")
            return
        if password is not None and given != password:
            self.acceptor.hand_over(self.acceptor.log, f"FIX {sid}: Logon with a wrong or missing Password")
            raise quickfix.RejectLogon("wrong or missing Password (554)")

    def fromApp(self, message: Any, sid: Any) -> None:
        try:
            msg_type = message.getHeader().getField(35)
        except Exception:
            msg_type = ""
        if msg_type not in APP_MESSAGES:
            raise quickfix.UnsupportedMessageType()
        try:
            session = self._session(sid)
            if session is None:
                return
            fields = {tag: message.getField(tag) for tag in INBOUND_TAGS if message.isSetField(tag)}
        except Exception as exc:
            self.acceptor.log(f"FIX: {type(exc).__name__} reading a {msg_type}: {exc}")
            return
        if msg_type != "F" and not session.readable.is_set():
            self._not_now(message, msg_type, sid)
            return
        self.acceptor.hand_over(session.received, msg_type, fields)

    def _not_now(self, message: Any, msg_type: str, sid: Any) -> None:
        """The gateway does not read this session (its replies wait for the exchange to read, past
        held_replies_limit): a D, G or H is refused here, on QuickFIX's thread, with nothing kept
        for it. Blocking this thread instead could deadlock with the loop's sends to the session."""
        try:
            reply = quickfix.Message()
            reply.getHeader().setField(quickfix.BeginString(BEGIN_STRING))
            reply.getHeader().setField(quickfix.MsgType("j"))
            reply.setField(45, message.getHeader().getField(34))
            reply.setField(372, msg_type)
            if message.isSetField(11):
                reply.setField(379, message.getField(11))
            reply.setField(380, NOT_AVAILABLE)
            reply.setField(58, NOT_NOW_TEXT)
            quickfix.Session.sendToTarget(reply, sid)
        except Exception as exc:
            self.acceptor.log(f"FIX: {type(exc).__name__} refusing a {msg_type}: {exc}")

    def _session(self, sid: Any) -> FixSession | None:
        try:
            return self.acceptor.session_for(sid)
        except Exception:
            return None


async def start_fix(
    gateway: Gateway, config: FixConfig, journal: Path, ids: OrderIds, log: Callable[[str], None]
) -> FixAcceptor:
    acceptor = FixAcceptor(gateway, config, config.store_path(journal), ids, log)
    acceptor.start()
    comp = ", ".join(f"{s.sender_comp_id}->{s.target_comp_id}" for s in config.sessions)
    synced = "synced before each message leaves" if config.store_sync else "not synced (store_sync = false)"
    where = "" if config.one_address else ", every interface"
    log(
        f"FIX 4.4 on {config.host}:{acceptor.port}{where} (sessions {comp}), "
        f"store {acceptor.store} ({synced})"
    )
    return acceptor
