"""Reading rule files: size limit, UTF-8, comments and strings, tokens with file positions.

Everything later in the front end works on `SourceFile.tokens`, whose `start` offsets index
`SourceFile.text`; `SourceFile.loc` turns an offset into a 1-based line and column (in characters).
"""

from __future__ import annotations

import bisect
import hashlib
from dataclasses import dataclass
from pathlib import Path

from sqlglot.errors import TokenError
from sqlglot.tokenizer_core import Token

from riskgw.lang.ast import Diagnostic, Loc, Severity
from riskgw.lang.dialect import DIALECT

MAX_FILE_BYTES = 10 * 1024 * 1024


def error(message: str, loc: Loc | None = None, source_line: str | None = None) -> Diagnostic:
    return Diagnostic(Severity.ERROR, message, loc, source_line)


@dataclass(frozen=True, eq=False)
class SourceFile:
    path: str
    data: bytes
    text: str
    line_starts: tuple[int, ...]  # offset in `text` of each line's first character

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    def loc(self, offset: int) -> Loc:
        line = bisect.bisect_right(self.line_starts, offset)
        return Loc(self.path, line, offset - self.line_starts[line - 1] + 1)

    def line_text(self, line: int) -> str:
        start = self.line_starts[line - 1]
        end = self.line_starts[line] - 1 if line < len(self.line_starts) else len(self.text)
        return self.text[start:end].rstrip("\r")

    def error_at(self, offset: int, message: str) -> Diagnostic:
        loc = self.loc(offset)
        return error(message, loc, self.line_text(loc.line))


def _line_starts(text: str) -> tuple[int, ...]:
    starts = [0]
    pos = text.find("\n")
    while pos >= 0:
        starts.append(pos + 1)
        pos = text.find("\n", pos + 1)
    return tuple(starts)


def read_source(path: Path) -> SourceFile | Diagnostic:
    """The file's text, or the one diagnostic that says why it cannot be used."""
    name = str(path)
    try:
        with path.open("rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except IsADirectoryError:
        return error(f"cannot read rule file {name}: it is a directory; give the path of a .sql file")
    except FileNotFoundError:
        return error(f"cannot read rule file {name}: no such file; check the path")
    except PermissionError:
        return error(f"cannot read rule file {name}: permission denied; make the file readable")
    except OSError as exc:
        return error(f"cannot read rule file {name}: {exc.strerror or exc}")
    if len(data) > MAX_FILE_BYTES:
        return error(
            f"rule file {name} is larger than {MAX_FILE_BYTES // (1024 * 1024)} MB; "
            "split it into several files"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line_start = data.rfind(b"\n", 0, exc.start) + 1
        line = data.count(b"\n", 0, exc.start) + 1
        col = len(data[line_start : exc.start].decode("utf-8")) + 1
        line_end = data.find(b"\n", exc.start)
        shown = data[line_start : line_end if line_end >= 0 else len(data)].decode("utf-8", "replace")
        return error(
            f"invalid UTF-8 (byte 0x{data[exc.start]:02x}); save the file as UTF-8",
            Loc(name, line, col),
            shown,
        )
    if text.startswith("\ufeff"):
        # A byte-order mark counts as one column of blank, so positions match what editors show.
        text = " " + text[1:]
    return SourceFile(name, data, text, _line_starts(text))


def _lexical_errors(src: SourceFile) -> list[Diagnostic]:
    """Unterminated comments, strings and quoted names, which sqlglot reports without a position."""
    text = src.text
    n = len(text)
    i = 0
    closers = {"'": "'", '"': '"', "`": "`", "[": "]"}
    while i < n:
        c = text[i]
        if c == "-" and text.startswith("--", i):
            end = text.find("\n", i)
            i = n if end < 0 else end + 1
        elif c == "/" and text.startswith("/*", i):
            end = text.find("*/", i + 2)
            if end < 0:
                return [src.error_at(i, "unterminated comment: close it with */")]
            i = end + 2
        elif c in closers:
            close = closers[c]
            j = i + 1
            while True:
                j = text.find(close, j)
                if j < 0:
                    what = "string" if c == "'" else "quoted name"
                    return [src.error_at(i, f"unterminated {what}: close it with {close}")]
                if close != "]" and text.startswith(close * 2, j):
                    j += 2  # a doubled quote stands for the quote character itself
                    continue
                break
            i = j + 1
        else:
            i += 1
    return []


def tokenize(src: SourceFile) -> list[Token] | list[Diagnostic]:
    """The file's tokens (comments dropped), or its lexical errors."""
    errors = _lexical_errors(src)
    if errors:
        return errors
    try:
        tokens: list[Token] = DIALECT.tokenize(src.text)
    except TokenError as exc:
        return [error(f"{src.path}: cannot split the file into tokens: {exc}")]
    return tokens
