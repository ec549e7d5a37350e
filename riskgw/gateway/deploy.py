"""Deploying rules to a running gateway, between two events, and keeping every version.

`riskgw deploy` sends the rule files' text (and data files for new tables) over the control port.
The gateway compiles them in a child process (`riskgw compile`, so the order path keeps running),
plans the table migration (riskgw.gateway.migrate), stores the version, and then swaps the program
in one synchronous step of the event loop: no await separates reading the card's state from
loading the new program and its tables, so every event runs entirely under one version. The swap
is journaled (a deployment record between the events before and after it), and a restart replays
the journal's events under the programs that decided them.

Versions live in the deployments directory beside the journal (JOURNAL.deployments/), one
directory each, never changed once written::

    v0003/manifest.json   version, source hash, image digest, who, when, message, files, ...
    v0003/prog.bin        the program image
    v0003/src/*.sql       the rule files as deployed (compiled under these names)
    v0003/data/*.csv      data files for the tables the version added, if any were given

Version 1 is the program the journal started with (`riskgw serve --rules`).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client.metrics_core import Metric

from riskgw.card.driver import CardDriver
from riskgw.doe.image import Image, ImageError
from riskgw.engine.csvdata import read_table
from riskgw.errors import InputError, UserError
from riskgw.gateway.durable import sync_dir, sync_path
from riskgw.gateway.journal import DeployMark, Entry
from riskgw.gateway.metrics import counter, gauge
from riskgw.gateway.migrate import MigrationError, Row, carry, plan, snapshot_rows

if TYPE_CHECKING:
    from riskgw.gateway.server import Gateway

_NAME = re.compile(r"[A-Za-z0-9_.-]+")
COMPILE_TIMEOUT = 120.0  # seconds a deployment's compile may take


def deployments_dir(journal: Path) -> Path:
    return journal.with_name(journal.name + ".deployments")


@dataclass
class Deployment:
    version: int
    source_hash: str  # SHA-256 over the rule files' hashes (Image.source_hash), hex
    image_digest: str  # SHA-256 of the program image, hex
    who: str
    when: str  # UTC, ISO 8601
    message: str
    files: list[str]  # the rule files' names, in compile order
    defaults: dict[str, str] = field(default_factory=dict)  # table.column -> value for new columns
    allow_drop: bool = False
    data_tables: list[str] = field(default_factory=list)  # tables with a data file in data/
    rollback_of: int | None = None  # the version a rollback returned to
    changes: list[str] = field(default_factory=list)  # what it did to the schema when deployed

    def summary(self) -> dict[str, Any]:
        return asdict(self)


class DeployStore:
    """The deployments directory."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _dir(self, version: int) -> Path:
        return self.root / f"v{version:04d}"

    def versions(self) -> list[int]:
        if not self.root.is_dir():
            return []
        out = []
        for p in self.root.iterdir():
            if (
                p.is_dir()
                and p.name.startswith("v")
                and p.name[1:].isdigit()
                and (p / "manifest.json").exists()
            ):
                out.append(int(p.name[1:]))
        return sorted(out)

    def get(self, version: int) -> Deployment:
        path = self._dir(version) / "manifest.json"
        try:
            meta = json.loads(path.read_text(encoding="utf-8"))
            return Deployment(**meta)
        except OSError:
            raise UserError(f"no deployment v{version} in {self.root}") from None
        except (ValueError, TypeError) as exc:
            raise UserError(f"{path}: not a deployment manifest ({exc})") from None

    def image(self, version: int) -> Image:
        path = self._dir(version) / "prog.bin"
        try:
            return Image.decode(path.read_bytes())
        except OSError as exc:
            raise UserError(f"cannot read {path}: {exc.strerror}") from None
        except ImageError as exc:
            raise UserError(f"{path}: {exc}") from None

    def sources(self, version: int) -> list[tuple[str, str]]:
        dep = self.get(version)
        src = self._dir(version) / "src"
        return [(name, (src / name).read_text(encoding="utf-8")) for name in dep.files]

    def data_texts(self, version: int) -> dict[str, str]:
        dep = self.get(version)
        data = self._dir(version) / "data"
        return {t: (data / f"{t}.csv").read_text(encoding="utf-8") for t in dep.data_tables}

    def data_rows(self, version: int, image: Image) -> dict[str, list[Row]]:
        dep = self.get(version)
        data = self._dir(version) / "data"
        return {t: read_rows(data / f"{t}.csv", image, t) for t in dep.data_tables}

    def stage(self) -> Path:
        """A fresh directory to build a version in; `commit` gives it its number."""
        self.root.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=".staging-", dir=self.root))

    def commit(self, staging: Path, dep: Deployment) -> Deployment:
        """Number the staged version (the next free number), write its manifest, fsync, rename."""
        dep.version = (self.versions() or [0])[-1] + 1
        (staging / "manifest.json").write_text(json.dumps(dep.summary(), indent=2) + "\n", encoding="utf-8")
        for path in sorted(staging.rglob("*")):
            if path.is_file():
                sync_path(path)
        target = self._dir(dep.version)
        staging.rename(target)
        sync_dir(self.root)
        return dep

    def remove(self, version: int) -> None:
        shutil.rmtree(self._dir(version), ignore_errors=True)


def read_rows(path: Path, image: Image, table: str) -> list[Row]:
    try:
        config = image.table(table)
    except KeyError:
        raise InputError(str(path), 0, f"no table named {table!r} in the rules") from None
    return [r.words for r in read_table(path, config)]


def utc_now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


# ----------------------------------------------------------------------------- compile


def _file_names(files: Sequence[tuple[str, str]]) -> list[str]:
    names: list[str] = []
    for name, _ in files:
        base = Path(name).name
        if not _NAME.fullmatch(base) or base.startswith("."):
            raise UserError(f"rule file name {name!r}: use letters, digits, '_', '-' and '.' only")
        if base in names:
            raise UserError(f"two rule files named {base}: deploy files with different names")
        names.append(base)
    return names


_DIAG = re.compile(r"^\S.*:\d+:\d+: (error|warning): ")


async def compile_sources(src: Path, names: Sequence[str]) -> tuple[Image, list[str]]:
    """Compile `src/NAME...` in a child process, under those names; returns the image and warnings.

    CompileError's diagnostics come back one line each, as a UserError.
    """
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "riskgw.cli",
        "compile",
        *names,
        "-o",
        "../prog.bin",
        cwd=src,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        _, err = await asyncio.wait_for(proc.communicate(), COMPILE_TIMEOUT)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise UserError(f"compiling took longer than {COMPILE_TIMEOUT:.0f} s") from None
    lines = err.decode("utf-8", "replace").splitlines()
    diags = [line for line in lines if _DIAG.match(line)]
    if proc.returncode != 0:
        errors = [d for d in diags if ": error: " in d] or [line for line in lines if line.strip()][-1:]
        raise UserError("\n".join(errors) or "the compiler failed")
    image = Image.decode((src.parent / "prog.bin").read_bytes())
    return image, [d for d in diags if ": warning: " in d]


# ----------------------------------------------------------------------------- the swap


def warm_native(image: Image) -> None:
    """Build the native engine's library for `image` into its cache, off the event loop, so that a
    software card on the native backend does not wait for the C compiler during the swap."""
    from riskgw.doe.isa import N_EVENT_REGS
    from riskgw.engine.cbuild import build_library, compiler
    from riskgw.engine.cgen import generate
    from riskgw.engine.table import EngineError

    if compiler() is None:
        return
    with contextlib.suppress(EngineError):  # the card reports it when it loads the program
        build_library(generate(image, N_EVENT_REGS)[0])


def swap(
    card: CardDriver,
    new: Image,
    defaults: Mapping[str, str],
    allow_drop: bool,
    data: Mapping[str, Sequence[Row]],
) -> tuple[str, float, int]:
    """Move the card (and, through it, any standby) to `new`, carrying its tables over.

    Synchronous: the caller runs it between two events. MigrationError leaves the card as it was.
    Returns the new state hash, the time the swap took (µs) and the rows carried.
    """
    start = time.perf_counter()
    old = card.image
    p = plan(old, new, defaults, allow_drop)
    snap = card.snapshot()
    old_rows = snapshot_rows(old, snap)
    tables = carry(p, old_rows, data)
    try:
        card.load_image(new)
        for table_id, rows in tables.items():
            if rows:
                card.load_rows(table_id, rows)
    except Exception:
        # The card refused something the checks passed: put the old program and tables back.
        card.load_image(old)
        for cfg in old.tables:
            if not cfg.hidden and old_rows[cfg.name]:
                card.load_rows(cfg.id, old_rows[cfg.name])
        raise
    state = card.state_hash()
    return state, (time.perf_counter() - start) * 1e6, sum(len(r) for r in tables.values())


def apply_mark(card: CardDriver, mark: DeployMark, store: DeployStore) -> None:
    """Redo a journaled deployment during a restart; UserError if it does not give the same state."""
    dep = store.get(mark.version)
    image = store.image(mark.version)
    if image.digest() != mark.image_digest:
        raise UserError(
            f"the journal's deployment v{mark.version} ran image {mark.image_digest[:12]}, but "
            f"{store.root}/v{mark.version:04d} holds {image.digest()[:12]}"
        )
    state, _, _ = swap(card, image, dep.defaults, dep.allow_drop, store.data_rows(mark.version, image))
    if state != mark.state_hash:
        raise UserError(
            f"deployment v{mark.version} gives state {state[:12]} on replay, the journal recorded "
            f"{mark.state_hash[:12]}"
        )


def replay_journal(
    card: CardDriver,
    entries: Sequence[Entry],
    marks: Sequence[DeployMark],
    store: DeployStore,
    journal: Path,
) -> int | None:
    """Run the journal's events through the card, redoing each deployment where it happened.

    Returns the version running at the end (None when the journal records no deployment).
    """
    version: int | None = None
    pending = list(marks)
    for i, entry in enumerate(entries):
        while pending and pending[0].position == i:
            apply_mark(card, pending[0], store)
            version = pending.pop(0).version
        decision = card.process(entry.event, entry.inputs)
        if decision != entry.decision:
            raise UserError(
                f"journal {journal}: event {i + 1} ({entry.event.name}) now decides {decision}, "
                f"the journal recorded {entry.decision}: the engine is not the one that wrote it"
            )
    for mark in pending:
        apply_mark(card, mark, store)
        version = mark.version
    return version


# ----------------------------------------------------------------------------- the gateway's side


class Deployer:
    """The gateway's deployments: the store, the running version, and the control commands."""

    @property
    def version(self) -> int:
        return self.history[-1]

    def metric_families(self) -> list[Metric]:
        return [
            gauge(
                "riskgw_program_version", "the deployment version running (riskgw deployments)", self.version
            ),
            counter("riskgw_deployments_total", "program swaps since the gateway started", self.swaps),
            gauge(
                "riskgw_last_swap_us",
                "how long the last swap held the events back, microseconds",
                round(self.last_swap_us, 1),
            ),
        ]

    def __init__(
        self, gateway: Gateway, store: DeployStore, history: list[int], log: Callable[[str], None]
    ) -> None:
        self.gateway = gateway
        self.store = store
        self.history = history  # the versions the journal ran, in order; the last one runs now
        self.swaps = 0
        self.last_swap_us = 0.0
        self._lock = asyncio.Lock()
        self._log = log

    async def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        cmd = request.get("cmd")
        try:
            if cmd == "deployments":
                return {"ok": True, "current": self.version, "deployments": self.listing()}
            async with self._lock:
                if cmd == "deploy":
                    return await self.deploy(request)
                return await self.rollback(request)
        except UserError as exc:
            return {"ok": False, "error": str(exc)}
        except OSError as exc:
            return {"ok": False, "error": f"cannot write the deployment: {exc.strerror or exc}"}

    def listing(self) -> list[dict[str, Any]]:
        out = []
        for v in self.store.versions():
            dep = self.store.get(v)
            item = dep.summary()
            item["current"] = v == self.version
            out.append(item)
        return out

    async def deploy(self, request: dict[str, Any]) -> dict[str, Any]:
        files = request.get("files")
        if (
            not isinstance(files, list)
            or not files
            or not all(
                isinstance(f, list) and len(f) == 2 and all(isinstance(x, str) for x in f) for f in files
            )
        ):
            raise UserError("deploy needs files: [[name, text], ...]")
        data = request.get("data") or {}
        defaults = request.get("defaults") or {}
        if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
            raise UserError("data must map table names to CSV text")
        if not isinstance(defaults, dict) or not all(isinstance(v, str) for v in defaults.values()):
            raise UserError("defaults must map table.column to a value")
        return await self._deploy(
            [(str(n), str(t)) for n, t in files],
            {str(k).lower(): v for k, v in data.items()},
            {str(k).lower(): v for k, v in defaults.items()},
            request.get("allow_drop") is True,
            str(request.get("who") or "unknown"),
            str(request.get("message") or ""),
            request.get("dry_run") is True,
            None,
        )

    async def rollback(self, request: dict[str, Any]) -> dict[str, Any]:
        target = request.get("version")
        if target is None:
            if len(self.history) < 2:
                raise UserError(f"v{self.version} is the first version: there is nothing to roll back to")
            target = self.history[-2]
        if not isinstance(target, int) or isinstance(target, bool):
            raise UserError("version must be a number")
        if target == self.version:
            raise UserError(f"v{target} is the version running now")
        dep = self.store.get(target)
        message = str(request.get("message") or f"rollback to v{target}")
        return await self._deploy(
            self.store.sources(target),
            self.store.data_texts(target),
            dep.defaults,
            True,  # back to a schema the data came from: what the later versions added goes
            str(request.get("who") or "unknown"),
            message,
            request.get("dry_run") is True,
            target,
        )

    async def _deploy(
        self,
        files: list[tuple[str, str]],
        data: dict[str, str],
        defaults: dict[str, str],
        allow_drop: bool,
        who: str,
        message: str,
        dry_run: bool,
        rollback_of: int | None,
    ) -> dict[str, Any]:
        from riskgw.gateway.server import MAX_RULES

        gw = self.gateway
        if gw.failed is not None:
            raise UserError("the gateway is stopping: its journal cannot be written")
        names = _file_names(files)
        loop = asyncio.get_running_loop()
        staging = await loop.run_in_executor(None, self.store.stage)
        try:
            src = staging / "src"
            src.mkdir()
            for name, (_, text) in zip(names, files, strict=True):
                (src / name).write_text(text, encoding="utf-8")
            image, warnings = await compile_sources(src, names)
            if len(image.rules) > MAX_RULES:
                raise UserError(
                    f"{len(image.rules)} rules: the REJECTED frame's mask holds at most {MAX_RULES}"
                )
            # Everything that depends on the schemas alone is checked before the swap.
            p = plan(gw.card.image, image, defaults, allow_drop)
            new_tables = {tp.new.name for tp in p.tables if tp.old is None}
            # A day's data directory may be given whole: only the tables the deployment adds are
            # loaded from it; the others keep their live rows.
            kept = sorted(set(data) - new_tables)
            if kept and rollback_of is None:
                its = "its table keeps its" if len(kept) == 1 else "their tables keep their"
                p.changes.append(f"{', '.join(f'{t}.csv' for t in kept)} not loaded: {its} live rows")
            data = {t: text for t, text in data.items() if t in new_tables}
            rows: dict[str, list[Row]] = {}
            if data:
                (staging / "data").mkdir()
            for table, text in data.items():
                path = staging / "data" / f"{table}.csv"
                path.write_text(text, encoding="utf-8")
                try:
                    rows[table] = read_rows(path, image, table)
                except InputError as exc:
                    raise UserError(f"data for {table}: line {exc.line}: {exc.message}") from None
            source_hash = image.source_hash.hex()
            answer: dict[str, Any] = {
                "ok": True,
                "source_hash": source_hash,
                "rules": len(image.rules),
                "warnings": warnings,
                "changes": p.changes,
            }
            if dry_run:
                answer["dry_run"] = True
                return answer
            await loop.run_in_executor(None, warm_native, image)
            dep = Deployment(
                0,
                source_hash,
                image.digest(),
                who,
                utc_now(),
                message,
                names,
                dict(defaults),
                allow_drop,
                sorted(data),
                rollback_of,
                p.changes,
            )
            dep = await loop.run_in_executor(None, self.store.commit, staging, dep)
        finally:
            if staging.exists():
                await loop.run_in_executor(None, shutil.rmtree, staging, True)
        # ---- the swap: from here to the journal record, nothing awaits, so no event interleaves.
        try:
            state, swap_us, carried = swap(gw.card, image, defaults, allow_drop, rows)
        except MigrationError:
            self.store.remove(dep.version)
            raise
        except Exception as exc:
            # swap() put the previous program and tables back before raising.
            self.store.remove(dep.version)
            self._log(f"deployment of source {source_hash[:12]} failed on the card: {exc}")
            raise UserError(
                f"the card failed during the swap ({exc}); v{self.version} runs as before"
            ) from None
        gw.journal.append_deploy(dep.version, dep.image_digest, state)
        gw.program_changed()
        previous = self.version
        self.history.append(dep.version)
        self.swaps += 1
        self.last_swap_us = swap_us
        gw.flush()  # the deployment record is on disk before the answer
        # ---- end of the swap
        if gw.failed is not None:
            raise UserError(f"the journal could not be written: {gw.failed}")
        self._log(
            f"deployed v{dep.version} (source {source_hash[:12]}, by {who}): {len(image.rules)} rules, "
            f"{carried} rows carried, swap {swap_us / 1000:.1f} ms"
        )
        answer.update(
            version=dep.version,
            previous=previous,
            who=who,
            when=dep.when,
            message=message,
            state_hash=state,
            swap_us=round(swap_us, 1),
            rows=carried,
        )
        return answer


def initial_version(store: DeployStore, image: Image, rules: Sequence[Path], data: Path | None) -> int:
    """The version of the program a gateway starts with: found by its digest, or stored as new."""
    try:
        return _initial_version(store, image, rules, data)
    except OSError as exc:
        raise UserError(f"cannot keep the deployments in {store.root}: {exc.strerror or exc}") from None


def _initial_version(store: DeployStore, image: Image, rules: Sequence[Path], data: Path | None) -> int:
    digest = image.digest()
    for v in reversed(store.versions()):
        if store.get(v).image_digest == digest:
            return v
    staging = store.stage()
    try:
        src = staging / "src"
        src.mkdir()
        names = []
        for path in rules:
            shutil.copyfile(path, src / path.name)
            names.append(path.name)
        tables = []
        if data is not None and data.is_dir():
            (staging / "data").mkdir()
            for f in sorted(data.glob("*.csv")):
                shutil.copyfile(f, staging / "data" / f.name.lower())
                tables.append(f.stem.lower())
        (staging / "prog.bin").write_bytes(image.encode())
        dep = Deployment(
            0,
            image.source_hash.hex(),
            digest,
            "serve",
            utc_now(),
            "the program the journal started with",
            names,
        )
        dep.data_tables = tables
        return store.commit(staging, dep).version
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
