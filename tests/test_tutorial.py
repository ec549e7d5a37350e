"""docs/tutorial.md runs as written: every `$ ` command in its console blocks is executed in order,
and its output must match the one shown, up to times, hashes, logins and port numbers.

Blocks whose info string names a file (```sql file=new/55_large_orders.sql) are written to that
file first. `cd DIR` and `export NAME=VALUE` change the next commands' directory and environment;
a command ending in `&` is started in the background (and stopped at the end) and the test waits
until the addresses it listens on answer. The fixed ports of the text are replaced by free ones.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TUTORIAL = ROOT / "docs" / "tutorial.md"
PORTS = ("9000", "9001", "9100")

pytestmark = pytest.mark.timeout(300)


@dataclass
class Step:
    kind: str  # "file" or "cmd"
    text: str  # the path, or the command
    body: list[str]  # the file's lines, or the output shown
    line: int  # where it is in the tutorial


def parse(markdown: str) -> list[Step]:
    steps: list[Step] = []
    lines = markdown.splitlines()
    i = 0
    while i < len(lines):
        fence = re.match(r"^```(\w*)(.*)$", lines[i])
        if not fence:
            i += 1
            continue
        lang, info = fence.group(1), fence.group(2)
        start = i + 1
        i += 1
        block: list[str] = []
        while i < len(lines) and not lines[i].startswith("```"):
            block.append(lines[i])
            i += 1
        i += 1
        file = re.search(r"\bfile=(\S+)", info)
        if file:
            steps.append(Step("file", file.group(1), block, start))
        elif lang == "console":
            for n, text in enumerate(block):
                if text.startswith("$ "):
                    steps.append(Step("cmd", text[2:], [], start + n + 1))
                elif steps and steps[-1].kind == "cmd":
                    steps[-1].body.append(text)
    return steps


_NORMAL = [
    (re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"), "<time>"),
    (re.compile(r"\b[0-9a-f]{12,64}\b"), "<hash>"),
    (re.compile(r"\b\d+\.\d+ (s|ms)\b"), r"<n> \1"),
    (re.compile(r"\(\d+ events/s\)"), "(<n> events/s)"),
    (re.compile(r"[\w.-]+@[\w.-]+"), "<who>"),
]


def normal(lines: list[str]) -> list[str]:
    out = []
    for line in lines:
        for pattern, repl in _NORMAL:
            line = pattern.sub(repl, line)
        out.append(line.rstrip())
    while out and not out[-1]:
        out.pop()
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_listening(address: str, timeout: float = 60.0) -> None:
    host, port = address.rsplit(":", 1)
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, int(port)), 0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise AssertionError(f"nothing listens on {address}") from None
            time.sleep(0.1)


def test_the_tutorial_runs_as_written(tmp_path: Path) -> None:
    steps = parse(TUTORIAL.read_text(encoding="utf-8"))
    assert sum(s.kind == "cmd" for s in steps) >= 10
    for path in ("rules", "docs/tutorial"):
        shutil.copytree(ROOT / path, tmp_path / path)
    ports = {p: str(free_port()) for p in PORTS}
    cwd = tmp_path
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env.pop("RISKGW_CONTROL_TOKEN", None)
    env.pop("RISKGW_CONTROL", None)
    background: list[subprocess.Popen[bytes]] = []
    try:
        for step in steps:
            where = f"docs/tutorial.md:{step.line}: {step.text}"
            if step.kind == "file":
                target = cwd / step.text
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text("\n".join(step.body) + "\n", encoding="utf-8")
                continue
            command = step.text
            for fixed, port in ports.items():
                command = command.replace(f"127.0.0.1:{fixed}", f"127.0.0.1:{port}")
            words = shlex.split(command)
            if words[0] == "cd":
                cwd = cwd / words[1]
                continue
            if words[0] == "export":
                for item in words[1:]:
                    name, _, value = item.partition("=")
                    env[name] = value
                continue
            if command.endswith("&"):
                background.append(
                    subprocess.Popen(
                        ["bash", "-c", command[:-1]],
                        cwd=cwd,
                        env=env,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                        start_new_session=True,
                    )
                )
                for _, address in re.findall(r"--(listen|control) (\S+)", command):
                    wait_listening(re.sub(r"\$(\w+)", lambda m: env[m.group(1)], address))
                continue
            done = subprocess.run(
                ["bash", "-c", command],
                cwd=cwd,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                timeout=180,
            )
            output = done.stdout.decode("utf-8", "replace").splitlines()
            if os.environ.get("RISKGW_TUTORIAL_PRINT"):  # to write the tutorial's outputs
                print(f"$ {step.text}\n" + "\n".join(output))
                continue
            assert normal(output) == normal(step.body), f"{where}\n--- got:\n" + "\n".join(output)
    finally:
        for proc in background:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in background:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
