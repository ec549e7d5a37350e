"""Replaying events through the SQLite translation of a rule program.

`Oracle` holds one in-memory SQLite database with the translated program; `replay` takes the same
inputs as `riskgw replay` (rule files, a data directory, an events CSV) and returns the OUT rows
and every user table's final state in the format of `riskgw replay --dump-state`.
"""

from __future__ import annotations

import csv
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from oracle import sqlfuncs
from oracle.translate import TRADE_ORDER, Translation, ident, translate
from riskgw.lang import ast

if TYPE_CHECKING:  # the compiler is imported where it is used (compile_rules)
    from riskgw.doe.compiler import CompileResult

Value = int | str | None
Row = tuple[Value, ...]
FIELD_NAMES = tuple(n for n, _ in ast.TRADE_ORDER_FIELDS)
EVENT_KINDS = ("NEW", "FILL", "REJECT", "CANCEL")
_TRIGGER_EVENT = {
    "NEW": ast.TriggerEvent.ACCEPT,
    "FILL": ast.TriggerEvent.FILL,
    "REJECT": ast.TriggerEvent.REJECT,
    "CANCEL": ast.TriggerEvent.CANCEL,
}


def keys_of(result: CompileResult) -> dict[str, tuple[str, ...]]:
    """Each user table's derived unique key (column names) from a compile result's image."""
    program = result.program
    out: dict[str, tuple[str, ...]] = {}
    for cfg in result.image.tables:
        table = program.table(cfg.name)
        if table is None:  # a table the compiler added (e.g. for an incremental aggregate)
            continue
        names: list[str] = []
        for phys in cfg.key:
            name = table.columns[cfg.columns[phys].logical].name
            if name not in names:
                names.append(name)
        out[table.name] = tuple(names)
    return out


class Oracle:
    def __init__(self, program: ast.Program, keys: Mapping[str, tuple[str, ...]]) -> None:
        self.program = program
        self.translation: Translation = translate(program, keys)
        self.db = sqlite3.connect(":memory:", isolation_level=None, cached_statements=1024)
        sqlfuncs.register(self.db)
        for stmt in self.translation.schema:
            self.db.execute(stmt)
        self._field_marks = ", ".join("?" for _ in FIELD_NAMES)

    def load(self, table: str, rows: Sequence[Row]) -> None:
        """Data rows in file order (a row's place decides ORDER BY ties)."""
        t = self.program.table(table)
        if t is None:
            raise KeyError(table)
        cols = ", ".join(ident(c.name) for c in t.columns)
        marks = ", ".join("?" for _ in t.columns)
        self.db.executemany(f"INSERT INTO {ident(t.name)} ({cols}) VALUES ({marks})", rows)

    def _event_row(self, fields: Mapping[str, Value]) -> Row:
        return tuple(fields.get(n) for n in FIELD_NAMES)

    def failed_rules(self, fields: Mapping[str, Value]) -> list[str]:
        """Names of the rules the order fails, in rule order; changes nothing."""
        self.db.execute(f"DELETE FROM {ident(TRADE_ORDER)}")
        insert = f"INSERT INTO {ident(TRADE_ORDER)} VALUES ({self._field_marks})"
        self.db.execute(insert, self._event_row(fields))
        failed = []
        for name, query in self.translation.rules:
            (v,) = self.db.execute(query).fetchone()
            if v:
                failed.append(name)
        return failed

    def fire(self, event: ast.TriggerEvent, fields: Mapping[str, Value]) -> None:
        """Run the triggers of `event`, in file order."""
        row = self._event_row(fields)
        for ev_table in self.translation.triggers.get(event, []):
            self.db.execute(f"INSERT INTO {ident(ev_table)} VALUES ({self._field_marks})", row)
            self.db.execute(f"DELETE FROM {ident(ev_table)}")

    def event(self, kind: str, fields: Mapping[str, Value]) -> list[str]:
        """One event; for NEW the failed rules (empty: accepted and the ACCEPT triggers ran)."""
        if kind == "NEW":
            failed = self.failed_rules(fields)
            if not failed:
                self.fire(ast.TriggerEvent.ACCEPT, fields)
            return failed
        self.fire(_TRIGGER_EVENT[kind], fields)
        return []

    def rows(self, table: str) -> list[Row]:
        t = self.program.table(table)
        if t is None:
            raise KeyError(table)
        cols = ", ".join(ident(c.name) for c in t.columns)
        return [tuple(r) for r in self.db.execute(f"SELECT {cols} FROM {ident(t.name)} ORDER BY rowid")]

    def dump(self) -> dict[str, list[list[str]]]:
        """Every user table as `riskgw replay --dump-state` writes it: header, then sorted rows."""
        out: dict[str, list[list[str]]] = {}
        for t in self.program.tables:
            out[t.name] = [[c.name for c in t.columns], *dump_rows(self.rows(t.name))]
        return out


def _sort_key(row: Sequence[Value]) -> tuple[tuple[int, int | bytes], ...]:
    return tuple((0, 0) if v is None else (1, v.encode("utf-8") if isinstance(v, str) else v) for v in row)


def dump_rows(rows: Sequence[Sequence[Value]]) -> list[list[str]]:
    """Rows sorted by their values in declaration order, NULL first, NULL as an empty field."""
    return [["" if v is None else str(v) for v in row] for row in sorted(rows, key=_sort_key)]


# ----------------------------------------------------------------------------- files


def parse_value(text: str, sql_type: ast.SqlType) -> Value:
    if text == "":
        return None
    if sql_type.kind is ast.TypeKind.CHAR:
        return text
    return int(text)


def read_table_csv(path: Path, table: ast.Table) -> list[Row]:
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = [h.strip().lower() for h in next(reader)]
        cols = [table.column(h) for h in header]
        rows: list[Row] = []
        for rec in reader:
            if not rec:
                continue
            values: dict[str, Value] = {}
            for col, text in zip(cols, rec, strict=True):
                assert col is not None, f"{path}: unknown column in header {header}"
                values[col.name] = parse_value(text, col.type)
            rows.append(tuple(values.get(c.name) for c in table.columns))
    return rows


EVENT_HEADER = ("event", *FIELD_NAMES)


def read_events(path: Path) -> list[tuple[str, dict[str, Value]]]:
    """Events as `riskgw replay` reads them: the header `event,<trade_order fields>`, then rows."""
    types = dict(ast.TRADE_ORDER_FIELDS)
    out: list[tuple[str, dict[str, Value]]] = []
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = tuple(next(reader))
        assert header == EVENT_HEADER, f"{path}: header {header}"
        for rec in reader:
            if not rec:
                continue
            fields = {n: parse_value(text, types[n]) for n, text in zip(FIELD_NAMES, rec[1:], strict=True)}
            out.append((rec[0], fields))
    return out


def write_events(path: Path, events: Sequence[tuple[str, Mapping[str, Value]]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(EVENT_HEADER)
        for kind, fields in events:
            w.writerow([kind, *("" if fields.get(n) is None else str(fields.get(n)) for n in FIELD_NAMES)])


def write_table_csv(path: Path, columns: Sequence[str], rows: Sequence[Sequence[Value]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(columns)
        for row in rows:
            w.writerow(["" if v is None else str(v) for v in row])


@dataclass
class ReplayResult:
    out: list[list[str]]  # one row per event: order_id, event, verdict, failed rules
    state: dict[str, list[list[str]]]  # table -> header and sorted rows


def compile_rules(paths: Sequence[Path]) -> tuple[ast.Program, dict[str, tuple[str, ...]]]:
    from riskgw.doe.compiler import compile_files

    result = compile_files(list(paths))
    return result.program, keys_of(result)


def replay(rules: Sequence[Path], data_dir: Path | None, events: Path) -> ReplayResult:
    program, keys = compile_rules(rules)
    oracle = Oracle(program, keys)
    if data_dir is not None:
        for t in program.tables:
            p = data_dir / f"{t.name}.csv"
            if p.exists():
                oracle.load(t.name, read_table_csv(p, t))
    out: list[list[str]] = []
    for kind, fields in read_events(events):
        failed = oracle.event(kind, fields)
        oid = fields.get("order_id")
        verdict = ("REJECT" if failed else "ACCEPT") if kind == "NEW" else "APPLIED"
        out.append(["" if oid is None else str(oid), kind, verdict, ";".join(failed)])
    return ReplayResult(out, oracle.dump())


def read_csv(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return [rec for rec in csv.reader(f) if rec]


def engine_replay(rules: Sequence[Path], data_dir: Path | None, events: Path, workdir: Path) -> ReplayResult:
    """`riskgw replay` on the same inputs, read back into a ReplayResult (OUT without its header)."""
    from riskgw.cli import main

    out = workdir / "out.csv"
    dump = workdir / "state"
    argv = [*map(str, rules), "--events", str(events), "--out", str(out), "--dump-state", str(dump)]
    if data_dir is not None:
        argv += ["--data", str(data_dir)]
    code = main(["replay", *argv])
    if code != 0:
        raise AssertionError(f"riskgw replay exited {code}")
    rows = read_csv(out)
    assert rows[0] == ["order_id", "event", "verdict", "rules"], rows[0]
    state = {p.stem: read_csv(p) for p in sorted(dump.glob("*.csv"))}
    return ReplayResult(rows[1:], state)
