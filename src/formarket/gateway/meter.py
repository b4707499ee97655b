"""The gateway's door to the spool: record an event, keep the spool durable, seal segments.

An event is written to the kernel before the call's answer is finished, so a gateway killed at
any point has lost no event of a call it answered. How soon it is also on disk (fsync) is the
operator's choice, `fsync_interval`:

- above 0 (the default, 50 ms): a background task syncs that often, so a power loss loses at
  most that much; a call waits for nothing (an fsync costs milliseconds on ordinary disks,
  more than everything else the gateway does for a call);
- 0: each call waits for a sync that covers its event before it is answered (one fsync serves
  every call that arrived meanwhile).

The same task seals a segment once it is old or large enough, so the flusher can take it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from formarket.usage.spool import SpoolError, SpoolWriter

__all__ = ["Meter"]

_log = logging.getLogger("formarket.gateway")


class Meter:
    def __init__(self, writer: SpoolWriter, source: str, *, fsync_interval: float = 0.05) -> None:
        self.writer = writer
        self.source = source
        self.fsync_interval = fsync_interval
        self.error: SpoolError | None = None
        self._synced = 0
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def next_id(self) -> str:
        return self.writer.ids()

    async def record(self, payload: bytes) -> None:
        """Write one event; with `fsync_interval` 0, also wait until it is on disk. Raises
        SpoolError when the spool cannot take it: the caller must not serve the call."""
        if self.error is not None:
            raise self.error
        ticket = self.writer.append(payload)
        if self.fsync_interval > 0:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append((ticket, waiter))
        self._wake.set()
        await waiter

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="spool-syncer")

    async def stop(self) -> None:
        """Sync and seal what is open; the spool is complete for the flusher afterwards."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        fd = self.writer.detach()
        await asyncio.to_thread(self.writer.seal, fd)
        self._release(self.writer.written)

    async def _run(self) -> None:
        while True:
            if self.fsync_interval > 0:
                await asyncio.sleep(self.fsync_interval)
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.writer.segment_seconds)
                self._wake.clear()
            try:
                await self._sync_once()
            except SpoolError as exc:
                # Calls are refused from now on rather than served unmetered.
                _log.error("metering stopped: %s", exc)
                self.error = exc
                self._fail(exc)
                return

    async def _sync_once(self) -> None:
        # Only this task closes descriptors, so `fd` stays open while the thread syncs it.
        fd = self.writer.current()
        target = self.writer.written
        if target > self._synced:
            await asyncio.to_thread(self.writer.sync, fd)
            self._release(target)
        if self.writer.due():
            await asyncio.to_thread(self.writer.seal, self.writer.detach())

    def _release(self, target: int) -> None:
        self._synced = max(self._synced, target)
        keep = []
        for ticket, waiter in self._waiters:
            if ticket <= self._synced:
                if not waiter.done():
                    waiter.set_result(None)
            else:
                keep.append((ticket, waiter))
        self._waiters = keep

    def _fail(self, exc: SpoolError) -> None:
        for _, waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(exc)
        self._waiters = []
