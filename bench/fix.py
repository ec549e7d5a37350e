"""FIX path latency: NewOrderSingle sent to ExecutionReport received, through the gateway.

    python -m bench.fix [--quick] [--orders N] [--out bench/results/fix.json]

The gateway (software engine, the example rules, the reference data set's shape at 20 accounts and
64 securities, fsync off as on a throwaway journal, and so the FIX store's sync: store_sync = false)
and the exchange simulator (every order filled) run in this process on one asyncio loop, as
`riskgw serve` runs them. The broker is a QuickFIX initiator in a child process, so its engine does
not share this interpreter's lock. It sends one order at a time (closed loop) and times, with
perf_counter_ns on its own clock, each NewOrderSingle's sendToTarget to the arrival of its first
ExecutionReport (New, or Rejected) in fromApp. Orders are buys of one unit at the reference price,
spread over accounts and securities and one second apart in TransactTime, so no rule rejects them.

`run(orders)` returns the figures as a dict; `main` writes them to bench/results/fix.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
WARMUP = 100


def _percentile(values: list[int], p: float) -> float:
    ordered = sorted(values)
    return float(ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))])


# ---------------------------------------------------------------------------- the broker (child)


def _broker(port: int, orders: int, store: Path) -> list[int]:
    import quickfix

    from riskgw.gateway.fix import data_dictionary
    from riskgw.scenario import DataSet, ref_price, ticket

    data = DataSet(n_accounts=20, n_securities=64, holdings_per_account=16)
    cfg = store / "initiator.cfg"
    cfg.write_text(
        "[DEFAULT]\nConnectionType=initiator\nSocketConnectHost=127.0.0.1\n"
        f"SocketConnectPort={port}\nHeartBtInt=30\nReconnectInterval=1\nFileStorePath={store}\n"
        f"NonStopSession=Y\nUseDataDictionary=Y\nDataDictionary={data_dictionary()}\nSocketNodelay=Y\n"
        "[SESSION]\nBeginString=FIX.4.4\nSenderCompID=BROKER1\nTargetCompID=RISKGW\n",
        encoding="utf-8",
    )
    logged_on = threading.Event()
    answered = threading.Event()
    arrival = [0]

    class App(quickfix.Application):  # type: ignore[misc]
        def onCreate(self, sid: Any) -> None:
            self.sid = sid

        def onLogon(self, sid: Any) -> None:
            logged_on.set()

        def onLogout(self, sid: Any) -> None:
            pass

        def toAdmin(self, message: Any, sid: Any) -> None:
            pass

        def fromAdmin(self, message: Any, sid: Any) -> None:
            pass

        def toApp(self, message: Any, sid: Any) -> None:
            pass

        def fromApp(self, message: Any, sid: Any) -> None:
            # The first report of the order in flight: New (or Rejected); its Trade report follows.
            if message.getField(150) in ("0", "8") and not answered.is_set():
                arrival[0] = time.perf_counter_ns()
                answered.set()

    app = App()
    settings = quickfix.SessionSettings(str(cfg))
    store = quickfix.FileStoreFactory(settings)  # kept alive: QuickFIX holds a reference to it
    initiator = quickfix.SocketInitiator(app, store, settings)
    initiator.start()
    if not logged_on.wait(30):
        raise SystemExit("the broker could not log on to the gateway")
    latencies: list[int] = []
    accounts = [a for a in range(data.n_accounts) if a != 19]  # account 19 is the poor one
    for i in range(orders + WARMUP):
        account = accounts[i % len(accounts)]
        sec = data.held(account, (i // len(accounts)) % data.holdings_per_account)
        price = ref_price(sec)
        stamp = time.gmtime(1_767_571_200 + i)  # one second apart: the rate rule never trips
        m = quickfix.Message()
        m.getHeader().setField(quickfix.BeginString("FIX.4.4"))
        m.getHeader().setField(quickfix.MsgType("D"))
        for tag, value in (
            (1, str(account)),
            (11, f"b{i}"),
            (55, ticket(sec)),
            (54, "1"),
            (60, time.strftime("%Y%m%d-%H:%M:%S.000", stamp)),
            (38, "1"),
            (40, "2"),
            (44, f"{price // 100}.{price % 100:02d}"),
        ):
            m.setField(tag, value)
        answered.clear()
        start = time.perf_counter_ns()
        quickfix.Session.sendToTarget(m, app.sid)
        if not answered.wait(30):
            raise SystemExit(f"no ExecutionReport for order {i}")
        if i >= WARMUP:
            latencies.append(arrival[0] - start)
    initiator.stop()
    return latencies


# ---------------------------------------------------------------------------- the gateway (parent)


async def _run_gateway(orders: int, work: Path) -> dict[str, Any]:
    from riskgw.exchange.sim import Behaviour, start_exchange
    from riskgw.gateway.config import GatewayConfig
    from riskgw.gateway.fixconfig import FixConfig, FixSessionConfig
    from riskgw.gateway.serve import start_gateway
    from riskgw.scenario import DataSet

    data = DataSet(n_accounts=20, n_securities=64, holdings_per_account=16).write(work / "data")
    ex_server, exchange = await start_exchange("127.0.0.1", 0, Behaviour(fill=1.0, partial=0.0, reject=0.0))
    config = GatewayConfig(
        rules=sorted((ROOT / "rules").glob("*.sql")),
        listen=("127.0.0.1", 0),
        exchange=("127.0.0.1", ex_server.sockets[0].getsockname()[1]),
        data=data,
        journal=work / "gw.journal",
        fsync=False,
        fix=FixConfig(sessions=[FixSessionConfig("BROKER1", "RISKGW", None)], port=0, store_sync=False),
    )
    running = await start_gateway(config, lambda text: None)
    assert running.fix is not None
    (work / "broker").mkdir()
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.fix",
        "--broker",
        str(running.fix.port),
        "--orders",
        str(orders),
        "--store",
        str(work / "broker"),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await child.communicate()
    counters = vars(running.gateway.counters).copy()
    await running.stop()
    ex_server.close()
    await ex_server.wait_closed()
    if child.returncode != 0:
        raise RuntimeError(f"the broker process failed (exit {child.returncode})")
    latencies = json.loads(out)
    return {"latencies_ns": latencies, "counters": counters, "exchange_orders": exchange.orders_seen}


def run(orders: int) -> dict[str, Any]:
    """The FIX path's figures for `orders` timed orders (after a warm-up of WARMUP)."""
    with tempfile.TemporaryDirectory(prefix="riskgw-bench-fix-") as tmp:
        start = time.perf_counter()
        raw = asyncio.run(_run_gateway(orders, Path(tmp)))
        wall = time.perf_counter() - start
    us = [v / 1000 for v in raw["latencies_ns"]]
    return {
        "path": "FIX NewOrderSingle -> first ExecutionReport, QuickFIX initiator in another process",
        "orders": len(us),
        "warmup": WARMUP,
        "p50_us": round(statistics.median(us), 1),
        "p99_us": round(_percentile(raw["latencies_ns"], 99) / 1000, 1),
        "max_us": round(max(us), 1),
        "mean_us": round(statistics.fmean(us), 1),
        "orders_per_s_closed_loop": round(len(us) / (sum(us) / 1e6), 1),
        "accepted": raw["counters"]["accepted"],
        "rejected": raw["counters"]["rejected"],
        "wall_s": round(wall, 1),
        "load_avg": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fix", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1,000 orders instead of 10,000")
    parser.add_argument("--orders", type=int, help="timed orders (after a warm-up of 100)")
    parser.add_argument("--out", type=Path, default=RESULTS / "fix.json")
    parser.add_argument("--broker", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--store", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    orders = args.orders or (1_000 if args.quick else 10_000)
    if args.broker is not None:
        print(json.dumps(_broker(args.broker, orders, args.store)))
        return 0
    result = run(orders)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(
        f"FIX: {result['orders']} orders, NewOrderSingle -> ExecutionReport p50 {result['p50_us']} us, "
        f"p99 {result['p99_us']} us, max {result['max_us']} us",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
