"""The farm builds a model with the weights its listing names: every file fetched once into the
build host's cache, versions that share a file share its download, the manifest names the
data disk, and a wrong digest fails the build saying which file and why."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from dulwich.repo import Repo

from formarket.builder.build import BuildError
from formarket.errors import InputError
from formarket.farm.building import build_listing
from formarket.farm.settings import FarmSettings
from formarket.market.writer import Identity, commit_changes
from formarket.schemas.listing import WeightFile
from tests.farm_queue.conftest import LISTING, MakeSettings, formfile, images
from tests.weightserver import Files, Plan, fetches, serving

pytestmark = pytest.mark.slow


@pytest.fixture
def files() -> Iterator[Files]:
    with serving() as server:
        yield server


def publish(settings: FarmSettings, version: str, weights: list[WeightFile], code: str) -> None:
    """Merge `version` of the listing, naming `weights`, with a Formfile that says `code`."""
    listing = {
        "id": LISTING,
        "kind": "model",
        "version": version,
        "weights": [w.model_dump(mode="json", exclude_defaults=True) for w in weights],
    }
    repo = Repo(str(settings.repo))
    commit_changes(
        repo,
        "main",
        {
            f"registry/models/{LISTING}/listing.yaml": yaml.safe_dump(listing).encode(),
            f"registry/models/{LISTING}/Formfile": formfile(0)
            .replace("ENTRYPOINT", f"ENV CODE={code}\nENTRYPOINT")
            .encode(),
        },
        f"{LISTING} {version}",
        Identity("t", "t@example.org"),
    )
    repo.close()


def test_two_versions_built_twice_fetch_each_weight_file_once(
    farm_settings: MakeSettings, files: Files
) -> None:
    settings = dataclasses.replace(farm_settings(None), weights_allow_private=True)
    shared = files.serve("/w/shared.safetensors", Plan(os.urandom(120_000)))
    first = files.serve("/w/first.safetensors", Plan(os.urandom(80_000)))
    second = files.serve("/w/second.safetensors", Plan(os.urandom(60_000)))

    publish(settings, "2.0.0", [shared, first], "one")
    one = build_listing(settings, LISTING, "2.0.0")
    assert build_listing(settings, LISTING, "2.0.0") == one  # built twice: the store answers
    publish(settings, "2.1.0", [shared, second], "two")
    steps: list[tuple[str, str]] = []
    two = build_listing(settings, LISTING, "2.1.0", lambda *step: steps.append(step))

    for name in ("shared", "first", "second"):
        assert fetches(files, f"/w/{name}.safetensors") == 1, name
    assert one.data_disk is not None
    assert two.data_disk is not None
    assert one.data_disk.files == ("first.safetensors", "shared.safetensors")
    assert two.data_disk.files == ("second.safetensors", "shared.safetensors")
    assert (settings.store / "disks" / f"{two.data_disk.id}.img").is_file()
    assert any(name == "weights" for name, _detail in steps)
    told = [f"{name} {detail}" for name, detail in steps]
    assert any(line.startswith("shared.safetensors") and "in the cache" in line for line in told)


def test_a_wrong_digest_fails_the_build_and_says_which_file(
    farm_settings: MakeSettings, files: Files
) -> None:
    settings = dataclasses.replace(farm_settings(None), weights_allow_private=True)
    good = files.serve("/w/model.bin", Plan(os.urandom(40_000)))
    publish(settings, "3.0.0", [good.model_copy(update={"sha256": "e" * 64})], "x")

    with pytest.raises(BuildError) as caught:
        build_listing(settings, LISTING, "3.0.0")

    assert "model.bin" in caught.value.message
    assert f"wrong SHA-256: {good.sha256}, not {'e' * 64}" in caught.value.message
    assert images(settings.store) == []


def test_a_private_address_is_not_fetched_unless_the_farm_allows_it(
    farm_settings: MakeSettings, files: Files
) -> None:
    settings = farm_settings(None)
    assert settings.weights_allow_private is False
    publish(settings, "4.0.0", [files.serve("/w/m.bin", Plan(b"m" * 1000))], "x")

    with pytest.raises(BuildError) as caught:
        build_listing(settings, LISTING, "4.0.0")

    assert "private network" in caught.value.message
    assert files.requests == []


def test_malformed_weights_are_an_error_at_their_place(farm_settings: MakeSettings) -> None:
    settings = farm_settings(None)
    repo = Repo(str(settings.repo))
    text = f"id: {LISTING}\nkind: model\nversion: 5.0.0\nweights: [{{url: ftp://x}}]\n"
    commit_changes(
        repo,
        "main",
        {f"registry/models/{LISTING}/listing.yaml": text.encode()},
        "bad weights",
        Identity("t", "t@example.org"),
    )
    repo.close()

    with pytest.raises(InputError) as caught:
        build_listing(settings, LISTING, "5.0.0")

    assert "listing.yaml: weights.0." in caught.value.message
    assert not Path(settings.store / "images").exists()
