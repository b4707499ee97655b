"""What a fresh farm knows, as plain constants: importing them costs nothing.

The farm's configuration (`builder/bases/`, the host inventory) has the last word; these are the
defaults and the names the document models accept.
"""

from __future__ import annotations

from typing import Literal, get_args

__all__ = ["DEFAULT_BASES", "DEFAULT_GPUS", "GpuModel"]

# Formation's list (RTX5090, H100, H200, B200) and the data-centre cards listings declare.
GpuModel = Literal["RTX5090", "H100", "H200", "B200", "L4", "L40S", "A100"]

DEFAULT_GPUS: frozenset[str] = frozenset(get_args(GpuModel))
DEFAULT_BASES: frozenset[str] = frozenset({"busybox", "debian:bookworm"})
