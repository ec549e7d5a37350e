"""The simulated card for `riskgw serve --card sim | sim:tcp://HOST:PORT`.

`sim` starts a `riskgw sim-card` process of its own (building the model the first time a parameter
set is used) with tables sized for the data the gateway loads: enough rows, and an index in which
no hash bucket of the DOE overflows with the data's keys; `sim:tcp://HOST:PORT` uses a server
already running and checks the same of its tables. Failures are one-line UserErrors. With a hot
standby that brings cards back, `sim` takes its cards from a SimCardPool (`sim_card_pool`).
"""

from __future__ import annotations

import collections
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from riskgw.card.doeport import DoeParams, hash_bucket
from riskgw.card.driver import CardError
from riskgw.card.simcard import SimCard
from riskgw.card.simpool import SimCardPool
from riskgw.card.simserver import CardParams
from riskgw.doe.image import Image
from riskgw.engine.csvdata import read_table
from riskgw.errors import UserError
from riskgw.gateway.config import SIM_PREFIX

MIN_ROWS = 256
MAX_ROWS = 1 << 20  # the DOE's cell read-back address holds 20 row bits with 8 tables of 16 columns
HEADROOM = 1.5  # room for the rows events add (orders)
M64 = (1 << 64) - 1
DATA_W = 512  # a NEW_ORDER frame in one beat: a fifth of the simulated cycles (and Python) of 64 bits
# slots per hash bucket: the DOE's default, then twice as many for data whose keys crowd a bucket
# (the reference data set fits 4 from 32768 rows; tests/test_doe_hash.py measures it)
WAYS = (4, 8)
LINK_TIMEOUT_S = 60.0  # the driver's deadline per call
FIRST_START_S = 900.0  # a card's start, the model's build included (minutes on a loaded machine)


@dataclass(frozen=True)
class DataShape:
    """What sizing a card needs to know of the data: its largest table, and each keyed table's keys."""

    most_rows: int
    keys: tuple[tuple[tuple[int, ...], ...], ...]  # per keyed table, its rows' keys (no NULL in them)


def data_shape(image: Image, data: Path | None) -> DataShape:
    if data is None or not data.is_dir():
        return DataShape(0, ())
    most = 0
    keys: list[tuple[tuple[int, ...], ...]] = []
    for config in image.tables:
        path = data / f"{config.name}.csv"
        if config.hidden or not path.exists():
            continue
        rows = list(read_table(path, config))
        most = max(most, len(rows))
        if config.key:
            table_keys = (tuple(row.words[c] for c in config.key) for row in rows)
            keys.append(tuple(k for k in table_keys if None not in k))  # type: ignore[misc]
    return DataShape(most, tuple(keys))


def fits(shape: DataShape, rows: int, ways: int) -> bool:
    """Every table's rows fit in `rows` and no hash bucket gets more keys than it has ways. The
    DOE's hash spreads keys about evenly (order ids 1..N at most two to a bucket), but any hash
    puts more keys than ways in a bucket for some key sets, and the card would refuse those rows."""
    if shape.most_rows > rows:
        return False
    cl_buckets = (rows - 1).bit_length() + 1  # 2 * ROWS buckets
    for keys in shape.keys:
        if keys and max(collections.Counter(hash_bucket(k, cl_buckets) for k in keys).values()) > ways:
            return False
    return True


def rows_for(shape: DataShape) -> tuple[int, int]:
    """The fewest power-of-two rows per table, with headroom, that hold the data, and the hash ways
    (4, or 8 when 4 overflow a bucket) that go with them. Fewer rows make a shorter reset: the DOE
    clears 2 * ROWS buckets per table, and the simulated clock runs tens of thousands of cycles a
    second."""
    rows = 1 << (max(MIN_ROWS, math.ceil(shape.most_rows * HEADROOM)) - 1).bit_length()
    while rows < MAX_ROWS:
        for ways in WAYS:
            if fits(shape, rows, ways):
                return rows, ways
        rows *= 2
    return rows, WAYS[-1]


def open_sim_card(kind: str, image: Image, data: Path | None, log: Callable[[str], None]) -> SimCard:
    """The card `sim` (started here) or `sim:tcp://HOST:PORT` (running) names, for `image` and `data`."""
    shape = data_shape(image, data)
    if kind.startswith(SIM_PREFIX):
        address = kind[len(SIM_PREFIX) :]
        try:
            card = SimCard.connect(address)
        except CardError as exc:
            raise UserError(f"--card {kind}: {exc}") from None
        rows = card.params.doe.rows
        if not fits(shape, rows, card.params.doe.ways):
            card.close()
            raise UserError(
                f"--card {kind}: its tables ({rows} rows) cannot hold the data (a table of"
                f" {shape.most_rows} rows): run it with --rows {rows_for(shape)[0]}"
            )
        log(f"simulated card at {address}: {rows} rows per table")
        return card
    params = card_params(shape, log)
    try:
        return SimCard.start(params, timeout=LINK_TIMEOUT_S)
    except CardError as exc:
        raise UserError(f"--card sim: {exc}") from None


def card_params(shape: DataShape, log: Callable[[str], None]) -> CardParams:
    """The parameters of a card started here for data of `shape` (and the log line that says so)."""
    rows, ways = rows_for(shape)
    params = CardParams(data_w=DATA_W, doe=DoeParams(rows=rows, ways=ways, rules=128))
    log(
        f"starting the simulated card ({rows} rows per table, {ways} hash ways, {params.data_w}-bit TOE);"
        " the first start of a build takes a few minutes"
    )
    return params


def sim_card_pool(image: Image, data: Path | None, spares: int, log: Callable[[str], None]) -> SimCardPool:
    """A pool of `spares` cards for `sim`, loaded with `image` and sized for `data`: the gateway takes
    its card from it, and each failback the next (SimCardPool says how); `log` hears of a spare that
    fails to start, which the pool tries again."""
    params = card_params(data_shape(image, data), log)
    return SimCardPool(params, spares=spares, timeout=LINK_TIMEOUT_S, image=image, log=log)


def take_first(pool: SimCardPool) -> SimCard:
    """The gateway's card from `pool`: the first start of a build waits for the build; a start that
    fails is tried again, and the gateway gives up after 3 (SimCardPool.take)."""
    try:
        return pool.take(timeout=FIRST_START_S)
    except CardError as exc:
        pool.close()
        raise UserError(f"--card sim: {exc}") from None
