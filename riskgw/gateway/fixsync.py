"""QuickFIX's FileStore made durable: each session's store files are synced before a message leaves.

QuickFIX 1.16's FileStore writes its files with fflush and never fsyncs them, and the library has no
setting that would (FileStoreSync is QuickFIX/J's; the C++ 1.16 settings have no such key and the
library calls neither fsync nor fdatasync). So a power cut could take back sequence numbers and
messages the broker had already received.

Session::sendRaw persists an outbound message (FileStore::set writes its body and header, then
incrNextSenderMsgSeqNum writes the seqnums file) and only then calls Session::send, which gives the
string to the session's Log (Log::onOutgoing) before writing it to the socket. A Log whose
onOutgoing fdatasyncs the session's body, header and seqnums files therefore makes every message
durable, with its sequence number and the inbound sequence number as it stood then, before the
broker can see it. The cost is three fdatasyncs per outbound message, on the thread that sends it
(the FIX acceptor's sender thread for the gateway's ExecutionReports, not its loop; a QuickFIX
thread for session-level replies): docs/operations.md has the figures.

What this does not cover: an inbound message's sequence number is written after the application
has seen it, and may still be in the page cache when a power cut comes if no message left after it.
The broker then gets a ResendRequest for it at the next Logon and sends it again (PossDupFlag Y).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from riskgw.gateway.durable import sync_path

try:
    import quickfix
except ImportError:  # the optional extra is not installed
    quickfix = None

# The FileStore files that hold what a resend and a restart need (the .session file holds the
# session's creation time and is written only when the session is reset).
SYNCED = ("body", "header", "seqnums")


def store_files(store: Path, sid: Any) -> tuple[Path, ...]:
    """The FileStore files of session `sid` under `store`, named as QuickFIX 1.16's FileStore names
    them: BEGINSTRING-SENDER-TARGET[-QUALIFIER].EXT (SenderCompID is the gateway's)."""
    name = "-".join(
        (sid.getBeginString().getValue(), sid.getSenderCompID().getValue(), sid.getTargetCompID().getValue())
    )
    qualifier = sid.getSessionQualifier()
    if qualifier:
        name += f"-{qualifier}"
    return tuple(store / f"{name}.{ext}" for ext in SYNCED)


def sync_files(paths: tuple[Path, ...]) -> None:
    """fdatasync each file. Opened anew each time: FileStore::reset unlinks and recreates them, so a
    descriptor kept open could point at a file that is gone."""
    for path in paths:
        sync_path(path, data_only=True)


def sync_directory(path: Path) -> None:
    """fsync a directory, so the files QuickFIX created in it are found after a power cut."""
    sync_path(path)


class StoreSyncLog(quickfix.Log if quickfix is not None else object):  # type: ignore[misc]
    """A session's Log: syncs its store files in onOutgoing; logs nothing.

    QuickFIX calls it on whatever thread sends, holding the session's lock. An exception escaping
    a SWIG director would end the process, so a failed sync is counted and reported to `on_error`
    (which must not raise) and the message still leaves: QuickFIX gives a Log no way to stop it.
    """

    def __init__(self, files: tuple[Path, ...], on_error: Callable[[str], None]) -> None:
        super().__init__()
        self.files = files
        self.on_error = on_error
        self.synced = 0
        self.failures = 0

    def onOutgoing(self, message: Any) -> None:
        if not self.files:
            return
        try:
            sync_files(self.files)
            self.synced += 1
        except Exception as exc:
            self.failures += 1
            if self.failures == 1:  # once per session: a failing disk would say it for every message
                self.on_error(
                    f"FIX {self.files[0].stem}: cannot sync the store ({exc}); messages leave unsynced"
                )

    def onIncoming(self, message: Any) -> None:
        pass

    def onEvent(self, text: Any) -> None:
        pass

    def clear(self) -> None:
        pass

    def backup(self) -> None:
        pass


class StoreSyncLogFactory(quickfix.LogFactory if quickfix is not None else object):  # type: ignore[misc]
    """QuickFIX's LogFactory for the acceptor: a StoreSyncLog per session (the acceptor's own log,
    create() without a session, syncs nothing).

    Each log is handed to QuickFIX disowned (SWIG's __disown__): QuickFIX keeps a raw pointer to it,
    and a log that Python still owned crashed QuickFIX 1.16 (a double free, or a segfault while the
    acceptor was built). Disowned, it lives until the process ends; destroy() leaves it be, so an
    acceptor started and stopped again leaks one small object per session."""

    def __init__(self, store: Path, on_error: Callable[[str], None]) -> None:
        super().__init__()
        self.store = store
        self.on_error = on_error
        self.logs: list[StoreSyncLog] = []

    def create(self, sid: Any = None) -> StoreSyncLog:
        log = StoreSyncLog(() if sid is None else store_files(self.store, sid), self.on_error)
        self.logs.append(log)
        log.__disown__()
        return log

    def destroy(self, log: Any) -> None:
        pass

    def failures(self) -> int:
        return sum(log.failures for log in self.logs)
