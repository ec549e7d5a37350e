"""The order path's per-event helpers, built for speed: the same results as the general ones.

`clean_body` lets an order's frames be built from the bytes it arrived as: ACCEPTED, the NEW_ORDER
to the exchange and the exchange's answers carry the same order fields, and re-encoding them gives
the same bytes whenever the padding is zero and the ticket is UTF-8 text without trailing junk.

`order_inputs` gives exactly `riskgw.engine.engine.event_inputs` for the field values the wire
protocol carries (integers, and a ticket as text): one tuple built in register order by a
function generated from the register map (riskgw.doe.isa.EVENT_FIELD_REGS) at import, with each
ticket's words computed once (a day trades a few thousand securities).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from typing import Any

from riskgw.doe.isa import EVENT_FIELD_REGS, N_EVENT_REGS
from riskgw.doe.values import encode_char
from riskgw.engine.table import Value
from riskgw.gateway.protocol import LAYOUTS, Frame, MsgType

_ORDER = LAYOUTS[MsgType.NEW_ORDER]
EXEC_FIELDS = struct.Struct("<qq")  # exec_price, exec_quantity: what FILL and the like add to an order


def _shape(t: MsgType) -> list[tuple[str, str]]:
    return [(f.name, f.fmt) for f in LAYOUTS[t].fields]


_EXEC_SHAPE = [*_shape(MsgType.NEW_ORDER), ("exec_price", "q"), ("exec_quantity", "q")]
if _shape(MsgType.ACCEPTED) != _shape(MsgType.NEW_ORDER) or any(
    _shape(t) != _EXEC_SHAPE for t in (MsgType.FILL, MsgType.EXCH_REJECT, MsgType.CANCELLED)
):
    raise ImportError("the order frames no longer repeat NEW_ORDER's fields: see clean_body and EXEC_FIELDS")
_SPANS = {f.name: (pos - 8, pos - 8 + f.size) for f, pos in _ORDER.offsets()}
_PADS = tuple(span for name, span in _SPANS.items() if name.startswith("pad"))
_TICKET = _SPANS["ticket_id"]
_BODY = _ORDER.size - 8


def clean_body(frame: Frame, values: Mapping[str, Any]) -> bytes | None:
    """The NEW_ORDER's body when encode() of its values would give the same bytes, else None."""
    body = frame.body
    if len(body) != _BODY or any(body[a:b].strip(b"\0") for a, b in _PADS):
        return None
    ticket = values["ticket_id"]
    if body[_TICKET[0] : _TICKET[1]].rstrip(b"\0") != ticket.encode("utf-8"):
        return None
    return body


_MAX_CACHED = 1 << 16
_words: dict[tuple[str, int], tuple[int, ...]] = {}


def char_words(text: Any, n_words: int) -> tuple[int, ...]:
    """encode_char(str(text), 8 * n_words), remembered (ValueError when it does not fit)."""
    key = (text if isinstance(text, str) else str(text), n_words)
    words = _words.get(key)
    if words is None:
        words = encode_char(key[0], 8 * n_words)
        if len(_words) >= _MAX_CACHED:
            _words.clear()
        _words[key] = words
    return words


def _int(name: str, value: Any) -> None:
    """The check event_inputs makes, for a value that is not exactly an int (a bool, a str, ...)."""
    if not isinstance(value, int):
        raise TypeError(f"{name} must be an integer")


def _generate() -> Callable[[Mapping[str, Any]], tuple[Value, ...]]:
    """def order_inputs(values): return (<register 0>, <register 1>, ...) from the register map."""
    regs: list[str] = ["None"] * N_EVENT_REGS
    lines = ["def order_inputs(values):", "    get = values.get"]
    for name, (reg, n_words) in EVENT_FIELD_REGS.items():
        if n_words == 1:
            lines.append(f"    {name} = get({name!r})")
            lines.append(f"    if {name}.__class__ is not int and {name} is not None:")
            lines.append(f"        _int({name!r}, {name})")
            regs[reg] = name
            continue
        lines.append(f"    {name} = get({name!r})")
        lines.append(f"    {name} = (None,) * {n_words} if {name} is None else char_words({name}, {n_words})")
        for k in range(n_words):
            regs[reg + k] = f"{name}[{k}]"
    lines.append(f"    return ({', '.join(regs)},)")
    namespace: dict[str, Any] = {"_int": _int, "char_words": char_words}
    exec("\n".join(lines), namespace)  # the source is built above from the register map alone
    fn: Callable[[Mapping[str, Any]], tuple[Value, ...]] = namespace["order_inputs"]
    return fn


order_inputs = _generate()
order_inputs.__doc__ = "event_inputs(values) for values from a frame: missing fields are NULL."
