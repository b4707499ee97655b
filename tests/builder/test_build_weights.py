"""A model's weights at build time: fetched once into the build host's cache, laid on a data
disk that versions with the same files share, named in the manifest and the build id, and
read by the VM at /weights."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from formarket.builder.build import Builder, BuildError, BuildSettings
from formarket.builder.vm import boot
from formarket.process import Runner
from formarket.schemas.listing import WeightFile
from tests.builder.conftest import write_context
from tests.weightserver import Files, Plan, fetches

SERVER = """\
NAME weights-reader
FROM busybox
VCPU 1
MEMORY 512
DISK 5
RUN echo {code} > /srv/code
EXPOSE 8080
ENTRYPOINT httpd -f -p 8080 -h /weights
"""


def builder(settings: BuildSettings, store: str = "store") -> Builder:
    return Builder(
        dataclasses.replace(
            settings, store=settings.store.parent / store, weights_allow_private=True
        )
    )


def formfile(tmp_path: Path, code: str) -> Path:
    return write_context(tmp_path / f"ctx-{code}", SERVER.format(code=code))


def test_two_versions_sharing_a_file_fetch_each_file_once(
    files: Files, settings: BuildSettings, tmp_path: Path
) -> None:
    shared = files.serve("/w/shared.bin", Plan(os.urandom(200_000)))
    first_only = files.serve("/w/first.bin", Plan(os.urandom(150_000)))
    second_only = files.serve("/w/second.bin", Plan(os.urandom(100_000)))
    code = formfile(tmp_path, "1")

    one = builder(settings).build(code, weights=(shared, first_only))
    # The second version changes the code and one file: only that file is fetched.
    two = builder(settings).build(formfile(tmp_path, "2"), weights=(shared, second_only))
    # The first version built again from scratch on this host (another store): nothing is.
    again = builder(settings, "other-store").build(code, weights=(shared, first_only))

    assert [fetches(files, f"/w/{name}.bin") for name in ("shared", "first", "second")] == [1] * 3
    assert one.manifest.data_disk is not None
    assert two.manifest.data_disk is not None
    assert one.manifest.data_disk.files == ("first.bin", "shared.bin")
    assert one.manifest.data_disk.id != two.manifest.data_disk.id
    assert again.manifest.build_id == one.manifest.build_id
    assert again.manifest.data_disk == one.manifest.data_disk  # the same disk, not made again
    disk = settings.store / "disks" / f"{one.manifest.data_disk.id}.img"
    assert disk.stat().st_size == one.manifest.data_disk.size
    assert "weights" in [step.name for step in one.manifest.steps]


def test_weights_are_part_of_the_build_id(
    files: Files, settings: BuildSettings, tmp_path: Path
) -> None:
    a = files.serve("/a.bin", Plan(b"a" * 5000))
    b = files.serve("/b.bin", Plan(b"b" * 5000))
    code = formfile(tmp_path, "1")

    plain = builder(settings).plan(code)
    with_a = builder(settings).plan(code, weights=(a,))
    with_b = builder(settings).plan(code, weights=(b,))

    assert len({plain.build_id, with_a.build_id, with_b.build_id}) == 3
    assert plain.plan.data_disk is None
    assert with_a.plan.data_disk is not None


def test_a_wrong_hash_fails_the_build_before_any_layer(
    files: Files, settings: BuildSettings, tmp_path: Path
) -> None:
    good = files.serve("/w/model.bin", Plan(os.urandom(50_000)))
    wrong = WeightFile(url=good.url, sha256="0" * 64, size_bytes=good.size_bytes)
    build = builder(settings)

    with pytest.raises(BuildError) as caught:
        build.build(formfile(tmp_path, "1"), weights=(wrong,))

    assert "model.bin" in caught.value.message
    assert f"wrong SHA-256: {good.sha256}, not {'0' * 64}" in caught.value.message
    assert not (settings.store / "images").exists()
    # The weights come first: no step of the Formfile ran.
    (log,) = (settings.store / "failed").glob("*.log")
    assert "== weights" in log.read_text()
    assert "-run:" not in log.read_text()


@pytest.mark.slow
def test_the_vm_reads_its_weights_at_slash_weights(
    files: Files, settings: BuildSettings, tmp_path: Path
) -> None:
    body = os.urandom(300_000)
    weight = files.serve("/w/model.safetensors", Plan(body))
    nested = files.serve("/w/tok.json", Plan(b'{"tokens": 3}')).model_copy(
        update={"path": "tokenizer/tok.json"}
    )
    result = builder(settings).build(formfile(tmp_path, "1"), weights=(weight, nested))
    assert result.manifest.data_disk is not None
    disk = settings.store / "disks" / f"{result.manifest.data_disk.id}.img"

    with boot(
        Runner(), result.image_dir, result.manifest, console=tmp_path / "console", data_disk=disk
    ) as vm:
        vm.wait_booted(timeout=120)
        assert vm.request(8080, "/model.safetensors", timeout=60) == body
        assert vm.request(8080, "/tokenizer/tok.json", timeout=60) == b'{"tokens": 3}'
