"""Placement: which host a deployment runs on. Pure and deterministic.

Best fit: a deployment goes to the host it fills most tightly (the least memory left over;
for GPU work, the fewest GPUs of its model left over), so that large slots stay free for large
deployments. Work without GPUs goes to hosts without GPUs while any fits, keeping GPU hosts for
GPU work. Ties go to the host whose name sorts first, so the same inputs always give the same
answer. A refusal says why in a sentence ("no host has 2 free H100").

On a host whose inventory lists its GPUs one by one, counting is not enough: a deployment
gets whole free IOMMU groups of its model (`devices.pick`), so the host fits only when such a
set exists among the devices its domains do not hold; `Placed` names the devices picked.

`Placer` keeps the free capacity of every host in sorted lists, so that placing 10,000
deployments on 500 hosts does not scan every host each time.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from formarket.farm.devices import pick
from formarket.farm.hosts import Host

__all__ = ["Need", "Placed", "Placer", "Refused", "Usage", "place"]


@dataclass(frozen=True, slots=True)
class Need:
    """What one deployment takes from a host."""

    vcpus: int
    memory_mib: int
    gpu_model: str | None = None
    gpu_count: int = 0

    def describe(self) -> str:
        gpus = f" and {self.gpu_count} {self.gpu_model}" if self.gpu_model else ""
        return f"{self.vcpus} vCPU, {self.memory_mib} MiB{gpus}"


@dataclass(frozen=True, slots=True)
class Usage:
    """What is already taken on a host."""

    vcpus: int = 0
    memory_mib: int = 0
    gpus: Mapping[str, int] = field(default_factory=dict)

    def plus(self, need: Need) -> Usage:
        gpus = dict(self.gpus)
        if need.gpu_model:
            gpus[need.gpu_model] = gpus.get(need.gpu_model, 0) + need.gpu_count
        return Usage(self.vcpus + need.vcpus, self.memory_mib + need.memory_mib, gpus)


@dataclass(frozen=True, slots=True)
class Placed:
    host: str
    devices: tuple[str, ...] = ()  # the GPUs picked on it, by key, when it lists them


@dataclass(frozen=True, slots=True)
class Refused:
    reason: str


@dataclass(slots=True)
class _Free:
    name: str
    vcpus: int
    memory_mib: int
    gpus: dict[str, int]
    has_gpus: bool


class Placer:
    """Places deployments one after another on a fixed set of hosts, counting what each takes."""

    def __init__(
        self,
        hosts: Sequence[Host],
        used: Mapping[str, Usage] | None = None,
        held: Mapping[str, Iterable[str]] | None = None,
    ) -> None:
        """`used`: what runs on each host; `held`: the devices (by key) its domains hold, or
        that cannot be given (found missing)."""
        used = used or {}
        self._held: dict[str, set[str]] = {name: set(keys) for name, keys in (held or {}).items()}
        self._free: dict[str, _Free] = {}
        self._hosts = {host.name: host for host in hosts}
        # (free memory, name) of hosts without GPUs and of hosts with them; and for each GPU
        # model, (free GPUs of that model, free memory, name).
        self._plain: list[tuple[int, str]] = []
        self._gpu_hosts: list[tuple[int, str]] = []
        self._by_gpu: dict[str, list[tuple[int, int, str]]] = {}
        for host in hosts:
            taken = used.get(host.name, Usage())
            free = _Free(
                host.name,
                host.vcpus - taken.vcpus,
                host.memory_mib - taken.memory_mib,
                {m: n - taken.gpus.get(m, 0) for m, n in host.gpus.items()},
                any(n > 0 for n in host.gpus.values()),
            )
            self._free[host.name] = free
            self._insert(free)

    def _keys(self, free: _Free) -> Iterable[tuple[list[tuple[int, str]], tuple[int, str]]]:
        yield (self._gpu_hosts if free.has_gpus else self._plain), (free.memory_mib, free.name)

    def _insert(self, free: _Free) -> None:
        for index, key in self._keys(free):
            bisect.insort(index, key)
        for model, count in free.gpus.items():
            bisect.insort(self._by_gpu.setdefault(model, []), (count, free.memory_mib, free.name))

    def _remove(self, free: _Free) -> None:
        for index, key in self._keys(free):
            del index[bisect.bisect_left(index, key)]
        for model, count in free.gpus.items():
            index3 = self._by_gpu[model]
            del index3[bisect.bisect_left(index3, (count, free.memory_mib, free.name))]

    def _fits(self, free: _Free, need: Need) -> bool:
        if free.vcpus < need.vcpus or free.memory_mib < need.memory_mib:
            return False
        if not need.gpu_model:
            return True
        return free.gpus.get(need.gpu_model, 0) >= need.gpu_count and (
            self._devices(free.name, need) is not None
        )

    def _devices(self, host: str, need: Need) -> tuple[str, ...] | None:
        """The devices `need` gets on `host` (none to name when it lists none)."""
        devices = self._hosts[host].devices
        if not devices or not need.gpu_model or need.gpu_count <= 0:
            return ()
        found = pick(devices, need.gpu_model, need.gpu_count, self._held.get(host, ()))
        return None if found is None else tuple(device.key for device in found)

    def _first_fit(self, index: list[tuple[int, str]], need: Need) -> _Free | None:
        # Sorted by free memory: the first host with enough memory (and vCPUs) fits tightest.
        for _memory, name in index[bisect.bisect_left(index, (need.memory_mib, "")) :]:
            free = self._free[name]
            if free.vcpus >= need.vcpus:
                return free
        return None

    def _choose(self, need: Need) -> _Free | None:
        if need.gpu_model:
            index = self._by_gpu.get(need.gpu_model, [])
            start = bisect.bisect_left(index, (need.gpu_count, need.memory_mib, ""))
            for _count, _memory, name in index[start:]:
                free = self._free[name]
                if self._fits(free, need):
                    return free
            return None
        return self._first_fit(self._plain, need) or self._first_fit(self._gpu_hosts, need)

    def place(self, need: Need) -> Placed | Refused:
        free = self._choose(need)
        if free is None:
            return Refused(self.explain(need))
        devices = self._devices(free.name, need) or ()
        self._held.setdefault(free.name, set()).update(devices)
        self.take(free.name, need)
        return Placed(free.name, devices)

    def take(self, host: str, need: Need) -> None:
        """Count `need` as running on `host` (placed here or found running there)."""
        free = self._free[host]
        self._remove(free)
        free.vcpus -= need.vcpus
        free.memory_mib -= need.memory_mib
        if need.gpu_model:
            free.gpus[need.gpu_model] = free.gpus.get(need.gpu_model, 0) - need.gpu_count
        self._insert(free)

    def release(self, host: str, need: Need) -> None:
        """Give back what `need` took on `host` (a deployment stopped there)."""
        self.take(host, Need(-need.vcpus, -need.memory_mib, need.gpu_model, -need.gpu_count))

    def explain(self, need: Need) -> str:
        """Why nothing fits, in a sentence that names what is short."""
        frees = sorted(self._free.values(), key=lambda f: f.name)
        if not frees:
            return "the host inventory is empty"
        if need.gpu_model:
            with_model = [f for f in frees if need.gpu_model in f.gpus]
            if not with_model:
                return f"no host has {need.gpu_model} GPUs"
            most = max(with_model, key=lambda f: (f.gpus[need.gpu_model or ""], f.name))
            if most.gpus[need.gpu_model] < need.gpu_count:
                return (
                    f"no host has {need.gpu_count} free {need.gpu_model} (the most free on one"
                    f" host: {max(most.gpus[need.gpu_model], 0)}, on {most.name})"
                )
            frees = [f for f in with_model if f.gpus[need.gpu_model] >= need.gpu_count]
            whole = [f for f in frees if self._devices(f.name, need) is not None]
            if not whole:
                return (
                    f"no host has {need.gpu_count} free {need.gpu_model} in whole IOMMU groups"
                    " (a group is given to one VM, and some of each are held or missing)"
                )
            frees = whole
            where = f" of the hosts with {need.gpu_count} free {need.gpu_model}"
        else:
            where = ""
        largest = max(self._hosts[f.name].memory_mib for f in frees)
        cores = max(self._hosts[f.name].vcpus for f in frees)
        if need.memory_mib > largest or need.vcpus > cores:
            return (
                f"no host{where} is large enough for {need.vcpus} vCPU and {need.memory_mib} MiB"
                f" (the largest has {cores} vCPU and {largest} MiB)"
            )
        # The host that comes closest on both counts, to show how far off the request is.
        best = max(
            frees,
            key=lambda f: (
                min(f.vcpus / max(need.vcpus, 1), 1.0)
                + min(f.memory_mib / max(need.memory_mib, 1), 1.0),
                f.name,
            ),
        )
        return (
            f"no host{where} has {need.vcpus} vCPU and {need.memory_mib} MiB free now (the"
            f" most free: {best.name} with {max(best.vcpus, 0)} vCPU and"
            f" {max(best.memory_mib, 0)} MiB)"
        )


def place(
    need: Need, hosts: Sequence[Host], used: Mapping[str, Usage] | None = None
) -> Placed | Refused:
    """Where one deployment goes, given what is already taken on each host."""
    return Placer(hosts, used).place(need)
