"""A Formfile model back to text, and to the canonical bytes a build id is computed from."""

from __future__ import annotations

import hashlib
import json
import re

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

__all__ = ["canonical_json", "quote", "render_formfile", "render_step", "render_user"]

# Words made only of these need no quotes anywhere in a Formfile.
_SAFE_WORD = re.compile(r"[A-Za-z0-9_./@+,:=%^-]+")


def _is_default(user: FormfileUser, name: str) -> bool:
    # Defaults are left out so a rendered USER line says only what differs from Formation's.
    return bool(getattr(user, name) == FormfileUser.model_fields[name].default)


def quote(value: str) -> str:
    """`value` as one word for COPY, ENV and USER, which group with `"` and `'`.

    There are no escapes, so a `"` inside the value is written as `'"'` between two double-quoted
    runs: `a"b` becomes `"a"'"'"b"`.
    """
    if _SAFE_WORD.fullmatch(value):
        return value
    return '"' + value.replace('"', '"\'"\'"') + '"'


def render_user(user: FormfileUser, *, reveal: bool = True) -> str:
    """A USER line; with `reveal=False` the password is written as `********`."""
    secret = quote(user.passwd.get_secret_value()) if reveal else "********"
    items = [f"username:{user.username}", f"passwd:{secret}"]
    for name in ("ssh_authorized_keys", "groups"):
        values: tuple[str, ...] = getattr(user, name)
        if values:
            items.append(f"{name}:{quote(','.join(values))}")
    for name in ("sudo", "lock_passwd", "ssh_pwauth", "disable_root", "chpasswd_expire"):
        if not _is_default(user, name):
            items.append(f"{name}:{'true' if getattr(user, name) else 'false'}")
    if not _is_default(user, "shell"):
        items.append(f"shell:{quote(user.shell)}")
    return "USER " + " ".join(items)


def render_step(step: Step, users: dict[str, FormfileUser], *, reveal: bool = True) -> str:
    """One step as its Formfile line; `users` resolves USER steps to their accounts."""
    if isinstance(step, CopyStep):
        return f"COPY {quote(step.src)} {quote(step.dst)}"
    if isinstance(step, InstallStep):
        return "INSTALL " + " ".join(step.packages)
    if isinstance(step, RunStep):
        return f"RUN {step.command}"
    if isinstance(step, EnvStep):
        scope = "" if step.scope == "system" else f" --scope={step.scope}:{step.scope_name}"
        pairs = " ".join(
            f"{var.key}={quote(var.value) if var.value else ''}" for var in step.variables
        )
        return f"ENV{scope} {pairs}"
    if isinstance(step, WorkdirStep):
        return f"WORKDIR {step.path}"
    if isinstance(step, UserStep):
        return render_user(users[step.username], reveal=reveal)
    raise AssertionError(f"unhandled step {step!r}")


def render_formfile(formfile: Formfile) -> str:
    """Canonical Formfile text that parses back to an equal model.

    It contains USER passwords in clear, as the Formfile it came from did: it is the publisher's
    own recipe. Never log it; show `render_user(..., reveal=False)` lines instead.
    """
    lines = [f"NAME {formfile.name}"]
    if formfile.description is not None:
        lines.append(f"DESCRIPTION {formfile.description}")
    if formfile.base is not None:
        lines.append(f"FROM {formfile.base}")
    lines += [f"MODEL required:{model_id}" for model_id in formfile.model_required]
    lines += [f"MODEL preferred:{model_id}" for model_id in formfile.model_preferred]
    lines += [f"VCPU {formfile.vcpus}", f"MEMORY {formfile.memory_mib}"]
    if formfile.disk_gib is not None:
        lines.append(f"DISK {formfile.disk_gib}")
    lines += [f"GPU {gpu.model}:{gpu.count}" for gpu in formfile.gpus]
    users = {user.username: user for user in formfile.users}
    lines += [render_step(step, users) for step in formfile.steps]
    if formfile.expose:
        lines.append("EXPOSE " + " ".join(str(port) for port in formfile.expose))
    if formfile.entrypoint is not None:
        lines.append("ENTRYPOINT " + json.dumps(list(formfile.entrypoint), ensure_ascii=False))
    return "\n".join(lines) + "\n"


def canonical_json(formfile: Formfile) -> bytes:
    """Deterministic bytes for the build id: sorted keys, no layout, no line numbers.

    A password enters as the SHA-256 hex of its text, so the bytes can be kept next to a build
    without holding it in clear, while a changed password still changes the build.
    """
    data = formfile.model_dump(mode="json")
    for dumped, user in zip(data["users"], formfile.users, strict=True):
        dumped["passwd"] = hashlib.sha256(user.passwd.get_secret_value().encode()).hexdigest()
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()
