"""fsync by path: a file's contents, or a directory's entries (the files created in it), so that
they are found after a power cut."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def sync_path(path: Path, data_only: bool = False) -> None:
    """fsync (fdatasync with `data_only`) the file or directory at `path`; OSError when it fails."""
    fd = os.open(path, os.O_RDONLY)
    try:
        if data_only:
            os.fdatasync(fd)
        else:
            os.fsync(fd)
    finally:
        os.close(fd)


def sync_dir(path: Path) -> None:
    """fsync a directory, where the file system allows it (not every one lets a directory be synced)."""
    with contextlib.suppress(OSError):
        sync_path(path)
