"""A stand-in for `riskgw sim-card` that speaks its ZeroMQ protocol over a plain register file, so
the host side (process watching, deadlines, disconnects) is tested without Verilator.

    python tests/sim_card_fake.py tcp://127.0.0.1:0 [--crash-on OP] [--hang-on OP] [--exit-before-ready]
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from types import FrameType

import zmq

from riskgw.card.simproto import (
    ERROR_PREFIX,
    PROTO_VERSION,
    READY_PREFIX,
    decode,
    encode,
    error,
    zmq_endpoint,
)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("listen")
    parser.add_argument("--crash-on")
    parser.add_argument("--hang-on")
    parser.add_argument("--exit-before-ready", action="store_true")
    args = parser.parse_args()
    if args.exit_before_ready:
        print(f"{ERROR_PREFIX}cannot build the model", flush=True)
        print("** TESTS=1 PASS=0 FAIL=1 **", flush=True)  # noise after the reason
        return 7
    stop: list[int] = []

    def on_term(signum: int, _frame: FrameType | None) -> None:
        stop.append(signum)

    signal.signal(signal.SIGTERM, on_term)
    ctx = zmq.Context()
    sock = ctx.socket(zmq.REP)
    sock.setsockopt(zmq.LINGER, 0)
    sock.bind(zmq_endpoint(args.listen))
    print(f"{READY_PREFIX}{sock.getsockopt_string(zmq.LAST_ENDPOINT)}", flush=True)
    regs: dict[int, int] = {}
    while not stop:
        if not sock.poll(20):
            continue
        header, blobs = decode(sock.recv_multipart())
        op = header["op"]
        if op == args.crash_on:
            os._exit(3)
        if op == args.hang_on:
            while not stop:
                signal.pause()
            break
        if op == "hello":
            sock.send_multipart(encode({"ok": True, "proto": PROTO_VERSION, "top": "fake", "params": {}}))
        elif op == "write":
            for a, v in header["writes"]:
                regs[a] = v
            sock.send_multipart(encode({"ok": True}))
        elif op == "read":
            sock.send_multipart(encode({"ok": True, "values": [regs.get(a, 0) for a in header["addrs"]]}))
        elif op == "access":
            values = []
            for a, v, *want in header["ops"]:
                if v is None and want and regs.get(a, 0) != want[0]:  # a poll that never ends
                    sock.send_multipart(error(f"register {a:#x} never read {want[0]}"))
                    break
                if v is None:
                    values.append(regs.get(a, 0))
                else:
                    regs[a] = v
            else:
                sock.send_multipart(encode({"ok": True, "values": values}))
        elif op == "stream":  # the packets back, each on its own session
            sock.send_multipart(encode({"ok": True, "sessions": header["sessions"], "cycles": 0}, blobs))
        elif op == "shutdown":
            sock.send_multipart(encode({"ok": True}))
            break
        else:
            sock.send_multipart(error(f"unknown op {op!r}"))
    sock.close()
    ctx.term()
    return 0


if __name__ == "__main__":
    sys.exit(main())
