"""The control port: kill switches and status, for operators, behind a shared token.

One JSON object per line each way; the server answers one request and closes the connection::

    {"token": "...", "cmd": "kill", "account": 3, "cancel_open": true}
    {"token": "...", "cmd": "resume", "user": "broker1"}
    {"token": "...", "cmd": "kill", "all": true}
    {"token": "...", "cmd": "status"}
    {"token": "...", "cmd": "failover"}      # the software engine decides (lifts a halt)
    {"token": "...", "cmd": "failback"}      # bring the card back; primary after probation
    {"token": "...", "cmd": "deploy", "files": [["10_funds.sql", "..."]], "message": "...", "who": "..."}
    {"token": "...", "cmd": "rollback", "version": 2}
    {"token": "...", "cmd": "deployments"}
    {"token": "...", "cmd": "snapshot"}      # a state snapshot now; answers when it is on disk

Answers are {"ok": true, ...} or {"ok": false, "error": "..."}. `riskgw ctl` is the client, and
`riskgw deploy` / `riskgw rollback` / `riskgw deployments` (riskgw.gateway.deploy) for programs.
"""

from __future__ import annotations

import asyncio
import hmac
import json
from typing import TYPE_CHECKING, Any

from riskgw.errors import UserError
from riskgw.gateway.link import os_error_text

if TYPE_CHECKING:  # the server pulls in the engine; `riskgw ctl` needs none of it
    from riskgw.gateway.server import Gateway

_MAX_LINE = 64 << 20  # a deploy request carries the rule files' text
_DEPLOY_COMMANDS = ("deploy", "rollback", "deployments")
_ASYNC_COMMANDS = (*_DEPLOY_COMMANDS, "snapshot")


async def handle_async(gateway: Gateway, token: str, request: Any) -> dict[str, Any]:
    """`handle`, and the commands that wait: deployments (a compile before their swap) and
    snapshots (the file written)."""
    if not isinstance(request, dict) or request.get("cmd") not in _ASYNC_COMMANDS:
        return handle(gateway, token, request)
    given = str(request.get("token", "")).encode()
    if not hmac.compare_digest(given, token.encode()):
        return {"ok": False, "error": "bad token"}
    if request.get("cmd") == "snapshot":
        if gateway.snapshots is None:
            return {"ok": False, "error": "this gateway takes no snapshots (see [snapshots] in the config)"}
        return await gateway.snapshots.take_now()
    if gateway.deployer is None:
        return {"ok": False, "error": "this gateway does not keep deployments"}
    return await gateway.deployer.handle(request)


def handle(gateway: Gateway, token: str, request: Any) -> dict[str, Any]:
    if not isinstance(request, dict):
        return {"ok": False, "error": "a request is a JSON object"}
    given = str(request.get("token", "")).encode()
    if not hmac.compare_digest(given, token.encode()):
        return {"ok": False, "error": "bad token"}
    cmd = request.get("cmd")
    if cmd == "status":
        return {"ok": True, **gateway.status()}
    if cmd in ("failover", "failback"):
        return _standby(gateway, cmd)
    if cmd not in ("kill", "resume"):
        known = ", ".join(("kill", "resume", "status", "failover", "failback", *_ASYNC_COMMANDS))
        return {"ok": False, "error": f"unknown command {cmd!r} (commands: {known})"}
    account, user, everything = request.get("account"), request.get("user"), request.get("all") is True
    if sum((account is not None, user is not None, everything)) != 1:
        return {"ok": False, "error": "give exactly one of account, user, all"}
    if account is not None and (not isinstance(account, int) or isinstance(account, bool)):
        return {"ok": False, "error": "account must be an integer"}
    if user is not None and not isinstance(user, str):
        return {"ok": False, "error": "user must be a string"}
    try:
        cancelled = gateway.set_kill(
            cmd == "kill", account, user, everything, cancel_open=request.get("cancel_open") is True
        )
    except OSError as exc:
        return {"ok": False, "error": f"cannot save the kill switches: {exc.strerror}"}
    return {"ok": True, "cancels_sent": cancelled, "kill": gateway.kill.as_dict()}


def _standby(gateway: Gateway, cmd: str) -> dict[str, Any]:
    from riskgw.card.lockstep import LockstepCard

    card = gateway.card
    if not isinstance(card, LockstepCard):
        return {"ok": False, "error": "this gateway runs no standby (see [failover] standby in the config)"}
    message = card.request_failover() if cmd == "failover" else card.request_failback()
    gateway._log(f"control: {cmd}: {message}")
    return {"ok": True, "message": message, "card": card.status()}


async def start_control(gateway: Gateway, host: str, port: int, token: str) -> asyncio.Server:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                line = await asyncio.wait_for(reader.readline(), 10)
            except ValueError:  # longer than _MAX_LINE
                line = b""
            try:
                request = json.loads(line[:_MAX_LINE]) if line.endswith(b"\n") else None
                answer = await handle_async(gateway, token, request)
            except ValueError:
                answer = {"ok": False, "error": "not a JSON line"}
            writer.write(json.dumps(answer).encode() + b"\n")
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()

    try:
        return await asyncio.start_server(serve, host, port, limit=_MAX_LINE)
    except OSError as exc:
        raise UserError(f"cannot listen for control on {host}:{port}: {exc.strerror}") from None


async def request(host: str, port: int, message: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
    """Send one control request and return the answer (for `riskgw ctl` and tests)."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port, limit=_MAX_LINE), timeout)
    except (OSError, TimeoutError) as exc:
        why = os_error_text(exc) if isinstance(exc, OSError) and exc.errno else "no answer"
        raise UserError(f"cannot reach the control port {host}:{port}: {why}") from None
    try:
        writer.write(json.dumps(message).encode() + b"\n")
        line = await asyncio.wait_for(reader.readline(), timeout)
    except TimeoutError:  # something listens there, but not a gateway's control port, or a hung one
        raise UserError(f"the control port {host}:{port} gave no answer within {timeout:g} s") from None
    except (OSError, ValueError):  # reset by the peer; a line longer than any answer
        raise UserError(f"the control port {host}:{port} gave no answer") from None
    finally:
        writer.close()
    try:
        answer = json.loads(line)
    except ValueError:
        raise UserError(f"the control port {host}:{port} gave no answer") from None
    if not isinstance(answer, dict):
        raise UserError(f"the control port {host}:{port} gave no answer")
    return answer
