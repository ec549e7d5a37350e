"""`riskgw replay`: run recorded events through compiled rules and write the verdicts.

    riskgw replay RULES... --data DIR --events EVENTS.csv --out OUT.csv [--dump-state DIR]

OUT.csv has one row per event, in input order: `order_id,event,verdict,rules` (verdict ACCEPT or
REJECT for NEW, APPLIED otherwise; rules: the failed rules' names joined by `;`). Every input is
checked before anything is written, and outputs appear only complete (written to a temporary
file beside the target, then renamed).
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from riskgw.doe.image import Image
from riskgw.doe.isa import Event, EventField
from riskgw.engine.csvdata import EventRow, read_events, read_table
from riskgw.engine.engine import Decision, DuplicateKeyError, Engine
from riskgw.engine.state import dump_csv, table_rows
from riskgw.engine.table import EngineError, Value
from riskgw.errors import InputError, UserError

OUT_HEADER = ("order_id", "event", "verdict", "rules")
_PROGRESS_MIN_EVENTS = 200_000
_PROGRESS_STEP = 1 << 15


def load_data(engine: Engine, data_dir: Path, other: Image | None = None) -> int:
    """Load `<table>.csv` for every user table that has one; returns the number of rows loaded.

    With `other` (the other version in `--diff`), a file or a column that only `other` has is
    skipped instead of being an error.
    """
    if not data_dir.is_dir():
        raise InputError(str(data_dir), 0, "no such directory")
    tables = {t.name: t for t in engine.image.tables if not t.hidden}
    others = {t.name: t for t in other.tables if not t.hidden} if other is not None else {}
    files = sorted(p for p in data_dir.iterdir() if p.suffix.lower() == ".csv")
    by_table: dict[str, Path] = {}
    for path in files:
        name = path.stem.lower()
        if name not in tables and name in others:
            continue
        if name not in tables:
            known = ", ".join(sorted({*tables, *others})) or "none"
            raise InputError(str(path), 0, f"no table named {path.stem!r} in the rules (tables: {known})")
        if name in by_table:
            raise InputError(str(path), 0, f"a second data file for table {name} (also {by_table[name]})")
        by_table[name] = path
    n = 0
    for config in engine.image.tables:
        data_file = by_table.get(config.name)
        if data_file is None:
            continue
        table = engine.state.table(config.id)
        first_line: dict[tuple[int | None, ...], int] = {}
        in_other = others.get(config.name)
        ignore = frozenset(in_other.logical_names()) if in_other is not None else frozenset()
        for row in read_table(data_file, config, ignore):
            try:
                engine.load_row(config.id, row.words)
            except DuplicateKeyError as exc:
                names = [config.columns[c].name for c in table.key_cols]
                key = ", ".join(f"{c}={v}" for c, v in zip(names, exc.key, strict=True))
                earlier = first_line.get(exc.key)
                also = f" (also on line {earlier})" if earlier else ""
                message = f"duplicate key {key} in table {config.name}{also}"
                raise InputError(str(data_file), row.line, message) from None
            if table.key_cols:
                first_line.setdefault(table.key_of(row.words), row.line)
            n += 1
    return n


def replay_engine(image: Image) -> Engine:
    """The fastest engine this machine can run: native when there is a C compiler, else the fast path.

    All backends give the same decisions and state, so the outputs do not depend on the choice.
    """
    from riskgw.engine.cbuild import compiler

    if compiler() is not None:
        try:
            return Engine(image, "native")
        except EngineError as exc:
            print(f"riskgw: native engine unavailable ({exc}); using the Python fast path", file=sys.stderr)
    return Engine(image)


class EventRunner(Protocol):
    """What runs the events: an Engine, or a card (riskgw/card/simreplay.py)."""

    def process_batch(self, events: Sequence[tuple[Event, Sequence[Value]]]) -> list[Decision]: ...


def run_events(engine: EventRunner, image: Image, events: list[EventRow], progress: bool) -> list[list[str]]:
    rule_names = {r.id: r.name for r in image.rules}
    out: list[list[str]] = []
    total = len(events)
    for start in range(0, total, _PROGRESS_STEP):
        chunk = events[start : start + _PROGRESS_STEP]
        decisions = engine.process_batch([(ev.event, ev.inputs) for ev in chunk])
        for ev, decision in zip(chunk, decisions, strict=True):
            order_id = ev.inputs[EventField.ORDER_ID]
            if ev.event is not Event.NEW:
                verdict = "APPLIED"
            elif decision.accepted:
                verdict = "ACCEPT"
            else:
                verdict = "REJECT"
            rules = ";".join(rule_names[r] for r in decision.failed) if decision.failed else ""
            out.append(["" if order_id is None else str(order_id), ev.event.name, verdict, rules])
        if progress:
            _progress(start + len(chunk), total)
    if progress:
        print("\r\033[K", end="", file=sys.stderr)
    return out


def _progress(done: int, total: int) -> None:
    width = 40
    filled = width * done // total
    bar = "#" * filled + "-" * (width - filled)
    print(f"\rreplay [{bar}] {done}/{total} events", end="", file=sys.stderr, flush=True)


def _csv_text(header: tuple[str, ...], rows: list[list[str]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()


class _Outputs:
    """Files written beside their targets and renamed into place only when all are written."""

    def __init__(self) -> None:
        self._pending: list[tuple[Path, Path]] = []

    def add(self, target: Path, text: str) -> None:
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent or ".")
        except OSError as exc:
            raise UserError(f"cannot write {target}: {exc.strerror}") from None
        self._pending.append((Path(tmp), target))
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
                f.write(text)
        except OSError as exc:
            raise UserError(f"cannot write {target}: {exc.strerror}") from None

    def commit(self) -> None:
        for tmp, target in self._pending:
            try:
                tmp.replace(target)
            except OSError as exc:
                raise UserError(f"cannot write {target}: {exc.strerror}") from None
        self._pending = []

    def discard(self) -> None:
        for tmp, _ in self._pending:
            tmp.unlink(missing_ok=True)
        self._pending = []


def journal_events(path: Path) -> list[EventRow]:
    """The events of a gateway journal, or of every `*.journal` file in a directory (name order).

    `line` is the event's number in its journal (1 for the first event), for messages.
    """
    from riskgw.gateway.journal import scan

    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix == ".journal" and p.is_file())
        if not files:
            raise InputError(str(path), 0, "no *.journal file in this directory")
    else:
        files = [path]
    events: list[EventRow] = []
    for file in files:
        try:
            found = scan(file)
        except OSError as exc:
            raise InputError(str(file), 0, f"cannot read: {exc.strerror}") from None
        if found.header is None:
            raise InputError(str(file), 0, "not a riskgw journal")
        if found.problem is not None:
            print(
                f"riskgw: warning: {file}: {found.total_bytes - found.good_bytes} bytes at offset "
                f"{found.good_bytes} left out: {found.problem}",
                file=sys.stderr,
            )
        events.extend(EventRow(i + 1, e.event, e.inputs) for i, e in enumerate(found.entries))
    return events


def input_events(args: argparse.Namespace) -> list[EventRow]:
    """The events of `--events FILE` or `--journal PATH`."""
    if getattr(args, "journal", None):
        return journal_events(Path(args.journal))
    return read_events(Path(args.events))


def run_replay(args: argparse.Namespace) -> int:
    from riskgw.doe.compiler import compile_files

    address = getattr(args, "card_address", None)
    if address and args.backend != "sim":
        raise UserError("--card-address is for --backend sim")
    if address:
        from riskgw.card.simproto import zmq_endpoint

        try:
            if zmq_endpoint(address).endswith(":*"):  # port 0 binds anywhere; it connects nowhere
                raise ValueError(f"{address!r}: give the port the running sim-card listens on")
        except ValueError as exc:
            raise UserError(f"--card-address {exc}") from None
    if getattr(args, "diff", None):
        if args.backend != "soft":
            raise UserError("--diff runs on --backend soft only")
        if args.rules:
            raise UserError("give either RULES... or --diff OLD NEW, not both")
        if args.dump_state:
            raise UserError("--dump-state is not available with --diff")
        from riskgw.engine.whatif import run_diff

        return run_diff(args)
    if not args.rules:
        raise UserError("no rules: give RULES... (or --diff OLD NEW)")
    result = compile_files([Path(p) for p in args.rules], lanes=8)
    for w in result.warnings:
        print(w.render(), file=sys.stderr)
    image = result.image
    if args.backend == "sim":
        from riskgw.card.simreplay import sim_replay

        rows, state, elapsed = sim_replay(args, image, input_events(args))
        events_n = len(rows)
    else:
        engine = replay_engine(image)
        if args.data:
            load_data(engine, Path(args.data))
        events = input_events(args)
        events_n = len(events)

        progress = sys.stderr.isatty() and len(events) >= _PROGRESS_MIN_EVENTS
        start = time.perf_counter()
        rows = run_events(engine, image, events, progress)
        elapsed = time.perf_counter() - start
        state = engine.state

    outputs = _Outputs()
    try:
        outputs.add(Path(args.out), _csv_text(OUT_HEADER, rows))
        if args.dump_state:
            dump_dir = Path(args.dump_state)
            try:
                dump_dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise UserError(f"cannot create {dump_dir}: {exc.strerror}") from None
            for config in image.tables:
                if config.hidden:
                    continue
                table = state.table(config.id)
                text = dump_csv(config.logical_names(), table_rows(table))
                outputs.add(dump_dir / f"{config.name}.csv", text)
        outputs.commit()
    finally:
        outputs.discard()
    rate = events_n / elapsed if elapsed > 0 else float("inf")
    print(f"replayed {events_n} events in {elapsed:.3f} s ({rate:.0f} events/s)", file=sys.stderr)
    return 0
