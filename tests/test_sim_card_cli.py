"""`riskgw sim-card` on an address it cannot listen on: one line before the model is built or started
(the simulator's own bind fails inside Verilator, in cocotb's log, as a traceback)."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from riskgw.cli import main


@pytest.fixture
def no_build(monkeypatch: pytest.MonkeyPatch) -> None:
    def build(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the model was built for an address it cannot listen on")

    monkeypatch.setattr("riskgw.card.simserver.build", build)


def test_a_port_in_use_is_one_line(no_build: None, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        listen = f"tcp://127.0.0.1:{taken.getsockname()[1]}"
        assert main(["sim-card", "--listen", listen]) == 1
    assert (
        capsys.readouterr().err
        == f"riskgw: error: --listen {listen}: cannot listen there: Address already in use\n"
    )


def test_an_address_this_host_does_not_have_is_one_line(
    no_build: None, capsys: pytest.CaptureFixture[str]
) -> None:
    listen = "tcp://192.0.2.1:0"  # TEST-NET-1: no interface of this host has it
    assert main(["sim-card", "--listen", listen]) == 1
    err = capsys.readouterr().err
    assert err == f"riskgw: error: --listen {listen}: cannot listen there: Cannot assign requested address\n"


def test_a_free_port_is_let_go_for_the_simulator(monkeypatch: pytest.MonkeyPatch) -> None:
    """The check binds and closes: the port is free again when the simulator binds it."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    seen: list[str] = []

    def run(params: Any, listen: str) -> int:
        with socket.socket() as again:  # what the simulator will do: bind the same port
            again.bind(("127.0.0.1", port))
        seen.append(listen)
        return 0

    monkeypatch.setattr("riskgw.card.simserver.run", run)
    assert main(["sim-card", "--listen", f"tcp://127.0.0.1:{port}"]) == 0
    assert seen == [f"tcp://127.0.0.1:{port}"]
