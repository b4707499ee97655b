"""Weights fetched at build time: from a real local HTTP server that the tests make play by
the rules or not, into the host's cache by digest, and onto a read-only data disk."""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from formarket.builder.weights import (
    Fetched,
    WeightCache,
    WeightsError,
    data_disk,
    disk_id,
    fetch,
)
from formarket.cli import main
from formarket.process import Runner
from formarket.schemas.listing import WeightFile
from tests.weightserver import Files, Plan


def _get(weight: WeightFile, cache: WeightCache) -> Path:
    return fetch(weight, cache, allow_private=True).path


def test_a_file_is_fetched_verified_and_kept_by_digest(files: Files, tmp_path: Path) -> None:
    body = os.urandom(300_000)
    weight = files.serve("/m/model.bin", Plan(body))
    cache = WeightCache(tmp_path)
    got = fetch(weight, cache, allow_private=True)
    assert got.path == cache.file(weight.sha256)
    assert got.path.read_bytes() == body
    assert got.downloaded == len(body)
    again = fetch(weight, cache, allow_private=True)
    assert again.downloaded == 0
    assert again.url is None
    assert len(files.requests) == 1


def test_a_broken_download_resumes_where_it_stopped(files: Files, tmp_path: Path) -> None:
    body = os.urandom(500_000)
    weight = files.serve("/m/a.bin", Plan(body, cut_after=[123_457]))
    cache = WeightCache(tmp_path)
    with pytest.raises(WeightsError, match="broke off"):
        _get(weight, cache)
    assert cache.partial(weight.sha256).stat().st_size == 123_457
    assert _get(weight, cache).read_bytes() == body
    assert files.requests[-1][1] == "bytes=123457-"
    assert files.sent == len(body)  # nothing fetched twice


def test_a_server_without_ranges_is_fetched_again_whole(files: Files, tmp_path: Path) -> None:
    body = os.urandom(200_000)
    weight = files.serve("/m/a.bin", Plan(body, ranges=False, cut_after=[50_000]))
    cache = WeightCache(tmp_path)
    with pytest.raises(WeightsError):
        _get(weight, cache)
    assert _get(weight, cache).read_bytes() == body


def test_a_wrong_hash_fails_with_both_digests_and_keeps_nothing(
    files: Files, tmp_path: Path
) -> None:
    weight = files.serve("/m/a.bin", Plan(b"the real bytes"))
    lying = weight.model_copy(update={"sha256": "ab" * 32})
    cache = WeightCache(tmp_path)
    with pytest.raises(WeightsError, match="wrong SHA-256") as caught:
        _get(lying, cache)
    assert weight.sha256 in caught.value.message
    assert "ab" * 32 in caught.value.message
    assert not cache.file(lying.sha256).exists()
    assert not cache.partial(lying.sha256).exists()


def test_mirrors_are_tried_in_order(files: Files, tmp_path: Path) -> None:
    body = b"weights" * 1000
    files.plans["/down.bin"] = Plan(body, status=503)
    files.plans["/bad.bin"] = Plan(b"x" * len(body))
    good = files.serve("/good.bin", Plan(body))
    weight = good.model_copy(
        update={"url": files.url + "/down.bin", "mirrors": (files.url + "/bad.bin", good.url)}
    )
    got = fetch(weight, WeightCache(tmp_path), allow_private=True)
    assert got.url == good.url
    assert [path for path, _ in files.requests] == ["/down.bin", "/bad.bin", "/good.bin"]


def test_every_url_failing_names_each_reason(files: Files, tmp_path: Path) -> None:
    weight = WeightFile(
        url=files.url + "/missing.bin",
        mirrors=("http://127.0.0.1:1/nothing-listens-here",),
        sha256="0" * 64,
        size_bytes=10,
    )
    with pytest.raises(WeightsError) as caught:
        _get(weight, WeightCache(tmp_path))
    message = caught.value.message
    assert "HTTP 404" in message
    assert "127.0.0.1:1" in message
    assert caught.value.hint


@pytest.mark.parametrize(
    "plan",
    [
        Plan(b"abc", extra=b"d" * 100_000, announce=-1),  # until it closes: more than declared
        Plan(b"abc", announce=10**9),  # announces more than declared
    ],
    ids=["sends-more", "announces-more"],
)
def test_no_more_than_the_declared_size_is_taken(files: Files, tmp_path: Path, plan: Plan) -> None:
    weight = files.serve("/m/a.bin", plan)
    cache = WeightCache(tmp_path)
    with pytest.raises(WeightsError, match=r"more|bytes"):
        _get(weight, cache)
    assert not cache.file(weight.sha256).exists()
    assert not cache.partial(weight.sha256).exists()


def test_a_file_over_the_hosts_limit_is_refused_before_fetching(
    files: Files, tmp_path: Path
) -> None:
    weight = files.serve("/m/a.bin", Plan(b"x" * 1000))
    with pytest.raises(WeightsError, match="more than this host fetches"):
        fetch(weight, WeightCache(tmp_path), allow_private=True, max_bytes=999)
    assert files.requests == []


def test_redirects_are_followed_a_few_times_only(files: Files, tmp_path: Path) -> None:
    body = b"behind a redirect"
    target = files.serve("/cdn/a.bin", Plan(body))
    files.plans["/a.bin"] = Plan(b"", redirect="/cdn/a.bin")
    weight = target.model_copy(update={"url": files.url + "/a.bin"})
    assert _get(weight, WeightCache(tmp_path)).read_bytes() == body
    files.plans["/loop"] = Plan(b"", redirect="/loop")
    looping = target.model_copy(update={"url": files.url + "/loop", "sha256": "1" * 64})
    with pytest.raises(WeightsError, match="redirects"):
        _get(looping, WeightCache(tmp_path / "other"))


def test_a_private_address_is_not_fetched_from_by_default(files: Files, tmp_path: Path) -> None:
    weight = files.serve("/m/a.bin", Plan(b"inside"))
    with pytest.raises(WeightsError, match="private network"):
        fetch(weight, WeightCache(tmp_path))
    assert files.requests == []


def test_two_builds_fetching_one_file_download_it_once(files: Files, tmp_path: Path) -> None:
    body = os.urandom(2_000_000)
    weight = files.serve("/m/a.bin", Plan(body))
    cache = WeightCache(tmp_path)
    results = []
    threads = [
        threading.Thread(target=lambda: results.append(_get(weight, cache))) for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 4
    assert files.sent == len(body)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    size=st.integers(1, 200_000),
    cuts=st.lists(st.floats(0, 1, exclude_max=True), max_size=4),
    ranges=st.booleans(),
)
def test_any_run_of_broken_downloads_ends_with_the_exact_file(
    files: Files,
    tmp_path_factory: pytest.TempPathFactory,
    size: int,
    cuts: list[float],
    ranges: bool,
) -> None:
    body = hashlib.sha256(str(size).encode()).digest() * (size // 32 + 1)
    body = body[:size]
    files.sent = 0
    points = [int(c * size) for c in cuts]
    weight = files.serve(f"/p/{size}-{len(cuts)}.bin", Plan(body, ranges=ranges, cut_after=points))
    cache = WeightCache(tmp_path_factory.mktemp("weights"))
    for _ in range(len(points)):
        try:
            _get(weight, cache)
        except WeightsError:
            continue
    assert _get(weight, cache).read_bytes() == body
    if ranges:
        assert files.sent == size  # each byte sent once, however often it broke off


def test_versions_that_share_weights_share_files_and_disks(files: Files, tmp_path: Path) -> None:
    if shutil.which("mke2fs") is None or shutil.which("debugfs") is None:
        pytest.skip("needs e2fsprogs (`make` installs it)")
    shared = files.serve("/w/shared.bin", Plan(os.urandom(100_000)))
    only_one = files.serve("/w/v1-head.bin", Plan(os.urandom(50_000)))
    only_two = files.serve("/w/v2-head.bin", Plan(os.urandom(60_000)))
    cache = WeightCache(tmp_path)
    runner = Runner()

    def get(weight: WeightFile) -> Fetched:
        return fetch(weight, cache, allow_private=True)

    one = data_disk([shared, only_one], cache, runner, fetch_one=get)
    two = data_disk([shared, only_two], cache, runner, fetch_one=get)
    again = data_disk([only_one, shared], cache, runner, fetch_one=get)
    assert one != two
    assert again == one  # the same set of files, in any order: the same disk
    assert [path for path, _ in files.requests].count("/w/shared.bin") == 1
    assert disk_id([shared, only_one]) == one.stem
    out = tmp_path / "read-back.bin"
    runner.run(["debugfs", "-R", f"dump /shared.bin {out}", one])
    assert out.read_bytes() == files.plans["/w/shared.bin"].body


def _fetched(weight: WeightFile) -> Fetched:
    raise AssertionError(f"{weight.url} was fetched; nothing should be")


def test_two_files_at_one_place_on_the_disk_are_refused(files: Files, tmp_path: Path) -> None:
    a = files.serve("/x/model.bin", Plan(b"a"))
    b = files.serve("/y/model.bin", Plan(b"b"))
    with pytest.raises(WeightsError, match="two weight files"):
        data_disk(
            [a, b],
            WeightCache(tmp_path),
            Runner(),
            fetch_one=lambda w: fetch(w, WeightCache(tmp_path)),
        )


def _registry_with(tmp_path: Path, weights: list[dict[str, object]]) -> Path:
    """A repository with one model listing (echo-chat's, with `weights`)."""
    source = Path(__file__).parents[2] / "registry/models/tinyforge/echo-chat/listing.yaml"
    data = yaml.safe_load(source.read_text())
    data["weights"] = weights
    folder = tmp_path / "repo/registry/models/tinyforge/echo-chat"
    folder.mkdir(parents=True)
    (folder / "listing.yaml").write_text(yaml.safe_dump(data))
    return tmp_path / "repo"


def test_the_command_fetches_checks_and_makes_the_disk(files: Files, tmp_path: Path) -> None:
    if shutil.which("mke2fs") is None:
        pytest.skip("needs e2fsprogs (`make` installs it)")
    weight = files.serve("/w/model.bin", Plan(os.urandom(70_000)))
    repo = _registry_with(tmp_path, [weight.model_dump(mode="json", exclude_defaults=True)])
    args = ["weights", "fetch", "tinyforge/echo-chat", "--repo", str(repo)]
    args += ["--cache", str(tmp_path / "cache"), "--allow-private"]
    first = CliRunner().invoke(main, args)
    assert first.exit_code == 0, first.output
    assert "fetched 70,000 bytes" in first.output
    assert "data disk:" in first.output
    second = CliRunner().invoke(main, args)
    assert second.exit_code == 0, second.output
    assert "in the cache" in second.output
    assert len(files.requests) == 1


def test_the_command_says_where_a_listing_is_wrong(tmp_path: Path) -> None:
    repo = _registry_with(tmp_path, [{"url": "ftp://x", "sha256": "0" * 64, "size_bytes": 1}])
    result = CliRunner().invoke(
        main, ["weights", "fetch", "tinyforge/echo-chat", "--repo", str(repo)]
    )
    assert result.exit_code != 0
    assert "listing.yaml:" in result.output
    assert "weights.0.url" in result.output
    assert "Traceback" not in result.output
