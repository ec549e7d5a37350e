"""Helpers for the failover tests: the SQLite oracle beside a card, and state dumps to compare."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from oracle.replay import Oracle, keys_of, read_table_csv

from riskgw.doe.compiler import compile_files
from riskgw.doe.image import Image
from riskgw.doe.isa import EVENT_FIELD_REGS, Event
from riskgw.doe.values import decode_char
from riskgw.engine.engine import Decision, Engine
from riskgw.engine.state import Snapshot, dump_rows, table_rows
from riskgw.engine.table import Value

Fields = Mapping[str, int | str | None]


def fields_of(inputs: Sequence[Value]) -> dict[str, int | str | None]:
    """The trade_order fields of an event's input registers (the inverse of event_inputs)."""
    out: dict[str, int | str | None] = {}
    for name, (reg, n_words) in EVENT_FIELD_REGS.items():
        if n_words == 1:
            out[name] = inputs[reg]
        elif all(w is None for w in inputs[reg : reg + n_words]):
            out[name] = None
        else:
            out[name] = decode_char([int(w or 0) for w in inputs[reg : reg + n_words]])
    return out


class OracleRun:
    """The same events through SQLite: each decision checked, the final state dumped."""

    def __init__(self, rules: Sequence[Path], data_dir: Path) -> None:
        result = compile_files(list(rules))
        self.image: Image = result.image
        self.oracle = Oracle(result.program, keys_of(result))
        for t in result.program.tables:
            path = data_dir / f"{t.name}.csv"
            if path.exists():
                self.oracle.load(t.name, read_table_csv(path, t))
        self.rule_names = {r.id: r.name for r in self.image.rules}
        self.events = 0
        self.differences: list[str] = []

    def check(self, event: Event, fields: Fields, decision: Decision) -> None:
        self.events += 1
        failed = self.oracle.event(event.name, fields)
        got = [self.rule_names[r] for r in decision.failed]
        if got != failed or decision.accepted != (not failed):
            self.differences.append(
                f"event {self.events} {event.name} {dict(fields)}: {decision} vs {failed}"
            )

    def dump(self) -> dict[str, list[list[str]]]:
        return self.oracle.dump()


def state_dump(image: Image, snap: Snapshot) -> dict[str, list[list[str]]]:
    """Every user table of a snapshot, as the oracle dumps it (header, then sorted rows)."""
    engine = Engine(image)
    engine.restore(snap)
    out: dict[str, list[list[str]]] = {}
    for config in image.tables:
        if config.hidden:
            continue
        rows = dump_rows(table_rows(engine.state.table(config.id)))
        out[config.name] = [list(config.logical_names()), *rows]
    return out


def same_state(image: Image, snap: Snapshot, run: OracleRun) -> str | None:
    """None when the snapshot holds what SQLite holds, else the first difference."""
    mine, theirs = state_dump(image, snap), run.dump()
    if sorted(mine) != sorted(theirs):
        return f"tables {sorted(mine)} vs {sorted(theirs)}"
    for table, rows in theirs.items():
        if mine[table] != rows:
            for i, (a, b) in enumerate(zip(mine[table], rows, strict=False)):
                if a != b:
                    return f"{table} row {i}: riskgw {a} != sqlite {b}"
            return f"{table}: riskgw {len(mine[table])} rows, sqlite {len(rows)}"
    return None
