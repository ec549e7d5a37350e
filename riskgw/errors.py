"""Errors a user can cause and fix. The CLI prints them in one line; they never show a traceback."""

from __future__ import annotations


class UserError(Exception):
    """A mistake the user can fix: printed as `riskgw: error: <message>`, exit 1."""


class InputError(UserError):
    """Bad input data at a place in a file: printed as `path:line: error: message`."""

    def __init__(self, path: str, line: int, message: str) -> None:
        self.path = path
        self.line = line
        self.message = message
        super().__init__(f"{path}:{line}: error: {message}")
