"""Two demos in one work directory: the second is refused in one line and touches nothing there (it
would delete the journal, the kill file and the audit store under the first one's running gateway),
and the next demo starts once the first has stopped."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from gateway_support import probe_lock

from riskgw.cli import main
from riskgw.demo_serve import READY, Ports, workdir_lock

pytestmark = pytest.mark.timeout(120)

# POSIX locks belong to their process: a lock this test took would be granted to a demo run in it
HOLD_LOCK = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
print("held", flush=True)
sys.stdin.read()
"""


def refusal(workdir: Path) -> str:
    return (
        f"riskgw: error: work directory {workdir} is in use by another riskgw demo: stop that demo "
        "first, or give another --workdir\n"
    )


def files(workdir: Path) -> dict[str, tuple[int, bytes]]:
    """Every file under WORKDIR by its path there, with its inode (a file deleted and written again
    is not the same file) and its bytes; but demo.lock, which a refused `riskgw demo` may leave
    there empty (it takes that lock before it tries the journal's)."""
    return {
        str(p.relative_to(workdir)): (p.stat().st_ino, p.read_bytes())
        for p in sorted(workdir.rglob("*"))
        if p.is_file() and p.name != "demo.lock"
    }


def demo(*argv: str) -> subprocess.CompletedProcess[str]:
    """`riskgw demo ARGV` in its own process (a demo in this one would share its locks); a demo that
    is not refused runs on, and the time limit ends it."""
    return subprocess.run(
        [sys.executable, "-m", "riskgw.cli", "demo", "--card", "soft", *argv],
        capture_output=True,
        text=True,
        timeout=30,
    )


MODES = {"serve": ["--serve", "--ports", "any"], "live": ["--orders", "600"], "offline": ["--offline"]}


@pytest.mark.parametrize(
    ("lock", "mode"),
    [
        ("gateway.journal.lock", "serve"),  # held by a `riskgw demo --serve` (or `riskgw demo`'s child)
        ("gateway.journal.lock", "live"),
        ("gateway.journal.lock", "offline"),
        ("demo.lock", "live"),  # held by another `riskgw demo`
    ],
)
def test_a_demo_in_a_workdir_whose_lock_is_held_is_refused_and_touches_nothing(
    tmp_path: Path, lock: str, mode: str
) -> None:
    workdir = tmp_path / "demo"
    (workdir / "gateway.journal.deployments" / "v1").mkdir(parents=True)
    (workdir / "gateway.journal.deployments" / "v1" / "prog.bin").write_bytes(b"program")
    (workdir / "data").mkdir()
    (workdir / "data" / "account_ticket_info.csv").write_text("a running demo's data\n")
    for name in ("gateway.journal", "gateway.journal.kill", "audit.sqlite", "control.token", "serve.log"):
        (workdir / name).write_text(f"a running demo's {name}\n")
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(workdir / lock)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        before = files(workdir)
        second = demo(*MODES[mode], "--workdir", str(workdir))
        assert (second.returncode, second.stderr, second.stdout) == (1, refusal(workdir), "")
        assert files(workdir) == before
    finally:
        holder.kill()
        holder.wait()


def test_a_second_demo_beside_a_running_one_is_refused_and_the_next_one_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    workdir = tmp_path / "demo"
    argv = ["demo", *MODES["serve"], "--card", "soft", "--workdir", str(workdir)]
    log = (tmp_path / "first.log").open("w")
    first = subprocess.Popen(
        [sys.executable, "-m", "riskgw.cli", *argv],
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    log.close()
    try:
        assert first.stdout is not None
        line = first.stdout.readline()
        while line and not line.startswith(READY):
            line = first.stdout.readline()
        assert line.startswith(READY), (tmp_path / "first.log").read_text()
        # every port the ready line gives is one the demo listens on (`--ports any`: the FIX
        # acceptor's own free port, taken by the acceptor, not picked beforehand)
        ports = Ports.parse(line)
        for name in ("broker", "exchange", "metrics", "control", "fix"):
            port = getattr(ports, name)
            assert port > 0, name
            socket.create_connection(("127.0.0.1", port), timeout=10).close()
        # the first demo's own start cleared the directory and kept its lock file
        assert probe_lock(workdir / "gateway.journal.lock") == "held"
        before = files(workdir)
        assert {"gateway.journal", "audit.sqlite", "control.token"} <= before.keys()
        for mode in ("serve", "live", "offline"):
            second = demo(*MODES[mode], "--workdir", str(workdir))
            assert (second.returncode, second.stderr, second.stdout) == (1, refusal(workdir), ""), mode
        assert files(workdir) == before
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=30) == 0
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    # the next demo starts there: `riskgw demo` in this process (its child is the gateway), start to end
    assert main(["demo", "--card", "soft", "--workdir", str(workdir), "--orders", "600", "--seed", "3"]) == 0
    assert "[3/3] stopped" in capsys.readouterr().out
    for lock in ("gateway.journal.lock", "demo.lock"):  # and it gave its locks back
        assert probe_lock(workdir / lock) == "free"
    with workdir_lock(workdir), workdir_lock(workdir, "demo"):
        pass
