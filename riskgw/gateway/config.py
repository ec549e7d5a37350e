"""The gateway's settings: an optional TOML file (read with tomllib), then command-line flags.

    listen = "127.0.0.1:9000"          # broker listener
    exchange = "127.0.0.1:9100"        # the exchange to connect to
    card = "soft"                      # soft, sim (started here), sim:tcp://HOST:PORT, pynq, auto
    rules = ["rules/*.sql"]            # rule files, globs allowed; relative to this file
    data = "data"                      # initial tables, one <table>.csv each
    journal = "gateway.journal"
    heartbeat_ms = 1000
    heartbeat_timeout = 3              # heartbeat intervals of silence before a session is logged out
    fsync = true                       # false only for tests on throwaway journals
    journal_sync = "commit"            # commit: fsync each group commit before its replies leave;
                                       # interval: fsync every journal_sync_ms in the background
                                       # (a power loss can lose acknowledged orders); none: never
    journal_sync_ms = 10
    event_loop = "asyncio"             # asyncio (the default): its own selector loop, or uvloop; asyncio
                                       # runs when uvloop cannot be imported (Windows has none)
    gc = "idle"                        # idle (the default): Python's full collections only when no
                                       # event was decided for a second (or every 10 minutes);
                                       # python: CPython's own rule (see collector.py)
    control = "127.0.0.1:9001"         # control port for `riskgw ctl` (off when not set)
    control_token = "..."              # or the environment variable RISKGW_CONTROL_TOKEN
    kill_file = "gateway.kill"         # where kill switches are kept (default: the journal + .kill)
    metrics = "127.0.0.1:9102"         # Prometheus metrics at http://HOST:PORT/metrics (off when not set)
    audit = "audit.sqlite"             # every decision in SQLite, for `riskgw log query` (off when not set)
    exchange_backlog_limit = 1048576   # bytes for the exchange waiting in the gateway (the kernel's
                                       # socket buffer full) past which new orders are refused with
                                       # EXCHANGE_BACKLOG, until the exchange has read them all
    held_replies_limit = 10000         # replies held for a session (they wait for the exchange to
                                       # read its orders) past which the session is not read from

    [failover]                         # the card's hot standby: riskgw/gateway/failover.py
    policy = "failover"
    [snapshots]                        # state snapshots: a restart replays only the journal after one
    every_events = 100000              # journal records between two (0: not by count)
    every_seconds = 600                # seconds between two, when records came in meanwhile (0: never)
    keep = 3                           # the newest ones kept
    dir = "gateway.journal.snapshots"  # default: the journal's path + ".snapshots"
    [fix] ...                          # the FIX 4.4 acceptor (off when not set): see fixconfig.py

    [users.broker1]
    password = "secret"
    accounts = [1, 2, 3]               # or "*" for every account
    cancel_on_disconnect = true        # cancel its open orders when its connection drops (default)

A flag given on the command line overrides the file; `--user NAME:PASSWORD:ACCOUNTS` adds or
replaces one user (ACCOUNTS: comma-separated ids, or *).
"""

from __future__ import annotations

import argparse
import glob
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from riskgw.errors import UserError
from riskgw.gateway.collector import GC_MODES
from riskgw.gateway.fixconfig import FixConfig, parse_fix
from riskgw.gateway.link import parse_host_port
from riskgw.gateway.loops import GATEWAY_EVENT_LOOP, check_event_loop
from riskgw.gateway.protocol import CRED_BYTES

if TYPE_CHECKING:  # `riskgw ctl` reads this module and needs none of the engine
    from riskgw.gateway.failover import FailoverConfig
    from riskgw.gateway.snapshot import SnapshotSettings

CARDS = ("soft", "sim", "pynq", "auto")
# Bytes written to the exchange that the kernel did not take (the exchange reads too little) past
# which new orders are refused with EXCHANGE_BACKLOG, until the exchange has read them all.
EXCHANGE_BACKLOG_LIMIT = 1 << 20
# Frames held for one session (they wait for the exchange to read its orders: Gateway.flush) past
# which the session is not read from.
HELD_REPLIES_LIMIT = 10_000
SIM_PREFIX = "sim:"  # sim:tcp://HOST:PORT, a running `riskgw sim-card`


def check_card(card: str) -> None:
    """UserError (one line) unless `card` names a card serve can run on."""
    if card.startswith(SIM_PREFIX):
        from riskgw.card.simproto import zmq_endpoint

        address = card[len(SIM_PREFIX) :]
        try:
            zmq_endpoint(address)
        except ValueError as exc:
            raise UserError(f"card {card!r}: {exc}") from None
        if address.rpartition(":")[2] in ("0", "*"):
            raise UserError(f"card {card!r}: give the port the running sim-card listens on")
        return
    if card not in CARDS:
        raise UserError(f"card {card!r} is not available (cards: {', '.join(CARDS)}, sim:tcp://HOST:PORT)")


@dataclass(frozen=True)
class User:
    name: str
    password: str
    accounts: frozenset[int] | None  # None: every account
    cancel_on_disconnect: bool = True  # its open orders are cancelled when its connection drops

    def may_trade(self, account: int) -> bool:
        return self.accounts is None or account in self.accounts


@dataclass
class GatewayConfig:
    rules: list[Path]
    listen: tuple[str, int] = ("127.0.0.1", 9000)
    exchange: tuple[str, int] = ("127.0.0.1", 9100)
    card: str = "soft"
    data: Path | None = None
    journal: Path = Path("gateway.journal")
    heartbeat_ms: int = 1000
    heartbeat_timeout: int = 3  # heartbeat intervals of silence before a logout
    fsync: bool = True
    journal_sync: str = "commit"  # commit | interval | none (riskgw/gateway/jsync.py)
    journal_sync_ms: int = 10
    event_loop: str = GATEWAY_EVENT_LOOP  # riskgw/gateway/loops.py
    gc: str = "idle"  # idle | python (riskgw/gateway/collector.py)
    users: dict[str, User] = field(default_factory=dict)
    control: tuple[str, int] | None = None
    control_token: str = ""
    kill_file: Path | None = None  # None: beside the journal
    metrics: tuple[str, int] | None = None
    audit: Path | None = None
    failover: FailoverConfig | None = None  # [failover]; None: the defaults
    fix: FixConfig | None = None  # [fix]: the FIX acceptor; None: off
    snapshots: SnapshotSettings = field(default_factory=lambda: _snapshot_settings())
    exchange_backlog_limit: int = EXCHANGE_BACKLOG_LIMIT
    held_replies_limit: int = HELD_REPLIES_LIMIT

    @property
    def kill_path(self) -> Path:
        return self.kill_file or self.journal.with_name(self.journal.name + ".kill")


def _snapshot_settings() -> SnapshotSettings:
    from riskgw.gateway.snapshot import SnapshotSettings

    return SnapshotSettings()


def _address(text: Any, what: str) -> tuple[str, int]:
    try:
        return parse_host_port(str(text))
    except ValueError as exc:
        raise UserError(f"{what}: {exc}") from None


def _accounts(value: Any, where: str) -> frozenset[int] | None:
    if value == "*":
        return None
    if isinstance(value, str):
        value = [v for v in value.split(",") if v.strip()]
    try:
        # TOML gives whole numbers as int; 1.5 or true is a mistake, not account 1.
        if not isinstance(value, list) or any(isinstance(v, bool | float) for v in value):
            raise ValueError
        return frozenset(int(v) for v in value)
    except (TypeError, ValueError):
        raise UserError(f'{where}: accounts must be a list of account ids or "*"') from None


def _fits_logon(name: str, password: str, where: str) -> None:
    """A login a broker can give: LOGON carries each of name and password in CRED_BYTES bytes."""
    for what, text in (("name", name), ("password", password)):
        size = len(text.encode("utf-8"))
        if size > CRED_BYTES or "\0" in text:
            raise UserError(
                f"{where}: the {what} is {size} bytes of UTF-8; LOGON carries up to {CRED_BYTES}, "
                "without NUL characters"
            )


def parse_user(text: str) -> User:
    name, sep1, rest = text.partition(":")
    password, sep2, accounts = rest.partition(":")
    if not (sep1 and sep2 and name and accounts):
        raise UserError(f"--user {text!r}: expected NAME:PASSWORD:ACCOUNTS (ACCOUNTS: 1,2,3 or *)")
    _fits_logon(name, password, f"--user {name}")
    return User(name, password, _accounts(accounts, f"--user {name}"))


def _expand(patterns: Any, base: Path) -> list[Path]:
    # A bare string would otherwise be read as one pattern per character.
    if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
        raise UserError('rules must be a list of rule files or globs, e.g. rules = ["rules/*.sql"]')
    out: list[Path] = []
    for pattern in patterns:
        full = pattern if Path(pattern).is_absolute() else str(base / pattern)
        matches = sorted(glob.glob(full)) if glob.has_magic(full) else [full]
        if not matches:
            raise UserError(f"rules: {pattern!r} matches no file")
        out.extend(Path(m) for m in matches)
    return out


def read_config_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path}: {exc}") from None
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 (byte {exc.start}); save it as UTF-8") from None


_KEYS = {
    "listen",
    "exchange",
    "card",
    "rules",
    "data",
    "journal",
    "heartbeat_ms",
    "heartbeat_timeout",
    "fsync",
    "journal_sync",
    "journal_sync_ms",
    "event_loop",
    "gc",
    "users",
    "control",
    "control_token",
    "kill_file",
    "metrics",
    "audit",
    "failover",
    "fix",
    "snapshots",
    "exchange_backlog_limit",
    "held_replies_limit",
}
TOKEN_ENV = "RISKGW_CONTROL_TOKEN"
JOURNAL_SYNC = ("commit", "interval", "none")


def build_config(args: argparse.Namespace) -> GatewayConfig:
    file: dict[str, Any] = {}
    base = Path.cwd()
    if args.config:
        path = Path(args.config)
        file = read_config_file(path)
        base = path.resolve().parent
        unknown = sorted(set(file) - _KEYS)
        if unknown:
            raise UserError(f"{path}: unknown setting {unknown[0]!r} (settings: {', '.join(sorted(_KEYS))})")
    rules = [Path(p) for p in args.rules] if args.rules else _expand(file.get("rules", []), base)
    if not rules:
        raise UserError("no rules: give --rules FILES... or rules = [...] in the config file")
    config = GatewayConfig(rules=rules)
    if args.listen or "listen" in file:
        config.listen = _address(args.listen or file["listen"], "listen")
    if args.exchange or "exchange" in file:
        config.exchange = _address(args.exchange or file["exchange"], "exchange")
    config.card = args.card or str(file.get("card", "soft"))
    check_card(config.card)
    if args.data:
        config.data = Path(args.data)
    elif "data" in file:
        config.data = base / str(file["data"])
    if args.journal:
        config.journal = Path(args.journal)
    elif "journal" in file:
        config.journal = base / str(file["journal"])
    heartbeat = args.heartbeat_ms if args.heartbeat_ms is not None else file.get("heartbeat_ms", 1000)
    if not isinstance(heartbeat, int) or isinstance(heartbeat, bool) or heartbeat <= 0:
        raise UserError("heartbeat_ms must be a positive whole number of milliseconds")
    config.heartbeat_ms = heartbeat
    timeout = getattr(args, "heartbeat_timeout", None)
    timeout = timeout if timeout is not None else file.get("heartbeat_timeout", 3)
    if not isinstance(timeout, int) or isinstance(timeout, bool) or timeout < 2:
        raise UserError("heartbeat_timeout must be a whole number of heartbeat intervals, at least 2")
    config.heartbeat_timeout = timeout
    fsync = file.get("fsync", True)
    if not isinstance(fsync, bool):
        raise UserError("fsync must be true or false")
    config.fsync = fsync and not args.no_fsync
    sync = getattr(args, "journal_sync", None) or file.get("journal_sync", "commit")
    if sync not in JOURNAL_SYNC:
        raise UserError(f"journal_sync must be one of {', '.join(JOURNAL_SYNC)}, not {sync!r}")
    config.journal_sync = "none" if not config.fsync else str(sync)
    config.fsync = config.journal_sync != "none"
    sync_ms = file.get("journal_sync_ms", 10)
    if not isinstance(sync_ms, int) or isinstance(sync_ms, bool) or sync_ms <= 0:
        raise UserError("journal_sync_ms must be a positive whole number of milliseconds")
    config.journal_sync_ms = sync_ms
    event_loop = getattr(args, "event_loop", None) or file.get("event_loop", GATEWAY_EVENT_LOOP)
    check_event_loop(str(event_loop))
    config.event_loop = str(event_loop)
    collector = getattr(args, "gc", None) or file.get("gc", "idle")
    if collector not in GC_MODES:
        raise UserError(f"gc must be one of {', '.join(GC_MODES)}, not {collector!r}")
    config.gc = str(collector)
    for name in ("exchange_backlog_limit", "held_replies_limit"):
        limit = file.get(name, getattr(config, name))
        if not isinstance(limit, int) or isinstance(limit, bool) or limit <= 0:
            raise UserError(f"{name} must be a positive whole number")
        setattr(config, name, limit)
    users = file.get("users", {})
    if not isinstance(users, dict):
        raise UserError("users must be a table of [users.NAME] sections")
    for name, spec in users.items():
        if not isinstance(spec, dict) or "password" not in spec or "accounts" not in spec:
            raise UserError(f"users.{name}: needs password and accounts")
        cod = spec.get("cancel_on_disconnect", True)
        if not isinstance(cod, bool):
            raise UserError(f"users.{name}: cancel_on_disconnect must be true or false")
        accounts = _accounts(spec["accounts"], f"users.{name}")
        _fits_logon(name, str(spec["password"]), f"users.{name}")
        config.users[name] = User(name, str(spec["password"]), accounts, cod)
    for text in args.user or []:
        user = parse_user(text)
        config.users[user.name] = user
    if args.control or "control" in file:
        config.control = _address(args.control or file["control"], "control")
        config.control_token = os.environ.get(TOKEN_ENV) or str(file.get("control_token", ""))
        if not config.control_token:
            raise UserError(
                f"the control port needs a token: set {TOKEN_ENV} or control_token in the config file"
            )
    if args.metrics or "metrics" in file:
        config.metrics = _address(args.metrics or file["metrics"], "metrics")
    if args.audit:
        config.audit = Path(args.audit)
    elif "audit" in file:
        config.audit = base / str(file["audit"])
    if args.kill_file:
        config.kill_file = Path(args.kill_file)
    elif "kill_file" in file:
        config.kill_file = base / str(file["kill_file"])
    if "failover" in file:
        from riskgw.gateway.failover import parse_failover

        config.failover = parse_failover(file["failover"])
    if "fix" in file:
        config.fix = parse_fix(file["fix"], base, _accounts)
    if "snapshots" in file:
        from riskgw.gateway.snapshot import parse_snapshots

        config.snapshots = parse_snapshots(file["snapshots"], base)
    if not config.users and config.fix is None:
        raise UserError("no users: give --user NAME:PASSWORD:ACCOUNTS or [users.NAME] in the config file")
    return config
