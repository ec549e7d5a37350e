"""`riskgw ctl`: the operator's client for the gateway's control port.

    riskgw ctl [--control HOST:PORT] kill (--account N | --user NAME | --all) [--cancel-open]
    riskgw ctl [--control HOST:PORT] resume (--account N | --user NAME | --all)
    riskgw ctl [--control HOST:PORT] status
    riskgw ctl [--control HOST:PORT] failover     # the software engine decides from now on
    riskgw ctl [--control HOST:PORT] failback     # bring the card back; it decides again after probation
    riskgw ctl [--control HOST:PORT] snapshot     # a state snapshot now (a restart replays from it)

The address is --control, else the environment variable RISKGW_CONTROL (as for `riskgw deploy`),
else 127.0.0.1:9001. The token comes from the environment variable RISKGW_CONTROL_TOKEN or from
--token-file, never from the command line, where other users could read it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from pathlib import Path
from typing import Any

from riskgw.errors import UserError
from riskgw.gateway.config import TOKEN_ENV
from riskgw.gateway.control import request
from riskgw.gateway.link import parse_host_port

CONTROL_ENV = "RISKGW_CONTROL"  # the control port's HOST:PORT when --control is not given
DEFAULT_CONTROL = "127.0.0.1:9001"


def _token(args: argparse.Namespace) -> str:
    if args.token_file:
        try:
            return Path(args.token_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise UserError(f"cannot read {args.token_file}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise UserError(
                f"{args.token_file}: not UTF-8 text; the token file holds the token alone"
            ) from None
    token = os.environ.get(TOKEN_ENV, "")
    if not token:
        raise UserError(f"no control token: set {TOKEN_ENV} or give --token-file")
    return token


def run_ctl(args: argparse.Namespace) -> int:
    try:
        host, port = parse_host_port(args.control)
    except ValueError as exc:
        raise UserError(f"--control: {exc}") from None
    message: dict[str, Any] = {"token": _token(args), "cmd": args.action}
    if args.action in ("kill", "resume"):
        if args.account is not None:
            message["account"] = args.account
        if args.user is not None:
            message["user"] = args.user
        if args.all:
            message["all"] = True
        if getattr(args, "cancel_open", False):
            message["cancel_open"] = True
    timeout = 600.0 if args.action == "snapshot" else 10.0  # a large state takes a while to write
    answer = asyncio.run(request(host, port, message, timeout))
    if not answer.get("ok"):
        raise UserError(f"the gateway refused: {answer.get('error', 'no reason given')}")
    if args.action == "status":
        print(json.dumps({k: v for k, v in answer.items() if k != "ok"}, indent=2, sort_keys=True))
    elif args.action == "snapshot":
        print(
            f"ok: snapshot {answer.get('file')} at journal record {answer.get('records')} "
            f"({answer.get('bytes')} bytes, order path held {answer.get('capture_us')} µs, "
            f"written in {answer.get('write_s')} s)"
        )
    elif args.action in ("failover", "failback"):
        card = answer.get("card", {})
        print(f"ok: {answer.get('message')} (primary: {card.get('primary')}, mode: {card.get('mode')})")
    else:
        kill = answer.get("kill", {})
        cancels = f"; {answer['cancels_sent']} cancel(s) sent" if answer.get("cancels_sent") else ""
        print(
            f"ok: kill switches all={kill.get('all')} accounts={kill.get('accounts')} "
            f"users={kill.get('users')}{cancels}"
        )
    return 0


def add_parser(sub: Any) -> None:
    p = sub.add_parser("ctl", help="kill switches and status through the gateway's control port")
    p.add_argument(
        "--control",
        default=os.environ.get(CONTROL_ENV) or DEFAULT_CONTROL,
        metavar="HOST:PORT",
        help=f"default ${CONTROL_ENV}, else {DEFAULT_CONTROL}",
    )
    p.add_argument("--token-file", metavar="PATH", help=f"file holding the token (default: ${TOKEN_ENV})")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, text in (("kill", "reject new orders"), ("resume", "accept new orders again")):
        a = actions.add_parser(name, help=f"{text} for an account, a login or everything")
        scope = a.add_mutually_exclusive_group(required=True)
        scope.add_argument("--account", type=int)
        scope.add_argument("--user", metavar="NAME")
        scope.add_argument("--all", action="store_true")
        if name == "kill":
            a.add_argument("--cancel-open", action="store_true", help="also cancel the open orders it covers")
    actions.add_parser("status", help="kill switches, sessions, open orders, counters, state hash, card")
    actions.add_parser("failover", help="the software engine decides from now on (lifts a halt)")
    actions.add_parser(
        "failback", help="bring the card back: it decides again after probation (lifts a halt)"
    )
    actions.add_parser(
        "snapshot", help="write a state snapshot now; a restart replays only the journal after it"
    )
