"""Reading a state file the farm keeps as one JSON object (written with `atomicfile`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TypeVar

__all__ = ["load_mapping"]

V = TypeVar("V")


def load_mapping(path: Path, kind: type[V]) -> dict[str, V]:
    """The entries of the JSON object in `path` whose values are of `kind`; empty when the
    file is missing or holds no object (a state file started afresh)."""
    try:
        data = json.loads(path.read_bytes())
    except (FileNotFoundError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, kind)}
