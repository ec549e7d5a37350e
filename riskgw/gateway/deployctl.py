"""`riskgw deploy`, `riskgw rollback`, `riskgw deployments`: rule versions on a running gateway.

    riskgw deploy RULES... [-m MESSAGE] [--data DIR] [--default TABLE.COLUMN=VALUE]... [--allow-drop]
                  [--dry-run] [--control HOST:PORT] [--token-file PATH]
    riskgw rollback [VERSION] [-m MESSAGE] [--dry-run] [--control HOST:PORT] [--token-file PATH]
    riskgw deployments [--control HOST:PORT] [--token-file PATH]

The rules are checked here first, so a mistake is reported with the file names as given and
nothing is sent; then their text goes to the gateway, which compiles, checks the migration and
swaps (riskgw.gateway.deploy). The token is the one `riskgw ctl` uses.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import socket
import sys
from pathlib import Path
from typing import Any

from riskgw.errors import UserError
from riskgw.gateway.config import TOKEN_ENV
from riskgw.gateway.control import request
from riskgw.gateway.ctl import CONTROL_ENV, DEFAULT_CONTROL, _token
from riskgw.gateway.link import parse_host_port
from riskgw.lang.ast import CompileError, Diagnostic

ANSWER_TIMEOUT = 180.0  # seconds: the gateway compiles in a child process before it answers


def _one_line(d: Diagnostic) -> str:
    where = f"{d.loc}: " if d.loc else ""
    return f"{where}{d.severity.value}: {d.message}"


def _who() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def _ask(args: argparse.Namespace, message: dict[str, Any]) -> dict[str, Any]:
    try:
        host, port = parse_host_port(args.control)
    except ValueError as exc:
        raise UserError(f"--control: {exc}") from None
    answer = asyncio.run(request(host, port, {"token": _token(args), **message}, ANSWER_TIMEOUT))
    if not answer.get("ok"):
        error = str(answer.get("error", "no reason given"))
        lines = error.splitlines()
        if len(lines) > 1:  # compiler diagnostics, one per line
            for line in lines:
                print(line, file=sys.stderr)
            raise UserError(f"the gateway refused the deployment: {len(lines)} error(s)")
        raise UserError(f"the gateway refused: {error}")
    return answer


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: not UTF-8 text") from None


def _defaults(items: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        where, sep, value = item.partition("=")
        if not sep or where.count(".") != 1:
            raise UserError(f"--default {item!r}: expected TABLE.COLUMN=VALUE")
        out[where.strip().lower()] = value
    return out


def _report(answer: dict[str, Any]) -> None:
    for w in answer.get("warnings", []):
        print(w, file=sys.stderr)
    changes = answer.get("changes", [])
    if answer.get("dry_run"):
        print(
            f"ok: would deploy source {answer['source_hash'][:12]} ({answer['rules']} rules); nothing changed"
        )
    else:
        print(
            f"deployed v{answer['version']} (source {answer['source_hash'][:12]}, {answer['rules']} rules) "
            f"by {answer['who']} at {answer['when']}, replacing v{answer['previous']}"
        )
    for change in changes:
        print(f"  {change}")
    if not answer.get("dry_run"):
        print(
            f"  swap {answer['swap_us'] / 1000:.1f} ms between two events, {answer['rows']} rows carried, "
            f"state {answer['state_hash'][:12]}"
        )


def run_deploy(args: argparse.Namespace) -> int:
    from riskgw.doe.compiler import compile_files

    paths = [Path(p) for p in args.rules]
    try:
        result = compile_files(paths)
    except CompileError as exc:
        for d in exc.diagnostics:
            print(_one_line(d), file=sys.stderr)
        errors = sum(1 for d in exc.diagnostics if d.severity.value == "error")
        print(f"{errors} error(s): nothing deployed", file=sys.stderr)
        return 1
    new_tables = {t.name for t in result.image.tables if not t.hidden}
    data: dict[str, str] = {}
    if args.data:
        data_dir = Path(args.data)
        if not data_dir.is_dir():
            raise UserError(f"--data {data_dir}: no such directory")
        for f in sorted(data_dir.glob("*.csv")):
            if f.stem.lower() not in new_tables:
                raise UserError(f"{f}: no table named {f.stem!r} in the rules")
            data[f.stem.lower()] = _read(f)
    message: dict[str, Any] = {
        "cmd": "deploy",
        "files": [[p.name, _read(p)] for p in paths],
        "message": args.message or "",
        "who": _who(),
        "data": data,
        "defaults": _defaults(args.default or []),
        "allow_drop": args.allow_drop,
        "dry_run": args.dry_run,
    }
    _report(_ask(args, message))
    return 0


def run_rollback(args: argparse.Namespace) -> int:
    message: dict[str, Any] = {"cmd": "rollback", "who": _who(), "dry_run": args.dry_run}
    if args.version is not None:
        text = args.version.lstrip("v")
        if not text.isdigit():
            raise UserError(f"version {args.version!r}: expected a number such as 3 or v3")
        message["version"] = int(text)
    if args.message:
        message["message"] = args.message
    _report(_ask(args, message))
    return 0


def run_deployments(args: argparse.Namespace) -> int:
    answer = _ask(args, {"cmd": "deployments"})
    for d in answer["deployments"]:
        mark = "*" if d["current"] else " "
        back = f" (rollback to v{d['rollback_of']})" if d.get("rollback_of") else ""
        print(
            f"{mark} v{d['version']}  {d['when']}  {d['source_hash'][:12]}  {d['who']}  "
            f"{len(d['files'])} file(s)  {d['message']}{back}"
        )
    return 0


def _connection(p: argparse.ArgumentParser) -> None:
    default = os.environ.get(CONTROL_ENV) or DEFAULT_CONTROL
    p.add_argument(
        "--control",
        default=default,
        metavar="HOST:PORT",
        help=f"default ${CONTROL_ENV}, else {DEFAULT_CONTROL}",
    )
    p.add_argument("--token-file", metavar="PATH", help=f"file holding the token (default: ${TOKEN_ENV})")


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("deploy", help="check rules and swap them into a running gateway between two events")
    p.add_argument("rules", nargs="+", metavar="RULES")
    p.add_argument("-m", "--message", help="why: kept with the version")
    p.add_argument("--data", metavar="DIR", help="<table>.csv files for tables the rules add")
    p.add_argument(
        "--default",
        action="append",
        metavar="TABLE.COLUMN=VALUE",
        help="value of a new column in the rows already there (default NULL)",
    )
    p.add_argument(
        "--allow-drop", action="store_true", help="allow dropping tables and columns with their data"
    )
    p.add_argument("--dry-run", action="store_true", help="compile and check the migration; change nothing")
    _connection(p)
    p.set_defaults(func=run_deploy)

    p = sub.add_parser("rollback", help="deploy an earlier version again (default: the one before)")
    p.add_argument("version", nargs="?", metavar="VERSION", help="e.g. 3 or v3")
    p.add_argument("-m", "--message", help="why: kept with the new version")
    p.add_argument("--dry-run", action="store_true", help="check the migration; change nothing")
    _connection(p)
    p.set_defaults(func=run_rollback)

    p = sub.add_parser("deployments", help="the versions a gateway keeps; * marks the one running")
    _connection(p)
    p.set_defaults(func=run_deployments)
