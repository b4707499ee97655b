"""The image build: plan, then execute, each a flat list of named, timed steps (mkosi's lesson).

    plan:     parse -> base -> context -> plan                      -> PlannedBuild (build id)
    execute:  [store hit? done] -> [weights] -> 01-... NN-service -> disk -> kernel -> manifest
              -> publish

`Builder.plan` reads the Formfile, the base and the context and decides everything: its answer,
a frozen `PlannedBuild`, holds the build id before anything is built, so the farm can lock that
id, and `formarket build --plan` can show it. `Builder.execute` runs that same plan and works
nothing out again. Each layer step is taken from the step cache when it is there. The disk is
linked from an earlier image when that image was made from the same layers (a build that
changes only VCPU or MEMORY, say); otherwise it is made (see `image.py`).

A model's weight files (its listing's `weights:`, passed to `plan`) are not part of the image:
they are fetched into the build host's weight cache and laid on a read-only data disk (see
`weights.py`) that the store keeps once for every image deployed with the same files. Their
disk's id is part of the build id, and the weights step comes first, so a wrong digest fails
the build before any layer is built.

Configuration is frozen (`BuildSettings`, `PlannedBuild`); what changes while building lives
in `_Run` and `_Work`. Every process goes through a `Runner` whose log becomes `build.log`
beside the image.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Literal

from formarket.builder.basecache import BaseCache, BaseImage
from formarket.builder.bases import BaseSpec, load_bases
from formarket.builder.context import BuildContext, ContextLimits, scan_context
from formarket.builder.image import make_disk
from formarket.builder.kept_disks import DiskRecipe, KeptDisks
from formarket.builder.layers import LayerCache
from formarket.builder.manifest import Artifact, BuildManifest, DataDisk, StepRecord
from formarket.builder.plan import BuildPlan, PlannedStep, copy_sources, plan_build
from formarket.builder.sandbox import Sandbox
from formarket.builder.steps import StepRunner
from formarket.builder.store import DirectoryStore
from formarket.builder.weights import (
    DEFAULT_MAX_BYTES,
    Fetched,
    WeightCache,
    data_disk,
    disk_id,
    fetch,
)
from formarket.errors import FormarketError, InputError, NotFoundError
from formarket.formfile.parser import canonical_json, parse_formfile
from formarket.process import ProcessError, Runner
from formarket.schemas.formfile import DEFAULT_GPUS, Formfile
from formarket.schemas.listing import WeightFile

__all__ = [
    "DEFAULT_BASE",
    "BuildError",
    "BuildResult",
    "BuildSettings",
    "BuildStep",
    "Builder",
    "PlannedBuild",
    "Planning",
]

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
    weights_max_bytes: int = DEFAULT_MAX_BYTES  # the largest weight file fetched
    weights_allow_private: bool = False  # fetch weights from private addresses (a local mirror)


@dataclass(frozen=True, slots=True)
class Planning:
    """How planning went: its timed steps and log lines, which the manifest and `build.log`
    begin with, and how long it took."""

    steps: tuple[StepRecord, ...]
    log: tuple[str, ...]
    seconds: float


@dataclass(frozen=True, slots=True)
class PlannedBuild:
    """A build decided and not yet run: everything `Builder.execute` needs, nothing it must
    work out again. Two plans of the same inputs are equal; how planning went (its timings)
    is kept beside them and is not part of that equality."""

    formfile_path: Path
    context_dir: Path
    base: BaseImage
    context: BuildContext
    plan: BuildPlan = field(repr=False)
    watched: tuple[Path, ...] = field(repr=False)  # files whose change would change the id
    planning: Planning = field(compare=False, repr=False)
    weights: tuple[WeightFile, ...] = ()  # laid on the data disk `plan.data_disk` names

    @property
    def build_id(self) -> str:
        return self.plan.build_id

    @property
    def formfile(self) -> Formfile:
        return self.plan.formfile


@dataclass(frozen=True, slots=True)
class BuildStep:
    """A named step of executing a plan, as progress, `build.log` and `formarket build --plan`
    show it; `key` is a layer's, whose step is skipped when the step cache has that layer."""

    name: str
    title: str
    key: str = ""
    cached: bool = False


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

    def __init__(self, progress: Progress, planning: Planning | None = None) -> None:
        self.progress = progress
        # An execution goes on from its planning: the manifest's steps, its time and the
        # build log count the planning too, as when both ran in one call.
        self.started = time.perf_counter() - (planning.seconds if planning else 0.0)
        self.records: list[StepRecord] = list(planning.steps) if planning else []
        self.log_lines: list[str] = list(planning.log) if planning else []

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

    def planning(self) -> Planning:
        seconds = round(time.perf_counter() - self.started, 3)
        return Planning(tuple(self.records), tuple(self.log_lines), seconds)


class _Work:
    """What executing one plan changes as it goes: the stack of layers, the disk's digest, the
    manifest, and the published folder at the end."""

    def __init__(
        self, planned: PlannedBuild, staging: Path, run: _Run, cache: Path, layers: LayerCache
    ) -> None:
        self.planned = planned
        self.plan = planned.plan
        self.staging = staging
        self.run = run
        self.layers = layers
        self.runner = Runner(run.log)
        self.sandbox = Sandbox(self.runner, cache)
        self.steps = StepRunner(self.sandbox, self.runner, self.plan.base, planned.context_dir)
        self.stack: list[Path] = [planned.base.rootfs]
        self.hits = 0
        self.disk_sha256 = ""
        self.data_disk: DataDisk | None = None
        self.manifest: BuildManifest | None = None
        self.image_dir: Path | None = None


@dataclass(frozen=True, slots=True)
class _Step:
    """A step of the execution list: what it is called and what it does."""

    step: BuildStep
    action: Callable[[_Work], None]


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

    def build(
        self,
        formfile_path: Path,
        context_dir: Path | None = None,
        weights: Sequence[WeightFile] = (),
    ) -> BuildResult:
        """Plan, then execute that plan: the whole build in one call."""
        return self.execute(self.plan(formfile_path, context_dir, weights))

    # --- plan ----------------------------------------------------------------------------

    def plan(
        self,
        formfile_path: Path,
        context_dir: Path | None = None,
        weights: Sequence[WeightFile] = (),
    ) -> PlannedBuild:
        """Read the Formfile, its base and its context, and decide the build: its id and steps
        (`weights`: a model's weight files, for its data disk).

        The base is made here when it is not cached yet (its digest is part of the build id),
        which needs root, once per base; nothing else is built."""
        context_dir = context_dir or formfile_path.parent
        run = _Run(self.progress)
        with run.timed("parse", str(formfile_path)):
            formfile, spec, spec_path = self._parse(formfile_path)
        bases = BaseCache(self.settings.base_cache or self.settings.cache, Runner(run.log))
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
            plan = plan_build(formfile, context, base.ref(), disk_id(weights) if weights else None)
        watched = (
            formfile_path,
            spec_path,
            spec_path.parent,
            base.record,
            context_dir,
            *(context_dir / entry.path for entry in plan.inputs),
            *((Path(spec.source.busybox.binary),) if spec.source.busybox else ()),
        )
        return PlannedBuild(
            formfile_path, context_dir, base, context, plan, watched, run.planning(), tuple(weights)
        )

    def _parse(self, formfile_path: Path) -> tuple[Formfile, BaseSpec, Path]:
        bases = load_bases(self.settings.bases_dir)
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

    # --- execute -------------------------------------------------------------------------

    def published(self, planned: PlannedBuild) -> bool:
        """Whether the store holds the image of this plan already."""
        return self.store.manifest_bytes(planned.build_id) is not None

    def steps(self, planned: PlannedBuild) -> tuple[BuildStep, ...]:
        """What executing `planned` does, in order, as far as the caches tell now."""
        layers = self._layers()
        return tuple(
            dataclasses.replace(
                item.step, cached=bool(item.step.key and layers.lookup(item.step.key))
            )
            for item in self._steps(planned, layers)
        )

    def _layers(self) -> LayerCache:
        return LayerCache(self.settings.cache, enabled=self.settings.step_cache)

    def execute(self, planned: PlannedBuild) -> BuildResult:
        """Run a plan: the published image when the store has it, else built and published
        under the build id the plan announced."""
        run = _Run(self.progress, planned.planning)
        build_id = planned.build_id
        existing = self.store.manifest_bytes(build_id)
        if existing is not None:
            manifest = BuildManifest.model_validate_json(existing)
            seconds = time.perf_counter() - run.started
            self.progress(f"  cached       {build_id[:16]}: the whole build")
            return BuildResult(
                manifest, self.store.image_dir(build_id), True, seconds, planned.watched
            )
        _require_root()
        layers = self._layers()
        work = _Work(planned, self.store.staging(build_id), run, self.settings.cache, layers)
        try:
            self._execute(work)
        except BaseException as exc:
            failed = self.settings.store / "failed" / f"{build_id}.log"
            failed.parent.mkdir(parents=True, exist_ok=True)
            failed.write_text("\n".join(run.log_lines) + f"\n!! {exc}\n")
            self.store.discard(work.staging)
            if isinstance(exc, FormarketError):
                raise BuildError(exc.message, hint=f"the build log is {failed}") from exc
            raise
        finally:
            layers.cleanup()
        # The last two steps set them; a step list without them fails here, not later.
        assert work.manifest is not None
        assert work.image_dir is not None
        return BuildResult(
            work.manifest, work.image_dir, False, work.manifest.seconds, planned.watched
        )

    def _steps(self, planned: PlannedBuild, layers: LayerCache) -> tuple[_Step, ...]:
        """The execution, top to bottom: a layer per planned step, then the disk, the boot
        files, the manifest (written last) and the publishing rename."""
        plan = planned.plan
        total = len(plan.steps)
        weights: tuple[_Step, ...] = ()
        if planned.weights and plan.data_disk:
            title = f"{len(planned.weights)} file(s) -> data disk {plan.data_disk[:16]}"
            weights = (_Step(BuildStep("weights", title), self._weights),)
        return (
            *weights,
            *(
                _Step(
                    BuildStep(step.name, f"[{step.index}/{total}] {step.title}", step.key),
                    partial(self._layer, step),
                )
                for step in plan.steps
            ),
            self._disk_step(plan, layers),
            _Step(BuildStep("kernel", "vmlinuz and initrd.img of the base"), self._boot_files),
            _Step(BuildStep("manifest", "build.log, digests, manifest.json"), self._manifest),
            _Step(BuildStep("publish", f"images/{plan.build_id[:16]}"), self._publish),
        )

    def _execute(self, work: _Work) -> None:
        """Each step announced, logged and timed; a layer the step cache has is taken as is."""
        for item in self._steps(work.planned, work.layers):
            step = item.step
            hit = work.layers.lookup(step.key) if step.key else None
            if hit is not None:
                work.hits += 1
                self.progress(f"  {step.name:<12} {step.title}  (cached)")
                work.run.records.append(
                    StepRecord(
                        name=step.name, title=step.title, key=step.key, cached=True, seconds=0
                    )
                )
                work.stack.append(hit)
                continue
            with work.run.timed(step.name, step.title, step.key):
                item.action(work)

    def _layer(self, step: PlannedStep, work: _Work) -> None:
        """Run one planned step into a new layer and keep it under the step's key."""
        started = time.perf_counter()
        layer = work.layers.new()
        try:
            work.steps.apply(step, list(work.stack), layer.tree)
        except ProcessError as exc:
            raise BuildError(
                f"step {step.name} failed: {step.title}\n  {exc.reason}" + exc.quote(exc.stderr)
            ) from exc
        seconds = round(time.perf_counter() - started, 3)
        meta = {"key": step.key, "title": step.title, "seconds": seconds}
        work.stack.append(work.layers.keep(layer, step.key, meta))

    def _disk_step(self, plan: BuildPlan, layers: LayerCache) -> _Step:
        """The disk: linked from a published image made of the same layers, else made."""
        reused = self._published_disk(layers.disk_owner(_disk_key(plan)))
        if reused is None:
            return _Step(BuildStep("disk", f"ext4 of {plan.disk_gib} GiB -> qcow2"), self._disk)
        source, sha256 = reused
        title = f"the same layers as {source.parent.name[:16]}: linked"
        return _Step(BuildStep("disk", title), partial(self._link_disk, source, sha256))

    def _link_disk(self, source: Path, sha256: str, work: _Work) -> None:
        _link_or_copy(source, work.staging / "disk.qcow2")
        work.disk_sha256 = sha256

    def _disk(self, work: _Work) -> None:
        """The disk from a kept one brought forward when the step cache is on and one will do,
        else made whole (and kept for the next build)."""
        plan = work.plan
        out = work.staging / "disk.qcow2"
        disk_key = _disk_key(plan)
        scratch = work.layers.scratch
        if not self.settings.step_cache:
            work.disk_sha256 = make_disk(
                work.sandbox, work.stack, plan.disk_gib, disk_key, scratch, out
            )
            return
        kept = KeptDisks(self.settings.cache / "kept-disks")
        recipe = DiskRecipe(
            base=plan.base.digest,
            disk_gib=plan.disk_gib,
            format_version=plan.format_version,
            layers=tuple(step.key for step in plan.steps),
        )

        def say(line: str) -> None:
            work.run.log(line)
            self.progress(f"  {'':<12} {line.strip()}")

        sha256 = kept.bring_forward(
            work.sandbox, recipe, work.stack, work.layers.lookup, scratch, out, say
        )
        work.disk_sha256 = sha256 or make_disk(
            work.sandbox,
            work.stack,
            plan.disk_gib,
            disk_key,
            scratch,
            out,
            keep=lambda raw: kept.keep(raw, recipe),
        )

    def _weights(self, work: _Work) -> None:
        """Every weight file fetched into this host's cache (once, by digest), the data disk
        made of them (once per set of files), and that disk in the store."""
        cache = WeightCache(self.settings.cache / "weights")
        weights = work.planned.weights
        assert work.plan.data_disk is not None  # the step exists only with one

        def say(line: str) -> None:
            work.run.log(line)
            self.progress(f"  {'':<12} {line.strip()}")

        def one(weight: WeightFile) -> Fetched:
            got = fetch(
                weight,
                cache,
                max_bytes=self.settings.weights_max_bytes,
                allow_private=self.settings.weights_allow_private,
                progress=say,
            )
            where = f"{got.downloaded:,} bytes from {got.url}" if got.url else "in the cache"
            say(f"{weight.disk_path} {weight.sha256[:12]}: {where}")
            return got

        made = data_disk(weights, cache, work.runner, fetch_one=one)
        work.data_disk = self.store.publish_data_disk(
            work.plan.data_disk, made, tuple(sorted({w.disk_path for w in weights}))
        )

    def _boot_files(self, work: _Work) -> None:
        """The base's kernel and initrd, linked: the same for every image of a base."""
        base = work.planned.base
        for source in (base.vmlinuz, base.initrd):
            _link_or_copy(source, work.staging / source.name)

    def _manifest(self, work: _Work) -> None:
        """The build log, every artifact's digest, and the manifest: written last, since a
        staged folder without one is never a finished build."""
        plan, base, staging = work.plan, work.planned.base, work.staging
        (staging / "build.log").write_text("\n".join(work.run.log_lines) + "\n")
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
            known = work.disk_sha256 if role == "disk" else base.sha256.get(name)
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
        work.manifest = BuildManifest(
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
            data_disk=work.data_disk,
            steps=tuple(work.run.records),
            cache_hits=work.hits,
            seconds=round(time.perf_counter() - work.run.started, 3),
            created=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        )
        (staging / "manifest.json").write_text(
            json.dumps(work.manifest.model_dump(mode="json"), indent=2) + "\n"
        )

    def _publish(self, work: _Work) -> None:
        """One rename makes the image visible under its build id; its disk is then the one
        a later build of the same layers links."""
        work.image_dir = self.store.publish(work.plan.build_id, work.staging)
        work.layers.remember_disk(_disk_key(work.plan), work.plan.build_id)

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
