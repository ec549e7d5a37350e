"""The simulated card for `riskgw serve --card sim | sim:tcp://HOST:PORT`.

`sim` starts a `riskgw sim-card` process of its own (building the model the first time a parameter
set is used) with tables sized for the data the gateway loads; `sim:tcp://HOST:PORT` uses a server
already running and checks that its tables can hold that data. Failures are one-line UserErrors.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

from riskgw.card.doeport import DoeParams
from riskgw.card.driver import CardError
from riskgw.card.simcard import SimCard
from riskgw.card.simserver import CardParams
from riskgw.errors import UserError
from riskgw.gateway.config import SIM_PREFIX

MIN_ROWS = 256
HEADROOM = 1.5  # rows events add (orders) and a hash index that is not too full: 2 * ROWS buckets


def data_rows(data: Path | None) -> int:
    """Rows of the largest table file in `data` (0 without data)."""
    if data is None or not data.is_dir():
        return 0
    most = 0
    for path in data.iterdir():
        if path.suffix.lower() == ".csv":
            with path.open("rb") as f:
                most = max(most, sum(1 for line in f if line.strip()) - 1)
    return most


def rows_for(n_rows: int) -> int:
    """Rows per table (a power of two) for tables of up to `n_rows` rows with headroom."""
    want = max(MIN_ROWS, math.ceil(n_rows * HEADROOM))
    return 1 << (want - 1).bit_length()


def open_sim_card(kind: str, data: Path | None, log: Callable[[str], None]) -> SimCard:
    """The card `sim` (started here) or `sim:tcp://HOST:PORT` (running) names."""
    n_rows = data_rows(data)
    if kind.startswith(SIM_PREFIX):
        address = kind[len(SIM_PREFIX) :]
        try:
            card = SimCard.connect(address)
        except CardError as exc:
            raise UserError(f"--card {kind}: {exc}") from None
        rows = card.params.doe.rows
        if n_rows > rows:
            card.close()
            raise UserError(
                f"--card {kind}: its tables hold {rows} rows, the data has a table of {n_rows}:"
                f" run it with --rows {rows_for(n_rows)}"
            )
        log(f"simulated card at {address}: {rows} rows per table")
        return card
    rows = rows_for(n_rows)
    params = CardParams(doe=DoeParams(rows=rows, rules=128))
    log(
        f"starting the simulated card ({rows} rows per table, {params.data_w}-bit TOE);"
        " the first start of a build takes a few minutes"
    )
    try:
        return SimCard.start(params, timeout=60.0)
    except CardError as exc:
        raise UserError(f"--card sim: {exc}") from None
