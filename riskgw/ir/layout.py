"""Physical layout of tables: every logical column becomes one or more 64-bit word columns."""

from __future__ import annotations

from riskgw.doe.image import PhysColumn, TableConfig
from riskgw.doe.isa import ColType
from riskgw.doe.values import char_words
from riskgw.lang import ast


def physical_columns(table: ast.Table) -> tuple[PhysColumn, ...]:
    cols: list[PhysColumn] = []
    for c in table.columns:
        if c.type.kind is ast.TypeKind.CHAR:
            for w in range(char_words(c.type.size)):
                name = c.name if w == 0 else f"{c.name}.w{w}"
                cols.append(PhysColumn(name, c.index, w, ColType.CHAR, c.nullable, c.type.size))
        else:
            ctype = ColType.INT32 if c.type.kind is ast.TypeKind.INT else ColType.INT64
            cols.append(PhysColumn(c.name, c.index, 0, ctype, c.nullable))
    return tuple(cols)


def column_words(config: TableConfig, logical: int) -> tuple[int, ...]:
    """Physical column indexes of a logical column, in word order."""
    return tuple(i for i, c in enumerate(config.columns) if c.logical == logical)


def table_config(table_id: int, table: ast.Table, key: tuple[ast.Column, ...]) -> TableConfig:
    cols = physical_columns(table)
    key_words = tuple(i for i, c in enumerate(cols) if any(c.logical == k.index for k in key))
    return TableConfig(table_id, table.name, cols, key_words)
