"""`riskgw demo --serve`: the exchange simulator, the card and the gateway, set up for the demo.

The example rules (rules/), the reference data set (riskgw.scenario.DataSet: 20 accounts, 2048
securities, 1024 holdings each), one broker login that may trade every account, a control port
with a fresh token, metrics and the audit store, all in one working directory. It prints one
`ready` line with its ports and runs until SIGTERM or SIGINT.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import secrets
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from riskgw.errors import UserError
from riskgw.exchange.sim import Behaviour, start_exchange
from riskgw.gateway.config import TOKEN_ENV, GatewayConfig, User
from riskgw.gateway.failover import FailoverConfig
from riskgw.gateway.fixconfig import DEFAULT_TARGET as FIX_TARGET
from riskgw.gateway.fixconfig import demo_fix_config
from riskgw.gateway.serve import journal_lock, start_gateway
from riskgw.scenario import DataSet

REPO_RULES = Path(__file__).resolve().parent.parent / "rules"
DEMO_USER = User("demo", "demo", None)
# The documented defaults; `--ports any` takes free ports instead.
DEFAULT_PORTS = {"broker": 9000, "exchange": 9100, "metrics": 9101, "control": 9102, "fix": 9878}
READY = "riskgw demo: ready"
SIM_CARD_START_S = 600.0  # the card's first Verilator build, its reset and the data load are in its start
JOURNAL = "gateway.journal"


@dataclass(frozen=True)
class Ports:
    broker: int
    exchange: int
    metrics: int
    control: int
    fix: int

    def line(self) -> str:
        return (
            f"{READY} broker=127.0.0.1:{self.broker} exchange=127.0.0.1:{self.exchange} "
            f"metrics=http://127.0.0.1:{self.metrics}/metrics control=127.0.0.1:{self.control} "
            f"fix=127.0.0.1:{self.fix}"
        )

    def fix_line(self) -> str:
        """How a FIX engine connects to the demo's acceptor."""
        return (
            f"FIX 4.4 acceptor on 127.0.0.1:{self.fix}: BeginString=FIX.4.4 SenderCompID=BROKER1 "
            f"TargetCompID={FIX_TARGET} (initiator side), every demo account, ResetOnLogon=Y; see docs/fix.md"
        )

    @classmethod
    def parse(cls, line: str) -> Ports:
        fields = dict(part.split("=", 1) for part in line[len(READY) :].split())
        return cls(
            broker=int(fields["broker"].rsplit(":", 1)[1]),
            exchange=int(fields["exchange"].rsplit(":", 1)[1]),
            metrics=int(fields["metrics"].rsplit(":", 1)[1].split("/", 1)[0]),
            control=int(fields["control"].rsplit(":", 1)[1]),
            fix=int(fields["fix"].rsplit(":", 1)[1]),
        )


def sim_card_available() -> bool:
    """The simulated card is built in and `riskgw serve` can select it (the gateway starts its
    `riskgw sim-card` process itself, Verilator build included)."""
    from riskgw.gateway.config import CARDS

    return "sim" in CARDS and importlib.util.find_spec("riskgw.card.simcard") is not None


def default_card() -> str:
    return "sim" if sim_card_available() else "soft"


@contextlib.contextmanager
def workdir_lock(workdir: Path, name: str = JOURNAL) -> Iterator[None]:
    """Hold NAME.lock in WORKDIR while a demo works there; by default the journal's lock, the one
    `riskgw serve` takes. A second demo in the same directory would delete the journal, kill file
    and audit store under the first one's running gateway: it is refused in one line instead."""
    refusal = (
        f"work directory {workdir} is in use by another riskgw demo: stop that demo first, "
        "or give another --workdir"
    )
    with journal_lock(workdir / name, in_use=refusal):
        yield


def prepare_workdir(workdir: Path) -> Path:
    """The data set (written once) and a fresh journal, kill file and audit store for this run;
    under workdir_lock."""
    workdir.mkdir(parents=True, exist_ok=True)
    data = workdir / "data"
    if not (data / "account_ticket_info.csv").exists():
        DataSet().write(data)
    for name in (JOURNAL, f"{JOURNAL}.kill", "audit.sqlite"):
        with contextlib.suppress(FileNotFoundError):
            (workdir / name).unlink()
    # anything else the gateway keeps beside its journal (deployed programs) belongs to that journal,
    # but its lock is this run's: removed, a second demo would lock a new file of that name
    for extra in workdir.glob(f"{JOURNAL}.*"):
        if extra.name == f"{JOURNAL}.lock":
            continue
        if extra.is_dir():
            shutil.rmtree(extra)
        else:
            extra.unlink()
    return data


def prepare(card: str) -> int:
    """`riskgw demo --prepare`: build what the demo's card needs before the demo runs (the simulated
    card's Verilator model, sized for the reference data set as the demo sizes it), so a setup can
    build it beside other work; the demo itself finds it built. The soft card needs nothing."""
    if card != "sim":
        print(f"riskgw demo --prepare: card {card} needs nothing built", flush=True)
        return 0
    if not sim_card_available():
        raise UserError("the simulated card is not available in this checkout: use --card soft")
    from riskgw.card.simgw import card_params, data_shape
    from riskgw.card.simserver import build
    from riskgw.doe.compiler import compile_files

    def log(text: str) -> None:
        print(f"riskgw demo --prepare: {text}", flush=True)

    t0 = time.perf_counter()
    image = compile_files(sorted(REPO_RULES.glob("*.sql"))).image
    with tempfile.TemporaryDirectory(prefix="riskgw-prepare-") as tmp:
        data = Path(tmp) / "data"
        DataSet().write(data)
        params = card_params(data_shape(image, data), lambda text: None)  # its line is for a start
    log(
        f"the demo's card: {params.doe.rows} rows per table, {params.doe.ways} hash ways, "
        f"{params.data_w}-bit TOE (a first build takes minutes)"
    )
    where = build(params, log=sys.stdout)
    log(f"the simulated card's model is built in {where} ({time.perf_counter() - t0:.1f} s)")
    return 0


def write_token(workdir: Path) -> str:
    token = os.environ.get(TOKEN_ENV) or secrets.token_hex(16)
    path = workdir / "control.token"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(token + "\n")
    return token


async def serve_demo(workdir: Path, card: str, ports: dict[str, int], seed: int, fsync: bool) -> int:
    workdir.mkdir(parents=True, exist_ok=True)
    with workdir_lock(workdir):  # before anything there is removed, until the gateway has stopped
        return await _serve_demo(workdir, card, ports, seed, fsync)


async def _serve_demo(workdir: Path, card: str, ports: dict[str, int], seed: int, fsync: bool) -> int:
    data = prepare_workdir(workdir)
    token = write_token(workdir)
    t0 = time.perf_counter()
    exchange_server, exchange = await start_exchange("127.0.0.1", ports["exchange"], Behaviour(seed=seed))
    if card == "sim" and not sim_card_available():
        raise UserError("the simulated card is not available in this checkout: use --card soft")
    fix_config = demo_fix_config(ports["fix"])  # 0: the acceptor takes a free port, and retries
    config = GatewayConfig(
        rules=sorted(REPO_RULES.glob("*.sql")),
        listen=("127.0.0.1", ports["broker"]),
        exchange=("127.0.0.1", int(exchange_server.sockets[0].getsockname()[1])),
        card=card,
        data=data,
        journal=workdir / JOURNAL,
        fsync=fsync,
        users={DEMO_USER.name: DEMO_USER},
        control=("127.0.0.1", ports["control"]),
        control_token=token,
        metrics=("127.0.0.1", ports["metrics"]),
        audit=workdir / "audit.sqlite",
        fix=fix_config,
        # no spare simulated card: at the reference data's size one costs about 230 MB and a minute
        # of CPU to start, which would share two cores with the demo's orders; a failback starts one
        failover=FailoverConfig(spares=0),
    )
    if not config.rules:
        raise UserError(f"no example rules in {REPO_RULES}: run the demo from a riskgw checkout")

    def log(text: str) -> None:
        print(f"gateway: {text}", file=sys.stderr, flush=True)

    try:
        running = await start_gateway(config, log)
    except BaseException:
        exchange_server.close()
        raise
    bound = Ports(
        broker=running.port,
        exchange=int(exchange_server.sockets[0].getsockname()[1]),
        metrics=running.metrics_port,
        control=running.control_port,
        fix=running.fix.port,
    )
    gw = running.gateway
    print(f"riskgw demo: card {card}, up in {time.perf_counter() - t0:.1f} s, files in {workdir}", flush=True)
    print(bound.fix_line(), flush=True)
    print(bound.line(), flush=True)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, gw.stopped.set)
    await gw.stopped.wait()
    c = gw.counters
    await running.stop()
    exchange_server.close()
    await exchange_server.wait_closed()
    print(
        f"riskgw demo: stopped: {c.orders} orders, {c.accepted} accepted, {c.rejected} rejected by rules, "
        f"{exchange.orders_seen} at the exchange",
        flush=True,
    )
    if gw.failed is not None:
        raise UserError(f"stopped because the journal could not be written: {gw.failed}")
    return 0


def run_serve_demo(workdir: Path, card: str, any_ports: bool, seed: int, fsync: bool) -> int:
    ports = {k: 0 for k in DEFAULT_PORTS} if any_ports else dict(DEFAULT_PORTS)
    return asyncio.run(serve_demo(workdir, card, ports, seed, fsync))
