"""The audit store: every decision in SQLite, written in batches by a thread off the order path.

The order path only puts a tuple on a queue; the writer thread takes everything queued, inserts it
with one executemany and commits, so the database costs the order path a queue put. The journal,
not this store, is what a restart trusts: rows still queued when the process dies are lost here.

    riskgw log query "SELECT reason, count(*) FROM decisions GROUP BY reason" --db audit.sqlite
"""

from __future__ import annotations

import argparse
import csv
import queue
import sqlite3
import sys
import threading
from pathlib import Path
from typing import Any

from riskgw.errors import UserError

SCHEMA = """
CREATE TABLE IF NOT EXISTS decisions (
    seq            INTEGER PRIMARY KEY,  -- in the order the gateway decided
    ts_ns          INTEGER NOT NULL,     -- gateway time of the decision
    source         TEXT NOT NULL,        -- the broker login, or 'exchange'
    event          TEXT NOT NULL,        -- NEW, FILL, REJECT, CANCEL, CANCEL_REQUEST; for a protocol
                                         -- reject the frame's type (GARBAGE: bytes that were no frame)
    order_id       INTEGER,
    account_id     INTEGER,
    ticket_id      TEXT,
    direction      INTEGER,
    price          INTEGER,
    quantity       INTEGER,
    exec_price     INTEGER,
    exec_quantity  INTEGER,
    verdict        TEXT NOT NULL,        -- ACCEPT or REJECT for orders, APPLIED for exchange events
    reason         TEXT NOT NULL,        -- why a REJECT: RULE, NOT_PERMITTED, KILL_SWITCH, ...; '' otherwise
    rules          TEXT NOT NULL         -- the failed rules' names joined by ';'
)
"""
COLUMNS = (
    "ts_ns",
    "source",
    "event",
    "order_id",
    "account_id",
    "ticket_id",
    "direction",
    "price",
    "quantity",
    "exec_price",
    "exec_quantity",
    "verdict",
    "reason",
    "rules",
)
_INSERT = f"INSERT INTO decisions ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
_BATCH = 4096
_STOP = None


class AuditLog:
    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            db = sqlite3.connect(path, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(SCHEMA)
            db.commit()
        except sqlite3.Error as exc:
            raise UserError(f"cannot open the audit store {path}: {exc}") from None
        self._db = db
        self._queue: queue.SimpleQueue[tuple[Any, ...] | None] = queue.SimpleQueue()
        self.written = 0
        self.error: str | None = None
        self._thread = threading.Thread(target=self._write, name="riskgw-audit", daemon=True)
        self._thread.start()

    def record(self, row: tuple[Any, ...]) -> None:
        self._queue.put(row)

    def _write(self) -> None:
        while True:
            first = self._queue.get()
            batch: list[tuple[Any, ...]] = []
            stop = first is _STOP
            if first is not None:
                batch.append(first)
            while not stop and len(batch) < _BATCH:
                try:
                    row = self._queue.get_nowait()
                except queue.Empty:
                    break
                if row is _STOP:
                    stop = True
                else:
                    batch.append(row)
            if batch and self.error is None:
                try:
                    self._db.executemany(_INSERT, batch)
                    self._db.commit()
                    self.written += len(batch)
                except sqlite3.Error as exc:
                    # The order path must not stop for the audit store; the error shows in close().
                    self.error = str(exc)
            if stop:
                return

    def close(self) -> None:
        """Write everything queued, then close. Raises UserError if any batch could not be written."""
        self._queue.put(_STOP)
        self._thread.join()
        self._db.close()
        if self.error is not None:
            raise UserError(f"the audit store {self.path} failed: {self.error}")


def run_log_query(args: argparse.Namespace) -> int:
    path = Path(args.db)
    if not path.exists():
        raise UserError(f"no audit store at {path} (riskgw serve --audit PATH writes one)")
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise UserError(f"cannot open {path}: {exc}") from None
    try:
        cursor = db.execute(args.sql)
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow([d[0] for d in cursor.description or ()])
        for row in cursor:
            writer.writerow(["" if v is None else v for v in row])
    except sqlite3.Error as exc:
        raise UserError(f"query failed: {exc}") from None
    finally:
        db.close()
    return 0
