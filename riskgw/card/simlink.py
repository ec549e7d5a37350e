"""The host side of the simulated card: the server process, the ZeroMQ link and the bus over it.

Every call has a deadline. The link watches the server process (when it started it) and the
TCP connection (a ZeroMQ socket monitor), so a simulator that exits or crashes is seen within a
polling slice, not at the end of a timeout; a simulator that is stopped or wedged is seen when
the deadline passes. Either way the call raises CardError and the link stays broken.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import zmq
from zmq.utils.monitor import recv_monitor_message

from riskgw.card.bus import AccessOp
from riskgw.card.driver import CardError
from riskgw.card.simproto import ERROR_PREFIX, PROTO_VERSION, READY_PREFIX, Message, decode, encode

SLICE_MS = 20  # how often a waiting call looks at the process and the connection
PER_ACCESS_S = 0.01  # time a register access may add to a call's deadline (simulated AXI-Lite is slow)
PER_RUN_CYCLE_S = 0.001  # and a simulated cycle (the model alone runs tens of thousands a second)
_TAIL = 40  # lines of the server's output kept for error messages


def _die_with_parent() -> None:
    # PR_SET_PDEATHSIG: the server gets SIGTERM when the host process ends, however it ends
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM)


class SimProcess:
    """A `riskgw sim-card` child process: started, watched, and stopped."""

    def __init__(
        self, argv: Sequence[str], log: Path | None = None, env: dict[str, str] | None = None
    ) -> None:
        self.argv = list(argv)
        self.tail: collections.deque[str] = collections.deque(maxlen=_TAIL)
        self.address: str | None = None
        self._ready = threading.Event()
        self._log = open(log, "a", encoding="utf-8") if log is not None else None  # noqa: SIM115
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # a terminal's Ctrl-C reaches the host, which stops the server
            preexec_fn=_die_with_parent,
        )
        self._reader = threading.Thread(target=self._read, name="sim-card output", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", errors="replace").rstrip("\n")
            self.tail.append(line)
            if self._log is not None:
                self._log.write(line + "\n")
                self._log.flush()
            if self.address is None and line.startswith(READY_PREFIX):
                self.address = line[len(READY_PREFIX) :].strip()
                self._ready.set()
        self._ready.set()  # end of output: the process is gone

    @property
    def pid(self) -> int:
        return self.proc.pid

    def exited(self) -> int | None:
        return self.proc.poll()

    def exit_message(self) -> str:
        code = self.proc.poll()
        how = (
            f"was killed by signal {-code}" if code is not None and code < 0 else f"exited with status {code}"
        )
        said = [line[len(ERROR_PREFIX) :] for line in self.tail if line.startswith(ERROR_PREFIX)]
        last = said[-1:] or [line.strip() for line in self.tail if line.strip()][-3:]
        detail = f"; its last output: {' | '.join(last)}" if last else ""
        return f"the simulated card {how}{detail}"

    def wait_ready(self, timeout: float) -> str:
        """The address the server listens on, once it says it is ready."""
        deadline = time.monotonic() + timeout
        while not self._ready.wait(0.1):
            if time.monotonic() > deadline:
                self.stop()
                raise CardError(f"the simulated card was not ready within {timeout:.0f} s")
        if self.address is None:
            self.proc.wait(5)
            raise CardError(self.exit_message())
        return self.address

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL after `timeout`; the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(2)
        if self._log is not None:
            self._log.close()
            self._log = None
        return self.proc.returncode


def sim_card_argv(listen: str, extra: Sequence[str] = ()) -> list[str]:
    return [sys.executable, "-m", "riskgw.cli", "sim-card", "--listen", listen, *extra]


class SimLink:
    """One REQ connection to a sim-card server."""

    def __init__(self, address: str, timeout: float = 30.0, process: SimProcess | None = None) -> None:
        self.address = address
        self.timeout = timeout
        self.process = process
        self.broken: str | None = None
        self._ctx = zmq.Context()
        self._sock = self._ctx.socket(zmq.REQ)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._monitor = self._sock.get_monitor_socket(zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED)
        self._sock.connect(address)
        self._connected = False
        self._poller = zmq.Poller()
        self._poller.register(self._sock, zmq.POLLIN)
        self._poller.register(self._monitor, zmq.POLLIN)

    def _fail(self, why: str) -> CardError:
        self.broken = why
        return CardError(why)

    def call(
        self, header: dict[str, Any], blobs: Sequence[bytes] = (), timeout: float | None = None
    ) -> Message:
        """Send one request and wait for its reply; CardError on an error reply or a dead card."""
        if self.broken is not None:
            raise CardError(self.broken)
        limit = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        self._sock.send_multipart(encode(header, blobs))
        while True:
            events = dict(self._poller.poll(SLICE_MS))
            if self._sock in events:
                return self._reply()
            if self._monitor in events:
                event = recv_monitor_message(self._monitor)["event"]
                if event == zmq.EVENT_CONNECTED:
                    self._connected = True
                elif event == zmq.EVENT_DISCONNECTED and self._connected:
                    if self._sock.poll(SLICE_MS):  # the answer may overtake the news of the close
                        return self._reply()
                    raise self._fail(self._gone("closed the connection"))
            if self.process is not None and self.process.exited() is not None:
                if self._sock.poll(SLICE_MS):
                    return self._reply()
                raise self._fail(self.process.exit_message())
            if time.monotonic() > deadline:
                what = header.get("op")
                raise self._fail(
                    f"the simulated card at {self.address} did not answer {what!r} within {limit:.1f} s"
                    " (stopped or wedged)"
                )

    def _reply(self) -> Message:
        reply, payload = decode(self._sock.recv_multipart())
        if not reply.get("ok"):
            raise CardError(f"the simulated card: {reply.get('error', 'failed')}")
        return reply, payload

    def _gone(self, what: str) -> str:
        if self.process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.proc.wait(1)
            if self.process.exited() is not None:
                return self.process.exit_message()
        return f"the simulated card at {self.address} {what}"

    def hello(self) -> dict[str, Any]:
        reply, _ = self.call({"op": "hello"})
        if reply.get("proto") != PROTO_VERSION:
            raise self._fail(
                f"the simulated card speaks protocol {reply.get('proto')}, expected {PROTO_VERSION}"
            )
        return reply

    def close(self) -> None:
        self._poller.unregister(self._monitor)
        self._sock.disable_monitor()
        self._monitor.close(0)
        self._sock.close(0)
        self._ctx.term()
        self.broken = self.broken or "the card is closed"


def _access_op(op: AccessOp) -> list[int | None]:
    if len(op) == 3:
        return [op[0], None, op[2] & 0xFFFFFFFF]
    addr, value = op
    return [addr, None if value is None else value & 0xFFFFFFFF]


class SimBus:
    """riskgw.card.bus.Bus over a SimLink: each call is one round trip."""

    def __init__(self, link: SimLink) -> None:
        self.link = link

    def read32(self, addr: int) -> int:
        return self.read_many([addr])[0]

    def write32(self, addr: int, value: int) -> None:
        self.write_many([(addr, value)])

    def write_many(self, writes: Sequence[tuple[int, int]]) -> None:
        if writes:
            self.link.call(
                {"op": "write", "writes": [[a, v & 0xFFFFFFFF] for a, v in writes]},
                timeout=self.link.timeout + PER_ACCESS_S * len(writes),
            )

    polls = True  # access_many takes (addr, None, want): the server reads addr until it reads want

    def access_many(self, ops: Sequence[AccessOp]) -> list[int]:
        """Reads, writes and polls in order in one round trip: (addr, value) writes, (addr, None)
        reads, (addr, None, want) polls (addr read until it reads `want`); a value per read or poll."""
        if not ops:
            return []
        reply, _ = self.link.call(
            {"op": "access", "ops": [_access_op(op) for op in ops]},
            timeout=self.link.timeout + PER_ACCESS_S * len(ops),
        )
        values: list[int] = reply["values"]
        n_reads = sum(op[1] is None for op in ops)
        if len(values) != n_reads:
            raise CardError(f"the simulated card answered {len(values)} of {n_reads} reads")
        return values

    def run_cycles(self, cycles: int) -> None:
        """Let the card's clock run `cycles` cycles in one request: a simulated clock advances only
        while the server simulates, so a host polling a register would wait far longer."""
        self.link.call({"op": "run", "cycles": cycles}, timeout=self.link.timeout + cycles * PER_RUN_CYCLE_S)

    def read_many(self, addrs: Sequence[int]) -> list[int]:
        if not addrs:
            return []
        reply, _ = self.link.call(
            {"op": "read", "addrs": list(addrs)}, timeout=self.link.timeout + PER_ACCESS_S * len(addrs)
        )
        values: list[int] = reply["values"]
        if len(values) != len(addrs):
            raise CardError(f"the simulated card answered {len(values)} of {len(addrs)} reads")
        return values
