"""build_listing without a queue: a version read as the commit that published it had it,
exactly once per build id."""

from __future__ import annotations

from pathlib import Path

import pytest

from formarket.errors import NotFoundError, UsageError
from formarket.farm.building import build_listing, build_lock
from formarket.farm.errors import BuildBusy
from tests.farm_queue.conftest import (
    LISTING,
    VERSION,
    MakeSettings,
    bump_version,
    images,
    markers,
)


def test_a_version_never_published_is_not_built(farm_settings: MakeSettings) -> None:
    settings = farm_settings(None)
    with pytest.raises(NotFoundError) as caught:
        build_listing(settings, LISTING, "0.9.0")
    assert VERSION in caught.value.message  # it says which versions are buildable
    assert not images(settings.store)


def test_unknown_and_malformed_listings_are_refused(farm_settings: MakeSettings) -> None:
    settings = farm_settings(None)
    with pytest.raises(NotFoundError):
        build_listing(settings, "testpub/nothing-here", VERSION)
    with pytest.raises(UsageError):
        build_listing(settings, "../../etc", VERSION)


def test_a_held_lock_makes_a_second_builder_busy(tmp_path: Path) -> None:
    with build_lock(tmp_path, "abc"):
        with pytest.raises(BuildBusy), build_lock(tmp_path, "abc", wait=False):
            pass
        with build_lock(tmp_path, "other", wait=False):
            pass
    with build_lock(tmp_path, "abc", wait=False):
        pass


@pytest.mark.slow
def test_built_once_then_answered_from_the_store(farm_settings: MakeSettings) -> None:
    settings = farm_settings(None, seconds=0.1)
    steps: list[str] = []
    first = build_listing(settings, LISTING, VERSION, lambda step, _detail: steps.append(step))
    assert {"export", "parse", "02-run", "disk"} <= set(steps)
    assert [path.name for path in images(settings.store)] == [first.build_id]
    steps.clear()
    again = build_listing(settings, LISTING, VERSION, lambda step, _detail: steps.append(step))
    assert again == first
    assert steps == ["export", "cached"]
    assert len(markers(settings.cache)) == 1
    # A merged new version does not retire the old one: it is read from the commit that
    # published it, so it is the same build, answered from the store.
    bump_version(settings.repo, "1.1.0")
    steps.clear()
    old = build_listing(settings, LISTING, VERSION, lambda step, _detail: steps.append(step))
    assert old.build_id == first.build_id
    assert steps == ["export", "cached"]
    with pytest.raises(NotFoundError) as caught:
        build_listing(settings, LISTING, "2.0.0")
    assert caught.value.message.endswith("1.0.0, 1.1.0")
