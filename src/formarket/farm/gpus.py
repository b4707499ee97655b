"""Which GPUs a deployment's domain gets on its host, and the devices found missing there.

Placement chose the host by counting free devices of the model (`placement.Placer`, told
which devices the host's domains hold); starting picks the very devices the same way
(`devices.pick`), from what the host's domains hold at that moment, and checks that libvirt
still sees each one. A host whose inventory lists no devices (GPUs only counted) passes none.

A device listed in the inventory but gone from the host (it fell off the bus, or was taken
for something else) fails the start with `DeviceMissing`, naming it. The deploy task records
it in the farm's state (`missing-devices.json`); for the next `MISSING_SECONDS` the reconciler
counts it as held, so the deployment is placed again on devices that are there, on this host
or another. After that it is tried again, in case it came back.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

from formarket.atomicfile import write_atomically
from formarket.errors import FormarketError
from formarket.farm.devices import GpuDevice, pick
from formarket.farm.hosts import Host
from formarket.schemas.deployment import Deployment

__all__ = [
    "MISSING_SECONDS",
    "DeviceMissing",
    "NoFreeDevices",
    "choose",
    "missing_devices",
    "remember_missing",
]

MISSING_SECONDS = 600.0


class NoFreeDevices(FormarketError):
    """Every device of the model on the host is held (placement raced another start)."""


class DeviceMissing(FormarketError):
    """A device the inventory lists is not on the host."""

    def __init__(self, host: str, devices: tuple[GpuDevice, ...]) -> None:
        names = ", ".join(f"{d.model} at {d.key}" for d in devices)
        super().__init__(
            f"host {host}: the GPU device(s) {names} are listed in the host inventory but"
            " libvirt does not see them on the host",
            hint="the deployment is placed again without them; check the host (`virsh"
            " nodedev-list --cap pci`, docs/gpu-host-check.sh) and its inventory entry",
        )
        self.host = host
        self.devices = devices


def choose(
    host: Host, deployment: Deployment, held: Iterable[str], present: Iterable[str]
) -> tuple[GpuDevice, ...]:
    """The devices `deployment` gets on `host`: none of those `held` by other domains, each
    among the host's node devices `present`."""
    gpu = deployment.size.gpu
    if gpu is None or not host.devices:
        return ()
    chosen = pick(host.devices, gpu.model, gpu.count, held)
    if chosen is None:
        raise NoFreeDevices(
            f"host {host.name}: no {gpu.count} free {gpu.model} device(s) for {deployment.id}"
            " (the others' domains hold them)",
            hint="the deployment is placed again on the next reconcile cycle",
        )
    names = list(present)
    missing = tuple(device for device in chosen if not device.present_in(names))
    if missing:
        raise DeviceMissing(host.name, missing)
    return chosen


def _read(path: Path) -> dict[str, dict[str, float]]:
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {
        str(host): {str(k): float(v) for k, v in keys.items() if isinstance(v, int | float)}
        for host, keys in data.items()
        if isinstance(keys, dict)
    }


def remember_missing(path: Path, error: DeviceMissing, now: float | None = None) -> None:
    """Note the devices `error` found missing, at `now`, for the reconciler."""
    when = time.time() if now is None else now
    data = _read(path)
    for device in error.devices:
        data.setdefault(error.host, {})[device.key] = when
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, json.dumps(data, sort_keys=True).encode(), mode=0o644)


def missing_devices(path: Path, now: float | None = None) -> Mapping[str, frozenset[str]]:
    """Devices found missing in the last MISSING_SECONDS, by host."""
    when = time.time() if now is None else now
    return {
        host: frozenset(k for k, seen in keys.items() if when - seen < MISSING_SECONDS)
        for host, keys in _read(path).items()
    }
