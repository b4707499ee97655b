"""Server-sent events, as much as a streaming completion needs: cut a byte stream into
events wherever it was split in transit, and read an event's data."""

from __future__ import annotations

__all__ = ["SseSplitter", "event_data"]


class SseSplitter:
    """Feed it the bytes of a stream as they come; it returns each complete event (its lines,
    without the blank line that ends it). Line ends are normalised to LF, so an event split
    between CR and LF is still found. `limit` bounds an event: a stream that never ends one
    must not grow the buffer without end."""

    def __init__(self, limit: int = 1 << 20) -> None:
        self._buffer = b""
        self.limit = limit

    def feed(self, data: bytes) -> list[bytes]:
        buffer = self._buffer + data
        if b"\r" in buffer:
            # A trailing CR may be the first half of a CRLF: keep it for the next feed.
            keep_cr = buffer.endswith(b"\r")
            buffer = buffer[:-1] if keep_cr else buffer
            buffer = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            buffer += b"\r" if keep_cr else b""
        events = buffer.split(b"\n\n")
        self._buffer = events.pop()
        if len(self._buffer) > self.limit:
            raise ValueError(f"a server-sent event longer than {self.limit} bytes")
        stripped = (event.strip(b"\n") for event in events)
        return [event for event in stripped if event]

    def rest(self) -> bytes:
        """What is left when the stream ends: an event without its blank line, if any."""
        rest, self._buffer = self._buffer.strip(b"\r\n"), b""
        return rest


def event_data(event: bytes) -> bytes | None:
    """The data of an event (its `data:` lines joined by LF), or None when it has none
    (a comment or a keep-alive)."""
    parts = []
    for line in event.split(b"\n"):
        if line.startswith(b"data:"):
            value = line[5:]
            parts.append(value[1:] if value.startswith(b" ") else value)
    return b"\n".join(parts) if parts else None
