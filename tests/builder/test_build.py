"""Real builds on the busybox base: published images, the step cache, failures and USER."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from formarket.builder.build import Builder, BuildError
from formarket.builder.build import BuildSettings as Settings
from tests.builder.conftest import TINY, Build, image_file, write_context

LAYERED = """\
NAME layered
FROM busybox
COPY ./app /srv/app
RUN echo one > /srv/one
ENV WHO=world
RUN echo "hello $WHO" > /srv/{name}
EXPOSE 8080
ENTRYPOINT ["sh", "/srv/app/run.sh"]
"""


def _layered(root: Path, name: str = "two") -> Path:
    return write_context(root, LAYERED.format(name=name), {"app/run.sh": "echo run\n"})


def test_the_tiny_formfile_is_published_with_its_manifest(build: Build, tmp_path: Path) -> None:
    formfile = write_context(tmp_path / "ctx", TINY, {"www/index.html": "<h1>hi</h1>\n"})
    result = build(formfile)
    image = result.image_dir
    assert image.name == result.manifest.build_id
    assert sorted(p.name for p in image.iterdir()) == [
        "build.log",
        "disk.qcow2",
        "initrd.img",
        "manifest.json",
        "vmlinuz",
    ]
    manifest = json.loads((image / "manifest.json").read_text())
    assert manifest["expose"] == [8080]
    assert manifest["entrypoint"] == ["httpd", "-f", "-p", "8080", "-h", "/srv/www"]
    assert manifest["disk_gib"] == 5
    assert manifest["base"] == "busybox"
    for artifact in manifest["artifacts"]:
        data = (image / artifact["name"]).read_bytes()
        assert artifact["size"] == len(data)
        assert artifact["sha256"] == hashlib.sha256(data).hexdigest()
    disk = result.manifest.artifact("disk")
    assert disk.virtual_size == 5 * 1024**3
    assert disk.size < 50 * 1024**2
    assert [s["name"] for s in manifest["steps"]][:4] == ["parse", "base", "context", "plan"]
    assert image_file(image, "/srv/www/index.html", tmp_path) == b"<h1>hi</h1>\n"
    env = image_file(image, "/etc/formfile/env", tmp_path) or b""
    assert b"GREETING='hello from a formfile'" in env
    entry = image_file(image, "/etc/formfile/entrypoint", tmp_path) or b""
    assert b"exec httpd -f -p 8080 -h /srv/www" in entry
    assert not any((tmp_path / "store" / "staging").iterdir())


def test_building_again_is_a_whole_build_cache_hit(build: Build, tmp_path: Path) -> None:
    formfile = write_context(tmp_path / "ctx", TINY, {"www/index.html": "x"})
    first = build(formfile)
    second = build(formfile)
    assert second.whole_build_cached
    assert not first.whole_build_cached
    assert second.manifest == first.manifest


def test_changing_only_the_last_run_reruns_only_that_step(build: Build, tmp_path: Path) -> None:
    first = build(_layered(tmp_path / "ctx"))
    second = build(_layered(tmp_path / "ctx", "three"))
    assert first.manifest.build_id != second.manifest.build_id
    ran = [s.name for s in second.manifest.steps if s.key and not s.cached]
    assert ran == ["04-run"]
    assert second.manifest.cache_hits == 4
    assert image_file(second.image_dir, "/srv/three", tmp_path) == b"hello world\n"
    assert image_file(second.image_dir, "/srv/two", tmp_path) is None


def test_without_the_step_cache_every_step_runs_and_the_id_is_the_same(
    build: Build, tmp_path: Path
) -> None:
    cached = build(_layered(tmp_path / "ctx"))
    fresh = build(_layered(tmp_path / "ctx"), step_cache=False, store=tmp_path / "other")
    assert fresh.manifest.build_id == cached.manifest.build_id
    assert fresh.manifest.cache_hits == 0
    assert all(not s.cached for s in fresh.manifest.steps)


def test_a_changed_copied_byte_changes_the_build_id(build: Build, tmp_path: Path) -> None:
    formfile = write_context(tmp_path / "ctx", TINY, {"www/index.html": "abc"})
    first = build(formfile)
    (tmp_path / "ctx" / "www" / "index.html").write_text("abd")
    assert build(formfile).manifest.build_id != first.manifest.build_id


def test_a_failing_run_leaves_nothing_that_looks_finished(build: Build, tmp_path: Path) -> None:
    formfile = write_context(
        tmp_path / "ctx", "NAME broken\nFROM busybox\nRUN echo about to fail; exit 3\n"
    )
    with pytest.raises(BuildError, match="status 3") as caught:
        build(formfile)
    store = tmp_path / "store"
    assert not (store / "images").exists() or not any((store / "images").iterdir())
    assert not any((store / "staging").iterdir())
    logs = list((store / "failed").iterdir())
    assert len(logs) == 1
    assert "about to fail" in logs[0].read_text()
    assert str(logs[0]) in caught.value.hint


def test_an_interrupted_build_publishes_nothing(settings: Settings, tmp_path: Path) -> None:
    formfile = write_context(tmp_path / "ctx", TINY, {"www/index.html": "x"})

    def progress(line: str) -> None:
        if line.strip().startswith("disk"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        Builder(settings, progress).build(formfile)
    assert not (tmp_path / "store" / "images").exists()
    assert not any((tmp_path / "store" / "staging").iterdir())


def test_copy_keeps_modes_and_links_and_never_writes_through_an_image_link(
    build: Build, tmp_path: Path
) -> None:
    host_dir = tmp_path / "host-only"
    host_dir.mkdir()
    recipe = (
        "NAME copier\nFROM busybox\n"
        f"RUN mkdir -p /srv && ln -s {host_dir} /srv/www && ln -s / /srv/root\n"
        "COPY ./www /srv/www\nCOPY ./www/run.sh /srv/root/bin/\n"
    )
    formfile = write_context(tmp_path / "ctx", recipe, {"www/run.sh": "echo hi\n"})
    (tmp_path / "ctx" / "www" / "run.sh").chmod(0o755)
    (tmp_path / "ctx" / "www" / "alias").symlink_to("run.sh")
    result = build(formfile)
    assert list(host_dir.iterdir()) == []
    assert image_file(result.image_dir, "/srv/www/run.sh", tmp_path) == b"echo hi\n"
    assert image_file(result.image_dir, "/bin/run.sh", tmp_path) == b"echo hi\n"
    raw = tmp_path / f"{result.image_dir.name}.raw"
    from formarket.process import Runner

    stat = Runner().run(["debugfs", "-R", "stat /srv/www/run.sh", raw]).stdout
    assert "Mode:  0755" in stat
    link = Runner().run(["debugfs", "-R", "stat /srv/www/alias", raw]).stdout
    assert 'Fast link dest: "run.sh"' in link
