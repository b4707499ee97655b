"""A file the gateway re-reads while it runs (keys, routes), cheaply and safely."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

from formarket.errors import FormarketError

__all__ = ["WatchedFile"]

T = TypeVar("T")
_log = logging.getLogger("formarket.gateway")


class WatchedFile(Generic[T]):
    """The parsed content of `path` (`empty` until it is first read), re-read when the file
    changes. It looks at the file every `check_every` seconds at most, so a call pays for a
    stat only now and then. A change that does not parse is logged and the content before it
    is kept: a typo in a keys or routes file must not lock every caller out."""

    def __init__(
        self,
        path: Path,
        load: Callable[[Path], T],
        empty: T,
        *,
        check_every: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self.check_every = check_every
        self._load = load
        self._clock = clock
        self._stamp: tuple[int, int, int] | None = None
        self._checked = float("-inf")
        self._value = empty
        self.problem = ""

    def get(self) -> T:
        now = self._clock()
        if now - self._checked >= self.check_every:
            self._checked = now
            self._reload()
        return self._value

    def fresh(self) -> T:
        """The content as the file is now, however recently it was looked at."""
        self._checked = self._clock()
        self._reload()
        return self._value

    def _reload(self) -> None:
        try:
            st = self.path.stat()
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        except FileNotFoundError:
            stamp = (0, 0, 0)
        if stamp == self._stamp:
            return
        self._stamp = stamp
        try:
            self._value = self._load(self.path)
            self.problem = ""
        except FormarketError as exc:
            self.problem = str(exc)
            _log.error("keeping %s as it was before this change: %s", self.path.name, exc)
