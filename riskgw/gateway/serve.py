"""Starting and stopping the gateway: compile, load the card, replay the journal, connect, listen."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import fcntl
import gc
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from riskgw.card.driver import CardDriver
from riskgw.card.lockstep import LockstepCard
from riskgw.card.select import resolve_auto
from riskgw.card.soft import SoftCard
from riskgw.card.tables import load_data_dir
from riskgw.doe.compiler import compile_files
from riskgw.doe.image import Image
from riskgw.engine.cbuild import compiler
from riskgw.errors import UserError
from riskgw.gateway.audit import AuditLog
from riskgw.gateway.collector import Collector
from riskgw.gateway.config import CARDS, SIM_PREFIX, GatewayConfig, build_config
from riskgw.gateway.control import start_control
from riskgw.gateway.deploy import Deployer, DeployStore, deployments_dir, initial_version, replay_journal
from riskgw.gateway.failover import FailoverConfig, watch, with_standby
from riskgw.gateway.journal import JournalHeader, open_journal
from riskgw.gateway.jsync import JournalSyncer
from riskgw.gateway.kill import KillSwitches
from riskgw.gateway.link import os_error_text
from riskgw.gateway.loops import loop_name, run
from riskgw.gateway.metrics import render, start_metrics
from riskgw.gateway.protocol import MsgType, Reason
from riskgw.gateway.server import MAX_RULES, BrokerSession, Gateway
from riskgw.gateway.snapfile import Loaded
from riskgw.gateway.snapshot import Snapshotter, pick, restore_orders, snapshots_dir

if TYPE_CHECKING:
    from riskgw.card.simpool import SimCardPool  # ZeroMQ and the card model load only for card = "sim"


def _say(text: str) -> None:
    print(f"gateway: {text}", file=sys.stderr, flush=True)


@dataclass
class Running:
    gateway: Gateway
    server: asyncio.Server
    replayed: int  # journal events replayed at start
    cut: str | None  # what was cut from the journal's tail, if anything
    control: asyncio.Server | None = None
    metrics: asyncio.Server | None = None
    stopped: bool = False
    fix: Any = None  # the FIX acceptor (riskgw.gateway.fix.FixAcceptor), when [fix] is set
    watchdog: asyncio.Task[None] | None = None  # the hot standby's, when there is one
    snapshot: Loaded | None = None  # the snapshot the state was rebuilt from (None: the whole journal)
    pool: SimCardPool | None = None  # the simulated cards started ahead for failbacks (card = "sim")
    collector: Collector | None = None  # Python's full collections when idle (gc = "idle")
    collecting: asyncio.Task[None] | None = None

    @property
    def metrics_port(self) -> int:
        assert self.metrics is not None
        return int(self.metrics.sockets[0].getsockname()[1])

    @property
    def control_port(self) -> int:
        assert self.control is not None
        return int(self.control.sockets[0].getsockname()[1])

    @property
    def port(self) -> int:
        return int(self.server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        """Log every broker out, close the connections, the journal and the card. Idempotent."""
        if self.stopped:
            return
        self.stopped = True
        gw = self.gateway
        if self.collecting is not None:
            self.collecting.cancel()
        if self.collector is not None:
            self.collector.stop()
        if self.watchdog is not None:
            self.watchdog.cancel()
        gw.closing = True
        if gw.reconnecting is not None:
            gw.reconnecting.cancel()
        if self.fix is not None:
            await self.fix.stop()
        if gw.watchdog is not None:
            gw.watchdog.cancel()
        if gw.snapshots is not None:
            await gw.snapshots.close()
        self.server.close()
        for extra in (self.control, self.metrics):
            if extra is not None:
                extra.close()
        for session in list(gw.sessions):
            gw.queue(session, MsgType.LOGOUT, reason=int(Reason.SHUTDOWN))
            gw.queue_close(session)
        gw.flush()
        if gw.exchange is not None:
            gw.exchange.close()
        await self.server.wait_closed()
        try:
            gw.journal.close()
        except OSError as exc:
            gw.failed = gw.failed or exc
        if gw.syncer is not None:
            gw.syncer.stop()
            gw.failed = gw.failed or gw.syncer.failed
        gw.card.close()
        if self.pool is not None:  # after the card: a card taken from the pool ends with it
            self.pool.close()
        if gw.audit is not None:
            gw.audit.close()


def snapshot_card(card: CardDriver) -> bool:
    """Whether the card's tables can be copied without a long read over its bus: the software
    engine's, alone or as the card's standby."""
    return isinstance(card, SoftCard | LockstepCard)


def make_card(
    kind: str, data: Path | None = None, log: Callable[[str], None] = _say, image: Image | None = None
) -> CardDriver:
    """The card `kind` names; a simulated card gets tables that hold `data` for `image`."""
    if kind == "soft":
        # The generated-C backend when a C compiler is there: the same decisions, in a fraction of the time.
        return SoftCard("native" if compiler() else "fast")
    if kind == "pynq":
        from riskgw.card.pynq import PynqCard  # pynq itself loads only here

        return PynqCard.open()
    if kind == "sim" or kind.startswith(SIM_PREFIX):
        from riskgw.card.simgw import open_sim_card  # ZeroMQ and the card model load only here

        if image is None:
            raise UserError(f"card {kind!r}: the simulated card is sized for a program and its data")
        return open_sim_card(kind, image, data, log)
    raise UserError(f"card {kind!r} is not available (cards: soft, sim, sim:tcp://HOST:PORT, pynq)")


async def start_gateway(config: GatewayConfig, log: Callable[[str], None] = _say) -> Running:
    image = compile_files(config.rules).image
    if len(image.rules) > MAX_RULES:
        raise UserError(f"{len(image.rules)} rules: the REJECTED frame's mask holds at most {MAX_RULES}")
    if config.card == "auto":
        config.card = resolve_auto(CARDS, log)
    kind, data = config.card, config.data
    failover = config.failover or FailoverConfig()
    standby = failover.wanted(kind)
    pool: SimCardPool | None = None
    new_card: Callable[[], CardDriver]
    if standby and kind == "sim" and failover.spares:
        # Cards started ahead with the program loaded: a failback takes one at once.
        from riskgw.card.simgw import sim_card_pool, take_first

        pool = sim_card_pool(image, data, failover.spares, log)
        card: CardDriver = take_first(pool)
        new_card = spare_taker(pool, log)
    else:

        def new_card() -> CardDriver:
            return make_card(kind, data, log, image) if kind.startswith("sim") else make_card(kind)

        card = new_card()
    if standby:
        # a program loaded (a deployment) goes to the spares too, in the background
        card = with_standby(card, new_card, failover.settings, log, None if pool is None else pool.program)
    try:
        running = await _start_on(config, image, card, log)
    except BaseException:
        card.close()
        if pool is not None:
            pool.close()
        raise
    if pool is not None:
        running.pool = pool
        running.gateway.status_parts["spares"] = pool.status
    return running


def spare_taker(pool: SimCardPool, log: Callable[[str], None]) -> Callable[[], CardDriver]:
    """`new_card` for a failback: the pool's next card."""

    def take() -> CardDriver:
        card = pool.take()
        log(f"card: took a spare simulated card from the pool ({pool.taken} taken, the next one starting)")
        return card

    return take


async def _start_on(
    config: GatewayConfig, image: Image, card: CardDriver, log: Callable[[str], None]
) -> Running:
    """The gateway around `card` (closed by the caller when this raises)."""

    def initial_state() -> int:
        card.load_image(image)
        return load_data_dir(card, config.data) if config.data else 0

    rows = initial_state()
    header = JournalHeader(image.digest(), card.state_hash())
    store = DeployStore(deployments_dir(config.journal))
    snapshots = config.snapshots
    resumed: Loaded | None = None
    begun = time.monotonic()
    if snapshot_card(card):
        # The newest good snapshot of this journal, loaded into the card; the journal after it is
        # all that is replayed.
        resumed = pick(
            snapshots_dir(config.journal, snapshots), config.journal, header, store, card, initial_state, log
        )
    start = None if resumed is None else resumed.meta.position
    opened = open_journal(
        config.journal, header, fsync=config.fsync and config.journal_sync == "commit", start=start
    )
    if opened.cut:
        log(opened.cut)
    if opened.journal.version < 2:
        log(
            f"journal {config.journal} is version 1 (written before logins were recorded): the answers of "
            "its orders follow their login while this gateway runs, not across a restart; a new journal "
            "is version 2"
        )
    # The journal's events run under the programs that decided them: deployments are redone
    # where the journal recorded them.
    try:
        version = initial_version(store, image, config.rules, config.data)
        replay_journal(card, opened.entries, opened.marks, store, config.journal)
    except UserError:
        opened.journal.close()
        raise
    replay_s = time.monotonic() - begun
    try:
        kill = KillSwitches.load(config.kill_path)
    except UserError:
        opened.journal.close()
        raise
    gateway = Gateway(card, opened.journal, config.users, config.heartbeat_ms, log, config.heartbeat_timeout)
    gateway.kill = kill
    gateway.exchange_backlog_limit = config.exchange_backlog_limit
    gateway.held_replies_limit = config.held_replies_limit
    versions = [version] if resumed is None else list(resumed.meta.versions)
    gateway.deployer = Deployer(gateway, store, [*versions, *(m.version for m in opened.marks)], log)
    if config.audit is not None:
        try:
            gateway.audit = AuditLog(config.audit)
        except UserError:
            opened.journal.close()
            raise
    if resumed is not None:
        restore_orders(gateway, resumed.orders)
    gateway.restore_open_orders(opened.entries)
    if resumed is not None:
        p = resumed.meta.position
        log(
            f"loaded snapshot {resumed.path.name} at record {p.records} (event {p.events}, byte {p.offset}), "
            f"replayed {len(opened.entries)} events after it in {replay_s:.2f} s"
        )
    if snapshot_card(card):
        deployer = gateway.deployer
        gateway.snapshots = Snapshotter(
            gateway,
            snapshots,
            header,
            lambda: deployer.history,
            log,
            durable=config.fsync,
            behind=len(opened.entries) + len(opened.marks),
        )
        if resumed is not None:
            gateway.snapshots.loaded = {
                "file": str(resumed.path),
                "records": resumed.meta.position.records,
                "replayed": len(opened.entries),
                "seconds": round(replay_s, 3),
            }
        gateway.status_parts["snapshots"] = gateway.snapshots.status
    elif snapshots.automatic:
        log(
            f"snapshots off: card {config.card} has no software standby, and reading its tables would "
            "hold the order path (set [failover] standby = true)"
        )
    loop = asyncio.get_running_loop()
    gateway.status_parts["event_loop"] = lambda: loop_name(loop)  # the one running, not the one asked for
    host, port = config.exchange
    gateway.exchange_address = config.exchange
    try:
        uplink = await gateway.connect_exchange()
    except OSError as exc:
        opened.journal.close()
        raise UserError(f"cannot reach the exchange at {host}:{port}: {os_error_text(exc)}") from None
    host, port = config.listen
    try:
        server = await loop.create_server(lambda: BrokerSession(gateway), host, port)
    except OSError as exc:
        uplink.close()
        opened.journal.close()
        raise UserError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    control: asyncio.Server | None = None
    if config.control is not None:
        try:
            control = await start_control(gateway, *config.control, config.control_token)
        except UserError:
            server.close()
            uplink.close()
            opened.journal.close()
            raise
    metrics: asyncio.Server | None = None
    if config.metrics is not None:
        try:
            metrics = await start_metrics(*config.metrics, lambda: render(gateway))
        except UserError:
            for s in (server, control):
                if s is not None:
                    s.close()
            uplink.close()
            opened.journal.close()
            raise
    running = Running(gateway, server, len(opened.entries), opened.cut, control, metrics)
    running.snapshot = resumed
    if config.fix is not None:
        from riskgw.gateway.fix import start_fix  # QuickFIX loads only when FIX is configured
        from riskgw.gateway.fixsession import OrderIds, first_order_id

        first = first_order_id(opened.entries)
        if resumed is not None:  # FIX orders before the snapshot are known by their decisions
            first = max(first, 1 + max((oid for _, oid in gateway.decided), default=0))
        try:
            running.fix = await start_fix(gateway, config.fix, config.journal, OrderIds(first), log)
        except UserError:
            await running.stop()
            raise
    if isinstance(card, LockstepCard):
        running.watchdog = loop.create_task(watch(card))
    if gateway.snapshots is not None:
        gateway.snapshots.start()
    gateway.watchdog = loop.create_task(gateway.watch_heartbeats())
    gateway.resync()  # orders open before a restart: the exchange says which still are
    if config.fsync and config.journal_sync == "interval":
        gateway.syncer = JournalSyncer(config.journal, config.journal_sync_ms)
    if kill.all or kill.accounts or kill.users:
        log(f"kill switches on from {config.kill_path}: {kill.as_dict()}")
    if config.gc == "idle":
        counters = gateway.counters
        running.collector = Collector(lambda: counters.orders + counters.exchange_events, log)
        running.collector.start()
        running.collecting = loop.create_task(running.collector.run())
        gateway.status_parts["gc"] = running.collector.status
    else:
        gateway.status_parts["gc"] = lambda: {"mode": "python", "thresholds": list(gc.get_threshold())}
    bound = server.sockets[0].getsockname()
    log(
        f"listening on {bound[0]}:{bound[1]}, exchange {config.exchange[0]}:{config.exchange[1]}, "
        f"card {config.card}{' + software standby' if isinstance(card, LockstepCard) else ''}, "
        f"event loop {loop_name(loop)}, "
        f"{len(image.rules)} rules, {rows} data rows, journal {config.journal} "
        f"({running.replayed} events replayed, {len(gateway.open)} orders open), "
        f"state {card.state_hash()[:12]}"
    )
    return running


_LOCKED: set[Path] = set()  # journals this process holds the lock of (see journal_lock)


@contextlib.contextmanager
def journal_lock(journal: Path, in_use: str | None = None) -> Iterator[None]:
    """Hold JOURNAL.lock while `riskgw serve` runs on the journal. A second gateway started on it
    (a restart while the first still runs) would cut what it takes for a torn tail, remove the
    first's unfinished snapshot and append to the same file; it is refused in one line instead.
    A POSIX lock: the kernel drops it when the process dies, even by kill -9, and a snapshot's
    forked child does not inherit it, so a restart right after a crash is never refused. POSIX
    locks belong to the process (a second lock of the file in it is granted, and closing either
    descriptor drops both), so the journals this process holds are also remembered here. The lock
    file is beside the journal's real path, so two names of one journal lock the same file.
    IN_USE, when given, is the refusal instead of serve's (`riskgw demo` names its work directory)."""
    real = journal.resolve()
    path = real.with_name(real.name + ".lock")
    if real in _LOCKED:
        raise UserError(
            in_use or f"journal {journal} is in use by a gateway of this process: give another --journal"
        )
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise UserError(f"cannot open the journal's lock file {path}: {exc.strerror}") from None
    try:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EACCES, errno.EAGAIN):  # no POSIX locks there (some NFS mounts)
                raise UserError(f"cannot lock {path}: {exc.strerror}") from None
            raise UserError(
                in_use
                or f"journal {journal} is in use by another riskgw serve (it holds {path.name}): stop that "
                "one first, or give another --journal"
            ) from None
        _LOCKED.add(real)
        try:
            yield
        finally:
            _LOCKED.discard(real)
    finally:
        os.close(fd)


async def _serve(config: GatewayConfig) -> int:
    with journal_lock(config.journal):
        return await _serve_locked(config)


async def _serve_locked(config: GatewayConfig) -> int:
    running = await start_gateway(config)
    gw = running.gateway
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, gw.stopped.set)
    await gw.stopped.wait()
    c = gw.counters
    state = gw.card.state_hash()[:12]
    await running.stop()
    _say(
        f"stopped: {c.orders} orders ({c.accepted} accepted, {c.rejected} rejected by rules), "
        f"{c.exchange_events} exchange events, {c.protocol_errors} protocol errors, state {state}"
    )
    if gw.failed is not None:
        raise UserError(f"stopped because the journal could not be written: {gw.failed}")
    return 0


def run_serve(args: argparse.Namespace) -> int:
    config = build_config(args)
    return run(_serve(config), config.event_loop, _say)
