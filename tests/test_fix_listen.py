"""fix.listen: the FIX port listens on one address (QuickFIX 1.16.0+riskgw.2, tools/patch_quickfix.py),
on every interface without it, and an address is refused on a QuickFIX build that would ignore it.

Linux routes all of 127.0.0.0/8 to loopback, so a port on every interface answers on 127.0.0.2 too;
one bound to 127.0.0.1 alone refuses it. The first test shows the former (so the refusal in the
second cannot come from 127.0.0.2 being unreachable), the second the latter.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import struct
from pathlib import Path
from typing import Any

import pytest
from fix_support import connect, fix_config, fix_port, fix_stack
from gateway_support import STEP, run_async

from riskgw.errors import UserError
from riskgw.exchange.sim import Behaviour
from riskgw.gateway import fix as fix_module

pytestmark = pytest.mark.timeout(120)

FILL_ALL = Behaviour(fill=1.0, partial=0.0, reject=0.0)
UNPATCHED = "1.16.0+riskgw.1"  # the build before the bind fix: SocketAcceptAddress is ignored
NOT_HERE = "192.0.2.1"  # TEST-NET-1: no interface of this host has it


def listening_addresses(port: int) -> set[str]:
    """The IPv4 addresses of the sockets listening on `port` (from /proc/net/tcp)."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, _, hex_port = local.partition(":")
        if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
            found.add(socket.inet_ntoa(struct.pack("<I", int(address, 16))))  # the kernel's byte order
    return found


async def reaches(host: str, port: int) -> bool:
    """A TCP connection to host:port is accepted (False: refused)."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), STEP)
    except ConnectionRefusedError:
        return False
    writer.close()
    await writer.wait_closed()
    return True


def test_without_listen_the_port_is_on_every_interface(tmp_path: Path) -> None:
    async def script() -> None:
        async with fix_stack(tmp_path, FILL_ALL) as stack:
            port = fix_port(stack)
            assert listening_addresses(port) == {"0.0.0.0"}
            assert stack.gateway.status()["fix"]["address"] == "0.0.0.0"
            assert await reaches("127.0.0.2", port)

    run_async(script())


def test_listen_binds_the_port_to_one_address(tmp_path: Path) -> None:
    config = dataclasses.replace(fix_config(), host="127.0.0.1")  # port 0: any free port

    async def script() -> None:
        async with fix_stack(tmp_path, FILL_ALL, fix=config) as stack:
            port = fix_port(stack)
            assert port != 0 and listening_addresses(port) == {"127.0.0.1"}
            assert stack.gateway.status()["fix"]["address"] == "127.0.0.1"
            broker = await connect(tmp_path, port)  # a QuickFIX initiator logs on over 127.0.0.1
            broker.held("c1", account=1, k=1)
            await broker.report("0", T11="c1")
            assert not await reaches("127.0.0.2", port)
            await broker.logout()

    run_async(script())


@pytest.mark.parametrize(
    ("version", "binds"),
    [
        ("1.16.0", False),
        (UNPATCHED, False),
        ("1.16.0+riskgw.2", True),
        ("1.16.0+riskgw.10", True),
        ("1.16.0+other.2", False),
        ("unknown", False),
    ],
)
def test_which_builds_bind_an_address(version: str, binds: bool) -> None:
    assert fix_module.binds_address(version) is binds


def test_an_address_is_refused_on_a_build_that_would_ignore_it(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setattr(fix_module, "_quickfix_version", lambda: UNPATCHED)
    config = dataclasses.replace(fix_config(), host="127.0.0.1")

    async def script() -> None:
        with pytest.raises(UserError) as raised:
            async with fix_stack(tmp_path, FILL_ALL, fix=config):
                pass
        assert str(raised.value) == (  # the demo asks for loopback itself: no setting is named
            f"the FIX port is to listen on 127.0.0.1 alone, which quickfix {UNPATCHED} cannot do (it "
            "listens on every interface; 1.16.0+riskgw.2 and later can): run make venv"
        )
        # without an address that build does what is asked of it: the gateway starts
        async with fix_stack(tmp_path, FILL_ALL) as stack:
            assert listening_addresses(fix_port(stack)) == {"0.0.0.0"}

    run_async(script(), timeout=60)


@pytest.mark.parametrize("port", [0, 1], ids=["any free port", "a given port"])
def test_an_address_this_host_does_not_have_is_a_one_line_error(tmp_path: Path, port: int) -> None:
    config = dataclasses.replace(fix_config(), host=NOT_HERE)
    if port:
        with socket.socket() as s:  # a port free on loopback; the address is what fails
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
    config.port = port
    # port 0: finding a free port on the address fails first; a given port: QuickFIX's bind does
    expected = (
        f"cannot open the FIX port on {NOT_HERE}: Cannot assign requested address"
        if port == 0
        else f"cannot open the FIX port {NOT_HERE}:{port}: Runtime error: Unable to create, bind, or listen "
        f"to address {NOT_HERE} port {port} (Socket Error: (errno[99]:Cannot assign requested address))"
    )

    async def script() -> None:
        with pytest.raises(UserError) as raised:
            async with fix_stack(tmp_path, FILL_ALL, fix=config):
                pass
        assert str(raised.value) == expected
        # The acceptor that failed is gone, and its sessions with it from QuickFIX's process-wide
        # table, although the error is still held: a gateway started next in this process serves them.
        again = tmp_path / "again"
        again.mkdir()
        async with fix_stack(again, FILL_ALL) as stack:
            broker = await connect(again, fix_port(stack))
            broker.held("c1", account=1, k=1)
            await broker.report("0", T11="c1")
            await broker.logout()

    run_async(script(), timeout=60)
