"""Carrying the live tables from one program image to another (`riskgw deploy`, `riskgw rollback`).

A deployment keeps every user table's rows, in their order, and maps them onto the new schema by
table and column name:

- a column in both versions keeps its values; INT widens to INT8 and CHAR(n) to a CHAR of any size
  as long as every value fits (checked on the rows, at the swap);
- a new column is NULL, or the value given with `--default TABLE.COLUMN=VALUE`; a new NOT NULL
  column without a default cannot be filled and is refused;
- a new table starts from the deployment's data file, or empty;
- a dropped column or table loses its values, so it is refused unless the deployment allows drops
  (`--allow-drop`; a rollback always does, since it returns to a schema the data came from);
- a number column that becomes CHAR, or the reverse, is refused.

The hidden tables the compiler adds for aggregates are not carried: loading the user rows through
the new program's LOAD sections rebuilds them, as it does when the gateway starts from its data.
The row order is kept, so row handles (and with them ORDER BY ... LIMIT 1 results) do not change.

`plan` checks the schemas alone (before the swap); `carry` checks the rows and builds the new
tables (at the swap, before the card is touched), so a refused deployment changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from riskgw.doe.image import Image, TableConfig
from riskgw.doe.isa import INT32_MAX, INT32_MIN, ColType
from riskgw.doe.values import decode_char, encode_char
from riskgw.engine.csvdata import ColumnFormat, table_formats
from riskgw.engine.state import Snapshot
from riskgw.engine.table import Value
from riskgw.errors import UserError

Row = tuple[Value, ...]


class MigrationError(UserError):
    """A deployment whose tables cannot be carried over; nothing was changed."""


@dataclass(frozen=True)
class Source:
    """Where one new logical column's words come from."""

    kind: str  # "copy", "widen" (INT -> INT8), "narrow" (INT8 -> INT), "char" (resize), "const"
    first: int = 0  # the old column's first word
    n_words: int = 1
    const: tuple[Value, ...] = ()  # for "const"


@dataclass
class TablePlan:
    new: TableConfig
    old: TableConfig | None  # None: a new table
    sources: list[tuple[ColumnFormat, Source]] = field(default_factory=list)


@dataclass
class Plan:
    tables: list[TablePlan]
    changes: list[str]  # what the deployment does to the schema, for the operator
    dropped: list[str]  # columns and tables whose values are dropped


def _user_tables(image: Image) -> dict[str, TableConfig]:
    return {t.name: t for t in image.tables if not t.hidden}


def _type_name(fmt: ColumnFormat) -> str:
    return fmt.type_name()


def plan(old: Image, new: Image, defaults: Mapping[str, str], allow_drop: bool) -> Plan:
    """How the tables of `old` become those of `new`; MigrationError when they cannot.

    `defaults` maps `table.column` (lower case) to the text of a value, parsed as a data file would.
    """
    olds, news = _user_tables(old), _user_tables(new)
    changes: list[str] = []
    dropped: list[str] = []
    refusals: list[str] = []
    used_defaults: set[str] = set()
    tables: list[TablePlan] = []
    for name, cfg in news.items():
        old_cfg = olds.get(name)
        if old_cfg is None:
            changes.append(f"new table {name}")
            tables.append(TablePlan(cfg, None))
            continue
        tp = TablePlan(cfg, old_cfg)
        old_cols = {f.name: f for f in table_formats(old_cfg)}
        for fmt in table_formats(cfg):
            where = f"{name}.{fmt.name}"
            was = old_cols.pop(fmt.name, None)
            if was is None:
                text = defaults.get(where)
                if text is not None:
                    used_defaults.add(where)
                    try:
                        words = fmt.parse(text, "--default", 0)
                    except UserError as exc:
                        refusals.append(f"--default {where}={text}: {str(exc).split('error: ', 1)[-1]}")
                        continue
                    changes.append(f"new column {where} = {text}")
                    tp.sources.append((fmt, Source("const", const=words)))
                elif not fmt.nullable:
                    refusals.append(
                        f"new column {where} is NOT NULL and the existing rows have no value for it: "
                        f"give --default {where}=VALUE or declare it null"
                    )
                else:
                    changes.append(f"new column {where} (NULL in existing rows)")
                    tp.sources.append((fmt, Source("const", const=(None,) * fmt.n_words)))
                continue
            same = was.type is fmt.type and was.char_size == fmt.char_size
            if same:
                tp.sources.append((fmt, Source("copy", was.first_word, was.n_words)))
            elif was.type is ColType.INT32 and fmt.type is ColType.INT64:
                changes.append(f"column {where}: INT -> INT8")
                tp.sources.append((fmt, Source("widen", was.first_word)))
            elif was.type is ColType.INT64 and fmt.type is ColType.INT32:
                changes.append(f"column {where}: INT8 -> INT (every value must fit 32 bits)")
                tp.sources.append((fmt, Source("narrow", was.first_word)))
            elif was.type is ColType.CHAR and fmt.type is ColType.CHAR:
                changes.append(f"column {where}: {_type_name(was)} -> {_type_name(fmt)}")
                tp.sources.append((fmt, Source("char", was.first_word, was.n_words)))
            else:
                refusals.append(
                    f"column {where} changes from {_type_name(was)} to {_type_name(fmt)}: "
                    "its values cannot be converted; add a column under a new name instead"
                )
            if was.nullable and not fmt.nullable:
                changes.append(f"column {where} becomes NOT NULL (no row may hold NULL)")
        for gone in old_cols:
            dropped.append(f"column {name}.{gone}")
        tables.append(tp)
    for gone in olds:
        if gone not in news:
            dropped.append(f"table {gone}")
    unknown = sorted(set(defaults) - used_defaults)
    for where in unknown:
        refusals.append(f"--default {where}: no new column of that name")
    if dropped and not allow_drop:
        refusals.append(
            f"{', '.join(dropped)} would be dropped with {'its' if len(dropped) == 1 else 'their'} values: "
            "deploy with --allow-drop to drop them"
        )
    if refusals:
        raise MigrationError("; ".join(refusals))
    changes.extend(f"dropped {d}" for d in dropped)
    return Plan(tables, changes, dropped)


def snapshot_rows(image: Image, snap: Snapshot) -> dict[str, list[Row]]:
    """Every user table's rows (physical words, NULL as None) in row order, by table name."""
    out: dict[str, list[Row]] = {}
    for cfg, state in zip(image.tables, snap.tables, strict=True):
        if cfg.hidden:
            continue
        n = state.n_rows
        cols = []
        for words, nulls in zip(state.words, state.nulls, strict=True):
            w, z = words[:n].tolist(), nulls[:n].tolist()
            cols.append([None if null else v for v, null in zip(w, z, strict=True)])
        out[cfg.name] = list(zip(*cols, strict=True)) if cols else [() for _ in range(n)]
    return out


def carry(
    p: Plan, rows: Mapping[str, Sequence[Row]], data: Mapping[str, Sequence[Row]] | None = None
) -> dict[int, list[Row]]:
    """The new program's user tables (by table id): the old rows mapped by the plan, and a new
    table's rows from `data` (by name). MigrationError, before anything changed, when a value does
    not fit its new column, a NOT NULL column would hold NULL, or two rows would share a key."""
    out: dict[int, list[Row]] = {}
    for tp in p.tables:
        cfg = tp.new
        if tp.old is None:
            new_rows = [tuple(r) for r in (data or {}).get(cfg.name, [])]
        else:
            new_rows = [_convert(tp, row) for row in rows.get(cfg.name, [])]
        _check_rows(cfg, new_rows)
        out[cfg.id] = new_rows
    return out


def _convert(tp: TablePlan, row: Row) -> Row:
    words: list[Value] = [None] * len(tp.new.columns)
    for fmt, src in tp.sources:
        at = fmt.first_word
        if src.kind == "copy":
            words[at : at + fmt.n_words] = row[src.first : src.first + src.n_words]
        elif src.kind == "const":
            words[at : at + fmt.n_words] = src.const
        elif src.kind == "widen":
            words[at] = row[src.first]
        elif src.kind == "narrow":
            v = row[src.first]
            if v is not None and not INT32_MIN <= v <= INT32_MAX:
                raise MigrationError(f"column {tp.new.name}.{fmt.name}: {v} does not fit INT")
            words[at] = v
        else:  # char
            first = row[src.first]
            if first is None:
                continue
            text = decode_char([w if w is not None else 0 for w in row[src.first : src.first + src.n_words]])
            try:
                words[at : at + fmt.n_words] = encode_char(text, fmt.char_size)
            except ValueError:
                raise MigrationError(
                    f"column {tp.new.name}.{fmt.name}: {text!r} does not fit CHAR({fmt.char_size})"
                ) from None
    return tuple(words)


def _check_rows(cfg: TableConfig, rows: list[Row]) -> None:
    not_null = [(i, c.name) for i, c in enumerate(cfg.columns) if not c.nullable and c.word == 0]
    seen: set[tuple[Value, ...]] = set()
    key = cfg.key
    for n, row in enumerate(rows):
        for i, name in not_null:
            if row[i] is None:
                raise MigrationError(f"table {cfg.name}: row {n + 1} has no value for NOT NULL column {name}")
        if key:
            k = tuple(row[c] for c in key)
            if None in k:
                continue
            if k in seen:
                names = ", ".join(f"{cfg.columns[c].name}={v}" for c, v in zip(key, k, strict=True))
                raise MigrationError(
                    f"table {cfg.name}: two rows share the key ({names}) the new rules look rows up by"
                )
            seen.add(k)
