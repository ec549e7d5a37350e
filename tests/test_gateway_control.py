"""Kill switches through the token-protected control port, and `riskgw ctl`."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from gateway_support import Stack, held_order, run_async, start_stack

from riskgw.exchange.sim import Behaviour
from riskgw.gateway.control import request
from riskgw.gateway.journal import scan
from riskgw.gateway.protocol import MsgType, Reason

pytestmark = pytest.mark.timeout(60)

REST_ALL = Behaviour(fill=0.0, partial=0.0, reject=0.0)
TOKEN = "s3cret"


async def ctl(stack: Stack, **message: Any) -> dict[str, Any]:
    return await request("127.0.0.1", stack.running.control_port, {"token": TOKEN, **message})


async def control_stack(tmp_path: Path) -> Stack:
    return await start_stack(tmp_path, REST_ALL, control=("127.0.0.1", 0), control_token=TOKEN)


def test_kill_switches_reject_new_orders_in_their_scope(tmp_path: Path) -> None:
    async def script() -> None:
        stack = await control_stack(tmp_path)
        alice, bob = await stack.broker("alice"), await stack.broker("bob")
        alice.send(MsgType.NEW_ORDER, **held_order(1, account=1))
        await alice.recv_type(MsgType.ACCEPTED)

        assert (
            await request("127.0.0.1", stack.running.control_port, {"token": "x", "cmd": "kill", "all": True})
        )["error"] == "bad token"
        assert not stack.gateway.kill.all
        assert (await ctl(stack, cmd="kill", account=1, user="bob"))["ok"] is False

        assert (await ctl(stack, cmd="kill", account=1))["ok"]
        alice.send(MsgType.NEW_ORDER, **held_order(2, account=1, k=1))
        r = await alice.recv_type(MsgType.REJECTED)
        assert (r["order_id"], r["reason"]) == (2, Reason.KILL_SWITCH)
        alice.send(MsgType.NEW_ORDER, **held_order(3, account=2))
        await alice.recv_type(MsgType.ACCEPTED)
        # a cancel still goes through: it only reduces risk
        alice.send(MsgType.CANCEL_REQUEST, order_id=1, account_id=1)
        assert (await alice.recv_type(MsgType.CANCELLED))["order_id"] == 1

        assert (await ctl(stack, cmd="kill", user="alice"))["ok"]
        alice.send(MsgType.NEW_ORDER, **held_order(4, account=2, k=2))
        assert (await alice.recv_type(MsgType.REJECTED))["reason"] == Reason.KILL_SWITCH
        bob.send(MsgType.NEW_ORDER, **held_order(5, account=2, k=3))
        await bob.recv_type(MsgType.ACCEPTED)

        assert (await ctl(stack, cmd="kill", all=True))["ok"]
        bob.send(MsgType.NEW_ORDER, **held_order(6, account=4))
        assert (await bob.recv_type(MsgType.REJECTED))["reason"] == Reason.KILL_SWITCH
        assert (await ctl(stack, cmd="resume", all=True))["ok"]
        assert (await ctl(stack, cmd="resume", user="alice"))["ok"]
        bob.send(MsgType.NEW_ORDER, **held_order(7, account=4))
        await bob.recv_type(MsgType.ACCEPTED)

        status = await ctl(stack, cmd="status")
        assert status["kill"] == {"all": False, "accounts": [1], "users": []}
        assert status["state_hash"] == stack.gateway.card.state_hash()
        assert status["open_orders"] == 3 and status["logged_on"] == ["alice", "bob"]
        assert stack.exchange.orders_seen == 4  # orders 1, 3, 5, 7
        # killed orders never reached the card
        new_ids = [e.inputs[0] for e in scan(stack.config.journal).entries if e.event.name == "NEW"]
        assert new_ids == [1, 3, 5, 7]

        # the switches outlive a restart
        await stack.restart()
        assert stack.gateway.kill.accounts == {1}
        # The exchange cancelled the orders of the old gateway's connection; once the new one has
        # learnt it, alice's next session is told of her order 3 first (its answer waited for her).
        for _ in range(200):
            if not stack.gateway.open:
                break
            await asyncio.sleep(0.01)
        assert not stack.gateway.open
        alice = await stack.broker("alice")
        cancelled = await alice.recv_type(MsgType.CANCELLED)
        assert (cancelled["order_id"], cancelled["exec_quantity"]) == (3, 100)
        alice.send(MsgType.NEW_ORDER, **held_order(8, account=1, k=4))
        assert (await alice.recv_type(MsgType.REJECTED))["reason"] == Reason.KILL_SWITCH
        await alice.close()
        await bob.close()
        await stack.close()

    run_async(script())


def test_kill_with_cancel_open_cancels_the_orders_it_covers(tmp_path: Path) -> None:
    async def script() -> None:
        stack = await control_stack(tmp_path)
        bob = await stack.broker("bob")
        for i, account in enumerate((2, 2, 3)):
            bob.send(MsgType.NEW_ORDER, **held_order(10 + i, account=account, k=i))
            await bob.recv_type(MsgType.ACCEPTED)
        answer = await ctl(stack, cmd="kill", account=2, cancel_open=True)
        assert answer["cancels_sent"] == 2
        cancelled = {(await bob.recv_type(MsgType.CANCELLED))["order_id"] for _ in range(2)}
        assert cancelled == {10, 11}
        assert list(stack.gateway.open) == [(3, 12)]
        await bob.close()
        await stack.close()

    run_async(script())


def test_ctl_command(tmp_path: Path) -> None:
    async def script() -> None:
        stack = await control_stack(tmp_path)
        port = stack.running.control_port

        async def ctl_cmd(*argv: str, token: str = TOKEN, flag: bool = True) -> tuple[int, str, str]:
            # Without --control the address comes from $RISKGW_CONTROL, as for `riskgw deploy`.
            address = f"127.0.0.1:{port}"
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "riskgw.cli",
                "ctl",
                *(["--control", address] if flag else []),
                *argv,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env={
                    **os.environ,
                    "RISKGW_CONTROL_TOKEN": token,
                    "RISKGW_CONTROL": "127.0.0.1:1" if flag else address,
                },
            )
            out, err = await proc.communicate()
            return proc.returncode or 0, out.decode(), err.decode()

        code, out, _ = await ctl_cmd("kill", "--account", "7")
        assert code == 0 and "accounts=[7]" in out
        code, out, _ = await ctl_cmd("status")
        assert code == 0 and '"accounts": [\n      7\n    ]' in out
        code, out, _ = await ctl_cmd("status", flag=False)
        assert code == 0 and '"accounts": [\n      7\n    ]' in out
        code, _, err = await ctl_cmd("resume", "--all", token="wrong")
        assert code == 1 and err.strip() == "riskgw: error: the gateway refused: bad token"
        assert stack.gateway.kill.accounts == {7}
        await stack.close()

    run_async(script())


def test_a_port_that_never_answers_is_a_one_line_error() -> None:
    """`riskgw ctl --control` pointed at something else that listens (the exchange's port, say)."""
    from riskgw.errors import UserError

    async def script() -> None:
        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read()  # reads the request and never answers

        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        with pytest.raises(UserError, match=rf"127.0.0.1:{port} gave no answer within 0.5 s"):
            await request("127.0.0.1", port, {"token": TOKEN, "cmd": "status"}, timeout=0.5)
        server.close()

    run_async(script())


def test_a_token_file_that_is_not_text_is_a_one_line_error(tmp_path: Path) -> None:
    from riskgw.cli import build_parser
    from riskgw.errors import UserError
    from riskgw.gateway.ctl import run_ctl

    token = tmp_path / "token"
    token.write_bytes(b"\xff\xfe\n")
    args = build_parser().parse_args(["ctl", "--token-file", str(token), "status"])
    with pytest.raises(UserError, match="token: not UTF-8 text"):
        run_ctl(args)
