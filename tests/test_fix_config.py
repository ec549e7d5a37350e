"""The [fix] settings and the FIX field conversions (no QuickFIX needed)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from riskgw.cli import build_parser, main
from riskgw.errors import UserError
from riskgw.gateway.config import build_config
from riskgw.gateway.fixconfig import FixConfig, FixSessionConfig, demo_fix_config
from riskgw.gateway.fixsession import Invalid, format_price, parse_price, parse_quantity, parse_utc_ns

GOOD = """
rules = ["r.sql"]
[fix]
port = 19878
store = "state/fix"
[fix.sessions.BROKER1]
accounts = "*"
[fix.sessions.BROKER2]
target_comp_id = "GW"
password = "pw"
accounts = [1, 2]
cancel_on_disconnect = false
[fix.instruments.ACME]
ticket_id = "600001"
price_scale = 3
"""


def args(config: Path) -> argparse.Namespace:
    return build_parser().parse_args(["serve", "--config", str(config)])


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "r.sql").write_text("")
    path = tmp_path / "gw.toml"
    path.write_text(text)
    return path


def test_fix_section_is_read(tmp_path: Path) -> None:
    config = build_config(args(write(tmp_path, GOOD)))
    fix = config.fix
    assert fix is not None and fix.port == 19878 and fix.store == tmp_path / "state/fix"
    assert fix.store_sync  # synced unless turned off
    assert fix.sessions == [
        FixSessionConfig("BROKER1", "RISKGW", None),
        FixSessionConfig("BROKER2", "GW", frozenset({1, 2}), "pw", False),
    ]
    acme = fix.instrument("ACME")
    assert acme is not None and (acme.ticket_id, acme.price_scale) == ("600001", 3)
    assert fix.instrument("600001") is None  # with instruments listed, only those symbols trade
    assert not config.users  # a FIX-only gateway needs no wire-protocol users


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (('accounts = "*"', "password = 1"), "needs accounts"),
        (("port = 19878", "port = 70000"), "fix.port"),
        (("price_scale = 3", "price_scale = 12"), "price_scale"),
        (('ticket_id = "600001"', 'ticket_id = "12345678901234567"'), "ticket_id"),
        (("cancel_on_disconnect = false", "cancel_on_disconnect = 1"), "cancel_on_disconnect"),
        (('store = "state/fix"', "stor = 1"), "unknown setting 'stor'"),
        (('store = "state/fix"', 'store_sync = "no"'), "store_sync must be true or false"),
        (("port = 19878", 'host = "127.0.0.1"'), 'fix.host: .* is set with fix.listen = "HOST:PORT"'),
        (("port = 19878", 'bind = "127.0.0.1"'), 'fix.bind: .* is set with fix.listen = "HOST:PORT"'),
        (("port = 19878", 'listen = "localhost:9878"'), "fix.listen: 'localhost' is not a numeric IPv4"),
        (("port = 19878", 'listen = "[::1]:9878"'), "fix.listen: '\\[::1\\]' is not a numeric IPv4"),
        (("port = 19878", 'listen = "10.0.0.256:9878"'), "fix.listen: '10.0.0.256' is not a numeric IPv4"),
        (("port = 19878", 'listen = "127.0.0.1"'), "fix.listen: '127.0.0.1' is not HOST:PORT"),
        (("port = 19878", 'listen = "127.0.0.1:70000"'), "fix.listen: .* is not HOST:PORT"),
        (("port = 19878", 'port = 19878\nlisten = "127.0.0.1:9878"'), "fix.listen and fix.port: give one"),
        (("[fix.sessions.BROKER1]", '[fix.sessions."BRO KER"]'), "CompID"),
    ],
)
def test_bad_fix_settings_are_one_line_errors(tmp_path: Path, change: tuple[str, str], message: str) -> None:
    text = GOOD.replace(*change, 1)
    assert text != GOOD
    with pytest.raises(UserError, match=message):
        build_config(args(write(tmp_path, text)))


def test_listen_binds_one_address_and_port_alone_every_interface(tmp_path: Path) -> None:
    fix = build_config(args(write(tmp_path, GOOD.replace("port = 19878", 'listen = "127.0.0.1:0"')))).fix
    assert fix is not None and (fix.host, fix.port, fix.one_address) == ("127.0.0.1", 0, True)
    fix = build_config(args(write(tmp_path, GOOD.replace("port = 19878", 'listen = "0.0.0.0:9878"')))).fix
    assert fix is not None and (fix.host, fix.port, fix.one_address) == ("0.0.0.0", 9878, False)
    fix = build_config(args(write(tmp_path, GOOD))).fix  # as before fix.listen: every interface
    assert fix is not None and (fix.host, fix.port, fix.one_address) == ("0.0.0.0", 19878, False)
    assert demo_fix_config().host == "127.0.0.1"  # the demo's ports are all on loopback


def test_a_bad_listen_address_is_one_line_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, GOOD.replace("port = 19878", 'listen = "gateway.example:9878"'))
    assert main(["serve", "--config", str(path)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == [
        "riskgw: error: fix.listen: 'gateway.example' is not a numeric IPv4 address (the FIX port binds "
        'one, e.g. "127.0.0.1:9878", or "0.0.0.0:9878" for every interface)'
    ]


def test_store_sync_can_be_turned_off(tmp_path: Path) -> None:
    config = build_config(args(write(tmp_path, GOOD.replace('store = "state/fix"', "store_sync = false"))))
    assert config.fix is not None and config.fix.store_sync is False


def test_symbols_are_tickets_without_an_instrument_list() -> None:
    fix = demo_fix_config()
    assert (fix.port, fix.sessions[0].sender_comp_id, fix.sessions[0].target_comp_id) == (
        9878,
        "BROKER1",
        "RISKGW",
    )
    assert fix.sessions[0].accounts is None
    inst = fix.instrument("600001")
    assert inst is not None and (inst.ticket_id, inst.price_scale) == ("600001", 2)
    assert fix.instrument("") is None and fix.instrument("X" * 17) is None
    assert FixConfig(sessions=[]).store_path(Path("/j/gw.journal")) == Path("/j/gw.journal.fix")


def test_prices_quantities_and_times() -> None:
    assert parse_price("12.34", 2) == 1234 and parse_price("12.3", 2) == 1230 and parse_price("7", 0) == 7
    assert format_price(1234, 2) == "12.34" and format_price(7, 0) == "7" and format_price(-5, 2) == "-0.05"
    for text, scale in (("12.345", 2), ("abc", 2), (None, 2), ("1e30", 2)):
        with pytest.raises(Invalid):
            parse_price(text, scale)
    assert parse_quantity("100") == 100 and parse_quantity("100.0") == 100
    for text in ("1.5", "", "x"):
        with pytest.raises(Invalid):
            parse_quantity(text)
    assert parse_utc_ns("19700101-00:00:01.5") == 1_500_000_000
    assert parse_utc_ns("19700101-00:00:01.000123") == 1_000_123_000
    with pytest.raises(Invalid):
        parse_utc_ns("yesterday")
