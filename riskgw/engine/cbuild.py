"""Builds the native executor's C source into a shared library, once per source and machine.

The library goes to $XDG_CACHE_HOME/riskgw/native (default ~/.cache), named by the hash of the
source and the compile command, never into the source tree.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from riskgw.engine.table import EngineError

CFLAGS = ("-O2", "-shared", "-fPIC")


def compiler() -> str | None:
    """The C compiler the native backend uses ($CC, else cc), or None when there is none."""
    return shutil.which(os.environ.get("CC", "cc"))


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "riskgw" / "native"


def build_library(source: str) -> Path:
    """The shared library of `source`: from the cache, or compiled into it.

    Two processes building the same source both compile to private temporary names; the rename
    into place is atomic, so a reader only ever sees a complete library.
    """
    cc = os.environ.get("CC", "cc")
    digest = hashlib.sha256("\0".join((source, cc, *CFLAGS)).encode()).hexdigest()[:32]
    directory = cache_dir()
    target = directory / f"rgw_{digest}.so"
    if target.exists():
        return target
    path = compiler()
    if path is None:
        raise EngineError(f"the native backend needs a C compiler: {cc!r} not found (set CC or install gcc)")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp_c = tempfile.mkstemp(prefix=f"rgw_{digest}.", suffix=".c", dir=directory)
    except OSError as exc:
        raise EngineError(f"cannot write the native cache {directory}: {exc.strerror}") from None
    tmp_so = tmp_c[:-2] + ".so"
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(source)
        done = subprocess.run([path, *CFLAGS, "-o", tmp_so, tmp_c], capture_output=True, text=True)
        if done.returncode != 0:
            tail = done.stderr.strip().splitlines()[-5:]
            raise EngineError(f"C compiler failed on the generated engine: {' / '.join(tail)}")
        os.replace(tmp_so, target)
        # the source beside the library, for reading a generated engine
        os.replace(tmp_c, target.with_suffix(".c"))
    finally:
        for leftover in (tmp_c, tmp_so):
            if os.path.exists(leftover):
                os.unlink(leftover)
    return target
