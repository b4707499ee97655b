"""Usage events and files as a collector writes them, for the tests of everything that reads
usage: events as dicts, their lines, gzip files of lines, usage file paths."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable, Mapping
from typing import Any


def call(
    ident: str,
    *,
    model: tuple[str, str] | None = None,
    agent: tuple[str, str] | None = None,
    time: str = "2026-03-10T12:00:00Z",
    source: str = "gateway/gw-1",
    input_tokens: int = 100,
    output_tokens: int = 50,
    requests: int = 1,
    outcome: str = "ok",
    **extra: Any,
) -> dict[str, Any]:
    event: dict[str, Any] = {
        "specversion": "1.0",
        "id": ident,
        "source": source,
        "type": "dev.formarket.usage.call",
        "time": time,
        "subject": "dep-1",
        "datacontenttype": "application/json",
        "data": {
            "account": "acct-1",
            "agent": {"id": agent[0], "version": agent[1]} if agent else None,
            "model": {"id": model[0], "version": model[1]} if model else None,
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "requests": requests,
            "duration_ms": 120,
            "outcome": outcome,
            "tokens_source": "upstream",
            "instance_seconds": 0,
        },
    }
    event.update(extra)
    return event


def hours(ident: str, *, model: tuple[str, str], seconds: int, time: str) -> dict[str, Any]:
    event = call(ident, model=model, time=time, source="farm/meter-1")
    event["type"] = "dev.formarket.usage.instance-hours"
    event["data"].update(
        input_tokens=0, output_tokens=0, requests=0, duration_ms=0, instance_seconds=seconds
    )
    return event


def line(event: Mapping[str, Any]) -> bytes:
    return json.dumps(event, separators=(",", ":")).encode()


def gz(lines: Iterable[bytes]) -> bytes:
    return gzip.compress(b"".join(item + b"\n" for item in lines), mtime=0)


def usage_file(day: str, source: str = "gateway/gw-1", seq: int = 1) -> str:
    return f"registry/usage/{day.replace('-', '/')}/{source}-{seq:06d}.jsonl.gz"
