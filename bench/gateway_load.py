"""Open-loop load generator for the gateway: one broker session over TCP, in its own process.

    python -m bench.gateway_load --port P --rate R --seconds S --first-id N [--user U:PW]

Order i is due at t0 + i / rate (its intended send time). One thread sends every order that is
due, then waits for replies until the next one is due; when it falls behind, it sends every
overdue order at once. Latency is measured from the intended send time to the verdict's arrival
(ACCEPTED or REJECTED), so a stall of the gateway or of this generator counts against every order
due during it: no coordinated omission. How late the orders left (`send_late_us`) shows the
generator's own share. Prints one JSON object on stdout.

The wait is select(2)'s, which takes microseconds: epoll_wait(2), which Python's selectors use on
Linux, takes whole milliseconds and rounds a shorter wait up to one, so a generator waiting on it
sent most orders up to 1 ms late below 1,000 orders/s and in bursts above (measured in
docs/gateway.md, "Performance").

The orders pass the example rules when the gateway keeps up: per account (0..18, the ones with
cash), a buy of 100 at the reference price, then a sell of 100 at one tick above it of the same
security (so neither crosses the account's own open order); the orders' own clock `ts` moves
1/7 s per account between orders, under the rate limit of 8 per second of `ts` whatever the real
rate. An answer that does not arrive within `--drain` seconds after the last due time is lost.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import select
import socket
import struct
import sys
import time
from collections import Counter
from typing import Any

from riskgw.gateway.protocol import FAILED_MASK_BYTES, HEADER, MsgType, Reason, encode
from riskgw.scenario import DataSet, ref_price, ticket

ACCOUNTS = 19  # account 19 has no cash
_PR_SET_TIMERSLACK = 29
_ORDER_ID = struct.Struct("<q")
_REJECT = struct.Struct("<H")  # REJECTED: reason at 20, failed-rule mask at 24


def _tight_timers() -> None:
    """Ask Linux for 1 ns timer slack, so waits end when asked (50 µs late by default)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_TIMERSLACK, 1, 0, 0, 0)


def orders(n: int, first_id: int, data: DataSet) -> list[bytes]:
    """Frames of n orders; seq 2.. (the LOGON is seq 1)."""
    out = []
    per_account_ns = 1_000_000_000 // 7
    base_ts = 34_200 * 1_000_000_000 + (first_id // ACCOUNTS) * per_account_ns
    for i in range(n):
        account, j = i % ACCOUNTS, i // ACCOUNTS
        sec = data.held(account, (j // 2 + first_id) % data.holdings_per_account)
        direction = j % 2
        out.append(
            encode(
                MsgType.NEW_ORDER,
                i + 2,
                order_id=first_id + i,
                account_id=account,
                direction=direction,
                ticket_id=ticket(sec),
                price=ref_price(sec) + direction,
                quantity=100,
                ts=base_ts + j * per_account_ns,
            )
        )
    return out


def run(
    port: int, rate: float, seconds: float, first_id: int, user: str, password: str, drain: float
) -> dict[str, Any]:
    n = max(1, int(rate * seconds))
    frames = orders(n, first_id, DataSet())
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.sendall(encode(MsgType.LOGON, 1, username=user, password=password))
    buf = b""
    while len(buf) < HEADER.size or len(buf) < HEADER.unpack_from(buf)[2]:
        chunk = sock.recv(4096)
        if not chunk:
            raise SystemExit("the gateway closed the connection at LOGON")
        buf += chunk
    if buf[0] != MsgType.LOGON_ACK:
        raise SystemExit(f"LOGON answered with frame type {buf[0]:#x}")
    buf = buf[HEADER.unpack_from(buf)[2] :]
    sock.setblocking(False)
    _tight_timers()
    readable = [sock]

    period_ns = 1e9 / rate
    answered = [0] * n  # ns after t0 the verdict arrived (0: not yet)
    verdict = bytearray(n)  # 1 accepted, 2 rejected
    pending_out = b""
    sent = 0
    got = 0
    fills = 0
    reasons: Counter[str] = Counter()  # rejects by "REASON:failed-rule mask (hex)"
    accepted_t, rejected_t, fill_t = MsgType.ACCEPTED, MsgType.REJECTED, MsgType.FILL
    t0 = time.perf_counter_ns() + 1_000_000
    end_ns = int((n - 1) * period_ns + drain * 1e9)
    max_behind = 0
    late_ns = [0.0] * n  # how long after its intended time each order was handed to the socket
    while got < n:
        now = time.perf_counter_ns() - t0
        if now > end_ns:
            break
        due = min(n, int(now / period_ns) + 1) if now >= 0 else 0
        if due > sent:
            max_behind = max(max_behind, due - sent)
            pending_out += b"".join(frames[sent:due])
            for i in range(sent, due):
                late_ns[i] = now - i * period_ns
            sent = due
        if pending_out:
            try:
                k = sock.send(pending_out)
            except BlockingIOError:
                k = 0
            pending_out = pending_out[k:]
        if sent < n:
            wait = max(0.0, ((sent * period_ns) - (time.perf_counter_ns() - t0)) / 1e9)
        else:
            wait = 0.01
        if select.select(readable, (), (), 0 if pending_out else wait)[0]:
            try:
                chunk = sock.recv(1 << 18)
            except BlockingIOError:
                continue
            if not chunk:
                raise SystemExit("the gateway closed the connection")
            at = time.perf_counter_ns() - t0
            buf += chunk
            pos = 0
            size = len(buf)
            while size - pos >= HEADER.size:
                length = buf[pos + 2] | buf[pos + 3] << 8
                if size - pos < length:
                    break
                kind = buf[pos]
                if kind in (accepted_t, rejected_t):
                    i = _ORDER_ID.unpack_from(buf, pos + 8)[0] - first_id
                    if 0 <= i < n and not answered[i]:
                        answered[i] = at
                        verdict[i] = 1 if kind == accepted_t else 2
                        got += 1
                        if kind == rejected_t:
                            why = _REJECT.unpack_from(buf, pos + 20)
                            mask = int.from_bytes(buf[pos + 24 : pos + 24 + FAILED_MASK_BYTES], "little")
                            reasons[f"{Reason(why[0]).name}:{mask:x}"] += 1
                elif kind == fill_t:
                    fills += 1
                pos += length
            buf = buf[pos:]
    sock.close()
    lat_us = sorted((answered[i] - i * period_ns) / 1e3 for i in range(n) if answered[i])
    last = max(answered) if got else 0
    return {
        "rate": rate,
        "seconds": seconds,
        "orders": n,
        "answered": got,
        "lost": n - got,
        "accepted": verdict.count(1),
        "rejected": verdict.count(2),
        "fills_seen": fills,
        "rejects": dict(reasons.most_common(8)),
        "max_orders_sent_late_at_once": max_behind,
        "send_late_us": _percentiles(sorted(late / 1e3 for late in late_ns[:sent])),
        "last_answer_after_last_due_ms": round((last - (n - 1) * period_ns) / 1e6, 3) if got else None,
        "achieved_rate": round(got / (last / 1e9), 1) if got and last else 0.0,
        "latency_us": _percentiles(lat_us),
    }


def _percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}

    def at(p: float) -> float:
        return round(values[min(len(values) - 1, int(p * len(values)))], 1)

    return {"p50": at(0.5), "p90": at(0.9), "p99": at(0.99), "p99_9": at(0.999), "max": round(values[-1], 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gateway_load", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--rate", type=float, required=True, help="orders per second")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--first-id", type=int, default=1)
    parser.add_argument("--user", default="bench:bench", metavar="NAME:PASSWORD")
    parser.add_argument("--drain", type=float, default=2.0, help="seconds to wait for late answers")
    args = parser.parse_args(argv)
    user, _, password = args.user.partition(":")
    result = run(args.port, args.rate, args.seconds, args.first_id, user, password, args.drain)
    json.dump(result, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
