"""The one exception tree of formarket.

    FormarketError                 anything the user can act on; the CLI prints it, exits 1
    ├── InputError                 outside input is malformed (a file, an argument, a request)
    │   └── LocatedError           ... at a known file, line and column
    ├── NotFoundError              a listing, revision, file or path that does not exist
    └── UsageError                 the command was called wrongly (exit 2)

Third-party errors are translated where they enter (``raise ... from exc``) so that callers
never need to know which library read the file.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "FormarketError",
    "InputError",
    "LocatedError",
    "Location",
    "NotFoundError",
    "UsageError",
]


@dataclass(frozen=True, slots=True)
class Location:
    """Where in which file something is; line and column are 1-based, 0 when unknown."""

    path: str
    line: int = 0
    column: int = 0

    def __str__(self) -> str:
        if self.line and self.column:
            return f"{self.path}:{self.line}:{self.column}"
        if self.line:
            return f"{self.path}:{self.line}"
        return self.path


class FormarketError(Exception):
    """An error the user can act on: a message and, where there is one, a hint."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n  hint: {self.hint}" if self.hint else self.message


class InputError(FormarketError):
    """Outside input is malformed."""


class LocatedError(InputError):
    """Malformed input at a known place."""

    def __init__(self, location: Location, message: str, *, hint: str = "") -> None:
        super().__init__(message, hint=hint)
        self.location = location

    def __str__(self) -> str:
        return f"{self.location}: {super().__str__()}"


class NotFoundError(FormarketError):
    """Something named does not exist."""


class UsageError(FormarketError):
    """The command was called wrongly."""

    exit_code = 2
