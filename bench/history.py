"""The order history of a long session, built in bulk: the order_info rows that a replay of N
orders per account would have left, without replaying them.

A latency at a table size depends on the tables the lookups search, not on how they were filled.
Replaying the 1,000,000-orders-per-account session takes about 34M events (20 minutes and more on
a shared 2-core machine); instead bench/engine.py fills order_info here, through the engine's
table API (ColumnTable.load) and SQLite's executemany, with the finished orders of such a session
(every column a replay writes, open_quantity 0), then replays a short real session on top and times
its events. Only order_info grows with the session: the other tables hold one row per account,
holding, security or (account, security) whatever the session's length.

The history's order ids start above any id the session uses, so no check sees a duplicate it would
not have seen in a replay; the securities are the accounts' holdings, prices their reference price.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from riskgw.doe.image import Image, TableConfig
from riskgw.doe.values import encode_char
from riskgw.engine.engine import Engine
from riskgw.engine.table import Key, TableState
from riskgw.scenario import DataSet, ticket

TABLE = "order_info"
FIRST_ID = 10**12  # above every order id a session of up to 10^9 orders uses


@dataclass(frozen=True)
class History:
    """n finished orders, column by column (logical columns of order_info)."""

    order_id: npt.NDArray[np.int64]
    account_id: npt.NDArray[np.int64]
    sec: npt.NDArray[np.int64]
    direction: npt.NDArray[np.int64]
    price: npt.NDArray[np.int64]

    @property
    def n(self) -> int:
        return len(self.order_id)


def history(data: DataSet, n: int, seed: int = 7) -> History:
    rng = np.random.default_rng(seed)
    account = np.arange(n, dtype=np.int64) % data.n_accounts
    k = rng.integers(0, data.holdings_per_account, n, dtype=np.int64)
    sec = ((account * 97) % data.n_securities + k) % data.n_securities  # DataSet.held
    return History(
        order_id=FIRST_ID + np.arange(n, dtype=np.int64),
        account_id=account,
        sec=sec,
        direction=rng.integers(0, 2, n, dtype=np.int64),
        price=1_000 + (sec * 7919) % 99_000,  # scenario.ref_price
    )


def _config(image: Image) -> TableConfig:
    return next(t for t in image.tables if t.name == TABLE)


def table_state(image: Image, data: DataSet, h: History) -> TableState:
    """order_info holding the history's rows, in the engine's physical layout, with its key index."""
    config = _config(image)
    words: list[npt.NDArray[np.int64]] = []
    nulls: list[npt.NDArray[np.bool_]] = []
    for c in config.columns:
        null = np.zeros(h.n, np.bool_)
        if c.type.name == "CHAR":
            table = np.array([encode_char(ticket(s), c.char_size)[c.word] for s in range(data.n_securities)])
            col = table[h.sec]
        elif c.name == "open_quantity":
            col = np.zeros(h.n, np.int64)  # finished: filled, rejected or cancelled
        else:
            col = getattr(h, c.name)
        words.append(np.ascontiguousarray(col, np.int64))
        nulls.append(null)
    if [config.columns[i].name for i in config.key] != ["order_id"]:
        raise ValueError(f"{TABLE} is expected to be keyed by order_id alone")
    index: dict[Key, int] = dict(zip(((i,) for i in h.order_id.tolist()), range(h.n), strict=True))
    return TableState(h.n, words, nulls, index)


def install(engine: Engine, state: TableState) -> None:
    """Put the history into an engine whose order_info is still empty (data loaded, no events)."""
    table = engine.state.by_name(TABLE)
    if table.n_rows:
        raise ValueError(f"{TABLE} already holds {table.n_rows} rows")
    table.load(state)


def sqlite_rows(h: History) -> Iterator[tuple[int | str | None, ...]]:
    """The history as SQLite rows of order_info (logical columns, in declaration order)."""
    tickets = [ticket(s) for s in range(int(h.sec.max()) + 1)] if h.n else []
    columns = (h.order_id, h.account_id, h.sec, h.direction, h.price)
    for oid, acc, sec, d, px in zip(*(c.tolist() for c in columns), strict=True):
        yield (oid, acc, tickets[sec], d, px, 0)


def into_sqlite(oracle: Any, h: History) -> None:
    """The history into the SQLite baseline's order_info (tests/oracle's Oracle), in one
    transaction: its connection is in autocommit mode, a transaction per row otherwise."""
    oracle.db.execute("BEGIN")
    oracle.load(TABLE, sqlite_rows(h))
    oracle.db.execute("COMMIT")
