"""The demo's build step: build a starter busybox listing, boot it, call it, stop it.

`formarket demo` calls `demo_build` with the scratch marketplace repository; it prints what
happens through `echo` and returns the build manifest.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from formarket.builder.bases import find_bases_dir
from formarket.builder.build import Builder, BuildSettings
from formarket.builder.manifest import BuildManifest
from formarket.builder.vm import boot
from formarket.errors import NotFoundError
from formarket.process import Runner

__all__ = ["DEMO_LISTING", "demo_build"]

Echo = Callable[[str], None]
DEMO_LISTING = "tinyforge/echo-chat"
_QUESTION = "Is the marketplace working?"


def demo_build(repo_path: Path, store: Path, echo: Echo) -> BuildManifest:
    """Build DEMO_LISTING from `repo_path`, boot it under qemu (TCG), ask it a question."""
    folder = repo_path / "registry" / "models" / DEMO_LISTING
    if not (folder / "Formfile").is_file():
        raise NotFoundError(
            f"{folder}/Formfile is missing", hint="the demo builds a starter listing"
        )
    bases = repo_path / "builder" / "bases"
    settings = BuildSettings(
        store=store,
        cache=store / "cache",
        bases_dir=bases if bases.is_dir() else find_bases_dir(repo_path),
    )
    echo(f"formarket build {DEMO_LISTING}")
    result = Builder(settings, lambda line: echo(line)).build(folder / "Formfile")
    manifest = result.manifest
    disk = manifest.artifact("disk")
    echo(
        f"image {manifest.build_id[:16]}: {disk.size / 1e6:.1f} MB qcow2 in {result.seconds:.2f}s"
        f" ({'cache hit' if result.whole_build_cached else 'built'})"
    )
    echo("booting it under qemu (TCG, direct kernel boot, port forwarded on 127.0.0.1)")
    with boot(Runner(), result.image_dir, manifest) as vm:
        booted = vm.wait_booted()
        port = manifest.expose[0]
        echo(f"booted in {booted:.1f}s; service on 127.0.0.1:{vm.ports[port]}")
        request = {"model": DEMO_LISTING, "messages": [{"role": "user", "content": _QUESTION}]}
        echo(f"POST /v1/chat/completions  {_QUESTION!r}")
        raw = vm.request(port, "/v1/chat/completions", body=json.dumps(request).encode())
        answer = json.loads(raw)["choices"][0]["message"]["content"]
        echo(f"answer: {answer}")
    echo("the VM is stopped")
    return manifest
