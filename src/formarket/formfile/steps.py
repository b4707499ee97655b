"""Instructions that build the image or say how it runs: COPY, INSTALL, RUN, ENV, WORKDIR,
ENTRYPOINT, EXPOSE."""

from __future__ import annotations

import json
import re
from typing import Literal

from formarket.formfile.codes import FormfileCode
from formarket.formfile.context import LineContext, show
from formarket.formfile.lexer import Word
from formarket.schemas.formfile import (
    ENV_KEY_PATTERN,
    PACKAGE_PATTERN,
    PORT_RANGE,
    SERVICE_PATTERN,
    USERNAME_PATTERN,
    CopyStep,
    EnvStep,
    EnvVar,
    InstallStep,
    RunStep,
    WorkdirStep,
    absolute_path_problem,
    context_path_problem,
    text_problem,
)

__all__ = [
    "handle_copy",
    "handle_entrypoint",
    "handle_env",
    "handle_expose",
    "handle_install",
    "handle_run",
    "handle_workdir",
]

Scope = Literal["system", "user", "service"]

_NAMED_SCOPES: dict[str, tuple[Scope, str]] = {
    "user": ("user", USERNAME_PATTERN),
    "service": ("service", SERVICE_PATTERN),
}
_PORT = re.compile(r"(\+?[0-9]{1,12})(/tcp)?")
_SCOPE_FLAG = "--scope="
_PACKAGE = re.compile(PACKAGE_PATTERN)
_ENV_KEY = re.compile(ENV_KEY_PATTERN)


def handle_copy(ctx: LineContext) -> None:
    words = ctx.words()
    if len(words) != 2:
        ctx.fail(
            FormfileCode.WRONG_ARGUMENT_COUNT,
            f"COPY takes a source and a destination, got {len(words)} words",
            at=words[2].offset if len(words) > 2 else None,
            hint='write `COPY <src> <dst>`; quote paths with spaces: `COPY "my dir" /app`',
        )
    src, dst = words
    src_problem = context_path_problem(src.value)
    if src_problem is not None:
        ctx.error(
            FormfileCode.COPY_ESCAPES_CONTEXT,
            f"COPY source {show(src.value)} {src_problem}",
            at=src.offset,
            hint="name a file or folder inside the build context, for example `./app`",
        )
    dst_problem = absolute_path_problem(dst.value)
    if dst_problem is not None:
        ctx.error(
            FormfileCode.BAD_COPY_DESTINATION,
            f"COPY destination {show(dst.value)} {dst_problem}",
            at=dst.offset,
            hint="give the destination as a clean absolute path in the image, for example `/app`",
        )
    if src_problem is None and dst_problem is None:
        ctx.draft.add_step(CopyStep(src=src.value, dst=dst.value), ctx.number)


def handle_install(ctx: LineContext) -> None:
    words = ctx.plain_words()
    bad = [word for word in words if not _PACKAGE.fullmatch(word.value)]
    for word in bad:
        ctx.error(
            FormfileCode.BAD_PACKAGE,
            f"INSTALL: {show(word.value)} is not a package name",
            at=word.offset,
            hint="list package names separated by spaces (`python3 curl`, `pkg=1.2-1`); "
            "use RUN for anything else",
        )
    if not bad:
        packages = tuple(word.value for word in words)
        ctx.draft.add_step(InstallStep(packages=packages), ctx.number)


def handle_run(ctx: LineContext) -> None:
    ctx.draft.add_step(RunStep(command=ctx.args), ctx.number)


def _scope(ctx: LineContext, word: Word) -> tuple[Scope, str | None]:
    value = word.value.removeprefix(_SCOPE_FLAG)
    if value == "system":
        return "system", None
    kind, _, name = value.partition(":")
    scope = _NAMED_SCOPES.get(kind)
    if scope is None or not re.fullmatch(scope[1], name):
        ctx.fail(
            FormfileCode.BAD_ENV_SCOPE,
            f"ENV scope {show(value)} is not valid",
            at=word.offset,
            hint="use `--scope=system`, `--scope=user:<username>` or `--scope=service:<name>`",
        )
    return scope[0], name


def handle_env(ctx: LineContext) -> None:
    words = ctx.words()
    scope: tuple[Scope, str | None] = ("system", None)
    if words and words[0].value.startswith(_SCOPE_FLAG):
        scope = _scope(ctx, words[0])
        words = words[1:]
    if not words:
        ctx.fail(
            FormfileCode.MISSING_ARGUMENT,
            "ENV sets no variable",
            hint="write `ENV [--scope=...] KEY=value [KEY=value ...]`",
        )
    variables: list[EnvVar] = []
    keys: set[str] = set()
    ok = True
    for word in words:
        key, sep, value = word.value.partition("=")
        if key.startswith("--scope"):
            ctx.error(
                FormfileCode.BAD_ENV_SCOPE,
                "ENV: a scope is written `--scope=<scope>`, before the variables",
                at=word.offset,
                hint="write `ENV --scope=<scope> KEY=value`",
            )
        elif not sep or not _ENV_KEY.fullmatch(key):
            ctx.error(
                FormfileCode.BAD_ENV,
                f"ENV: {show(word.value)} is not KEY=value with a valid key",
                at=word.offset,
                hint="keys are letters, digits and `_`, not starting with a digit; "
                'quote values with spaces: KEY="a value"',
            )
        elif key in keys:
            ctx.error(
                FormfileCode.DUPLICATE_VALUE,
                f"ENV: the key {show(key)} is set twice on one line",
                at=word.offset,
                hint="set each key once per ENV line",
            )
        else:
            keys.add(key)
            variables.append(EnvVar(key=key, value=value))
            continue
        ok = False
    if ok:
        step = EnvStep(scope=scope[0], scope_name=scope[1], variables=tuple(variables))
        ctx.draft.add_step(step, ctx.number)


def handle_workdir(ctx: LineContext) -> None:
    problem = absolute_path_problem(ctx.args)
    if problem is not None:
        ctx.fail(
            FormfileCode.BAD_WORKDIR,
            f"WORKDIR {show(ctx.args)} {problem}",
            hint="give a clean absolute path, for example `WORKDIR /app`",
        )
    ctx.draft.add_step(WorkdirStep(path=ctx.args), ctx.number)


def _json_entrypoint(ctx: LineContext) -> tuple[str, ...]:
    hint = 'write a JSON array of strings, `ENTRYPOINT ["python3", "app.py"]`, or the plain form'
    try:
        value = json.loads(ctx.args)
    except (ValueError, RecursionError):
        ctx.fail(FormfileCode.BAD_ENTRYPOINT, "ENTRYPOINT is not valid JSON", hint=hint)
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        ctx.fail(FormfileCode.BAD_ENTRYPOINT, "ENTRYPOINT is not an array of strings", hint=hint)
    if not value or not value[0]:
        ctx.fail(FormfileCode.BAD_ENTRYPOINT, "ENTRYPOINT names no command", hint=hint)
    for item in value:
        problem = text_problem(item)
        if problem is not None:
            ctx.fail(FormfileCode.BAD_ENTRYPOINT, f"an ENTRYPOINT argument {problem}", hint=hint)
    return tuple(value)


def handle_entrypoint(ctx: LineContext) -> None:
    if ctx.args.startswith("["):
        argv = _json_entrypoint(ctx)
    else:
        # Formation's plain form groups with double quotes only; a single quote is a character.
        argv = tuple(word.value for word in ctx.words(quotes='"'))
        if not argv:
            ctx.fail(
                FormfileCode.BAD_ENTRYPOINT,
                "ENTRYPOINT names no command",
                hint="write `ENTRYPOINT <command> [args ...]`",
            )
    ctx.draft.entrypoint = argv


def handle_expose(ctx: LineContext) -> None:
    for word in ctx.plain_words():
        match = _PORT.fullmatch(word.value)
        port = int(match.group(1)) if match else 0
        if not PORT_RANGE[0] <= port <= PORT_RANGE[1]:
            ctx.error(
                FormfileCode.BAD_PORT,
                f"EXPOSE: {show(word.value)} is not a TCP port",
                at=word.offset,
                hint=f"write `8080` or `8080/tcp`, a port from {PORT_RANGE[0]} to {PORT_RANGE[1]}",
            )
        elif ctx.unique("port", str(port), word.offset):
            ctx.draft.expose.append(port)
