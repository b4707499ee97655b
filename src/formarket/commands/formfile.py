"""`formarket formfile ...`: look at a Formfile the way the build farm will read it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import NoReturn

import click

from formarket.errors import InputError, LocatedError, Location, NotFoundError
from formarket.formfile.parser import MAX_BYTES, check_formfile, too_large
from formarket.formfile.render import render_step
from formarket.schemas.formfile import Formfile, FormfileSourceMap

__all__ = ["command"]


@click.group(name="formfile")
def command() -> None:
    """Work with Formfiles, the build recipes of listings (see docs/formfile.md).

    \b
    Example:
      formarket formfile parse ./Formfile          what the farm will build, or every mistake
    """


@command.command(name="parse")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the parsed model as JSON.")
def parse(path: Path, as_json: bool) -> None:
    """Parse the Formfile at PATH and show what it means, or every mistake in it.

    \b
    Example:
      formarket formfile parse registry/agents/acme/helper/Formfile
      formarket formfile parse Formfile --json | jq .steps

    Mistakes go to stderr as `PATH:LINE:COLUMN: FFnnn message` with a hint, and the exit
    status is 1. Passwords from USER lines are never printed.
    """
    data = _read(path)
    if len(data) > MAX_BYTES:
        _report_and_exit([str(too_large(str(path), f"over {MAX_BYTES} bytes"))])
    text = _decode(data, str(path))
    result = check_formfile(text, path=str(path))
    if result.formfile is None or result.source_map is None:
        _report_and_exit([str(error) for error in result.errors])
    if as_json:
        click.echo(json.dumps(result.formfile.model_dump(mode="json"), indent=2))
    else:
        click.echo(_summary(result.formfile, result.source_map))


def _report_and_exit(lines: list[str]) -> NoReturn:
    for line in lines:
        click.echo(line, err=True)
    click.get_current_context().exit(1)


def _read(path: Path) -> bytes:
    try:
        with path.open("rb") as handle:
            # One byte past the limit is enough to know the file is too large; `/dev/zero` and
            # other endless files must not be read to the end.
            return handle.read(MAX_BYTES + 1)
    except FileNotFoundError as exc:
        raise NotFoundError(
            f"{path}: no such file", hint="give the path of a Formfile, for example `./Formfile`"
        ) from exc
    except IsADirectoryError as exc:
        raise InputError(
            f"{path} is a directory", hint=f"give the Formfile itself: `{path / 'Formfile'}`"
        ) from exc
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror or exc}") from exc


def _decode(data: bytes, path: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = data[: exc.start]
        line = before.count(b"\n") + 1
        column = len(before[before.rfind(b"\n") + 1 :].decode("utf-8", "replace")) + 1
        raise LocatedError(
            Location(path, line, column),
            f"byte 0x{data[exc.start]:02x} is not UTF-8; a Formfile is UTF-8 text",
            hint="re-save the file as UTF-8, or check that it is not a binary file",
        ) from exc


def _summary(formfile: Formfile, source_map: FormfileSourceMap) -> str:
    """A readable account of what a Formfile asks for, passwords left out."""
    resources = f"{formfile.vcpus} vCPU, {formfile.memory_mib} MiB memory"
    resources += f", {formfile.disk_gib} GiB disk" if formfile.disk_gib else ", default disk"
    gpus = ", ".join(f"{gpu.count}x {gpu.model}" for gpu in formfile.gpus) or "none"
    rows = [
        ("name", formfile.name),
        ("description", formfile.description or "-"),
        ("base", formfile.base or "farm default"),
        ("resources", resources),
        ("gpus", gpus),
        ("models", _models(formfile)),
        ("users", ", ".join(user.username for user in formfile.users) or "none"),
        ("workdir", formfile.workdir),
        ("context", "all of it, into WORKDIR" if formfile.copies_whole_context else "COPY lines"),
        ("expose", " ".join(str(port) for port in formfile.expose) or "none"),
        ("entrypoint", json.dumps(list(formfile.entrypoint)) if formfile.entrypoint else "none"),
    ]
    lines = [f"{label:<12} {value}" for label, value in rows]
    lines.append(f"steps        {len(formfile.steps)}")
    users = {user.username: user for user in formfile.users}
    for step, line in zip(formfile.steps, source_map.step_lines, strict=True):
        lines.append(f"  line {line:<4} {render_step(step, users, reveal=False)}")
    return "\n".join(lines)


def _models(formfile: Formfile) -> str:
    parts = [f"required {m}" for m in formfile.model_required]
    parts += [f"preferred {m}" for m in formfile.model_preferred]
    return ", ".join(parts) or "none"
