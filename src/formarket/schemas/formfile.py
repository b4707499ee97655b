"""The parsed Formfile: what a listing's build recipe means, independent of how it was written.

Two Formfiles that differ only in layout (comments, blank lines, spacing, aliases, quoting, line
continuations) parse to equal models. Where each part came from in the file is kept apart, in
`FormfileSourceMap`, so that source line numbers never take part in equality or in a build id.

The value rules below (patterns, ranges, path rules) are the one definition shared by these models
and by the parser in `formarket.formfile.parser`, so every valid model renders to a Formfile that
parses back to it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, SecretStr, StringConstraints, model_validator

from formarket.schemas._base import Document
from formarket.schemas.farm import DEFAULT_BASES, DEFAULT_GPUS

__all__ = [
    "BASE_PATTERN",
    "DEFAULT_BASES",
    "DEFAULT_GPUS",
    "DISK_RANGE",
    "ENV_KEY_PATTERN",
    "GPU_COUNT_RANGE",
    "GPU_MODEL_PATTERN",
    "MEMORY_RANGE",
    "MODEL_ID_PATTERN",
    "NAME_PATTERN",
    "PACKAGE_PATTERN",
    "PORT_RANGE",
    "SERVICE_PATTERN",
    "USERNAME_PATTERN",
    "VCPU_RANGE",
    "CopyStep",
    "EnvStep",
    "EnvVar",
    "Formfile",
    "FormfileSourceMap",
    "FormfileUser",
    "GpuRequest",
    "InstallStep",
    "RunStep",
    "Step",
    "UserStep",
    "WorkdirStep",
    "absolute_path_problem",
    "context_path_problem",
    "forbidden_character",
    "raw_text_problem",
    "text_problem",
]


NAME_PATTERN = r"[a-z0-9][a-z0-9._-]{0,62}"
USERNAME_PATTERN = r"[a-z_][a-z0-9_-]{0,31}"
ENV_KEY_PATTERN = r"[A-Za-z_][A-Za-z0-9_]*"
SERVICE_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}"
BASE_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._:/@-]{0,127}"
GPU_MODEL_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}"
# Model ids may contain `:` (`ollama:llama3:8b`); no whitespace, quotes or shell metacharacters.
MODEL_ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._/:@+-]{0,199}"
# A Debian package name, optionally `:arch` and `=version`; nothing a shell or apt would read as
# an option or an operator, because the builder passes names to apt as arguments.
PACKAGE_PATTERN = r"[a-z0-9][a-z0-9+.-]+(?::[a-z0-9][a-z0-9-]*)?(?:=[0-9][A-Za-z0-9.+~:-]*)?"

VCPU_RANGE = (1, 128)
MEMORY_RANGE = (512, 256_000)
DISK_RANGE = (5, 65_535)
GPU_COUNT_RANGE = (1, 8)
PORT_RANGE = (1, 65_535)

# Bidirectional embeddings, overrides and isolates can make a line display differently from what it
# says ("trojan source"); a recipe that runs as root must read as it runs. With them: controls
# other than tab (Unicode category Cc), lone surrogates (Cs) and the line and paragraph
# separators (Zl, Zp). One compiled class, because every line of every Formfile passes here.
_FORBIDDEN = re.compile(
    "[\x00-\x08\x0a-\x1f\x7f-\x9f\ud800-\udfff\u2028\u2029\u202a-\u202e\u2066-\u2069]"
)


def forbidden_character(text: str) -> int | None:
    """Index of the first character a Formfile may not contain (a control other than tab)."""
    found = _FORBIDDEN.search(text)
    return found.start() if found is not None else None


def text_problem(text: str) -> str | None:
    """Why `text` cannot appear in a Formfile value, or None."""
    index = forbidden_character(text)
    if index is None:
        return None
    return f"contains the control character U+{ord(text[index]):04X}"


def _ends_in_single_backslash(text: str) -> bool:
    return text.endswith("\\") and not text.endswith("\\\\")


def raw_text_problem(text: str) -> str | None:
    """Why `text` cannot be the unquoted rest of a line (RUN, DESCRIPTION, WORKDIR), or None."""
    if not text:
        return "is empty"
    if text != text.strip():
        return "starts or ends with whitespace"
    if _ends_in_single_backslash(text):
        return "ends with a single `\\`, which would continue the line"
    return text_problem(text)


def context_path_problem(path: str) -> str | None:
    """Why `path` is not a path inside the build context, or None (only the text is checked)."""
    if not path:
        return "is empty"
    if path.startswith("/"):
        return "is absolute; COPY sources are relative to the build context"
    if ".." in path.split("/"):
        return "leaves the build context with `..`"
    return text_problem(path)


def absolute_path_problem(path: str) -> str | None:
    """Why `path` is not a clean absolute path inside the image, or None."""
    if not path.startswith("/"):
        return "is not an absolute path"
    if any(part in {".", ".."} for part in path.split("/")):
        return "contains a `.` or `..` component"
    return text_problem(path)


def _checked(problem: Callable[[str], str | None]) -> AfterValidator:
    def validate(value: str) -> str:
        reason = problem(value)
        if reason is not None:
            raise ValueError(reason)
        return value

    return AfterValidator(validate)


def _secret_checked(value: SecretStr) -> SecretStr:
    clear = value.get_secret_value()
    if not clear:
        raise ValueError("is empty")
    reason = text_problem(clear)
    if reason is not None:
        raise ValueError(reason)
    return value


def _pattern(regex: str) -> StringConstraints:
    return StringConstraints(pattern=f"^{regex}$")


RawText = Annotated[str, _checked(raw_text_problem)]
Text = Annotated[str, _checked(text_problem)]
AbsolutePath = Annotated[str, _checked(absolute_path_problem)]
Username = Annotated[str, _pattern(USERNAME_PATTERN)]


def _list_entry_problem(entry: str) -> str | None:
    if not entry or entry != entry.strip():
        return "is empty or has surrounding whitespace"
    if "," in entry:
        return "contains `,`, which separates list entries"
    return text_problem(entry)


# One entry of a comma-separated USER value, as the parser splits and strips it.
ListEntry = Annotated[str, _checked(_list_entry_problem)]


class GpuRequest(Document):
    """GPUs of one model that the VM needs."""

    model: Annotated[str, _pattern(GPU_MODEL_PATTERN)] = Field(
        description="GPU model, one of the farm's known models (for example `H100`)."
    )
    count: int = Field(1, ge=GPU_COUNT_RANGE[0], le=GPU_COUNT_RANGE[1], description="How many.")


class FormfileUser(Document):
    """A user account created in the image (`USER`); defaults are Formation's."""

    username: Username = Field(description="Login name.")
    passwd: Annotated[SecretStr, AfterValidator(_secret_checked)] = Field(
        description=(
            "The password as written: clear text, or a SHA-512 crypt hash when it starts with "
            "`$6$`. Never printed or dumped in clear; the builder stores only a hash in the image."
        )
    )
    ssh_authorized_keys: tuple[ListEntry, ...] = Field((), description="Public keys.")
    sudo: bool = Field(False, description="Member of the sudoers.")
    lock_passwd: bool = Field(False, description="Password login disabled.")
    ssh_pwauth: bool = Field(True, description="SSH accepts passwords.")
    disable_root: bool = Field(True, description="Root login over SSH disabled.")
    chpasswd_expire: bool = Field(True, description="The password must be changed at first login.")
    groups: tuple[Annotated[str, _pattern(USERNAME_PATTERN)], ...] = Field(
        (), description="Supplementary groups."
    )
    shell: AbsolutePath = Field("/bin/bash", description="Login shell.")

    @property
    def password_is_hashed(self) -> bool:
        return self.passwd.get_secret_value().startswith("$6$")


class CopyStep(Document):
    """`COPY src dst`: files from the build context into the image."""

    kind: Literal["copy"] = "copy"
    src: Annotated[str, _checked(context_path_problem)] = Field(
        description="Path relative to the build context, as written."
    )
    dst: AbsolutePath = Field(description="Absolute path in the image.")


class InstallStep(Document):
    """`INSTALL pkg ...`: distribution packages, passed to the package manager as arguments."""

    kind: Literal["install"] = "install"
    packages: tuple[Annotated[str, _pattern(PACKAGE_PATTERN)], ...] = Field(min_length=1)


class RunStep(Document):
    """`RUN command`: a shell command run as root inside the image at build time."""

    kind: Literal["run"] = "run"
    command: RawText


class EnvVar(Document):
    """One `KEY=value` of an ENV step."""

    key: Annotated[str, _pattern(ENV_KEY_PATTERN)]
    value: Text = Field(description="May be empty.")


class EnvStep(Document):
    """`ENV [--scope=...] KEY=value ...`: environment for the system, a user or a service."""

    kind: Literal["env"] = "env"
    scope: Literal["system", "user", "service"] = "system"
    scope_name: str | None = Field(None, description="The user or service; None for `system`.")
    variables: tuple[EnvVar, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _scope_is_consistent(self) -> EnvStep:
        keys = [var.key for var in self.variables]
        if len(set(keys)) != len(keys):
            raise ValueError("a key is set twice in one ENV step")
        if self.scope == "system":
            if self.scope_name is not None:
                raise ValueError("the system scope takes no name")
            return self
        pattern = USERNAME_PATTERN if self.scope == "user" else SERVICE_PATTERN
        if self.scope_name is None or not re.fullmatch(pattern, self.scope_name):
            raise ValueError(f"a {self.scope} scope needs a valid name")
        return self


class WorkdirStep(Document):
    """`WORKDIR /path`: the service's working directory (and where a COPY-less context goes)."""

    kind: Literal["workdir"] = "workdir"
    path: Annotated[AbsolutePath, _checked(raw_text_problem)]


class UserStep(Document):
    """`USER ...` at its place among the steps; the account itself is in `Formfile.users`."""

    kind: Literal["user"] = "user"
    username: Username


Step = Annotated[
    CopyStep | InstallStep | RunStep | EnvStep | WorkdirStep | UserStep,
    Field(discriminator="kind"),
]


def _kind(step: Any) -> Any:
    return step.get("kind") if isinstance(step, dict) else getattr(step, "kind", None)


class Formfile(Document):
    """A parsed Formfile: resources, requirements and the ordered build steps of a VM image."""

    name: Annotated[str, _pattern(NAME_PATTERN)] = Field(description="`NAME`, required.")
    description: RawText | None = Field(None, description="`DESCRIPTION`, free text.")
    base: Annotated[str, _pattern(BASE_PATTERN)] | None = Field(
        None, description="`FROM`: the base image; None means the farm's default base."
    )
    vcpus: int = Field(1, ge=VCPU_RANGE[0], le=VCPU_RANGE[1], description="`VCPU`.")
    memory_mib: int = Field(512, ge=MEMORY_RANGE[0], le=MEMORY_RANGE[1], description="`MEMORY`.")
    disk_gib: int | None = Field(
        None, ge=DISK_RANGE[0], le=DISK_RANGE[1], description="`DISK`; None when not given."
    )
    gpus: tuple[GpuRequest, ...] = Field((), description="`GPU` lines, in file order.")
    model_required: tuple[Annotated[str, _pattern(MODEL_ID_PATTERN)], ...] = Field(
        (), description="`MODEL required:<id>`: models the agent cannot run without."
    )
    model_preferred: tuple[Annotated[str, _pattern(MODEL_ID_PATTERN)], ...] = Field(
        (), description="`MODEL preferred:<id>`: models the agent works best with."
    )
    users: tuple[FormfileUser, ...] = Field((), description="`USER` accounts, in file order.")
    steps: tuple[Step, ...] = Field((), description="COPY/INSTALL/RUN/ENV/WORKDIR/USER in order.")
    workdir: Annotated[AbsolutePath, _checked(raw_text_problem)] = Field(
        "/", description="`WORKDIR`, default `/`."
    )
    entrypoint: tuple[Text, ...] | None = Field(
        None, description="`ENTRYPOINT` as an argument vector; the last one in the file wins."
    )
    expose: tuple[int, ...] = Field((), description="`EXPOSE` TCP ports; the first is checked.")
    copies_whole_context: bool = Field(
        True, description="No COPY at all: the whole context goes into WORKDIR (Formation's rule)."
    )

    @model_validator(mode="before")
    @classmethod
    def _derive(cls, data: Any) -> Any:
        # Fields that restate the steps are derived when left out, so a hand-built model cannot
        # forget them; when given they must agree (checked after validation).
        if not isinstance(data, dict):
            return data
        steps = data.get("steps", ())
        if not isinstance(steps, list | tuple):
            return data
        filled = dict(data)
        kinds = [_kind(step) for step in steps]
        filled.setdefault("copies_whole_context", "copy" not in kinds)
        if "workdir" not in filled:
            for step, kind in zip(steps, kinds, strict=True):
                if kind == "workdir":
                    path = step.get("path") if isinstance(step, dict) else step.path
                    filled["workdir"] = path
        return filled

    @model_validator(mode="after")
    def _consistent(self) -> Formfile:
        workdirs = [step.path for step in self.steps if isinstance(step, WorkdirStep)]
        if len(workdirs) > 1:
            raise ValueError("WORKDIR may appear at most once")
        if self.workdir != (workdirs[0] if workdirs else "/"):
            raise ValueError("workdir does not match the WORKDIR step")
        has_copy = any(isinstance(step, CopyStep) for step in self.steps)
        if self.copies_whole_context == has_copy:
            raise ValueError("copies_whole_context must be true exactly when there is no COPY")
        usernames = [user.username for user in self.users]
        if [s.username for s in self.steps if isinstance(s, UserStep)] != usernames:
            raise ValueError("users and USER steps must name the same accounts in the same order")
        _unique("username", usernames)
        _unique("GPU model", [gpu.model for gpu in self.gpus])
        _unique("model id", [*self.model_required, *self.model_preferred])
        _unique("port", list(self.expose))
        if any(not PORT_RANGE[0] <= port <= PORT_RANGE[1] for port in self.expose):
            raise ValueError("a port is out of range")
        if self.entrypoint is not None and (not self.entrypoint or not self.entrypoint[0]):
            raise ValueError("an entrypoint needs a command")
        return self


def _unique(what: str, values: list[Any]) -> None:
    if len(set(values)) != len(values):
        raise ValueError(f"a {what} appears twice")


class FormfileSourceMap(Document):
    """Where the parts of a parsed Formfile came from: 1-based line numbers.

    Kept out of `Formfile` so that layout never changes equality or a build id; the builder and the
    registry use it to point at the line a later failure comes from.
    """

    line_of: tuple[tuple[str, int], ...] = Field(
        description="Each instruction's canonical keyword and first line, in file order."
    )
    step_lines: tuple[int, ...] = Field(description="The line of `Formfile.steps[i]`.")

    def first_line(self, keyword: str) -> int | None:
        """The first line of `keyword` (canonical spelling, for example `MEMORY`), or None."""
        return next((line for name, line in self.line_of if name == keyword), None)
