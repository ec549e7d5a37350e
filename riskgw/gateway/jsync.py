"""`journal_sync = "interval"`: the journal is fsynced by a background thread, not by each commit.

Every group commit still writes its records (os.write) before any reply that depends on them
leaves, so the records are in the kernel's page cache by then: a killed gateway (kill -9, a
crash) loses nothing whose reply left. What an interval sync gives up is a power loss or a kernel
crash: the records of up to the last `interval_ms` (plus one fsync's duration) may be gone
although their replies left. With `journal_sync = "commit"` (the default) each commit is fsynced
before its replies leave and a power loss loses nothing either.

The thread fsyncs its own descriptor of the journal file (fsync acts on the file, whichever
descriptor names it), so it never touches the gateway's; os.fsync releases the GIL, so the event
loop runs meanwhile. A failed fsync is kept in `failed` for the gateway to stop on.

`synced` is the file's size when the last completed fsync began (every write that had returned by
then is on disk) and `synced_at` when that fsync ended: the journal lag on /metrics. The size comes
from fstat on the thread's own descriptor, so the thread reads nothing of the gateway's; each is
one attribute store, read whole under the GIL.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path


class JournalSyncer:
    def __init__(self, path: Path, interval_ms: int) -> None:
        self.interval = interval_ms / 1_000
        self.failed: OSError | None = None
        self.syncs = 0
        self.last_sync_ns = 0  # duration of the last fsync
        self.synced = 0  # the journal's size the last completed fsync covered
        self.synced_at = 0.0  # time.monotonic() when it completed (0: none yet)
        self._fd = os.open(path, os.O_RDONLY)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="journal fsync", daemon=True)
        self._thread.start()

    def _sync(self) -> None:
        start = time.perf_counter_ns()
        try:
            covered = os.fstat(self._fd).st_size
            os.fsync(self._fd)
        except OSError as exc:
            self.failed = self.failed or exc
            return
        self.last_sync_ns = time.perf_counter_ns() - start
        self.synced, self.synced_at = covered, time.monotonic()
        self.syncs += 1

    def _run(self) -> None:
        while not self._stop.wait(self.interval) and self.failed is None:
            self._sync()

    def stop(self) -> None:
        """Stop the thread after a last fsync (call after the journal's last write)."""
        if self._fd < 0:
            return
        self._stop.set()
        self._thread.join()
        self._sync()
        os.close(self._fd)
        self._fd = -1
