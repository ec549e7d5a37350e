"""How SQL values become 64-bit words (the encoding every executor and driver shares).

INT and INT8 are one word each. CHAR(n) is ceil(n/8) words: the UTF-8 bytes, zero-padded to a
multiple of 8, each group of 8 read as a little-endian signed 64-bit integer. NULL is a flag
beside the words, never a special word value.
"""

from __future__ import annotations

WORD_BYTES = 8


def char_words(size: int) -> int:
    """Number of words of a CHAR(size) value."""
    return (size + WORD_BYTES - 1) // WORD_BYTES


def encode_char(text: str | bytes, size: int) -> tuple[int, ...]:
    """Words of a CHAR(size) value. Raises ValueError when it is longer than `size` bytes."""
    raw = text.encode("utf-8") if isinstance(text, str) else bytes(text)
    if len(raw) > size:
        raise ValueError(f"{len(raw)} bytes is longer than CHAR({size})")
    if b"\0" in raw:
        raise ValueError("a CHAR value cannot contain a NUL byte")
    n = char_words(size)
    raw = raw.ljust(n * WORD_BYTES, b"\0")
    return tuple(
        int.from_bytes(raw[i * WORD_BYTES : (i + 1) * WORD_BYTES], "little", signed=True) for i in range(n)
    )


def decode_char(words: tuple[int, ...] | list[int]) -> str:
    """The text of a CHAR value from its words (trailing zero padding removed)."""
    raw = b"".join(w.to_bytes(WORD_BYTES, "little", signed=True) for w in words)
    return raw.rstrip(b"\0").decode("utf-8", errors="replace")
