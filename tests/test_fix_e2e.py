"""FIX 4.4 end to end: a QuickFIX initiator as the broker -> the gateway (soft card) -> exchange-sim.

Ephemeral ports throughout; every wait is bounded by gateway_support.STEP and fails the test when it
runs out, nothing asserts on time.
"""

from __future__ import annotations

import socket
from decimal import Decimal
from pathlib import Path

import pytest
from fix_support import connect, fix_config, fix_port, fix_stack, price_text, utc, wait_until
from gateway_support import RULES, SMALL, Client, held_order, run_async

from riskgw.doe.compiler import compile_files
from riskgw.doe.isa import Event
from riskgw.engine.engine import Engine, event_inputs
from riskgw.engine.replay import load_data
from riskgw.errors import UserError
from riskgw.exchange.sim import Behaviour
from riskgw.gateway.fixsession import parse_utc_ns
from riskgw.gateway.journal import scan
from riskgw.gateway.metrics import render
from riskgw.gateway.protocol import MsgType
from riskgw.scenario import POOR_ACCOUNT, ref_price, ticket

pytestmark = pytest.mark.timeout(120)

FILL_ALL = Behaviour(fill=1.0, partial=0.0, reject=0.0)
REST_ALL = Behaviour(fill=0.0, partial=0.0, reject=0.0)
HALF = Behaviour(fill=0.0, partial=1.0, reject=0.0)
REJECT_ALL = Behaviour(fill=0.0, partial=0.0, reject=1.0)


def units(text: str) -> int:
    return int(Decimal(text) * 100)


def test_an_order_is_accepted_filled_and_decided_as_the_binary_path_decides(tmp_path: Path) -> None:
    async def script() -> tuple[str, int, int]:
        async with fix_stack(tmp_path, FILL_ALL) as stack:
            broker = await connect(tmp_path, fix_port(stack))
            sec = SMALL.held(1, 0)
            broker.new_order("c1", "ACME", "1", 100, price_text(ref_price(sec)), 1, 34_201.5)
            new = await broker.report("0", T39="0", T11="c1", T55="ACME", T151="100", T14="0")
            fill = await broker.report("F", T39="2", T11="c1", T32="100", T14="100", T151="0")
            assert units(fill[31]) == ref_price(sec) and units(fill[6]) == ref_price(sec)
            assert fill[37] == new[37] and fill[17] != new[17]
            assert stack.exchange.orders_seen == 1 and stack.gateway.open == {}
            assert [e.event for e in scan(stack.config.journal).entries] == [Event.NEW, Event.FILL]
            state = stack.gateway.card.state_hash()
            await broker.logout()
        return state, int(new[37]), parse_utc_ns(utc(34_201.5))

    state, order_id, ts = run_async(script())
    # the reference engine, fed the binary protocol's fields for the same order, ends in the same state
    engine = Engine(compile_files(RULES).image)
    load_data(engine, tmp_path / "data")
    sent = held_order(order_id, account=1, ts=ts)
    assert engine.process(Event.NEW, event_inputs(sent)).accepted
    engine.process(Event.FILL, event_inputs({**sent, "exec_price": sent["price"], "exec_quantity": 100}))
    assert engine.state_hash() == state


def test_partial_fill_then_cancel(tmp_path: Path) -> None:
    async def script() -> None:
        async with fix_stack(tmp_path, HALF) as stack:
            broker = await connect(tmp_path, fix_port(stack))
            sym = ticket(SMALL.held(2, 0))
            broker.held("p1", account=2)
            await broker.report("0", T11="p1")
            part = await broker.report("F", T39="1", T32="50", T14="50", T151="50")
            broker.cancel("p1-x", "p1", sym)
            done = await broker.report("4", T39="4", T11="p1-x", T41="p1", T14="50", T151="0")
            assert done[37] == part[37]
            assert stack.gateway.open == {}
            events = [e.event for e in scan(stack.config.journal).entries]
            assert events == [Event.NEW, Event.FILL, Event.CANCEL]
            # cancelling it again is too late; cancelling what was never sent is unknown
            broker.cancel("p1-y", "p1", sym)
            await broker.recv("9", T434="1", T102="0", T39="4", T41="p1")
            broker.cancel("p9-x", "p9", sym)
            await broker.recv("9", T434="1", T102="1", T41="p9")
            await broker.logout()

    run_async(script())


def test_exchange_reject(tmp_path: Path) -> None:
    async def script() -> None:
        async with fix_stack(tmp_path, REJECT_ALL) as stack:
            broker = await connect(tmp_path, fix_port(stack))
            broker.held("r1", account=1)
            await broker.report("0", T11="r1")
            rejected = await broker.report("8", T39="8", T11="r1", T103="0", T151="0")
            assert "exchange" in rejected[58]
            assert [e.event for e in scan(stack.config.journal).entries] == [Event.NEW, Event.REJECT]
            await broker.logout()

    run_async(script())


def test_each_example_rule_rejects_over_fix(tmp_path: Path) -> None:
    """One order per rule of rules/, each on its own account so they do not meet; the
    ExecutionReport names the failed rules in Text (58) and the order never reaches the exchange."""

    async def script() -> None:
        async with fix_stack(tmp_path, REST_ALL) as stack:
            rule_names = {r.name for r in stack.gateway.card.image.rules}
            broker = await connect(tmp_path, fix_port(stack))
            seen = 0

            async def rejected(cl: str, rule: str) -> None:
                report = await broker.report("8", T11=cl, T39="8", T103="3")
                assert rule in report[58].removeprefix("risk rules failed: ").split(", "), (rule, report[58])

            async def accepted(cl: str) -> None:
                nonlocal seen
                await broker.report("0", T11=cl)
                seen += 1

            def sec(account: int, k: int = 0) -> int:
                return SMALL.held(account, k)

            # FundsCheck: the poor account's buy of 100 costs more than its cash
            broker.held("funds", account=POOR_ACCOUNT)
            await rejected("funds", "FundsCheck")
            # HoldingsCheck: a sell of more than the account holds
            broker.held("hold", account=3, side="2", quantity=20_000)
            await rejected("hold", "HoldingsCheck")
            # SelfTradeSell / SelfTradeBuy: against the account's own open buy / sell
            broker.held("st-b", account=4)
            await accepted("st-b")
            broker.held("st-s", account=4, side="2", quantity=10)
            await rejected("st-s", "SelfTradeSell")
            broker.held("st-s2", account=5, k=1, side="2", quantity=10)
            await accepted("st-s2")
            broker.held("st-b2", account=5, k=1)
            await rejected("st-b2", "SelfTradeBuy")
            # PricePositive, PriceBand, QuantityPositive, MaxQuantity
            broker.held("px0", account=6, price=0)
            await rejected("px0", "PricePositive")
            broker.held("band", account=6, price=ref_price(sec(6)) * 2)
            await rejected("band", "PriceBand")
            broker.held("qty0", account=6, quantity=0)
            await rejected("qty0", "QuantityPositive")
            broker.held("maxq", account=6, quantity=100_001)
            await rejected("maxq", "MaxQuantity")
            # MaxNotional: securities with index % 10 == 3 allow 50,000,000 per order
            k = next(k for k in range(SMALL.holdings_per_account) if sec(7, k) % 10 == 3)
            qty = 50_000_000 // ref_price(sec(7, k)) + 1
            broker.held("notional", account=7, k=k, quantity=qty)
            await rejected("notional", "MaxNotional")
            # OrderRate: the ninth order of one account in one second
            for i in range(8):
                broker.new_order(
                    f"rate{i}", ticket(sec(8, i)), "1", 1, price_text(ref_price(sec(8, i))), 8, 40_000.1
                )
                await accepted(f"rate{i}")
            broker.new_order(
                "rate8", ticket(sec(8, 8)), "1", 1, price_text(ref_price(sec(8, 8))), 8, 40_000.2
            )
            await rejected("rate8", "OrderRate")
            # MaxOpenOrders: a 17th open order, each in its own second so the rate allows them
            for i in range(16):
                broker.new_order(
                    f"open{i}", ticket(sec(9, i)), "1", 1, price_text(ref_price(sec(9, i))), 9, 41_000 + i
                )
                await accepted(f"open{i}")
            broker.new_order("open16", ticket(sec(9, 0)), "1", 1, price_text(ref_price(sec(9, 0))), 9, 41_100)
            await rejected("open16", "MaxOpenOrders")
            # DuplicateOrderId: a wire-protocol broker already used the gateway order id the next FIX
            # order gets (FIX orders are numbered by the gateway; ClOrdIDs are checked per session)
            assert stack.running.fix is not None
            taken = stack.running.fix.ids.peek()
            binary = await stack.broker("bob")
            binary.send(MsgType.NEW_ORDER, **held_order(taken, account=10, ts=34_200 * 10**9))
            await binary.recv_type(MsgType.ACCEPTED)
            broker.held("dup", account=11)
            await rejected("dup", "DuplicateOrderId")
            await binary.close()

            tested = {
                "FundsCheck",
                "HoldingsCheck",
                "SelfTradeSell",
                "SelfTradeBuy",
                "PricePositive",
                "PriceBand",
                "QuantityPositive",
                "MaxQuantity",
                "MaxNotional",
                "OrderRate",
                "MaxOpenOrders",
                "DuplicateOrderId",
            }
            assert tested == rule_names, rule_names ^ tested
            # the exchange answers in arrival order: once a cancel is answered it has seen every order
            broker.cancel("open0-x", "open0", ticket(sec(9, 0)), quantity=1)
            await broker.report("4", T11="open0-x")
            assert stack.exchange.orders_seen == seen + 1  # the accepted ones and the binary broker's
            await broker.logout()

    run_async(script(), timeout=100)


def test_cancel_replace(tmp_path: Path) -> None:
    async def script() -> None:
        async with fix_stack(tmp_path, REST_ALL) as stack:
            broker = await connect(tmp_path, fix_port(stack))
            sec = SMALL.held(1, 0)
            ref = ref_price(sec)
            broker.held("o1", account=1, symbol="ACME")
            first = await broker.report("0", T11="o1", T38="100")
            broker.replace("o2", "o1", "ACME", 200, price_text(ref + 1))
            replaced = await broker.report("5", T11="o2", T41="o1", T39="0", T38="200", T151="200")
            assert units(replaced[44]) == ref + 1 and replaced[37] == first[37]
            events = [e.event for e in scan(stack.config.journal).entries]
            assert events == [Event.NEW, Event.CANCEL, Event.NEW]
            legs = sorted(stack.gateway.open.values(), key=lambda o: o.values["order_id"])
            assert [(o.values["price"], o.values["quantity"]) for o in legs] == [(ref + 1, 200)]
            # a replacement the rules refuse leaves the order cancelled, and says so
            broker.replace("o3", "o2", "ACME", 200, price_text(ref * 3))
            failed = await broker.report("8", T11="o3", T41="o2", T39="8", T151="0")
            assert "PriceBand" in failed[58] and "cancelled" in failed[58]
            assert stack.gateway.open == {}
            # replacing an order that is done, or unknown: OrderCancelReject in answer to a replace
            broker.replace("o4", "o3", "ACME", 100, price_text(ref))
            await broker.recv("9", T434="2", T102="0")
            broker.replace("o5", "nope", "ACME", 100, price_text(ref))
            await broker.recv("9", T434="2", T102="1")
            broker.held("o6", account=1, symbol="ACME")
            await broker.report("0", T11="o6")
            broker.replace("o7", "o6", ticket(SMALL.held(1, 1)), 100, price_text(ref))
            rej = await broker.recv("9", T434="2", T41="o6")
            assert "Symbol" in rej[58]
            broker.cancel("o6-x", "o6", "ACME")
            await broker.report("4", T11="o6-x")  # answered in arrival order: the exchange saw them all
            assert stack.exchange.orders_seen == 3  # o1, o2's leg, o6
            await broker.logout()

    run_async(script())


def test_kill_switch_rejects_and_cancels_fix_orders(tmp_path: Path) -> None:
    async def script() -> None:
        async with fix_stack(tmp_path, REST_ALL) as stack:
            broker = await connect(tmp_path, fix_port(stack))
            broker.held("k1", account=1)
            await broker.report("0", T11="k1")
            assert stack.gateway.set_kill(True, None, "BROKER1", False, cancel_open=True) == 1
            await broker.report("4", T11="k1", T39="4")
            broker.held("k2", account=1, k=1)
            killed = await broker.report("8", T11="k2", T39="8")
            assert "kill switch" in killed[58]
            stack.gateway.set_kill(False, None, "BROKER1", False)
            stack.gateway.set_kill(True, 2, None, False)  # an account switch covers FIX orders too
            broker.held("k3", account=2)
            await broker.report("8", T11="k3")
            broker.held("k4", account=1, k=2)
            await broker.report("0", T11="k4")
            await broker.logout()

    run_async(script())


def test_permissions_password_and_unsupported_messages(tmp_path: Path) -> None:
    async def script() -> None:
        async with fix_stack(tmp_path, FILL_ALL) as stack:
            port = fix_port(stack)
            wrong = await connect(tmp_path, port, "BROKER2", password="nope", store="b2-wrong", logon=False)
            _, logout = await wrong.next(("admin",))
            assert logout.get(35) == "5" and "Password" in logout.get(58, ""), logout
            await wrong.stop()
            b2 = await connect(tmp_path, port, "BROKER2", password="pw-2", store="b2")
            b2.held("x1", account=3)  # BROKER2 trades accounts 1 and 2 only
            denied = await b2.report("8", T11="x1", T39="8")
            assert "may not trade" in denied[58]
            b2.new_order("x2", "ACME", "1", 100, price_text(ref_price(SMALL.held(1, 0))), None, 34_300)
            await b2.report("8", T11="x2", T103="15")  # Account (1) missing, and two accounts to pick from
            b2.new_order("x3", "ACME", "1", 100, "", 1, 34_301, ord_type="1")  # a market order
            await b2.report("8", T11="x3", T103="11")
            b2.send("H", (11, "x1"), (55, "ACME"), (54, "1"))  # OrderStatusRequest: x1 was rejected
            await b2.report("I", T11="x1", T39="8", T151="0")
            b2.send("AF", (584, "m1"), (585, "7"))  # OrderMassStatusRequest: not supported
            await b2.recv("j", T380="3", T372="AF")
            b2.held("x1", account=1)  # a ClOrdID used before
            await b2.report("8", T11="x1", T103="6")
            b2.held("x4", account=1)
            await b2.report("0", T11="x4")
            await b2.report("F", T11="x4")
            await b2.logout()

    run_async(script())


def test_reconnect_with_a_sequence_gap_and_cancel_on_disconnect(tmp_path: Path) -> None:
    async def script() -> None:
        async with fix_stack(tmp_path, REST_ALL) as stack:
            port = fix_port(stack)
            broker = await connect(tmp_path, port)
            broker.held("g1", account=1)
            await broker.report("0", T11="g1")
            await broker.stop()  # the broker goes away: its open order is cancelled
            await wait_until(lambda: not stack.gateway.open)
            assert [e.event for e in scan(stack.config.journal).entries] == [Event.NEW, Event.CANCEL]
            # The Canceled report was sent while it was away: at its next Logon QuickFIX sees the gap,
            # asks for it again, and it comes as a possible duplicate.
            again = await connect(tmp_path, port)
            resent = await again.report("4", T11="g1", T39="4")
            assert resent.get(43) == "Y", resent
            # A gap the other way: the broker skips five sequence numbers; the gateway asks for them
            # (ResendRequest), the broker's QuickFIX fills the gap, and the order behind it goes through.
            session = again.session()
            skipped = session.getExpectedSenderNum()
            session.setNextSenderMsgSeqNum(skipped + 5)
            again.held("g2", account=1, k=1)
            await again.report("0", T11="g2")
            asked = [m for m in again.admin if m.get(35) == "2"]
            assert asked and asked[-1][7] == str(skipped), again.admin
            await again.logout()  # a Logout cancels its open orders too
            await wait_until(lambda: not stack.gateway.open)
            # Sequence numbers and sent messages survive a restart of the gateway: the next Logon
            # continues the numbers, and the Canceled report sent while it was away is resent.
            await stack.restart()
            third = await connect(tmp_path, fix_port(stack))
            await third.report("4", T11="g2", T43="Y")
            third.held("g3", account=1, k=2)
            report = await third.report("0", T11="g3")
            assert int(report[34]) > 6, report  # after a reset it would be 2 (Logon 1)
            await third.logout()

    run_async(script(), timeout=60)


def test_answers_and_cancels_for_orders_placed_before_a_restart(tmp_path: Path) -> None:
    """The exchange keeps its book across the gateway's restart; a fill, F and G-then-F for orders
    placed before it reach the broker with their ClOrdIDs and OrderIDs."""
    keep = Behaviour(fill=0.0, partial=0.0, reject=0.0, cancel_on_disconnect=False)

    async def script() -> None:
        async with fix_stack(tmp_path, keep) as stack:
            broker = await connect(tmp_path, fix_port(stack))
            sym = [ticket(SMALL.held(1, k)) for k in range(3)]
            broker.held("a1", account=1)
            a1 = await broker.report("0", T11="a1")
            broker.held("a2", account=1, k=1)
            a2 = await broker.report("0", T11="a2")
            broker.held("a3", account=1, k=2)
            a3 = await broker.report("0", T11="a3")
            new_price = price_text(ref_price(SMALL.held(1, 2)) - 1)
            broker.replace("a3r", "a3", sym[2], 100, new_price)
            await broker.report("5", T11="a3r", T41="a3", T37=a3[37])
            assert stack.exchange.resting() == 3
            # The gateway stops and logs the broker out: no cancel-on-disconnect for that.
            await stack.restart()
            await broker.stop()
            assert stack.exchange.resting() == 3
            again = await connect(tmp_path, fix_port(stack))
            await wait_until(lambda: stack.gateway.status()["fix"]["sessions"][0]["logged_on"])
            fix = stack.gateway.status()["fix"]
            assert fix["port"] == fix_port(stack)
            assert [(s["sender_comp_id"], s["logged_on"], s["open_orders"]) for s in fix["sessions"]] == [
                ("BROKER1", True, 3),
                ("BROKER2", False, 0),
            ]
            page = render(stack.gateway)
            assert 'riskgw_fix_session_logged_on{sender_comp_id="BROKER1"} 1.0' in page
            assert 'riskgw_fix_session_logged_on{sender_comp_id="BROKER2"} 0.0' in page
            assert 'riskgw_fix_session_open_orders{sender_comp_id="BROKER1"} 3.0' in page
            # Another account's sell that crosses a1: the fill for a1 reaches the session that placed it.
            seller, k = next(
                (a, k)
                for a in range(2, SMALL.n_accounts)
                for k in range(SMALL.holdings_per_account)
                if SMALL.held(a, k) == SMALL.held(1, 0)
            )
            again.held("s1", account=seller, k=k, side="2")
            reports = {}
            for _ in range(3):
                report = await again.recv("8")
                reports[(report[11], report[150])] = report
            assert set(reports) == {("s1", "0"), ("s1", "F"), ("a1", "F")}, reports
            filled = reports[("a1", "F")]
            assert (filled[37], filled[39], filled[14], filled[151]) == (a1[37], "2", "100", "0")
            # F for orders placed before the restart, one of them replaced before it
            again.replace("a2r", "a2", sym[1], 100, price_text(ref_price(SMALL.held(1, 1)) - 1))
            await again.report("5", T11="a2r", T41="a2", T37=a2[37], T39="0")
            again.cancel("a2-x", "a2r", sym[1])
            await again.report("4", T11="a2-x", T41="a2r", T37=a2[37], T39="4")
            again.cancel("a3r-x", "a3r", sym[2])
            await again.report("4", T11="a3r-x", T41="a3r", T37=a3[37], T39="4", T44=new_price)
            assert stack.exchange.resting() == 0 and stack.gateway.open == {}
            # ClOrdIDs stay unique across the restart, and a1 is known to be filled
            again.held("a1", account=1, k=3)
            await again.report("8", T11="a1", T103="6")
            again.cancel("a1-x", "a1", sym[0])
            await again.recv("9", T434="1", T102="0", T39="2", T41="a1")
            again.cancel("a2-y", "a2-x", sym[1])
            await again.recv("9", T434="1", T102="0", T39="4")
            await again.logout()

    run_async(script(), timeout=60)


def test_a_cancel_at_restart_is_stored_for_the_broker(tmp_path: Path) -> None:
    """The exchange dropped the order with the gateway's link; the resync after the restart cancels
    it, while the broker is away, and QuickFIX sends the Canceled report at its next Logon."""

    async def script() -> None:
        async with fix_stack(tmp_path, REST_ALL) as stack:
            broker = await connect(tmp_path, fix_port(stack))
            broker.held("c1", account=2)
            placed = await broker.report("0", T11="c1")
            await stack.restart()  # the gateway logs the broker out: no cancel-on-disconnect
            await broker.stop()
            await wait_until(lambda: not stack.gateway.open)
            assert stack.gateway.counters.resync_cancels == 1
            again = await connect(tmp_path, fix_port(stack))
            await again.report("4", T11="c1", T37=placed[37], T39="4", T151="0")
            await again.logout()

    run_async(script(), timeout=60)


def test_binary_and_fix_brokers_share_one_book(tmp_path: Path) -> None:
    async def script() -> None:
        async with fix_stack(tmp_path, FILL_ALL) as stack:
            broker = await connect(tmp_path, fix_port(stack))
            binary: Client = await stack.broker("alice")
            binary.send(MsgType.NEW_ORDER, **held_order(5, account=1))
            await binary.recv_type(MsgType.ACCEPTED)
            broker.held("b1", account=1, k=1)
            await broker.report("0", T11="b1")
            await broker.report("F", T11="b1")
            await binary.recv_type(MsgType.FILL)
            assert stack.exchange.orders_seen == 2
            await binary.close()
            await broker.logout()

    run_async(script())


def test_a_fix_port_in_use_is_a_one_line_error(tmp_path: Path) -> None:
    async def script() -> None:
        with socket.socket() as taken:
            taken.bind(("", 0))
            taken.listen()
            config = fix_config()
            config.port = taken.getsockname()[1]
            with pytest.raises(UserError, match=f"cannot open the FIX port 0.0.0.0:{config.port}: .*in use"):
                async with fix_stack(tmp_path, FILL_ALL, fix=config):
                    pass

    run_async(script())
