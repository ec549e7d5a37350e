"""Bad FIX input over a raw socket: the gateway answers at the session level (Reject, Logout,
ResendRequest for what it dropped) or closes that connection, never crashes, and a QuickFIX broker
on another session trades throughout."""

from __future__ import annotations

from pathlib import Path

import pytest
from fix_support import BROKER2_PASSWORD, RawFix, connect, fix_port, fix_stack, raw_message, utc
from gateway_support import SMALL, run_async

from riskgw.exchange.sim import Behaviour
from riskgw.scenario import ref_price, ticket

pytestmark = pytest.mark.timeout(120)

FILL_ALL = Behaviour(fill=1.0, partial=0.0, reject=0.0)


def order_body(cl: str, symbol: str, account: int = 1, skip: int | None = None) -> list[tuple[int, str]]:
    sec = SMALL.held(account, 0)
    price = ref_price(sec)
    body = [
        (1, str(account)),
        (11, cl),
        (55, symbol),
        (54, "1"),
        (60, utc(34_500)),
        (38, "100"),
        (40, "2"),
        (44, f"{price // 100}.{price % 100:02d}"),
    ]
    return [(t, v) for t, v in body if t != skip]


def test_bad_input_never_stops_the_gateway_or_another_session(tmp_path: Path) -> None:
    async def script() -> None:
        async with fix_stack(tmp_path, FILL_ALL) as stack:
            port = fix_port(stack)
            good = await connect(tmp_path, port)  # BROKER1, a real engine, trading all along
            n = 0

            async def good_trades() -> None:
                nonlocal n
                n += 1
                good.held(f"good{n}", account=1, k=n)
                await good.report("0", T11=f"good{n}")
                await good.report("F", T11=f"good{n}")

            await good_trades()

            # bytes that are no FIX at all, before any Logon: the connection is dropped
            junk = await RawFix.connect(port)
            junk.raw(b"GET / HTTP/1.1\r\n\r\n" + b"8=FIX.4.4\x019=5\x01garbage\x0110=000\x01")
            assert await junk.closed() == []
            await good_trades()

            # a Logon for a session that is not configured (wrong CompIDs): dropped without a session
            stranger = await RawFix.connect(port, sender="NOBODY")
            stranger.send("A", (98, "0"), (108, "30"))
            assert await stranger.closed() == []
            await good_trades()

            # BROKER2 on a raw socket: logged on, then one bad message after another
            raw = await RawFix.connect(port, sender="BROKER2")
            await raw.logon(BROKER2_PASSWORD)

            # a missing required tag (Side): a session-level Reject naming it
            raw.send("D", *order_body("m1", ticket(SMALL.held(1, 0)), skip=54))
            reject = await raw.recv("3")
            assert (reject.get(371), reject.get(373)) == ("54", "1"), reject

            # an unknown symbol: an ExecutionReport that rejects it as such
            raw.send("D", *order_body("u1", "NOPE"))
            unknown = await raw.recv("8")
            assert (unknown[150], unknown[103], unknown[11]) == ("8", "1", "u1"), unknown

            # a wrong checksum, then a wrong body length: each message is dropped (as garbled, per the
            # FIX session spec); the next good one shows the gap and the gateway asks for it again
            for spoil in ({"checksum": 1}, {"body_length": 7}):
                fields = raw.header("D") + order_body(f"bad{raw.seq}", ticket(SMALL.held(1, 0)))
                dropped = raw.seq
                raw.raw(raw_message(fields, **spoil))
                raw.send("1", (112, f"probe{dropped}"))
                resend = await raw.recv("2")
                assert resend[7] == str(dropped), (resend, dropped)
                # fill the gap (nothing to resend) and check the session answers a TestRequest
                raw.raw(
                    raw_message(
                        [*raw.header("4", seq=dropped), (43, "Y"), (123, "Y"), (36, str(dropped + 1))]
                    )
                )
                raw.send("1", (112, f"alive{dropped}"))
                beat = await raw.recv("0")
                while beat.get(112) != f"alive{dropped}":
                    beat = await raw.recv("0")
            assert stack.exchange.orders_seen == n
            await good_trades()

            # a message with the wrong CompIDs on a logged-on session: a Reject, then a Logout
            raw.sender = "BROKER1"
            raw.send("1", (112, "who"))
            tail = await raw.closed()
            types = [m.get(35) for m in tail]
            assert "3" in types and "5" in types, tail
            assert any(m.get(373) == "9" for m in tail), tail  # CompID problem
            await raw.close()
            await junk.close()
            await stranger.close()
            await good_trades()

            assert stack.exchange.orders_seen == n
            await good.logout()

    run_async(script(), timeout=100)
