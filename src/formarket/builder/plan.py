"""The build plan: a parsed Formfile and its context in, named steps and a build id out. Pure.

Build identity (docs/formfile.md § Build identity): the build id is the SHA-256 of the canonical
JSON of

    {"format": FORMAT_VERSION, "formfile": <canonical_json(formfile)>,
     "base": <the base image's digest>, "context": [[path, kind, mode, digest], ...]}

where the context lists every entry the context contributes (COPY sources, or the whole folder
without COPY), sorted by path, with the sha256 of each file's bytes and each link's target.
Same inputs, same id; any change to the recipe, a copied byte, the base or the builder's format
gives another id.

Each step also has a key: the SHA-256 of the previous step's key and of what the step itself
does (its canonical form, the digests of the files it copies). The chain starts from the base's
digest, so a step's key names everything its result depends on, and changing only the last RUN
changes only its key: the step cache reuses every layer before it. Steps whose layer is only
files the builder writes from the recipe (ENV, the service) are keyed by that content alone.
"""

from __future__ import annotations

import hashlib
import json
import shlex
from typing import Literal

from pydantic import Field

from formarket.builder.context import BuildContext, ContextEntry, normalise_source
from formarket.errors import InputError
from formarket.formfile.render import canonical_json, render_step
from formarket.schemas._base import Document
from formarket.schemas.formfile import (
    CopyStep,
    EnvStep,
    Formfile,
    FormfileUser,
    InstallStep,
    RunStep,
    Step,
    UserStep,
    WorkdirStep,
)

__all__ = [
    "DEFAULT_DISK_GIB",
    "FORMAT_VERSION",
    "SERVICE_NAME",
    "BaseRef",
    "BuildPlan",
    "Command",
    "CopyItem",
    "PlanError",
    "PlannedFile",
    "PlannedStep",
    "copy_sources",
    "plan_build",
]

# Bump when the same inputs would make a different image (a changed step, layout or init).
FORMAT_VERSION = "formarket-build-1"
DEFAULT_DISK_GIB = 5
# The ENTRYPOINT's service; `ENV --scope=service:form-app` is its environment (Formation's name).
SERVICE_NAME = "form-app"
MAX_STEPS = 100  # overlayfs stacks at most a few hundred layers; a recipe needs far fewer
StepKind = Literal["copy", "install", "run", "env", "workdir", "user", "service"]
_CONTENT_KEYED = frozenset({"env", "service"})


class PlanError(InputError):
    """The Formfile cannot be built on its base as written."""


class BaseRef(Document):
    """What a plan needs to know of its base: its digest and how it does things."""

    name: str
    digest: str
    init: Literal["shell", "systemd"]
    accounts: Literal["busybox", "shadow"]
    package_manager: Literal["none", "apt"]
    path: str


class Command(Document):
    """A program run inside the image: argv (never through a shell unless argv says so)."""

    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    cwd: str = "/"


class CopyItem(Document):
    """A context entry and where it goes in the image."""

    src: str
    dst: str
    kind: Literal["file", "dir", "link"]
    mode: int
    digest: str


class PlannedFile(Document):
    """A file or link the builder itself writes into a step's layer."""

    path: str
    content: str = ""
    mode: int = 0o644
    link: str | None = None


class PlannedStep(Document):
    """One named step of a build, with everything needed to run it and its cache key."""

    index: int
    name: str = Field(description="`03-run`: the step's number and kind, used in logs.")
    kind: StepKind
    title: str = Field(description="The Formfile line, passwords hidden.")
    key: str = Field(description="SHA-256 of the previous key and this step's inputs.")
    network: bool = False
    commands: tuple[Command, ...] = ()
    copies: tuple[CopyItem, ...] = ()
    files: tuple[PlannedFile, ...] = ()
    user: FormfileUser | None = None


class BuildPlan(Document):
    """An ordered list of steps and the identity of what they build."""

    build_id: str
    format_version: str
    formfile: Formfile
    base: BaseRef
    disk_gib: int
    inputs: tuple[ContextEntry, ...]
    steps: tuple[PlannedStep, ...]
    data_disk: str | None = Field(
        default=None,
        description="The id of the weights' data disk the image is deployed with, if any.",
    )

    @property
    def name(self) -> str:
        return self.formfile.name


def _sha256(*parts: object) -> str:
    data = json.dumps(parts, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(data.encode()).hexdigest()


def copy_sources(formfile: Formfile) -> tuple[str, ...]:
    """The context paths a Formfile reads: its COPY sources, or `.` for all of it."""
    if formfile.copies_whole_context:
        return (".",)
    return tuple(dict.fromkeys(s.src for s in formfile.steps if isinstance(s, CopyStep)))


def _copy_items(context: BuildContext, src: str, dst: str) -> tuple[CopyItem, ...]:
    rel = normalise_source(src)
    entries = context.under(rel)
    top = context.get(rel)
    items: list[CopyItem] = []
    if top is not None and top.kind != "dir":
        # A single file or link: into `dst/` when dst ends with `/`, else at dst itself.
        target = dst + top.path.rsplit("/", 1)[-1] if dst.endswith("/") else dst
        return (
            CopyItem(src=top.path, dst=target, kind=top.kind, mode=top.mode, digest=top.digest),
        )
    base = dst.rstrip("/") or "/"
    items.append(CopyItem(src=rel, dst=base, kind="dir", mode=0o755, digest=""))
    for entry in entries:
        if entry.path == rel:
            continue
        tail = entry.path if rel == "." else entry.path[len(rel) + 1 :]
        items.append(
            CopyItem(
                src=entry.path,
                dst=f"{base.rstrip('/')}/{tail}",
                kind=entry.kind,
                mode=entry.mode,
                digest=entry.digest,
            )
        )
    return tuple(items)


def _quote_env(value: str) -> str:
    # Readable by sh (`. file`) and by systemd's EnvironmentFile= alike.
    return "'" + value.replace("'", "'\\''") + "'"


def _env_file(path: str, variables: dict[str, str]) -> PlannedFile:
    lines = ["# Written by formarket from the Formfile's ENV lines."]
    lines += [f"{key}={_quote_env(value)}" for key, value in variables.items()]
    return PlannedFile(path=path, content="\n".join(lines) + "\n")


def _user_payload(user: FormfileUser) -> dict[str, object]:
    data = user.model_dump(mode="json")
    data["passwd"] = hashlib.sha256(user.passwd.get_secret_value().encode()).hexdigest()
    return data


class _Planner:
    def __init__(self, formfile: Formfile, context: BuildContext, base: BaseRef) -> None:
        self.formfile = formfile
        self.context = context
        self.base = base
        self.users = {user.username: user for user in formfile.users}
        self.env: dict[str, dict[str, str]] = {}
        self.workdir = "/"
        self.key = _sha256(FORMAT_VERSION, "base", base.digest)
        self.steps: list[PlannedStep] = []

    def system_env(self) -> tuple[tuple[str, str], ...]:
        env = {"PATH": self.base.path, "HOME": "/root", "LANG": "C.UTF-8"}
        if self.base.package_manager == "apt":
            env["DEBIAN_FRONTEND"] = "noninteractive"
        env.update(self.env.get("system", {}))
        return tuple(env.items())

    def add(self, kind: StepKind, title: str, payload: object, **fields: object) -> None:
        self.key = _sha256(self.key, kind, payload)
        # ENV and the service only write files the builder generates from the recipe: their
        # layer is the same whatever lies below it, so it is keyed by its content alone, and a
        # changed RUN before them does not make them run again.
        key = _sha256(FORMAT_VERSION, kind, payload) if kind in _CONTENT_KEYED else self.key
        index = len(self.steps) + 1
        step = PlannedStep(
            index=index,
            name=f"{index:02d}-{kind}",
            kind=kind,
            title=title,
            key=key,
            **fields,
        )
        self.steps.append(step)

    def copy(self, src: str, dst: str, title: str) -> None:
        items = _copy_items(self.context, src, dst)
        payload = [item.model_dump(mode="json") for item in items]
        self.add("copy", title, payload, copies=items)

    def step(self, step: Step) -> None:
        title = render_step(step, self.users, reveal=False)
        if isinstance(step, CopyStep):
            self.copy(step.src, step.dst, title)
        elif isinstance(step, RunStep):
            command = Command(
                argv=("/bin/sh", "-c", step.command), env=self.system_env(), cwd=self.workdir
            )
            self.add("run", title, command.model_dump(mode="json"), commands=(command,))
        elif isinstance(step, InstallStep):
            self.install(step, title)
        elif isinstance(step, EnvStep):
            scope = step.scope if step.scope == "system" else f"{step.scope}.{step.scope_name}"
            variables = self.env.setdefault(scope, {})
            variables.update({var.key: var.value for var in step.variables})
            path = "/etc/formfile/env" + ("" if scope == "system" else f".{scope}")
            file = _env_file(path, variables)
            self.add("env", title, file.model_dump(mode="json"), files=(file,))
        elif isinstance(step, WorkdirStep):
            self.workdir = step.path
            command = Command(argv=("mkdir", "-p", "--", step.path), env=self.system_env())
            self.add("workdir", title, step.path, commands=(command,))
            if self.formfile.copies_whole_context:
                self.copy(".", step.path, f"COPY . {step.path}  (no COPY: the whole context)")
        elif isinstance(step, UserStep):
            user = self.users[step.username]
            self.add("user", title, _user_payload(user), user=user)

    def install(self, step: InstallStep, title: str) -> None:
        if self.base.package_manager != "apt":
            raise PlanError(
                f"`{title}`: the base {self.base.name!r} has no package manager",
                hint="use `FROM debian:bookworm` for INSTALL, or COPY static programs",
            )
        env = self.system_env()
        commands = (
            Command(argv=("apt-get", "update", "-q"), env=env),
            Command(
                argv=(
                    "apt-get",
                    "install",
                    "-y",
                    "-q",
                    "--no-install-recommends",
                    "--",
                    *step.packages,
                ),
                env=env,
            ),
            Command(argv=("apt-get", "clean"), env=env),
            Command(argv=("find", "/var/lib/apt/lists", "-mindepth", "1", "-delete"), env=env),
        )
        self.add("install", title, list(step.packages), network=True, commands=commands)

    def service(self) -> None:
        formfile = self.formfile
        expose = "".join(f"{port}/tcp\n" for port in formfile.expose)
        files = [PlannedFile(path="/etc/formfile/expose", content=expose)]
        if formfile.entrypoint is not None:
            files += _service_files(self.base, formfile.entrypoint, self.workdir)
        title = "ENTRYPOINT " + json.dumps(list(formfile.entrypoint or ()))
        payload = [file.model_dump(mode="json") for file in files]
        self.add("service", title, payload, files=tuple(files))


def _systemd_quote(arg: str) -> str:
    escaped = arg.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%").replace("$", "$$")
    return f'"{escaped}"'


def _service_files(base: BaseRef, argv: tuple[str, ...], workdir: str) -> list[PlannedFile]:
    # env.deploy comes last: a deployment's own settings (the farm's config disk) win.
    env_files = (
        "/etc/formfile/env",
        f"/etc/formfile/env.service.{SERVICE_NAME}",
        "/etc/formfile/env.deploy",
    )
    if base.init == "systemd":
        unit = "\n".join(
            [
                "# The Formfile's ENTRYPOINT, written by formarket.",
                "[Unit]",
                "Description=formarket service (the Formfile's ENTRYPOINT)",
                "After=network-online.target",
                "Wants=network-online.target",
                "",
                "[Service]",
                f"WorkingDirectory={workdir}",
                *(f"EnvironmentFile=-{path}" for path in env_files),
                "ExecStart=" + " ".join(_systemd_quote(arg) for arg in argv),
                "Restart=always",
                "RestartSec=1",
                "",
                "[Install]",
                "WantedBy=multi-user.target",
                "",
            ]
        )
        unit_path = f"/etc/systemd/system/{SERVICE_NAME}.service"
        return [
            PlannedFile(path=unit_path, content=unit),
            PlannedFile(
                path=f"/etc/systemd/system/multi-user.target.wants/{SERVICE_NAME}.service",
                link=unit_path,
            ),
        ]
    script = "\n".join(
        [
            "#!/bin/sh",
            "# The Formfile's ENTRYPOINT, written by formarket; the base's init restarts it.",
            "set -a",
            *(f"[ -r {path} ] && . {path}" for path in env_files),
            "set +a",
            f"cd {shlex.quote(workdir)} || exit 1",
            "exec " + shlex.join(argv),
            "",
        ]
    )
    return [PlannedFile(path="/etc/formfile/entrypoint", content=script, mode=0o755)]


def build_identity(
    formfile: Formfile, context: BuildContext, base_digest: str, data_disk: str | None = None
) -> str:
    """The build id of docs/formfile.md § Build identity."""
    entries = [[e.path, e.kind, e.mode, e.digest] for e in context.entries]
    recipe = json.loads(canonical_json(formfile))
    identity: dict[str, object] = {
        "format": FORMAT_VERSION,
        "formfile": recipe,
        "base": base_digest,
    }
    if data_disk is not None:
        # Two versions with one Formfile and different weights are two images; without
        # weights, the id is what it always was.
        identity["data_disk"] = data_disk
    return _sha256(identity, entries)


def plan_build(
    formfile: Formfile, context: BuildContext, base: BaseRef, data_disk: str | None = None
) -> BuildPlan:
    """The steps that turn `base` into the image `formfile` describes, and its build id;
    `data_disk` is the id of the weights' data disk it is deployed with, if any."""
    planner = _Planner(formfile, context, base)
    has_workdir = any(isinstance(step, WorkdirStep) for step in formfile.steps)
    if formfile.copies_whole_context and not has_workdir:
        planner.copy(".", "/", "COPY . /  (no COPY: the whole context)")
    for step in formfile.steps:
        planner.step(step)
    planner.service()
    if len(planner.steps) > MAX_STEPS:
        raise PlanError(
            f"the Formfile makes {len(planner.steps)} steps; at most {MAX_STEPS} are allowed",
            hint="join RUN lines with `&&`, and COPY folders rather than single files",
        )
    return BuildPlan(
        build_id=build_identity(formfile, context, base.digest, data_disk),
        format_version=FORMAT_VERSION,
        formfile=formfile,
        base=base,
        disk_gib=formfile.disk_gib or DEFAULT_DISK_GIB,
        inputs=context.entries,
        steps=tuple(planner.steps),
        data_disk=data_disk,
    )
