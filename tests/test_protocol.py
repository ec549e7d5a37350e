"""The wire protocol: layouts, encode/decode, and resynchronisation after garbage."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from riskgw.gateway.protocol import (
    HEADER,
    LAYOUTS,
    FrameReader,
    MsgType,
    ProtocolError,
    decode,
    encode,
)

ORDER = dict(order_id=42, account_id=7, direction=1, ticket_id="600036", price=12_345, quantity=300, ts=99)


def test_every_frame_is_fixed_size_and_aligned() -> None:
    for layout in LAYOUTS.values():
        assert layout.size % 8 == 0
        assert len(encode(layout.type, 1)) == layout.size
    assert LAYOUTS[MsgType.NEW_ORDER].size == 64  # one 512-bit beat


def test_new_order_round_trips() -> None:
    frame = decode(encode(MsgType.NEW_ORDER, 3, **ORDER))
    assert frame.type is MsgType.NEW_ORDER and frame.seq == 3
    assert frame.values == ORDER


def test_fields_sit_at_their_documented_offsets() -> None:
    layout = LAYOUTS[MsgType.NEW_ORDER]
    blob = encode(MsgType.NEW_ORDER, 1, **ORDER)
    offsets = {f.name: off for f, off in layout.offsets()}
    assert int.from_bytes(blob[offsets["price"] : offsets["price"] + 8], "little") == 12_345
    assert blob[offsets["ticket_id"] : offsets["ticket_id"] + 6] == b"600036"


@pytest.mark.parametrize(
    ("blob", "message"),
    [
        (b"\x10\x01", "shorter than a header"),
        (HEADER.pack(0x7F, 1, 8, 1), "unknown frame type"),
        (HEADER.pack(int(MsgType.HEARTBEAT), 9, 8, 1), "protocol version 9"),
        (HEADER.pack(int(MsgType.NEW_ORDER), 1, 8, 1), "NEW_ORDER is 64 bytes"),
    ],
)
def test_bad_frames_are_protocol_errors(blob: bytes, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        decode(blob)


def test_oversize_field_is_refused() -> None:
    with pytest.raises(ProtocolError, match="ticket_id"):
        encode(MsgType.NEW_ORDER, 1, **{**ORDER, "ticket_id": "X" * 17})


@settings(max_examples=200, derandomize=True)
@given(
    garbage=st.lists(st.binary(min_size=1, max_size=40), min_size=1, max_size=5),
    chunk=st.integers(min_value=1, max_value=70),
)
def test_valid_frames_after_garbage_still_pass(garbage: list[bytes], chunk: int) -> None:
    frames = [encode(MsgType.NEW_ORDER, i + 1, **{**ORDER, "order_id": i}) for i in range(len(garbage))]
    stream = b"".join(g + f for g, f in zip(garbage, frames, strict=True))
    reader = FrameReader()
    out = []
    for i in range(0, len(stream), chunk):
        out += reader.feed(stream[i : i + chunk])
    got = [x for x in out if not isinstance(x, ProtocolError)]
    # Random bytes can look like a frame only by matching type, version and exact length.
    assert [f["order_id"] for f in got if f.type is MsgType.NEW_ORDER][-len(frames) :] == list(
        range(len(frames))
    )
    assert reader.pending < 64
