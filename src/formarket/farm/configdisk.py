"""The config disk: deployment-time settings for the VM, as a shell env file on a small raw
disk. Pure.

The image is the same for every deployment of a listing version; what differs (the model's
endpoint for an agent, the agent's settings, secrets) reaches the VM on a second virtio disk.
The base's init copies it to /etc/formfile/env.deploy (dropping the zero padding), and the
entrypoint reads that file after the Formfile's own ENV files, so deployment values win.
Each line is `KEY="value"`: read the same by `sh` (`. file`) and systemd's EnvironmentFile=.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from formarket.errors import InputError, NotFoundError
from formarket.schemas.deployment import Deployment, SecretRef

__all__ = [
    "MAX_CONFIG_BYTES",
    "config_disk_bytes",
    "deployment_env",
    "env_file",
    "resolve_secrets",
]

SECTOR = 4096
MAX_CONFIG_BYTES = 1 << 20
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


def _quote(value: str) -> str:
    # Double quotes with \ " $ ` escaped read the same in sh and in systemd's EnvironmentFile=;
    # sh's usual 'it'\''s' does not: systemd reads quotes only at the start of a value.
    return '"' + re.sub(r'([\\"$`])', r"\\\1", value) + '"'


def env_file(env: Mapping[str, str]) -> str:
    """`KEY='value'` lines, sorted by key; InputError for a name or value no shell can hold."""
    lines = ["# Written by formarket: this deployment's settings."]
    for key in sorted(env):
        value = env[key]
        if _NAME.fullmatch(key) is None:
            raise InputError(
                f"{key!r} cannot be an environment variable name",
                hint="use letters, digits and underscores, not starting with a digit",
            )
        if "\0" in value:
            raise InputError(f"the value of {key} holds a NUL byte, which no environment can")
        lines.append(f"{key}={_quote(value)}")
    return "\n".join(lines) + "\n"


def config_disk_bytes(env: Mapping[str, str]) -> bytes:
    """The env file, zero-padded to whole 4 KiB blocks (a disk's size)."""
    try:
        data = env_file(env).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InputError(f"a setting is not valid text: {exc.reason}") from exc
    if len(data) > MAX_CONFIG_BYTES:
        raise InputError(
            f"the deployment's settings take {len(data)} bytes; the config disk holds "
            f"{MAX_CONFIG_BYTES}",
            hint="pass large data as a file in the image or a URL, not as a setting",
        )
    padded = max(SECTOR, -(-len(data) // SECTOR) * SECTOR)
    return data.ljust(padded, b"\0")


def _setting_name(key: str) -> str | None:
    name = "SETTING_" + re.sub(r"[^A-Z0-9_]", "_", key.upper())
    return name if _NAME.fullmatch(name) else None


def _scalar(value: Any) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return json.dumps(value)
    return None


def deployment_env(
    deployment: Deployment,
    *,
    model_endpoint: str | None = None,
    secrets: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The variables a deployment's VM receives: who it is, the model's endpoint (for an
    agent), its settings (all as FORMARKET_SETTINGS JSON, and SETTING_<KEY> per top-level
    scalar) and its resolved secrets, which win over everything else of the same name."""
    env = {
        "FORMARKET_DEPLOYMENT": deployment.id,
        "FORMARKET_LISTING": deployment.listing.id,
        "FORMARKET_LISTING_VERSION": deployment.listing.version,
    }
    if model_endpoint is not None:
        env["MODEL_ENDPOINT"] = model_endpoint
    if deployment.settings:
        env["FORMARKET_SETTINGS"] = json.dumps(
            deployment.settings, sort_keys=True, ensure_ascii=False
        )
        for key, value in deployment.settings.items():
            name, text = _setting_name(key), _scalar(value)
            # Keys that differ only in case or punctuation would share one name: the JSON
            # keeps both, the variable is left out rather than picked at random.
            clash = sum(_setting_name(other) == name for other in deployment.settings) > 1
            if name is not None and text is not None and not clash:
                env[name] = text
    env.update(secrets or {})
    return env


def resolve_secrets(
    refs: Sequence[SecretRef], environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The values of a deployment's secrets: `env:NAME` from the farm's environment,
    `file:/path` from a file on the farm (without its final newline)."""
    environ = os.environ if environ is None else environ
    values: dict[str, str] = {}
    for secret in refs:
        scheme, _, where = secret.ref.partition(":")
        if scheme == "env":
            if where not in environ:
                raise NotFoundError(
                    f"secret {secret.name}: the farm has no environment variable {where}",
                    hint=f"set {where} in the environment of the farm's workers",
                )
            values[secret.name] = environ[where]
        elif scheme == "file":
            try:
                values[secret.name] = Path(where).read_text().removesuffix("\n")
            except OSError as exc:
                raise NotFoundError(
                    f"secret {secret.name}: cannot read {where}: {exc.strerror or exc}",
                    hint="the file must exist and be readable on every farm worker",
                ) from exc
        else:
            raise InputError(
                f"secret {secret.name}: {scheme}: references are not supported by this farm",
                hint="use env:NAME or file:/path",
            )
    return values
