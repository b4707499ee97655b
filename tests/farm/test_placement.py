"""Placement: never over capacity, tightest fit, GPU hosts kept for GPU work, clear refusals."""

from __future__ import annotations

from collections.abc import Sequence

from hypothesis import given, settings
from hypothesis import strategies as st

from formarket.farm.hosts import Host
from formarket.farm.placement import Need, Placed, Placer, Refused, Usage, place


def host(name: str, vcpus: int, memory: int, **gpus: int) -> Host:
    return Host(name=name, uri=f"test:///{name}.xml", vcpus=vcpus, memory_mib=memory, gpus=gpus)


def test_the_tightest_fit_wins_and_keeps_the_large_host_free() -> None:
    hosts = [host("big", 64, 262144), host("small", 4, 8192)]
    assert place(Need(2, 4096), hosts) == Placed("small")
    assert place(Need(8, 4096), hosts) == Placed("big")


def test_work_without_gpus_stays_off_gpu_hosts_while_others_fit() -> None:
    hosts = [host("gpu", 32, 131072, H100=4), host("cpu", 8, 16384)]
    assert place(Need(4, 8192), hosts) == Placed("cpu")
    assert place(Need(4, 8192), hosts, {"cpu": Usage(8, 16384)}) == Placed("gpu")
    assert place(Need(4, 8192, "H100", 2), hosts) == Placed("gpu")


def test_refusals_name_what_is_short() -> None:
    hosts = [host("a", 16, 65536, H100=1), host("b", 16, 65536)]
    assert place(Need(1, 1024, "H100", 2), hosts) == Refused(
        "no host has 2 free H100 (the most free on one host: 1, on a)"
    )
    assert place(Need(1, 1024, "B200", 1), hosts) == Refused("no host has B200 GPUs")
    refused = place(Need(64, 1024), hosts)
    assert isinstance(refused, Refused)
    assert "the largest has 16 vCPU" in refused.reason
    full = place(Need(8, 4096), hosts, {"a": Usage(12, 0), "b": Usage(10, 0)})
    assert isinstance(full, Refused)
    assert full.reason.startswith("no host has 8 vCPU and 4096 MiB free now")
    assert place(Need(1, 1), []) == Refused("the host inventory is empty")


def test_release_gives_the_room_back() -> None:
    placer = Placer([host("a", 2, 2048)])
    assert placer.place(Need(2, 2048)) == Placed("a")
    assert isinstance(placer.place(Need(1, 512)), Refused)
    placer.release("a", Need(2, 2048))
    assert placer.place(Need(1, 512)) == Placed("a")


hosts_strategy = st.lists(
    st.builds(
        lambda i, v, m, g: host(f"h{i}", v, m, **({"H100": g} if g else {})),
        st.integers(0, 10_000),
        st.integers(1, 64),
        st.integers(512, 65536),
        st.integers(0, 8),
    ),
    min_size=0,
    max_size=12,
    unique_by=lambda h: h.name,
)
needs_strategy = st.lists(
    st.builds(
        lambda v, m, g: Need(v, m, "H100" if g else None, g),
        st.integers(1, 32),
        st.integers(128, 32768),
        st.integers(0, 4),
    ),
    max_size=60,
)


def _fits(h: Host, taken: Usage, need: Need) -> bool:
    if taken.vcpus + need.vcpus > h.vcpus or taken.memory_mib + need.memory_mib > h.memory_mib:
        return False
    if need.gpu_model:
        return taken.gpus.get(need.gpu_model, 0) + need.gpu_count <= h.gpus.get(need.gpu_model, 0)
    return True


@settings(max_examples=150, deadline=None)
@given(hosts_strategy, needs_strategy)
def test_never_over_capacity_and_refuses_only_when_nothing_fits(
    hosts: Sequence[Host], needs: Sequence[Need]
) -> None:
    placer = Placer(hosts)
    taken = {h.name: Usage() for h in hosts}
    by_name = {h.name: h for h in hosts}
    for need in needs:
        result = placer.place(need)
        if isinstance(result, Placed):
            assert _fits(by_name[result.host], taken[result.host], need)
            taken[result.host] = taken[result.host].plus(need)
        else:
            assert not any(_fits(h, taken[h.name], need) for h in hosts), result.reason
            assert result.reason
    # The same inputs give the same answers.
    again = Placer(hosts)
    replay = [again.place(n) for n in needs]
    first = Placer(hosts)
    assert replay == [first.place(n) for n in needs]
