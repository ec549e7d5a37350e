"""Initial table contents from a data directory (one `<table>.csv` per table), onto any card.

The file formats are those of `riskgw replay --data` (docs/replay.md), and so are the errors.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path

from riskgw.card.driver import CardDriver
from riskgw.engine.csvdata import DataRow, read_table
from riskgw.engine.engine import DuplicateKeyError
from riskgw.engine.table import Key
from riskgw.errors import InputError


def load_data_dir(card: CardDriver, data_dir: Path) -> int:
    """Load every user table that has a data file; returns the number of rows loaded."""
    if not data_dir.is_dir():
        raise InputError(str(data_dir), 0, "no such directory")
    image = card.image
    tables = {t.name: t for t in image.tables if not t.hidden}
    by_table: dict[str, Path] = {}
    for path in sorted(p for p in data_dir.iterdir() if p.suffix.lower() == ".csv"):
        name = path.stem.lower()
        if name not in tables:
            known = ", ".join(tables) or "none"
            raise InputError(str(path), 0, f"no table named {path.stem!r} in the rules (tables: {known})")
        if name in by_table:
            raise InputError(str(path), 0, f"a second data file for table {name} (also {by_table[name]})")
        by_table[name] = path
    n = 0
    for config in image.tables:
        data_file = by_table.get(config.name)
        if data_file is None:
            continue
        rows = read_table(data_file, config)
        # in chunks: a card behind a link (the simulated card) pays a round trip per call
        while chunk := list(itertools.islice(rows, _CHUNK)):
            try:
                n += card.load_rows(config.id, [row.words for row in chunk])
            except DuplicateKeyError as exc:
                line = _duplicate_line(chunk, config.key, exc.key)
                raise InputError(str(data_file), line, f"duplicate key in table {config.name}") from None
    return n


_CHUNK = 4096  # rows per load_rows call


def _duplicate_line(rows: Sequence[DataRow], key_cols: Sequence[int], key: Key) -> int:
    """The line of the row load_rows stopped at: the second row of the chunk with `key`, or the
    first when the key was already in the table."""
    lines = [row.line for row in rows if tuple(row.words[c] for c in key_cols) == key]
    return lines[1] if len(lines) > 1 else lines[0] if lines else 0
