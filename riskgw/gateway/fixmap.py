"""The durable half of the FIX order map: which session and ClOrdID each gateway order id is.

The gateway numbers FIX orders itself, so after a restart the journal knows the orders but not the
session or ClOrdID they answer to. One JSON line per new mapping (a new order, a replacement's new
leg, a cancel or replace on its way) goes to `orders.jsonl` in the FIX store, flushed and fsynced
before the order reaches the card; at start the sessions read it back and, with the journal's
decisions and exchange answers, rebuild their orders.

The gateway keeps the decisions and answers of only its last 100,000 done orders, so an order's
outcome (OrdStatus, CumQty, the value filled) also gets a line when the order is done, flushed but
not fsynced: the journal holds it durably while the order is in that window.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import IO, Any

from riskgw.errors import UserError

FILE_NAME = "orders.jsonl"


class OrderMap:
    def __init__(self, store: Path) -> None:
        self.path = store / FILE_NAME
        self._file: IO[str] | None = None

    def load(self) -> list[dict[str, Any]]:
        """Every record written so far; a torn last line (a crash mid-write) is left out."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise UserError(f"cannot read the FIX order map {self.path}: {exc.strerror}") from None
        records: list[dict[str, Any]] = []
        for line in text.splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                records.append(record)
        return records

    def open(self) -> None:
        try:
            self._file = self.path.open("a", encoding="utf-8")
        except OSError as exc:
            raise UserError(f"cannot open the FIX order map {self.path}: {exc.strerror}") from None
        if self._file.tell() and not self.path.read_bytes().endswith(b"\n"):
            self._file.write("\n")  # end a torn line so the next record stands on its own

    def record(self, durable: bool = True, **fields: Any) -> None:
        if self._file is None:
            return
        self._file.write(json.dumps(fields, separators=(",", ":")) + "\n")
        self._file.flush()
        if durable:
            os.fsync(self._file.fileno())

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
