"""Raw disks kept between builds, so that the next build brings one forward instead of making
its whole filesystem again.

After a build with the step cache on, its raw ext4 file is kept in `<cache>/kept-disks/` beside
the list of layer keys it holds. A later build on the same base and disk size takes the kept
disk whose layers share the longest start with its own, takes the others back and puts its new
layers on (`Sandbox.graft`, `layer_graft.py`): for a Formfile whose last RUN changed, that is
one small layer instead of the whole root filesystem, which `mke2fs -d` would copy again.

A disk brought forward keeps the filesystem UUID of the disk it started from (nothing mounts
by UUID: the kernel is told `root=/dev/vda`); every file on it is what a whole disk would hold,
times included (`tests/builder/test_kept_disks.py`, `test_layer_graft.py`).

A kept disk is taken by renaming it to a private, locked name, so two builds never share one; a
build killed while it holds one leaves a file that the next one sweeps. The newest few are kept.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from formarket.atomicfile import write_atomically
from formarket.builder.image import data_extents, sweep_leftovers, write_qcow2
from formarket.builder.sandbox import Sandbox
from formarket.process import ProcessError

__all__ = ["DiskRecipe", "KeptDisks"]

_KEEP = 2  # a Debian disk holds a few hundred MB of data: enough for an edit-and-rebuild loop


@dataclass(frozen=True, slots=True)
class DiskRecipe:
    """What a disk holds: the base, each step's layer key (bottom first), its size."""

    base: str
    disk_gib: int
    format_version: str
    layers: tuple[str, ...]

    @property
    def name(self) -> str:
        text = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    def shared_with(self, other: DiskRecipe) -> int:
        """How many layers, from the bottom, the two disks have in common; -1 when they are
        of different bases or sizes."""
        if (self.base, self.disk_gib, self.format_version) != (
            other.base,
            other.disk_gib,
            other.format_version,
        ):
            return -1
        shared = 0
        for mine, theirs in zip(self.layers, other.layers, strict=False):
            if mine != theirs:
                break
            shared += 1
        return shared


@dataclass(frozen=True, slots=True)
class _Kept:
    recipe: DiskRecipe
    raw: Path
    mtime: float


class KeptDisks:
    """The kept raw disks in `root`, newest `keep` of them."""

    def __init__(self, root: Path, keep: int = _KEEP) -> None:
        self.root = root
        self.keep_count = keep

    def _kept(self) -> list[_Kept]:
        found = []
        for record in self.root.glob("*.json"):
            raw = record.with_suffix(".raw")
            try:
                data = json.loads(record.read_text())
                recipe = DiskRecipe(**{**data, "layers": tuple(data["layers"])})
                mtime = raw.stat().st_mtime
            except (OSError, ValueError, TypeError, KeyError):
                continue  # half written, or taken by another build
            if recipe.name == record.stem:
                found.append(_Kept(recipe, raw, mtime))
        return sorted(found, key=lambda kept: kept.mtime, reverse=True)

    @contextmanager
    def _taken(self, kept: _Kept) -> Iterator[Path | None]:
        """The kept disk under a private, locked name while the build uses it; None when
        another build has it."""
        sweep_leftovers(self.root)
        try:
            fd = os.open(kept.raw, os.O_RDONLY)
        except FileNotFoundError:
            yield None
            return
        try:
            try:
                # Locked before it is renamed to a name that sweeps look at, and never waited
                # for: a build that holds it will have made it another disk by then.
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                taken = self.root / f"formarket-{uuid.uuid4().hex}.raw"
                kept.raw.rename(taken)
            except (BlockingIOError, FileNotFoundError):
                yield None
                return
            kept.raw.with_suffix(".json").unlink(missing_ok=True)
            try:
                yield taken
            finally:
                taken.unlink(missing_ok=True)
        finally:
            os.close(fd)

    def keep(self, raw: Path, recipe: DiskRecipe) -> None:
        """Keep the raw disk `raw` (moved when it is on the same filesystem, copied sparsely
        otherwise) as the disk of `recipe`; the oldest beyond the limit go."""
        self.root.mkdir(parents=True, exist_ok=True)
        final = self.root / f"{recipe.name}.raw"
        # Named as a leftover: if this build dies while copying, a later one sweeps it.
        partial = self.root / f"formarket-{uuid.uuid4().hex}.raw"
        try:
            raw.rename(partial)
        except OSError:
            _copy_sparse(raw, partial)
        # The record first: a record without its disk is passed over, and a disk under its
        # final name always has one. A cache needs no fsync: a lost disk is made again.
        record = json.dumps(asdict(recipe)).encode()
        write_atomically(final.with_suffix(".json"), record, durable=False)
        partial.replace(final)
        for old in self._kept()[self.keep_count :]:
            old.raw.with_suffix(".json").unlink(missing_ok=True)
            old.raw.unlink(missing_ok=True)

    def bring_forward(
        self,
        sandbox: Sandbox,
        recipe: DiskRecipe,
        stack: Sequence[Path],
        tree_of: Callable[[str], Path | None],
        scratch: Path,
        out: Path,
        log: Callable[[str], None],
    ) -> str | None:
        """Write `out` (qcow2) from a kept disk brought to `stack` (the base's root filesystem,
        then one layer per key of `recipe`) and keep it again; its sha256, or None when no
        kept disk will do (the caller makes the disk whole)."""
        candidates = [(recipe.shared_with(k.recipe), k) for k in self._kept()]
        # The most layers in common first; sorted is stable, so the newest among equals.
        for shared, kept in sorted(candidates, key=lambda c: c[0], reverse=True):
            if shared < 0:
                break  # another base or size, and so is every one after it
            found = [tree_of(key) for key in kept.recipe.layers[shared:]]
            rewind = [tree for tree in found if tree is not None]
            if len(rewind) < len(found):
                continue  # its layers left the cache: nothing to take them back from
            with self._taken(kept) as taken:
                if taken is None:
                    continue
                try:
                    sandbox.graft(
                        taken, stack[: 1 + shared], rewind, stack[1 + shared :], scratch / "graft"
                    )
                except ProcessError as exc:
                    log(f"   the kept disk could not be brought forward: {exc.reason}")
                    return None
                log(
                    f"   brought a kept disk forward: {len(rewind)} layers taken back,"
                    f" {len(stack) - 1 - shared} put on"
                )
                sha256 = write_qcow2(taken, out)
                self.keep(taken, recipe)
                return sha256
        return None


def _copy_sparse(source: Path, target: Path) -> None:
    """Copy `source` to the new file `target`, its holes left holes."""
    src = os.open(source, os.O_RDONLY)
    try:
        dst = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            size = os.fstat(src).st_size
            for start, end in data_extents(src, size):
                os.lseek(dst, start, os.SEEK_SET)
                while start < end:
                    sent = os.sendfile(dst, src, start, end - start)
                    if sent == 0:
                        break
                    start += sent
            os.ftruncate(dst, size)
        finally:
            os.close(dst)
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    finally:
        os.close(src)
