"""The example rule set in rules/: it checks, and each rule rejects what it should and accepts what
it should, run through `riskgw replay` on a small data set written out here."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from oracle.replay import Value, engine_replay, write_events, write_table_csv

from riskgw.cli import main

ROOT = Path(__file__).resolve().parent.parent
RULES = sorted((ROOT / "rules").glob("*.sql"))
SECOND = 1_000_000_000

# account 1: cash and holdings; 2: balance NULL; 3: little cash. Account 1 has no holdings row for
# 000001 (so the self-trade checks fail closed there); 688981 has no instrument_info row.
DATA: dict[str, tuple[list[str], list[list[Value]]]] = {
    "account_info": (
        ["account_id", "available_balance", "total_balance"],
        [[1, 1_000_000, 1_000_000], [2, None, 500_000], [3, 100_000, 100_000]],
    ),
    "account_ticket_info": (
        [
            "account_id",
            "ticket_id",
            "avail_quantity",
            "total_quantity",
            "avg_price",
            "buy_top_price",
            "sell_low_price",
        ],
        [
            [1, "600000", 500, 500, 990, None, None],
            [1, "600036", 0, 0, None, None, None],
            [1, "688981", 100, 100, 50, None, None],
            [2, "600000", 100, 100, 1000, None, None],
            [3, "600000", 0, 0, None, None, None],
        ],
    ),
    "instrument_info": (
        ["ticket_id", "ref_price", "band_bps", "max_qty", "max_notional"],
        [
            ["600000", 1000, 500, 1000, 500_000],
            ["600036", 1250, 500, 100, 10_000_000],
            ["000001", 1500, 500, 1000, 500_000],
        ],
    ),
}

Event = tuple[str, dict[str, Value]]


def order(
    oid: int, account: int, ticket: str, direction: int, price: int, qty: int, ts: int = 10 * SECOND
) -> dict[str, Value]:
    return {
        "order_id": oid,
        "account_id": account,
        "ticket_id": ticket,
        "direction": direction,
        "price": price,
        "quantity": qty,
        "ts": ts,
    }


def new(
    oid: int, account: int, ticket: str, direction: int, price: int, qty: int, ts: int = 10 * SECOND
) -> Event:
    return ("NEW", order(oid, account, ticket, direction, price, qty, ts))


def buy(oid: int, account: int, ticket: str, price: int, qty: int, ts: int = 10 * SECOND) -> Event:
    return new(oid, account, ticket, 0, price, qty, ts)


def sell(oid: int, account: int, ticket: str, price: int, qty: int, ts: int = 10 * SECOND) -> Event:
    return new(oid, account, ticket, 1, price, qty, ts)


def after(kind: str, placed: Event, exec_quantity: int | None, exec_price: int | None = None) -> Event:
    return (kind, dict(placed[1], exec_quantity=exec_quantity, exec_price=exec_price))


def replay(tmp_path: Path, events: list[Event]) -> tuple[list[list[str]], dict[str, list[list[str]]]]:
    tmp_path = Path(tempfile.mkdtemp(dir=tmp_path))
    data = tmp_path / "data"
    data.mkdir()
    for name, (cols, rows) in DATA.items():
        write_table_csv(data / f"{name}.csv", cols, rows)
    write_events(tmp_path / "events.csv", events)
    result = engine_replay(RULES, data, tmp_path / "events.csv", tmp_path)
    return result.out, result.state


def row(state: dict[str, list[list[str]]], table: str, **match: object) -> dict[str, str]:
    header, *rows = state[table]
    found = [dict(zip(header, r, strict=True)) for r in rows]
    found = [r for r in found if all(r[k] == str(v) for k, v in match.items())]
    assert len(found) == 1, f"{table} {match}: {found}"
    return found[0]


def test_riskgw_check_accepts_the_example_rules(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", *map(str, RULES)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"ok: {len(RULES)} file(s)"), out


OPEN_16 = [buy(100 + i, 1, "600000", 990, 1, ts=(20 + i) * SECOND) for i in range(16)]
BURST_8 = [buy(200 + i, 1, "600000", 990, 1, ts=30 * SECOND + i) for i in range(8)]
HELD_BUY = buy(1, 1, "600000", 1000, 10)
HELD_SELL = sell(1, 1, "600000", 1010, 10)

# (setup events, each must be accepted; the event under test; the rule it must fail, or None: accepted)
CASES: dict[str, tuple[list[Event], Event, str | None]] = {
    "funds: a buy costing more than the available cash is rejected": (
        [],
        buy(1, 3, "600000", 1000, 101),
        "FundsCheck",
    ),
    "funds: a buy costing exactly the available cash is accepted": ([], buy(1, 3, "600000", 1000, 100), None),
    "funds: a NULL balance fails closed": ([], buy(1, 2, "600000", 1000, 1), "FundsCheck"),
    "funds: cash frozen by an open buy is not available to the next": (
        [buy(1, 3, "600000", 1000, 60)],
        buy(2, 3, "600000", 1000, 41),
        "FundsCheck",
    ),
    "funds: a sell needs no cash": ([], sell(1, 2, "600000", 1000, 100), None),
    "holdings: selling more than the available holdings is rejected": (
        [],
        sell(1, 1, "600000", 1000, 501),
        "HoldingsCheck",
    ),
    "holdings: selling all the available holdings is accepted": ([], sell(1, 1, "600000", 1000, 500), None),
    "holdings: holdings frozen by an open sell are not available to the next": (
        [sell(1, 1, "600000", 1000, 300)],
        sell(2, 1, "600000", 1001, 201),
        "HoldingsCheck",
    ),
    "self-trade: a sell at the account's own open buy price is rejected": (
        [HELD_BUY],
        sell(2, 1, "600000", 1000, 10),
        "SelfTradeSell",
    ),
    "self-trade: a sell above the account's open buys is accepted": (
        [HELD_BUY],
        sell(2, 1, "600000", 1001, 10),
        None,
    ),
    "self-trade: a buy at the account's own open sell price is rejected": (
        [HELD_SELL],
        buy(2, 1, "600000", 1010, 10),
        "SelfTradeBuy",
    ),
    "self-trade: a buy below the account's open sells is accepted": (
        [HELD_SELL],
        buy(2, 1, "600000", 1009, 10),
        None,
    ),
    "self-trade: a cancelled buy no longer blocks a lower sell": (
        [HELD_BUY, after("CANCEL", HELD_BUY, 10)],
        sell(2, 1, "600000", 990, 10),
        None,
    ),
    "self-trade: a partly filled buy still blocks a lower sell": (
        [HELD_BUY, after("FILL", HELD_BUY, 4, 1000)],
        sell(2, 1, "600000", 990, 10),
        "SelfTradeSell",
    ),
    "self-trade: a buy rejected by the exchange no longer blocks a lower sell": (
        [HELD_BUY, after("REJECT", HELD_BUY, None)],
        sell(2, 1, "600000", 990, 10),
        None,
    ),
    "self-trade: without a holdings row a buy fails closed": (
        [],
        buy(1, 1, "000001", 1500, 1),
        "SelfTradeBuy",
    ),
    "self-trade: without a holdings row a sell fails closed": (
        [],
        sell(1, 1, "000001", 1500, 1),
        "SelfTradeSell",
    ),
    "price band: a price above the band is rejected": ([], buy(1, 1, "600000", 1051, 1), "PriceBand"),
    "price band: a price below the band is rejected": ([], sell(1, 1, "600000", 949, 1), "PriceBand"),
    "price band: a price on the band's edge is accepted": ([], buy(1, 1, "600000", 1050, 1), None),
    "price band: a security without a reference price fails closed": (
        [],
        sell(1, 1, "688981", 50, 1),
        "PriceBand",
    ),
    "price: a zero price is rejected": ([], sell(1, 1, "600000", 0, 1), "PricePositive"),
    "limits: a zero quantity is rejected": ([], buy(1, 1, "600000", 1000, 0), "QuantityPositive"),
    "limits: a quantity above the security's maximum is rejected": (
        [],
        buy(1, 1, "600036", 1250, 101),
        "MaxQuantity",
    ),
    "limits: the security's maximum quantity is accepted": ([], buy(1, 1, "600036", 1250, 100), None),
    "limits: a notional above the security's maximum is rejected": (
        [],
        buy(1, 1, "600000", 1000, 501),
        "MaxNotional",
    ),
    "limits: the security's maximum notional is accepted": ([], buy(1, 1, "600000", 1000, 500), None),
    "limits: a resent order id is rejected": ([HELD_BUY], buy(1, 1, "600000", 999, 1), "DuplicateOrderId"),
    "limits: a seventeenth open order is rejected": (
        OPEN_16,
        buy(300, 1, "600000", 990, 1, ts=40 * SECOND),
        "MaxOpenOrders",
    ),
    "limits: an order after one of sixteen open orders was filled is accepted": (
        [*OPEN_16, after("FILL", OPEN_16[0], 1, 990)],
        buy(300, 1, "600000", 990, 1, ts=40 * SECOND),
        None,
    ),
    "rate: a ninth order in one second is rejected": (
        BURST_8,
        buy(300, 1, "600000", 990, 1, ts=30 * SECOND + 999_999_999),
        "OrderRate",
    ),
    "rate: the first order of the next second is accepted": (
        BURST_8,
        buy(300, 1, "600000", 990, 1, ts=31 * SECOND),
        None,
    ),
}


@pytest.mark.parametrize("reason", list(CASES))
def test_example_rule(reason: str, tmp_path: Path) -> None:
    setup, event, rule = CASES[reason]
    out, _ = replay(tmp_path, [*setup, event])
    for r in out[:-1]:
        assert r[2] in ("ACCEPT", "APPLIED"), f"setup event rejected: {r}"
    _, kind, verdict, failed = out[-1]
    assert kind == "NEW"
    if rule is None:
        assert (verdict, failed) == ("ACCEPT", "")
    else:
        assert verdict == "REJECT"
        assert rule in failed.split(";"), failed


def test_flows_buy_freezes_cash_and_a_fill_settles_it(tmp_path: Path) -> None:
    placed = buy(1, 1, "600000", 1000, 10)
    _, state = replay(tmp_path, [placed])
    assert row(state, "account_info", account_id=1)["available_balance"] == str(1_000_000 - 10_000)

    _, state = replay(tmp_path, [placed, after("FILL", placed, 4, 995)])
    cash = row(state, "account_info", account_id=1)
    # 4 at 995 leave total cash; the 4 * 5 frozen above the executed price return to available
    assert cash["total_balance"] == str(1_000_000 - 4 * 995)
    assert cash["available_balance"] == str(1_000_000 - 10_000 + 4 * 5)
    held = row(state, "account_ticket_info", account_id=1, ticket_id="600000")
    assert (held["total_quantity"], held["avail_quantity"]) == ("504", "504")
    assert held["avg_price"] == str((990 * 500 + 995 * 4) // 504)
    assert held["buy_top_price"] == "1000"  # 6 still open
    assert row(state, "order_info", order_id=1)["open_quantity"] == "6"


def test_flows_sell_freezes_holdings_and_a_fill_pays_cash(tmp_path: Path) -> None:
    placed = sell(1, 1, "600000", 1000, 100)
    _, state = replay(tmp_path, [placed, after("FILL", placed, 100, 1002)])
    held = row(state, "account_ticket_info", account_id=1, ticket_id="600000")
    assert (held["avail_quantity"], held["total_quantity"]) == ("400", "400")
    assert held["sell_low_price"] == ""  # nothing left open
    cash = row(state, "account_info", account_id=1)
    assert cash["available_balance"] == cash["total_balance"] == str(1_000_000 + 100_200)


def test_flows_reject_and_cancel_release_what_is_frozen(tmp_path: Path) -> None:
    b = buy(1, 1, "600000", 1000, 10)
    s = sell(2, 1, "600000", 1020, 50)
    events = [b, s, after("CANCEL", b, 3), after("REJECT", s, None), after("REJECT", s, None)]
    _, state = replay(tmp_path, events)
    assert row(state, "account_info", account_id=1)["available_balance"] == str(1_000_000 - 7 * 1000)
    held = row(state, "account_ticket_info", account_id=1, ticket_id="600000")
    assert held["avail_quantity"] == "500"  # the rejected sell's 50 are back, once
    assert (held["buy_top_price"], held["sell_low_price"]) == ("1000", "")
    interest = row(state, "open_interest", account_id=1, ticket_id="600000")
    assert (interest["buy_open"], interest["sell_open"]) == ("7", "0")


def test_flows_ignore_events_for_orders_the_rules_rejected(tmp_path: Path) -> None:
    rejected = buy(1, 3, "600000", 1000, 101)  # fails FundsCheck
    events = [rejected, after("FILL", rejected, 101, 1000), after("CANCEL", rejected, 101)]
    out, state = replay(tmp_path, events)
    assert out[0][2] == "REJECT"
    assert row(state, "account_info", account_id=3)["available_balance"] == "100000"
    assert row(state, "account_ticket_info", account_id=3, ticket_id="600000")["total_quantity"] == "0"
