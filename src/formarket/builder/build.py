"""The image build, as a flat list of named, timed steps (mkosi's lesson).

    parse -> base -> context -> plan -> [store hit? done] -> 01-... NN-service -> disk -> publish

The disk is linked from an earlier image when that image was made from the same layers (a
build that changes only VCPU or MEMORY, say); otherwise it is made (see `image.py`).

Configuration is frozen (`BuildSettings`); what changes while building lives in `_Run`. Every
process goes through the `Runner` given in, whose log becomes `build.log` beside the image.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from formarket.builder.basecache import BaseCache, BaseImage
from formarket.builder.bases import BaseSpec, load_bases
from formarket.builder.context import ContextLimits, scan_context
from formarket.builder.image import make_disk
from formarket.builder.kept_disks import DiskRecipe, KeptDisks
from formarket.builder.layers import LayerCache
from formarket.builder.manifest import Artifact, BuildManifest, StepRecord
from formarket.builder.plan import BuildPlan, copy_sources, plan_build
from formarket.builder.sandbox import Sandbox
from formarket.builder.steps import StepRunner
from formarket.builder.store import DirectoryStore
from formarket.errors import FormarketError, InputError, NotFoundError
from formarket.formfile.parser import canonical_json, parse_formfile
from formarket.process import ProcessError, Runner
from formarket.schemas.formfile import DEFAULT_GPUS, Formfile

__all__ = ["DEFAULT_BASE", "BuildError", "BuildResult", "BuildSettings", "Builder"]

DEFAULT_BASE = "debian:bookworm"
Progress = Callable[[str], None]


class BuildError(FormarketError):
    """A step failed; the message names it and the hint says where its log is."""


@dataclass(frozen=True, slots=True)
class BuildSettings:
    """How to build: where things are kept and which caches to use."""

    store: Path
    cache: Path
    bases_dir: Path
    step_cache: bool = True
    base_cache: Path | None = None  # where bases are kept, when not in `cache` (tests share it)
    limits: ContextLimits = field(default_factory=ContextLimits)


@dataclass(frozen=True, slots=True)
class BuildResult:
    manifest: BuildManifest
    image_dir: Path
    whole_build_cached: bool
    seconds: float
    watched: tuple[Path, ...] = ()  # files whose change would change the build id


def _sha256_file(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _disk_key(plan: BuildPlan) -> str:
    """What the disk is made from: the base, the key of every layer on it, its size. The
    filesystem's UUID comes from it too, so builds that share it share one disk."""
    inputs = {
        "format": plan.format_version,
        "base": plan.base.digest,
        "layers": [step.key for step in plan.steps],
        "disk_gib": plan.disk_gib,
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


def _require_root() -> None:
    if os.geteuid() != 0:
        raise BuildError(
            "building an image needs root: each step runs in new mount and pid namespaces,"
            " over overlayfs, as root of the image",
            hint="run it as root (the build farm's workers do); cached builds need no root",
        )


def _link_or_copy(source: Path, target: Path) -> None:
    """A hard link where the store and the cache share a filesystem (the kernel is 14 MB and
    the same for every image of a base); a copy elsewhere. Published files are never written."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def _inside(formfile: Path, context: Path) -> tuple[str, ...]:
    """The Formfile's path relative to the context, when it lies inside it."""
    try:
        return (formfile.resolve().relative_to(context.resolve()).as_posix(),)
    except ValueError:
        return ()


class _Run:
    """The mutable state of one build: its timings and log."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.started = time.perf_counter()
        self.records: list[StepRecord] = []
        self.log_lines: list[str] = []

    def log(self, line: str) -> None:
        self.log_lines.append(line)

    @contextmanager
    def timed(self, name: str, title: str, key: str = "") -> Iterator[None]:
        """Announce, log and time one named step of the build."""
        self.progress(f"  {name:<12} {title}")
        started = time.perf_counter()
        self.log(f"== {name}: {title}")
        yield
        seconds = round(time.perf_counter() - started, 3)
        self.records.append(StepRecord(name=name, title=title, key=key, seconds=seconds))


class Builder:
    """Builds Formfiles into images in a store, reusing bases, layers and whole builds."""

    def __init__(self, settings: BuildSettings, progress: Progress | None = None) -> None:
        # Absolute paths: the sandbox changes its working folder before it mounts.
        self.settings = dataclasses.replace(
            settings,
            store=settings.store.absolute(),
            cache=settings.cache.absolute(),
            base_cache=settings.base_cache.absolute() if settings.base_cache else None,
        )
        self.progress: Progress = progress or (lambda _line: None)
        self.store = DirectoryStore(self.settings.store)

    def _bases(self) -> dict[str, tuple[BaseSpec, Path]]:
        return load_bases(self.settings.bases_dir)

    def parse(self, formfile_path: Path) -> tuple[Formfile, BaseSpec, Path]:
        bases = self._bases()
        try:
            text = formfile_path.read_text(encoding="utf-8")
        except FileNotFoundError as exc:
            raise NotFoundError(f"{formfile_path}: no such Formfile") from exc
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"{formfile_path}: cannot read the Formfile: {exc}") from exc
        formfile = parse_formfile(
            text, path=str(formfile_path), known_bases=bases, known_gpus=DEFAULT_GPUS
        )
        name = formfile.base or DEFAULT_BASE
        if name not in bases:
            raise InputError(
                f"the default base {name!r} is not configured in {self.settings.bases_dir}",
                hint="add `FROM <base>` to the Formfile",
            )
        spec, spec_path = bases[name]
        return formfile, spec, spec_path

    def build(self, formfile_path: Path, context_dir: Path | None = None) -> BuildResult:
        context_dir = context_dir or formfile_path.parent
        run = _Run(self.progress)
        runner = Runner(run.log)
        with run.timed("parse", str(formfile_path)):
            formfile, spec, spec_path = self.parse(formfile_path)
        bases = BaseCache(self.settings.base_cache or self.settings.cache, runner)
        found = bases.find(spec)
        if found is None:
            _require_root()
        with run.timed("base", spec.name + (" (cached)" if found else " (building, once)")):
            base = found or bases.get(spec)
        sources = copy_sources(formfile)
        with run.timed("context", f"{context_dir} ({', '.join(sources)})"):
            context = scan_context(
                context_dir, sources, self.settings.limits, _inside(formfile_path, context_dir)
            )
        with run.timed("plan", formfile.name):
            plan = plan_build(formfile, context, base.ref())
        watched = (
            formfile_path,
            spec_path,
            spec_path.parent,
            base.record,
            context_dir,
            *(context_dir / entry.path for entry in plan.inputs),
            *((Path(spec.source.busybox.binary),) if spec.source.busybox else ()),
        )
        existing = self.store.manifest_bytes(plan.build_id)
        if existing is not None:
            manifest = BuildManifest.model_validate_json(existing)
            seconds = time.perf_counter() - run.started
            self.progress(f"  cached       {plan.build_id[:16]}: the whole build")
            return BuildResult(
                manifest, self.store.image_dir(plan.build_id), True, seconds, watched
            )
        _require_root()
        staging = self.store.staging(plan.build_id)
        try:
            manifest = self._execute(plan, base, context_dir, staging, run, runner)
        except BaseException as exc:
            failed = self.settings.store / "failed" / f"{plan.build_id}.log"
            failed.parent.mkdir(parents=True, exist_ok=True)
            failed.write_text("\n".join(run.log_lines) + f"\n!! {exc}\n")
            self.store.discard(staging)
            if isinstance(exc, FormarketError):
                raise BuildError(exc.message, hint=f"the build log is {failed}") from exc
            raise
        image_dir = self.store.publish(plan.build_id, staging)
        return BuildResult(manifest, image_dir, False, manifest.seconds, watched)

    def _execute(
        self,
        plan: BuildPlan,
        base: BaseImage,
        context_dir: Path,
        staging: Path,
        run: _Run,
        runner: Runner,
    ) -> BuildManifest:
        cache = self.settings.cache
        layers = LayerCache(cache, enabled=self.settings.step_cache)
        sandbox = Sandbox(runner, cache)
        steps = StepRunner(sandbox, runner, plan.base, context_dir)
        stack: list[Path] = [base.rootfs]
        hits = 0
        total = len(plan.steps)
        try:
            for step in plan.steps:
                hit = layers.lookup(step.key)
                label = f"[{step.index}/{total}] {step.title}"
                if hit is not None:
                    hits += 1
                    self.progress(f"  {step.name:<12} {label}  (cached)")
                    run.records.append(
                        StepRecord(
                            name=step.name, title=step.title, key=step.key, cached=True, seconds=0
                        )
                    )
                    stack.append(hit)
                    continue
                layer = layers.new()
                with run.timed(step.name, label, step.key):
                    try:
                        steps.apply(step, list(stack), layer.tree)
                    except ProcessError as exc:
                        raise BuildError(
                            f"step {step.name} failed: {step.title}\n  {exc.reason}"
                            + exc.quote(exc.stderr)
                        ) from exc
                meta = {"key": step.key, "title": step.title, "seconds": run.records[-1].seconds}
                stack.append(layers.keep(layer, step.key, meta))
            disk = staging / "disk.qcow2"
            disk_key = _disk_key(plan)
            reused = self._published_disk(layers.disk_owner(disk_key))
            if reused is not None:
                source, disk_sha256 = reused
                with run.timed("disk", f"the same layers as {source.parent.name[:16]}: linked"):
                    _link_or_copy(source, disk)
            else:
                with run.timed("disk", f"ext4 of {plan.disk_gib} GiB -> qcow2"):
                    disk_sha256 = self._make_disk(plan, sandbox, layers, stack, disk_key, disk, run)
        finally:
            layers.cleanup()
        for source in (base.vmlinuz, base.initrd):
            _link_or_copy(source, staging / source.name)
        (staging / "build.log").write_text("\n".join(run.log_lines) + "\n")
        artifacts = []
        roles: tuple[tuple[str, Literal["disk", "kernel", "initrd", "log"]], ...] = (
            ("disk.qcow2", "disk"),
            ("vmlinuz", "kernel"),
            ("initrd.img", "initrd"),
            ("build.log", "log"),
        )
        for name, role in roles:
            path = staging / name
            # The disk was hashed while it was written; the kernel and initrd with the base.
            known = disk_sha256 if role == "disk" else base.sha256.get(name)
            artifacts.append(
                Artifact(
                    name=name,
                    role=role,
                    size=path.stat().st_size,
                    sha256=known or _sha256_file(path),
                    virtual_size=plan.disk_gib * 1024**3 if role == "disk" else None,
                )
            )
        formfile = plan.formfile
        manifest = BuildManifest(
            build_id=plan.build_id,
            name=formfile.name,
            format_version=plan.format_version,
            base=plan.base.name,
            base_digest=plan.base.digest,
            formfile_sha256=hashlib.sha256(canonical_json(formfile)).hexdigest(),
            inputs=plan.inputs,
            vcpus=formfile.vcpus,
            memory_mib=formfile.memory_mib,
            disk_gib=plan.disk_gib,
            gpus=tuple(f"{gpu.model}:{gpu.count}" for gpu in formfile.gpus),
            expose=formfile.expose,
            entrypoint=formfile.entrypoint,
            workdir=formfile.workdir,
            kernel_cmdline=base.spec.kernel.cmdline,
            artifacts=tuple(artifacts),
            steps=tuple(run.records),
            cache_hits=hits,
            seconds=round(time.perf_counter() - run.started, 3),
            created=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        )
        # The manifest is written last: a staged folder without one is never a finished build.
        (staging / "manifest.json").write_text(
            json.dumps(manifest.model_dump(mode="json"), indent=2) + "\n"
        )
        layers.remember_disk(disk_key, plan.build_id)
        return manifest

    def _make_disk(
        self,
        plan: BuildPlan,
        sandbox: Sandbox,
        layers: LayerCache,
        stack: list[Path],
        disk_key: str,
        out: Path,
        run: _Run,
    ) -> str:
        """The disk from a kept one brought forward when the step cache is on and one will do,
        else made whole (and kept for the next build)."""
        if not self.settings.step_cache:
            return make_disk(sandbox, stack, plan.disk_gib, disk_key, layers.scratch, out)
        kept = KeptDisks(self.settings.cache / "kept-disks")
        recipe = DiskRecipe(
            base=plan.base.digest,
            disk_gib=plan.disk_gib,
            format_version=plan.format_version,
            layers=tuple(step.key for step in plan.steps),
        )

        def say(line: str) -> None:
            run.log(line)
            self.progress(f"  {'':<12} {line.strip()}")

        sha256 = kept.bring_forward(sandbox, recipe, stack, layers.lookup, layers.scratch, out, say)
        if sha256 is not None:
            return sha256
        return make_disk(
            sandbox,
            stack,
            plan.disk_gib,
            disk_key,
            layers.scratch,
            out,
            keep=lambda raw: kept.keep(raw, recipe),
        )

    def _published_disk(self, build_id: str | None) -> tuple[Path, str] | None:
        """The disk of a published image and its sha256, when it is still there, whole."""
        raw = self.store.manifest_bytes(build_id) if build_id else None
        if build_id is None or raw is None:
            return None
        artifact = BuildManifest.model_validate_json(raw).artifact("disk")
        path = self.store.image_dir(build_id) / artifact.name
        try:
            whole = path.stat().st_size == artifact.size
        except OSError:
            return None
        return (path, artifact.sha256) if whole else None
