"""The `[fix]` section of the gateway's settings: the FIX 4.4 acceptor, its sessions and instruments.

    [fix]
    listen = "10.0.0.5:9878"        # one IPv4 address and the port (default: every interface)
    # port = 9878                   # instead of listen: every interface at this port (default 9878)
    store = "gateway.fix"           # sequence numbers and sent messages (default: the journal + ".fix")
    store_sync = true               # fdatasync the store before each message leaves (default true)
    price_scale = 2                 # decimals of a price, for symbols that are their own ticket_id

    [fix.sessions.BROKER1]          # the broker's SenderCompID (49)
    target_comp_id = "RISKGW"       # the broker's TargetCompID (56); default RISKGW
    password = "secret"             # optional: Logon must then carry Password (554)
    accounts = [1, 2, 3]            # or "*" for every account
    cancel_on_disconnect = true     # default true

    [fix.instruments.ACME]          # Symbol (55) as brokers send it
    ticket_id = "600001"
    price_scale = 2                 # Price (44) 12.34 is 1234 units

Without `[fix.instruments]`, a Symbol is the ticket_id itself and prices have `price_scale` decimals;
with it, only the symbols listed there may be traded.

`listen` binds the FIX port to one numeric IPv4 address (QuickFIX's acceptor is IPv4 only; a host
name is refused, so what the port is reachable on does not change with DNS); its port may be 0, any
free port. It goes to QuickFIX as `SocketAcceptAddress`, which QuickFIX 1.16 itself ignores: only the
build `make venv` installs (1.16.0+riskgw.2 and later, tools/patch_quickfix.py) binds to it, and the
gateway refuses to start with an address on any other build (riskgw/gateway/fix.py). Without
`listen` the port listens on every interface, as it did before the setting existed, so a gateway
upgraded with its settings unchanged stays reachable where its brokers reach it.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from riskgw.errors import UserError
from riskgw.gateway.link import parse_host_port
from riskgw.gateway.protocol import TICKET_BYTES

DEFAULT_PORT = 9878
DEFAULT_TARGET = "RISKGW"
MAX_SCALE = 9
EVERY_INTERFACE = "0.0.0.0"  # INADDR_ANY, the FIX port's address without fix.listen
DEMO_HOST = "127.0.0.1"  # the demo's ports are all on loopback
# Other names for the bind address, answered with the one the settings use.
BIND_KEYS = ("address", "bind", "host")
USE_LISTEN = 'the FIX port\'s address is set with fix.listen = "HOST:PORT" (a numeric IPv4 address)'


@dataclass(frozen=True)
class Instrument:
    symbol: str
    ticket_id: str
    price_scale: int  # Price (44) times 10**price_scale is the price in the instrument's units


@dataclass(frozen=True)
class FixSessionConfig:
    sender_comp_id: str  # the broker's
    target_comp_id: str  # the gateway's, as the broker addresses it
    accounts: frozenset[int] | None  # None: every account
    password: str | None = None
    cancel_on_disconnect: bool = True


@dataclass
class FixConfig:
    sessions: list[FixSessionConfig]
    port: int = DEFAULT_PORT  # 0: any free port (tests)
    host: str = EVERY_INTERFACE  # the numeric IPv4 address the port listens on (fix.listen)
    store: Path | None = None  # None: beside the journal
    price_scale: int = 2
    instruments: dict[str, Instrument] = field(default_factory=dict)  # empty: Symbol is the ticket_id
    store_sync: bool = True  # fdatasync the QuickFIX store before each message leaves (fixsync.py)

    def instrument(self, symbol: str) -> Instrument | None:
        """The instrument a Symbol names, or None when it names none."""
        if self.instruments:
            return self.instruments.get(symbol)
        if not symbol or len(symbol.encode("utf-8")) > TICKET_BYTES or not symbol.isprintable():
            return None
        return Instrument(symbol, symbol, self.price_scale)

    def store_path(self, journal: Path) -> Path:
        return self.store or journal.with_name(journal.name + ".fix")

    @property
    def one_address(self) -> bool:
        """The port listens on `host` alone (QuickFIX must then be a build that binds it)."""
        return self.host != EVERY_INTERFACE


def demo_fix_config(port: int = DEFAULT_PORT) -> FixConfig:
    """The demo's acceptor, on loopback like its other ports: one session, BROKER1 to RISKGW, that
    may trade every account."""
    return FixConfig(sessions=[FixSessionConfig("BROKER1", DEFAULT_TARGET, None)], port=port, host=DEMO_HOST)


def parse_listen(value: Any) -> tuple[str, int]:
    """fix.listen as (numeric IPv4 address, port); UserError (one line) otherwise."""
    try:
        host, port = parse_host_port(str(value))
    except ValueError as exc:
        raise UserError(f"fix.listen: {exc}") from None
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        raise UserError(
            f"fix.listen: {host!r} is not a numeric IPv4 address (the FIX port binds one, "
            f'e.g. "127.0.0.1:{port}", or "{EVERY_INTERFACE}:{port}" for every interface)'
        ) from None
    return host, port


def _scale(value: Any, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_SCALE:
        raise UserError(f"{where}: price_scale must be a whole number from 0 to {MAX_SCALE}")
    return value


def _comp_id(value: Any, where: str) -> str:
    text = str(value)
    if not text or not text.isascii() or not text.isprintable() or "\x01" in text or " " in text:
        raise UserError(f"{where}: a CompID is printable ASCII without spaces, got {text!r}")
    return text


def parse_fix(section: Any, base: Path, parse_accounts: Any) -> FixConfig:
    """`section` is the TOML table; paths are relative to `base`; `parse_accounts(value, where)`
    reads an accounts list the way [users] does."""
    if not isinstance(section, dict):
        raise UserError("fix must be a table: [fix]")
    known = {"listen", "port", "store", "store_sync", "price_scale", "sessions", "instruments"}
    bind = sorted(set(section) & set(BIND_KEYS))
    if bind:
        raise UserError(f"fix.{bind[0]}: {USE_LISTEN}")
    unknown = sorted(set(section) - known)
    if unknown:
        raise UserError(f"fix: unknown setting {unknown[0]!r} (settings: {', '.join(sorted(known))})")
    host = EVERY_INTERFACE
    port = section.get("port", DEFAULT_PORT)
    if "listen" in section:
        if "port" in section:
            raise UserError(
                'fix.listen and fix.port: give one (listen = "HOST:PORT" for one address, port for every '
                "interface)"
            )
        host, port = parse_listen(section["listen"])
    if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
        raise UserError("fix.port must be a port number")
    sessions_in = section.get("sessions", {})
    if not isinstance(sessions_in, dict) or not sessions_in:
        raise UserError("fix: needs at least one [fix.sessions.SENDERCOMPID] section")
    sessions: list[FixSessionConfig] = []
    session_keys = {"target_comp_id", "password", "accounts", "cancel_on_disconnect"}
    for sender, spec in sessions_in.items():
        where = f"fix.sessions.{sender}"
        if not isinstance(spec, dict) or "accounts" not in spec:
            raise UserError(f"{where}: needs accounts")
        extra = sorted(set(spec) - session_keys)
        if extra:
            raise UserError(
                f"{where}: unknown setting {extra[0]!r} (settings: {', '.join(sorted(session_keys))})"
            )
        cod = spec.get("cancel_on_disconnect", True)
        if not isinstance(cod, bool):
            raise UserError(f"{where}: cancel_on_disconnect must be true or false")
        password = spec.get("password")
        sessions.append(
            FixSessionConfig(
                _comp_id(sender, where),
                _comp_id(spec.get("target_comp_id", DEFAULT_TARGET), where),
                parse_accounts(spec["accounts"], where),
                None if password is None else str(password),
                cod,
            )
        )
    instruments: dict[str, Instrument] = {}
    instruments_in = section.get("instruments", {})
    if not isinstance(instruments_in, dict):
        raise UserError("fix.instruments must be a table of [fix.instruments.SYMBOL] sections")
    for symbol, spec in instruments_in.items():
        where = f"fix.instruments.{symbol}"
        if not isinstance(spec, dict) or "ticket_id" not in spec:
            raise UserError(f"{where}: needs ticket_id")
        ticket = str(spec["ticket_id"])
        if not ticket or len(ticket.encode("utf-8")) > TICKET_BYTES:
            raise UserError(f"{where}: ticket_id must be 1 to {TICKET_BYTES} bytes")
        instruments[symbol] = Instrument(symbol, ticket, _scale(spec.get("price_scale", 2), where))
    store = section.get("store")
    store_sync = section.get("store_sync", True)
    if not isinstance(store_sync, bool):
        raise UserError("fix.store_sync must be true or false")
    return FixConfig(
        sessions=sessions,
        port=port,
        host=host,
        store=None if store is None else base / str(store),
        price_scale=_scale(section.get("price_scale", 2), "fix"),
        instruments=instruments,
        store_sync=store_sync,
    )
