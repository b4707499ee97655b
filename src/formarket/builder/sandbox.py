"""Running a build step in isolation from the build host.

Each step runs in new mount, pid, uts and ipc namespaces (and a new, empty network namespace
unless it installs packages), through `sandbox_init.py` as the namespace's first process: see
that module for what it mounts and drops. The step's writes land in its own overlayfs upper
folder, which becomes the step's cached layer.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from formarket.builder.plan import Command, CopyItem
from formarket.process import Runner

__all__ = ["POLICY_RC_D", "Sandbox"]

_INIT = Path(__file__).with_name("sandbox_init.py")
# Debian's maintainer scripts must not start daemons in a build: policy-rc.d says no (101).
POLICY_RC_D = "#!/bin/sh\nexit 101\n"


class Sandbox:
    """Runs steps over a stack of layers; `layers_root` holds every layer folder."""

    def __init__(self, runner: Runner, layers_root: Path) -> None:
        self.runner = runner
        self.layers_root = layers_root

    def _lowers(self, lowers: Sequence[Path]) -> list[str]:
        # Top layer first, as overlayfs wants them, and relative to keep the options short.
        return [os.path.relpath(path, self.layers_root) for path in reversed(lowers)]

    def _run(
        self,
        spec: dict[str, Any],
        scratch: Path,
        *,
        network: bool,
        timeout: float,
        stdin: bytes | None = None,
        quiet: bool = False,
    ) -> None:
        scratch.mkdir(parents=True, exist_ok=True)
        merged = scratch / "merged"
        merged.mkdir(exist_ok=True)
        spec = {**spec, "layers_root": str(self.layers_root), "merged": str(merged)}
        spec_path = scratch / "spec.json"
        spec_path.write_text(json.dumps(spec))
        argv: list[str | Path] = ["unshare", "--mount", "--pid", "--fork", "--kill-child"]
        argv += ["--uts", "--ipc", "--propagation", "private"]
        if not network:
            argv.append("--net")
        argv += ["--", sys.executable, "-I", "-S", _INIT, spec_path]
        try:
            self.runner.run(
                argv,
                timeout=timeout,
                input=stdin,
                quiet=quiet,
            )
        finally:
            spec_path.unlink(missing_ok=True)

    def run(
        self,
        lowers: Sequence[Path],
        upper: Path,
        commands: Sequence[Command],
        *,
        network: bool = False,
        timeout: float = 1800.0,
        stdin: bytes | None = None,
        quiet: bool = False,
        prepare: Mapping[str, str] | None = None,
    ) -> None:
        """Run `commands` in order inside the image; their writes land in `upper`."""
        work = upper.parent / "work"
        work.mkdir(exist_ok=True)
        spec = {
            "op": "run",
            "lowers": self._lowers(lowers),
            "upper": str(upper),
            "work": str(work),
            "network": network,
            "commands": [c.model_dump(mode="json") for c in commands],
            "prepare": dict(prepare or {}),
        }
        try:
            self._run(
                spec, upper.parent, network=network, timeout=timeout, stdin=stdin, quiet=quiet
            )
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def copy(
        self,
        lowers: Sequence[Path],
        upper: Path,
        context: Path,
        items: Sequence[CopyItem],
        *,
        timeout: float = 1800.0,
    ) -> None:
        """Copy context entries into the image, resolving destinations inside the image."""
        work = upper.parent / "work"
        work.mkdir(exist_ok=True)
        spec = {
            "op": "copy",
            "lowers": self._lowers(lowers),
            "upper": str(upper),
            "work": str(work),
            "context": str(context.resolve()),
            "items": [item.model_dump(mode="json") for item in items],
        }
        try:
            self._run(spec, upper.parent, network=False, timeout=timeout)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def export(
        self,
        lowers: Sequence[Path],
        argv: Sequence[str],
        scratch: Path,
        *,
        placeholder: str = "{root}",
        timeout: float = 1800.0,
    ) -> None:
        """Run a host program on the merged, read-only layers; `{root}` in argv names them."""
        merged = scratch / "merged"
        spec = {
            "op": "export",
            "lowers": self._lowers(lowers),
            "argv": [arg.replace(placeholder, str(merged)) for arg in argv],
            "env": [["PATH", "/usr/sbin:/usr/bin:/sbin:/bin"]],
        }
        self._run(spec, scratch, network=False, timeout=timeout)

    def graft(
        self,
        raw: Path,
        shared: Sequence[Path],
        rewind: Sequence[Path],
        apply: Sequence[Path],
        scratch: Path,
        *,
        timeout: float = 1800.0,
    ) -> None:
        """Bring the ext4 disk `raw` from the layers `shared + rewind` to `shared + apply`
        (bottom first); a layer that cannot be grafted exits with `GRAFT_REFUSED`."""
        target = scratch / "disk"
        target.mkdir(parents=True, exist_ok=True)
        spec = {
            "op": "graft",
            "lowers": self._lowers(shared),
            "raw": str(raw),
            "target": str(target),
            "rewind": [str(path) for path in rewind],
            "apply": [str(path) for path in apply],
        }
        try:
            self._run(spec, scratch, network=False, timeout=timeout)
        finally:
            shutil.rmtree(target, ignore_errors=True)  # empty: the mount went with its namespace
