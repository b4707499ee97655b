"""Base images as configuration: `builder/bases/*.yaml` parsed into frozen `BaseSpec` models.

A base says where its root filesystem comes from (a static busybox, or mmdebstrap), which
kernel boots it and which virtio modules its initrd loads, how its init supervises the Formfile's
ENTRYPOINT, which tools create USER accounts, which package manager INSTALL uses, and the files
it adds on top. Adding a base is adding a YAML file; nothing here names a particular base.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, StringConstraints, ValidationError, model_validator

from formarket.errors import InputError, NotFoundError
from formarket.schemas._base import Document
from formarket.schemas.formfile import BASE_PATTERN, absolute_path_problem
from formarket.yamldoc import load_yaml

__all__ = [
    "BASES_DIR",
    "BaseFile",
    "BaseSource",
    "BaseSpec",
    "BusyboxSource",
    "KernelSpec",
    "MmdebstrapSource",
    "base_file_name",
    "find_bases_dir",
    "load_base",
    "load_bases",
]

BASES_DIR = Path("builder") / "bases"
# Linux module names and Debian package names as the base files use them.
_MODULE = r"^[a-z0-9_-]{1,64}$"
_PACKAGE = r"^[a-z0-9][a-z0-9+.-]{1,100}$"
_SUITE = r"^[a-z][a-z0-9-]{1,30}$"


def _abs(path: str) -> str:
    problem = absolute_path_problem(path)
    if problem is not None:
        raise ValueError(f"{path!r} {problem}")
    return path


class BusyboxSource(Document):
    """A root filesystem made of the host's static busybox and one link per applet."""

    binary: str = Field("/bin/busybox", description="The static busybox on the build host.")
    package: Annotated[str, StringConstraints(pattern=_PACKAGE)] = Field(
        "busybox-static", description="The Debian package that provides it (for the hint)."
    )


class MmdebstrapSource(Document):
    """A Debian root filesystem made by mmdebstrap."""

    suite: Annotated[str, StringConstraints(pattern=_SUITE)]
    variant: Literal["extract", "custom", "essential", "apt", "required", "minbase"] = "minbase"
    mirror: Annotated[str, StringConstraints(pattern=r"^https?://[^\s]+$")]
    include: tuple[Annotated[str, StringConstraints(pattern=_PACKAGE)], ...] = ()


class BaseSource(Document):
    """Where the root filesystem comes from: exactly one of the known makers."""

    busybox: BusyboxSource | None = None
    mmdebstrap: MmdebstrapSource | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> BaseSource:
        if (self.busybox is None) == (self.mmdebstrap is None):
            raise ValueError("give exactly one of busybox, mmdebstrap")
        return self


class KernelSpec(Document):
    """The guest kernel: a Debian linux-image package, unpacked, never installed on the host."""

    package: Annotated[str, StringConstraints(pattern=_PACKAGE)]
    # The cloud kernel's package has no modules.dep, so the initrd loads these in this order.
    modules: tuple[Annotated[str, StringConstraints(pattern=_MODULE)], ...] = ()
    cmdline: str = "console=ttyS0 root=/dev/vda rw quiet panic=-1"


class BaseFile(Document):
    """A file, directory or symbolic link the base adds to its root filesystem."""

    path: str
    content: str | None = None
    mode: Annotated[str, StringConstraints(pattern=r"^0?[0-7]{3,4}$")] = "0644"
    link: str | None = Field(None, description="Make `path` a symbolic link to this target.")
    directory: bool = False

    @model_validator(mode="after")
    def _one_kind(self) -> BaseFile:
        _abs(self.path)
        kinds = [self.content is not None, self.link is not None, self.directory]
        if sum(kinds) != 1:
            raise ValueError(f"{self.path}: give exactly one of content, link, directory")
        return self


class BaseSpec(Document):
    """One base image, as its YAML file describes it."""

    name: Annotated[str, StringConstraints(pattern=f"^{BASE_PATTERN}$")]
    description: str
    source: BaseSource
    kernel: KernelSpec
    init: Literal["shell", "systemd"] = Field(
        description="How the ENTRYPOINT is supervised: the base's shell init restarts"
        " /etc/formfile/entrypoint, or a systemd unit with Restart=always."
    )
    accounts: Literal["busybox", "shadow"] = Field(
        description="Which tools create USER accounts: busybox adduser, or shadow's useradd."
    )
    package_manager: Literal["none", "apt"]
    path: str = Field(
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        description="PATH of RUN steps and of the service.",
    )
    files: tuple[BaseFile, ...] = ()

    def recipe_digest(self) -> str:
        """What the base is made from, as configured (host inputs are added by the cache)."""
        data = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(data.encode()).hexdigest()


def base_file_name(name: str) -> str:
    """`debian:bookworm` -> `debian-bookworm.yaml`: the file a base is expected in."""
    return re.sub(r"[^A-Za-z0-9._-]", "-", name) + ".yaml"


def find_bases_dir(start: Path) -> Path:
    """The `builder/bases` folder of the checkout holding `start` (or of formarket itself)."""
    here = Path(__file__).resolve()
    for candidate in (start.resolve(), *start.resolve().parents, *here.parents):
        if (candidate / BASES_DIR).is_dir():
            return candidate / BASES_DIR
    raise NotFoundError(
        "no builder/bases folder found",
        hint="run in the marketplace repository, or pass the folder of the base files",
    )


def load_base(path: Path) -> BaseSpec:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise NotFoundError(f"{path}: cannot read the base: {exc.strerror or exc}") from exc
    doc = load_yaml(raw, str(path))
    try:
        return BaseSpec.model_validate(doc.data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise InputError(
            f"{path}: {where}: {first['msg']}",
            hint="see the other files in builder/bases/ for the expected shape",
        ) from exc


def load_bases(folder: Path) -> dict[str, tuple[BaseSpec, Path]]:
    """Every base in `folder`, by name."""
    found: dict[str, tuple[BaseSpec, Path]] = {}
    for path in sorted(folder.glob("*.yaml")):
        spec = load_base(path)
        if spec.name in found:
            raise InputError(f"{path}: base {spec.name!r} is also defined in {found[spec.name][1]}")
        found[spec.name] = (spec, path)
    return found
