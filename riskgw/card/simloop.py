"""The simulated card's server loop: a cocotb test that serves riskgw/card/simproto.py until stopped.

Started by `riskgw sim-card` (riskgw/card/simserver.py) inside the Verilator model of
`hdl/rgw_card.sv`. Between requests the clock keeps running in real-time steps, so HEARTBEAT
advances while the host is idle and a stopped simulator shows as a stalled heartbeat; before the
first request, and after a `rest` request until the next, it rests, so a card started ahead and
not used yet costs no CPU. SIGTERM,
SIGINT or a `shutdown` request end the test cleanly.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import signal
import time
from types import FrameType
from typing import Any

import cocotb
import zmq
from cocotb.triggers import Timer

from riskgw.card.cocotb_bench import CLOCK_NS, CardBench
from riskgw.card.simproto import (
    ERROR_PREFIX,
    MAX_POLLS,
    PROTO_VERSION,
    READY_PREFIX,
    bind_rep,
    decode,
    encode,
    error,
)

IDLE_CYCLES = 32  # a request that arrives while the idle clock runs waits at most this long
IDLE_SHARE = 0.25  # while idle, simulate at most this share of the time (the rest waits on the socket)
POLL_CYCLES = 16  # cycles between checks for tx packets while a stream call waits


class Service:
    """Answers requests by driving the card through a CardBench."""

    def __init__(self, bench: CardBench, params: dict[str, int]) -> None:
        self.bench = bench
        self.params = params
        self.shutdown = False
        self.resting = False  # a `rest` asked the clock to stop until the next request

    async def handle(self, parts: list[bytes]) -> list[bytes]:
        try:
            header, blobs = decode(parts)
            op = header.get("op")
            if op == "hello":
                return encode({"ok": True, "proto": PROTO_VERSION, "top": "rgw_card", "params": self.params})
            if op == "read":
                return encode({"ok": True, "values": await self._reads([int(a) for a in header["addrs"]])})
            if op == "write":
                await self._writes([(int(a), int(v)) for a, v in header["writes"]])
                return encode({"ok": True})
            if op == "access":
                return encode({"ok": True, "values": await self._access(header["ops"])})
            if op == "stream":
                return await self.stream(header, blobs)
            if op == "run":
                cycles = int(header["cycles"])
                if cycles > 0:
                    await Timer(cycles * CLOCK_NS, "ns")
                return encode({"ok": True, "cycles": max(cycles, 0)})
            if op == "rest":
                self.resting = True
                return encode({"ok": True})
            if op == "shutdown":
                self.shutdown = True
                return encode({"ok": True})
            return error(f"unknown op {op!r}")
        except (KeyError, TypeError, ValueError) as exc:
            return error(f"bad request: {exc}")

    # Accesses run one after another on the lean AXI-Lite master (riskgw/card/cocotb_bench.py
    # LeanAxil), two clock edges each when the card is ready: a batch costs no task per access.

    async def _writes(self, writes: list[tuple[int, int]]) -> None:
        await self.bench.axil_access(writes)

    async def _reads(self, addrs: list[int]) -> list[int]:
        return await self.bench.axil_access([(a, None) for a in addrs])

    async def _access(self, ops: list[list[int | None]]) -> list[int]:
        values: list[int] = []
        run: list[tuple[int, int | None]] = []  # accesses up to the next poll, run as one batch
        for op in ops:
            if len(op) == 3:  # [addr, null, want]: read until it reads want
                values += await self.bench.axil_access(run)
                run = []
                addr, want = int(op[0] or 0), int(op[2] or 0)
                for _ in range(MAX_POLLS):
                    value = (await self.bench.axil_access([(addr, None)]))[0]
                    if value == want:
                        break
                else:
                    raise ValueError(f"register {addr:#x} read {value}, not {want}, {MAX_POLLS} times")
                values.append(value)
            else:
                run.append((int(op[0] or 0), None if op[1] is None else int(op[1])))
        return values + await self.bench.axil_access(run)

    async def stream(self, header: dict[str, Any], blobs: list[bytes]) -> list[bytes]:
        sessions = [int(s) for s in header["sessions"]]
        if len(sessions) != len(blobs):
            return error(f"{len(sessions)} sessions for {len(blobs)} packets")
        min_tx = int(header["min_tx"])
        max_cycles = int(header["max_cycles"])
        bench = self.bench
        for session, packet in zip(sessions, blobs, strict=True):
            await bench.send(session, packet)
        sent = cocotb.start_soon(bench.wait_sent()) if blobs else None
        out: list[tuple[int, bytes]] = []
        cycles = 0
        while True:
            while bench.tx_pending():
                out.append(await bench.recv())
            if len(out) >= min_tx and (sent is None or sent.done()):
                break
            if cycles >= max_cycles:
                if sent is not None and not sent.done():
                    sent.cancel()
                state = "all rx packets in" if sent is None or sent.done() else "rx packets still waiting"
                return error(
                    f"the card sent {len(out)} of at least {min_tx} tx packets in {cycles} cycles ({state})"
                )
            await Timer(POLL_CYCLES * CLOCK_NS, "ns")
            cycles += POLL_CYCLES
        reply: dict[str, Any] = {"ok": True, "sessions": [s for s, _ in out], "cycles": cycles}
        reads = [int(a) for a in header.get("reads", [])]
        if reads:  # registers the host wants after the packets (STATUS): no round trip of their own
            reply["values"] = await bench.axil_access([(a, None) for a in reads])
        return encode(reply, [data for _, data in out])


@cocotb.test()
async def serve(dut: Any) -> None:
    """Serve until SIGTERM, SIGINT or a shutdown request."""
    endpoint = os.environ["RGW_SIM_LISTEN"]
    params = json.loads(os.environ["RGW_SIM_PARAMS"])
    # the bus models log every access and frame at INFO: thousands of lines a second
    logging.getLogger(dut._log.name).setLevel(logging.WARNING)
    bench = CardBench(dut, lean_axil=True)
    await bench.start()
    stop: list[int] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.append(signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        ctx, sock = bind_rep(endpoint)
    except zmq.ZMQError as exc:
        print(f"{ERROR_PREFIX}cannot listen on {endpoint}: {exc}", flush=True)
        raise
    bound = sock.getsockopt_string(zmq.LAST_ENDPOINT)
    print(f"{READY_PREFIX}{bound}", flush=True)
    service = Service(bench, params)
    step_s = 0.001
    served = False  # until a host asks something, no one reads the heartbeat: the clock rests
    try:
        while not stop and not service.shutdown:
            if not served:  # a spare card started ahead (riskgw/card/simpool.py) costs no CPU
                try:
                    served = bool(sock.poll(100))
                except zmq.ZMQError as exc:
                    if exc.errno != errno.EINTR:
                        raise
                continue
            # wait on the socket for (1 - IDLE_SHARE) / IDLE_SHARE times as long as a step takes
            wait_ms = max(1, int(1000 * step_s * (1 - IDLE_SHARE) / IDLE_SHARE))
            try:
                ready = sock.poll(wait_ms)
            except zmq.ZMQError as exc:  # EINTR from a signal: the loop checks `stop`
                if exc.errno != errno.EINTR:
                    raise
                continue
            if ready:
                reply = await service.handle(sock.recv_multipart())
                sock.send_multipart(reply)
                served, service.resting = not service.resting, False
                continue
            start = time.perf_counter()
            await Timer(IDLE_CYCLES * CLOCK_NS, "ns")
            step_s = time.perf_counter() - start
    finally:
        sock.close()
        ctx.term()
    why = "a shutdown request" if service.shutdown else "a signal"
    print(f"riskgw sim-card: stopped by {why}", flush=True)
