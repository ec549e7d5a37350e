"""`riskgw serve` and `riskgw exchange-sim` as commands: settings, one-line errors, clean stops."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from gateway_support import RULES, SMALL, probe_lock, spawn, trade_one_order

from riskgw.cli import build_parser
from riskgw.cli import main as cli_main
from riskgw.errors import UserError
from riskgw.gateway.config import GatewayConfig, build_config
from riskgw.gateway.journal import scan

pytestmark = pytest.mark.timeout(60)


def config_of(*argv: str) -> GatewayConfig:
    return build_config(build_parser().parse_args(["serve", *argv]))


def test_config_file_and_flags_that_override_it(tmp_path: Path) -> None:
    rules_dir = Path(RULES[0]).parent
    toml = tmp_path / "gateway.toml"
    toml.write_text(
        f"""
listen = "127.0.0.1:9555"
exchange = "127.0.0.1:9556"
rules = ["{rules_dir}/*.sql"]
data = "data"
journal = "gw.journal"
heartbeat_ms = 250

[users.alice]
password = "a"
accounts = [1, 2]

[users.ops]
password = "o"
accounts = "*"
"""
    )
    c = config_of("--config", str(toml))
    assert c.listen == ("127.0.0.1", 9555) and c.exchange == ("127.0.0.1", 9556)
    assert c.rules == RULES
    assert c.data == tmp_path / "data" and c.journal == tmp_path / "gw.journal"
    assert c.heartbeat_ms == 250 and c.fsync
    assert c.users["alice"].may_trade(2) and not c.users["alice"].may_trade(3)
    assert c.users["ops"].may_trade(12345)
    c = config_of(
        "--config",
        str(toml),
        "--listen",
        "127.0.0.1:1",
        "--user",
        "alice:x:7",
        "--journal",
        "j2",
        "--no-fsync",
    )
    assert c.listen == ("127.0.0.1", 1) and c.journal == Path("j2") and not c.fsync
    assert c.users["alice"].password == "x" and c.users["alice"].accounts == frozenset({7})
    assert "ops" in c.users


@pytest.mark.parametrize(
    ("argv", "toml", "message"),
    [
        (["--user", "a:b:1"], None, "no rules"),
        (["--rules", "x.sql"], None, "no users"),
        (["--rules", "x.sql", "--user", "nopassword"], None, "NAME:PASSWORD:ACCOUNTS"),
        (["--rules", "x.sql", "--user", "a:b:1,x"], None, "accounts must be"),
        (["--rules", "x.sql", "--user", "a:b:1", "--listen", "nowhere"], None, "is not HOST:PORT"),
        (["--user", "a:b:1"], "colour = 1\n", "unknown setting 'colour'"),
        (["--user", "a:b:1"], "rules = [\n", "gateway.toml"),
        (["--user", "a:b:1"], 'rules = ["nothing-*.sql"]\n', "matches no file"),
        (["--user", "a:b:1"], 'rules = "rules/*.sql"\n', "rules must be a list"),
        (["--user", "a:b:1"], "rules = [1, 2]\n", "rules must be a list"),
        (["--user", "a:b:1"], "rules = 5\n", "rules must be a list"),
        (["--rules", "x.sql", "--user", "a:b:1"], "heartbeat_ms = true\n", "heartbeat_ms must be"),
        (["--rules", "x.sql"], '[users.a]\npassword = "x"\naccounts = [1.5]\n', "accounts must be"),
        (["--rules", "x.sql", "--user", "a:" + "p" * 17 + ":1"], None, "the password is 17 bytes"),
        (  # 16 characters, 17 bytes of UTF-8
            ["--rules", "x.sql"],
            '[users."équipe-nuit-0123"]\npassword = "x"\naccounts = [1]\n',
            "the name is 17 bytes",
        ),
    ],
)
def test_bad_settings_are_one_line_errors(
    tmp_path: Path, argv: list[str], toml: str | None, message: str
) -> None:
    if toml is not None:
        (tmp_path / "gateway.toml").write_text(toml)
        argv = [*argv, "--config", str(tmp_path / "gateway.toml")]
    with pytest.raises(UserError, match=re.escape(message)):
        config_of(*argv)


def test_a_settings_file_that_is_not_utf8_is_a_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "gateway.toml").write_bytes(b'listen = "\xff"\n')
    with pytest.raises(UserError, match=r"gateway.toml: not UTF-8 \(byte 10\); save it as UTF-8"):
        config_of("--user", "a:b:1", "--config", str(tmp_path / "gateway.toml"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_exchange_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = SMALL.write(tmp_path / "data")
    port = free_port()  # nothing listens there
    argv = ["serve", "--rules", *map(str, RULES), "--data", str(data), "--journal", str(tmp_path / "j")]
    argv += ["--listen", "127.0.0.1:0", "--exchange", f"127.0.0.1:{port}", "--user", "a:b:1"]
    assert cli_main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == f"riskgw: error: cannot reach the exchange at 127.0.0.1:{port}: Connection refused"
    assert "Traceback" not in "\n".join(err)


def test_serve_and_exchange_sim_commands_trade_and_stop_on_sigterm(tmp_path: Path) -> None:
    data = SMALL.write(tmp_path / "data")
    procs: list[subprocess.Popen[str]] = []
    try:
        exch, line = spawn(
            "exchange-sim", "--listen", "127.0.0.1:0", "--fill", "1", "--partial", "0", "--reject", "0"
        )
        procs.append(exch)
        found = re.search(r"127\.0\.0\.1:(\d+)", line)
        assert found, line
        exch_port = int(found.group(1))
        argv = ["serve", "--rules", *map(str, RULES), "--data", str(data), "--journal", str(tmp_path / "j")]
        argv += [
            "--listen",
            "127.0.0.1:0",
            "--exchange",
            f"127.0.0.1:{exch_port}",
            "--user",
            "alice:pw-a:1,2",
        ]
        gw, line = spawn(*argv)
        procs.append(gw)
        assert "0 events replayed" in line, line
        found = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
        assert found, line
        gw_port = int(found.group(1))
        trade_one_order(gw_port)
        # a second gateway on the same journal (a restart while this one runs) touches nothing
        journal = (tmp_path / "j").read_bytes()
        second = subprocess.run(  # listening on another free port: only the journal is shared
            [sys.executable, "-m", "riskgw.cli", *argv], capture_output=True, text=True, timeout=60
        )
        assert second.returncode == 1 and second.stderr == (
            f"riskgw: error: journal {tmp_path / 'j'} is in use by another riskgw serve (it holds j.lock):"
            " stop that one first, or give another --journal\n"
        ), second.stderr
        assert (tmp_path / "j").read_bytes() == journal
        for proc in (gw, exch):
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=15) == 0
        assert gw.stderr is not None
        assert "stopped: 1 orders (1 accepted" in gw.stderr.read()
        assert [e.event.name for e in scan(tmp_path / "j").entries] == ["NEW", "FILL"]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_control_port_needs_a_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RISKGW_CONTROL_TOKEN", raising=False)
    argv = ("--rules", "x.sql", "--user", "a:b:1", "--control", "127.0.0.1:9001")
    with pytest.raises(UserError, match="needs a token"):
        config_of(*argv)
    monkeypatch.setenv("RISKGW_CONTROL_TOKEN", "t")
    c = config_of(*argv, "--journal", "x/j")
    assert c.control == ("127.0.0.1", 9001) and c.control_token == "t" and c.kill_path == Path("x/j.kill")


def test_connect_errors_name_their_reason() -> None:
    """A host name that does not resolve says so, not "Unknown error -2" (os.strerror of a
    getaddrinfo code); asyncio's own text, which repeats the address, gives way to errno's."""
    import errno

    from riskgw.gateway.link import os_error_text

    lookup = socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    assert os_error_text(lookup) == "Name or service not known"
    refused = ConnectionRefusedError(errno.ECONNREFUSED, "Connect call failed ('127.0.0.1', 9)")
    assert os_error_text(refused) == "Connection refused"


def test_the_journal_lock_is_held_once_per_process_and_by_any_name(tmp_path: Path) -> None:
    """POSIX locks belong to the process: a second lock of the file in it would be granted, and
    closing it would drop the first. The lock remembers its journals, by their real path."""
    from riskgw.gateway.serve import journal_lock

    journal = tmp_path / "j"
    (tmp_path / "other").symlink_to(tmp_path)
    with journal_lock(journal):
        for name in (journal, tmp_path / "other" / "j"):  # the same journal by another name too
            with pytest.raises(UserError) as refused, journal_lock(name):
                pass
            assert str(refused.value) == (
                f"journal {name} is in use by a gateway of this process: give another --journal"
            )
        # and still held against other processes
        assert probe_lock(tmp_path / "j.lock") == "held"
    with journal_lock(journal):  # given back when its gateway stopped
        pass


def test_a_journal_where_files_cannot_be_locked_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Some NFS mounts have no POSIX locks: that is not another gateway, and the error says what it is."""
    import errno
    import fcntl
    import os

    from riskgw.gateway import serve

    def no_locks(fd: int, cmd: int) -> None:
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(fcntl, "lockf", no_locks)
    with pytest.raises(UserError) as refused, serve.journal_lock(tmp_path / "j"):
        pass
    assert str(refused.value) == f"cannot lock {tmp_path / 'j.lock'}: No locks available"
    assert (tmp_path / "j").resolve() not in serve._LOCKED  # nothing left held
