"""The reconcile plan of an upgrade: a running VM of another version than git's is upgraded on
its host once the new image exists; a failed upgrade is not tried again; while an upgrade is
in flight its two VMs are left alone; a leftover second VM is stopped by its slot."""

from __future__ import annotations

from formarket.farm.reconcile import Build, Deploy, Domain, Stop, plan
from tests.farm.factories import deployment
from tests.farm.test_reconcile_plan import HOSTS

BOTH = {("tinyforge/echo-chat", "1.0.0"): True, ("tinyforge/echo-chat", "1.1.0"): True}
OLD = Domain("dep-1", "b", True, version="1.0.0")
NEW = Domain("dep-1", "b", True, version="1.1.0", slot=1)


def test_a_running_older_version_is_built_then_upgraded_where_it_runs() -> None:
    desired = {"dep-1": deployment("dep-1", version="1.1.0")}
    first = plan(desired, [OLD], HOSTS, frozenset(), {("tinyforge/echo-chat", "1.0.0"): True})
    assert first.builds == (Build("tinyforge/echo-chat", "1.1.0"),)
    assert not first.deploys
    assert first.running["dep-1"] == OLD  # it serves while the image is built
    second = plan(desired, [OLD], HOSTS, frozenset(), BOTH)
    assert second.deploys == (Deploy("dep-1", "b", "upgrade from 1.0.0 to 1.1.0"),)
    assert not second.stops


def test_a_failed_upgrade_waits_and_the_old_version_serves_on() -> None:
    desired = {"dep-1": deployment("dep-1", version="1.1.0")}
    result = plan(desired, [OLD], HOSTS, frozenset(), BOTH, failed_upgrades={"dep-1": "1.1.0"})
    assert result.idle
    assert "failed" in result.waiting["dep-1"]
    assert result.running["dep-1"] == OLD
    # Another version asked for is tried.
    other = {"dep-1": deployment("dep-1", version="1.1.0")}
    again = plan(other, [OLD], HOSTS, frozenset(), BOTH, failed_upgrades={"dep-1": "1.2.0"})
    assert again.deploys


def test_two_vms_of_one_deployment_are_left_alone_while_it_is_upgraded() -> None:
    desired = {"dep-1": deployment("dep-1", version="1.1.0")}
    busy = plan(desired, [OLD, NEW], HOSTS, frozenset(), BOTH, {"deploy:dep-1": "b"})
    assert busy.idle
    # Once no upgrade is in flight, the VM of the version git does not want goes, by slot.
    left = plan(desired, [OLD, NEW], HOSTS, frozenset(), BOTH)
    assert left.stops == (Stop("dep-1", "b", "it also runs in slot 1", 0),)
    assert left.running["dep-1"] == NEW
    assert left.stops[0].key == "stop:dep-1@b/0"
