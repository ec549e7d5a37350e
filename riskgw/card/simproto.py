"""The simulated card's ZeroMQ protocol: what stands in for PCIe between a host and `riskgw sim-card`.

REQ/REP. Every message is multipart: part 0 is a JSON object, the parts after it are binary
payloads (TOE packets). A request names its `op`; every reply has `ok` and, when `ok` is false,
an `error` line.

    op        request fields                          reply fields (ok)
    hello     -                                       proto, top, params {HDL parameter: value}
    read      addrs: [addr...]                        values: [u32...] (in order)
    write     writes: [[addr, value]...]              - (done in order)
    access    ops: [[addr, value or null]...]         values: [u32...] (one per null, in order)
              ([addr, null, want]: a poll)
    stream    sessions: [s...] + one part per packet  sessions: [s...] + one part per tx packet,
              min_tx, max_cycles, reads (optional)    cycles (simulated cycles the call took),
                                                      values: the `reads` registers read after
    run       cycles                                  cycles (the clock ran that many, nothing else)
    rest      -                                       - (the clock stops until the next request)
    shutdown  -                                       - (the server exits after the reply)

`stream` queues the rx packets (packet i on session sessions[i]) in order, then collects tx
packets until every rx packet has entered the card and at least `min_tx` tx packets have come
out; it returns those and any others already out. With no rx packets it just collects. When
`max_cycles` pass first it answers ok false. Register reads and writes are 32-bit AXI-Lite
accesses of riskgw/card/regmap.py, one at a time, in order. A poll in `access` reads its register
until it reads `want` (the value it gives back), at most MAX_POLLS times, then answers ok false: a
DOE command's completion is waited for inside the server, not by a round trip per try. Between
requests the clock runs (the heartbeat advances) except before the first request and after a
`rest`: a spare card waiting in a pool (riskgw/card/simpool.py) costs no CPU.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

PROTO_VERSION = 3  # 2: polls in `access`; 3: `rest`
MAX_POLLS = 100_000  # reads of one poll before the server gives up on it
READY_PREFIX = "riskgw sim-card: ready on "
ERROR_PREFIX = "riskgw sim-card: error: "  # the line that says why a server stopped

Message = tuple[dict[str, Any], list[bytes]]


def encode(header: dict[str, Any], blobs: Sequence[bytes] = ()) -> list[bytes]:
    return [json.dumps(header, separators=(",", ":")).encode(), *blobs]


def decode(parts: Sequence[bytes]) -> Message:
    if not parts:
        raise ValueError("an empty message")
    try:
        header = json.loads(parts[0])
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"the message header is not JSON: {exc}") from None
    if not isinstance(header, dict):
        raise ValueError("the message header is not a JSON object")
    return header, [bytes(p) for p in parts[1:]]


def error(message: str) -> list[bytes]:
    return encode({"ok": False, "error": message})


def bind_rep(endpoint: str) -> tuple[Any, Any]:
    """A ZeroMQ context and a REP socket bound to `endpoint` (linger 0: closing never waits); when
    the bind fails, both are closed again and the zmq.ZMQError is raised."""
    import zmq

    ctx = zmq.Context()
    sock = ctx.socket(zmq.REP)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        sock.bind(endpoint)
    except zmq.ZMQError:
        sock.close()
        ctx.term()
        raise
    return ctx, sock


def zmq_endpoint(listen: str) -> str:
    """`tcp://HOST:PORT` as ZeroMQ binds it: port 0 asks for a free port (`tcp://HOST:*`)."""
    if not listen.startswith("tcp://"):
        raise ValueError(f"{listen!r}: expected tcp://HOST:PORT")
    host, sep, port = listen[len("tcp://") :].rpartition(":")
    if not sep or not host or not (port.isdigit() or port == "*") or (port.isdigit() and int(port) > 65535):
        raise ValueError(f"{listen!r}: expected tcp://HOST:PORT")
    return f"tcp://{host}:{'*' if port in ('0', '*') else port}"
