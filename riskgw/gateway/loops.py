"""The event loop `riskgw serve` and `riskgw exchange-sim` run on: asyncio's own, or uvloop.

uvloop (libuv underneath) spends less CPU than asyncio's selector loop on each read, write and
callback. That is most of what the exchange simulator does per order, so it runs on uvloop unless
told otherwise; on the gateway, whose order path is mostly Python of its own, the saving measured
is within the noise (docs/gateway.md, "The event loop"), so it stays on asyncio's loop unless
`event_loop = "uvloop"`. uvloop's transports keep the flow-control contract the exchange link
relies on (riskgw.gateway.server.ExchangeUplink): with a high water mark of 0,
get_write_buffer_size() counts every byte the kernel did not take, libuv's write queue included,
pause_writing comes when one is left over and resume_writing when the queue is empty. Where uvloop
is not installed (it has no Windows build), asyncio's loop runs instead.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from riskgw.errors import UserError

T = TypeVar("T")
EVENT_LOOPS = ("uvloop", "asyncio")
GATEWAY_EVENT_LOOP = "asyncio"
EXCHANGE_SIM_EVENT_LOOP = "uvloop"


def _asyncio_loop() -> asyncio.AbstractEventLoop:
    """asyncio's own loop, whatever event loop policy is installed."""
    if sys.platform == "win32":
        return asyncio.ProactorEventLoop()
    return asyncio.SelectorEventLoop()


def check_event_loop(name: str) -> None:
    """UserError (one line) unless `name` is an event loop setting."""
    if name not in EVENT_LOOPS:
        raise UserError(f"event_loop must be one of {', '.join(EVENT_LOOPS)}, not {name!r}")


def loop_factory(
    name: str, log: Callable[[str], None] | None = None
) -> Callable[[], asyncio.AbstractEventLoop]:
    """What makes the loop `name` asks for; asyncio's when uvloop is asked for and cannot be
    imported (said through `log`)."""
    check_event_loop(name)
    if name == "uvloop":
        try:
            import uvloop
        except ImportError as exc:
            if log is not None:
                log(f"event loop asyncio: uvloop cannot be imported ({exc})")
            return _asyncio_loop
        factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
        return factory
    return _asyncio_loop


def loop_name(loop: asyncio.AbstractEventLoop) -> str:
    """Which event loop this is: "uvloop" or "asyncio"."""
    return "uvloop" if type(loop).__module__.split(".", 1)[0] == "uvloop" else "asyncio"


def run(main: Coroutine[Any, Any, T], name: str, log: Callable[[str], None] | None = None) -> T:
    """asyncio.run(main) on the event loop `name` asks for."""
    with asyncio.Runner(loop_factory=loop_factory(name, log)) as runner:
        return runner.run(main)
