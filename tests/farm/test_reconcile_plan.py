"""The reconcile plan, as a pure function of git's desired state and libvirt's domains."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from formarket.farm.hosts import Host
from formarket.farm.reconcile import Build, Deploy, Domain, Stop, plan
from tests.farm.factories import deployment

HOSTS = [
    Host(name="a", uri="test:///a.xml", vcpus=4, memory_mib=4096),
    Host(name="b", uri="test:///b.xml", vcpus=4, memory_mib=4096),
]
IMAGE = {("tinyforge/echo-chat", "1.0.0"): True, ("tinyforge/faq-bot", "1.0.0"): True}


def test_a_new_deployment_is_built_first_then_placed() -> None:
    desired = {"dep-1": deployment("dep-1")}
    first = plan(desired, [], HOSTS, frozenset(), {})
    assert first.builds == (Build("tinyforge/echo-chat", "1.0.0"),)
    assert not first.deploys
    assert "waiting for the image" in first.waiting["dep-1"]
    second = plan(desired, [], HOSTS, frozenset(), IMAGE)
    assert second.deploys == (Deploy("dep-1", "a", "it has no domain on a host that answers"),)
    third = plan(desired, [Domain("dep-1", "a", True)], HOSTS, frozenset(), IMAGE)
    assert third.idle
    assert set(third.running) == {"dep-1"}


def test_stopped_and_unknown_domains_are_stopped() -> None:
    desired = {"dep-1": deployment("dep-1", state="stopped")}
    result = plan(
        desired, [Domain("dep-1", "a", True), Domain("dep-9", "b", True)], HOSTS, frozenset(), IMAGE
    )
    assert result.stops == (
        Stop("dep-1", "a", "it is stopped in git"),
        Stop("dep-9", "b", "it is not in git"),
    )


def test_a_deployment_on_a_dead_host_is_placed_again_elsewhere() -> None:
    desired = {"dep-1": deployment("dep-1")}
    # Host a does not answer, so its domains are not reported.
    result = plan(desired, [], HOSTS, frozenset({"a"}), IMAGE)
    assert result.deploys == (Deploy("dep-1", "b", "it has no domain on a host that answers"),)
    # When a comes back, the duplicate is stopped and the running one kept.
    back = plan(
        desired, [Domain("dep-1", "a", True), Domain("dep-1", "b", True)], HOSTS, frozenset(), IMAGE
    )
    assert back.stops == (Stop("dep-1", "b", "it also runs on a"),)


def test_a_crashed_domain_is_deployed_again_where_it_is() -> None:
    desired = {"dep-1": deployment("dep-1")}
    result = plan(desired, [Domain("dep-1", "b", False)], HOSTS, frozenset(), IMAGE)
    assert result.deploys == (Deploy("dep-1", "b", "its domain is not running"),)


def test_an_agent_waits_for_its_model() -> None:
    desired = {
        "dep-m": deployment("dep-m"),
        "dep-a": deployment(
            "dep-a", kind="agent", listing="tinyforge/faq-bot", model_deployment="dep-m"
        ),
    }
    first = plan(desired, [], HOSTS, frozenset(), IMAGE)
    assert [d.deployment for d in first.deploys] == ["dep-m"]
    assert first.waiting["dep-a"] == "waiting for its model deployment dep-m"
    second = plan(desired, [Domain("dep-m", "a", True)], HOSTS, frozenset(), IMAGE)
    assert [d.deployment for d in second.deploys] == ["dep-a"]
    orphan = plan({"dep-a": desired["dep-a"]}, [], HOSTS, frozenset(), IMAGE)
    assert "is not running in git" in orphan.refused["dep-a"]


def test_work_in_flight_is_not_handed_out_twice_but_takes_its_room() -> None:
    desired = {
        "dep-1": deployment("dep-1", vcpus=4, memory_mib=4096),
        "dep-2": deployment("dep-2", vcpus=4, memory_mib=4096),
    }
    result = plan(desired, [], HOSTS, frozenset(), IMAGE, {"deploy:dep-1": "a"})
    assert result.deploys == (Deploy("dep-2", "b", "it has no domain on a host that answers"),)
    assert result.waiting["dep-1"] == "being deployed"
    building = plan(desired, [], HOSTS, frozenset(), {}, {"build:tinyforge/echo-chat@1.0.0": ""})
    assert building.builds == ()


def test_what_does_not_fit_is_refused_with_the_reason() -> None:
    desired = {"dep-1": deployment("dep-1", vcpus=8)}
    result = plan(desired, [], HOSTS, frozenset(), IMAGE)
    assert "no host is large enough" in result.refused["dep-1"]


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.tuples(st.integers(1, 3), st.integers(256, 3000), st.booleans()), max_size=30),
    st.sets(st.sampled_from(["a", "b"])),
)
def test_placing_the_plan_never_overfills_a_host(
    sizes: list[tuple[int, int, bool]], down: set[str]
) -> None:
    desired = {
        f"dep-{i}": deployment(
            f"dep-{i}", vcpus=v, memory_mib=m, state="running" if r else "stopped"
        )
        for i, (v, m, r) in enumerate(sizes)
    }
    domains: list[Domain] = []
    for _ in range(3):  # cycles: each applies the last plan
        result = plan(desired, domains, HOSTS, frozenset(down), IMAGE)
        stopped = {(s.deployment, s.host) for s in result.stops}
        domains = [d for d in domains if (d.deployment, d.host) not in stopped]
        domains += [Domain(d.deployment, d.host, True) for d in result.deploys]
        for host in HOSTS:
            mine = [desired[d.deployment] for d in domains if d.host == host.name]
            assert sum(d.size.vcpus for d in mine) <= host.vcpus
            assert sum(d.size.memory_mib for d in mine) <= host.memory_mib
            assert host.name not in down or not any(d.host == host.name for d in result.deploys)
    assert all(desired[d.deployment].state == "running" for d in domains)


def test_an_agent_is_started_again_only_when_the_gateway_it_calls_through_moved() -> None:
    desired = {
        "dep-m": deployment("dep-m"),
        "dep-a": deployment(
            "dep-a", kind="agent", listing="tinyforge/faq-bot", model_deployment="dep-m"
        ),
    }
    gateway = "http://127.0.0.1:8080"
    agent = Domain("dep-a", "a", True, model_endpoint=gateway)
    # The model moved to another host: the gateway routes there, the agent is left alone.
    model_on_b = Domain("dep-m", "b", True, endpoint="http://127.0.0.1:4100")
    assert plan(desired, [model_on_b, agent], HOSTS, frozenset(), IMAGE, gateway=gateway).idle
    # The gateway moved: the agent's VM is made again, forwarded to the new one.
    moved = plan(
        desired, [model_on_b, agent], HOSTS, frozenset(), IMAGE, gateway="http://10.0.0.9:8080"
    )
    why = "its model calls must go to the gateway at http://10.0.0.9:8080"
    assert moved.deploys == (Deploy("dep-a", "a", why),)
    # An agent started before agents called through the gateway is made again too.
    old = Domain("dep-a", "a", True, model_endpoint="http://10.0.2.2:4000")
    again = plan(desired, [model_on_b, old], HOSTS, frozenset(), IMAGE, gateway=gateway)
    assert [d.deployment for d in again.deploys] == ["dep-a"]
