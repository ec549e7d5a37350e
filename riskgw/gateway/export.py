"""`riskgw journal export`: a gateway journal as an events file for `riskgw replay`.

    riskgw journal export JOURNAL --out EVENTS.csv

One row per event the card ran, in journal order, in the format of docs/replay.md, so a day's
orders can be replayed against changed rules. The journal is only read: a torn tail is reported
and left out, never cut (cutting is the gateway's job at start).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import sys
from pathlib import Path

from riskgw.doe.isa import EVENT_FIELD_REGS
from riskgw.doe.values import decode_char
from riskgw.engine.csvdata import EVENT_HEADER
from riskgw.errors import UserError
from riskgw.gateway.journal import Entry, scan


def event_row(entry: Entry) -> list[str]:
    row = [entry.event.name]
    for name in EVENT_HEADER[1:]:
        reg, n_words = EVENT_FIELD_REGS[name]
        words = entry.inputs[reg : reg + n_words]
        if words[0] is None:
            row.append("")
        elif n_words == 1:
            row.append(str(words[0]))
        else:
            row.append(decode_char([int(w or 0) for w in words]))
    return row


def events_text(entries: list[Entry]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(EVENT_HEADER)
    writer.writerows(event_row(e) for e in entries)
    return buf.getvalue()


def run_export(args: argparse.Namespace) -> int:
    path = Path(args.journal)
    try:
        found = scan(path)
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}") from None
    if found.header is None:
        raise UserError(f"{path} is not a riskgw journal")
    if found.problem is not None:
        print(
            f"riskgw: warning: {path}: {found.total_bytes - found.good_bytes} bytes at offset "
            f"{found.good_bytes} left out: {found.problem}",
            file=sys.stderr,
        )
    out = Path(args.out)
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        tmp.write_text(events_text(found.entries), encoding="utf-8")
        tmp.replace(out)
    except OSError as exc:
        with contextlib.suppress(OSError):  # a missing or unwritable directory has no temporary file
            tmp.unlink(missing_ok=True)
        raise UserError(f"cannot write {out}: {exc.strerror}") from None
    print(
        f"wrote {out}: {len(found.entries)} events of program image {found.header.image_digest[:12]}",
        file=sys.stderr,
    )
    return 0
