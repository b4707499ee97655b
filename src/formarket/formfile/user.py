"""`USER field:value ...`: a user account created in the image."""

from __future__ import annotations

import re
from typing import Any

from formarket.formfile.codes import FormfileCode
from formarket.formfile.context import LineContext, show, suggest
from formarket.schemas.formfile import (
    USERNAME_PATTERN,
    FormfileUser,
    UserStep,
    absolute_path_problem,
)

__all__ = ["USER_FIELDS", "handle_user"]

_BOOLEAN_FIELDS = ("sudo", "lock_passwd", "ssh_pwauth", "disable_root", "chpasswd_expire")
_LIST_FIELDS = ("ssh_authorized_keys", "groups")
USER_FIELDS = ("username", "passwd", *_LIST_FIELDS, *_BOOLEAN_FIELDS, "shell")
_TRUE = frozenset({"true", "yes", "1", "on"})
_FALSE = frozenset({"false", "no", "0", "off"})
_SEPARATOR = re.compile(r"[:=]")


def _fields(ctx: LineContext) -> tuple[dict[str, tuple[str, int]], bool]:
    """Each field's (value, offset) and whether every item was well-formed."""
    fields: dict[str, tuple[str, int]] = {}
    ok = True
    for word in ctx.words():
        # The first `:` or `=` separates, so values may contain either (`passwd:a=b:c`).
        match = _SEPARATOR.search(word.value)
        name = word.value[: match.start()] if match else ""
        if match is None or name not in USER_FIELDS:
            if match is None:
                # Not echoed: a word without a field is often a password that lost its `passwd:`.
                problem = "this item is not `field:value`"
            else:
                did_you_mean = suggest(name, USER_FIELDS)
                problem = f"{show(name)} is not a USER field" + (
                    f"; {did_you_mean}" if did_you_mean else ""
                )
            ctx.error(
                FormfileCode.BAD_USER_FIELD,
                f"USER: {problem}",
                at=word.offset,
                hint="write `field:value` items; fields: " + ", ".join(USER_FIELDS),
            )
            ok = False
        elif name in fields:
            ctx.error(
                FormfileCode.DUPLICATE_VALUE,
                f"USER: the field {show(name)} is given twice",
                at=word.offset,
                hint="give each field once per USER line",
            )
            ok = False
        else:
            fields[name] = (word.value[match.end() :], word.offset)
    return fields, ok


def _value(ctx: LineContext, name: str, value: str, at: int) -> Any:
    """The model value of one field, or None after reporting why it is invalid."""
    if name in _BOOLEAN_FIELDS:
        if value.lower() in _TRUE | _FALSE:
            return value.lower() in _TRUE
        ctx.error(
            FormfileCode.BAD_BOOLEAN,
            f"USER: {name} {show(value)} is not a boolean",
            at=at,
            hint="write true/yes/1/on or false/no/0/off",
        )
        return None
    if name in _LIST_FIELDS:
        items = tuple(item.strip() for item in value.split(",") if item.strip())
        if name == "groups" and not all(re.fullmatch(USERNAME_PATTERN, g) for g in items):
            return _invalid(ctx, "groups must be comma-separated group names", at)
        return items
    if name == "username" and not re.fullmatch(USERNAME_PATTERN, value):
        return _invalid(ctx, f"username {show(value)} is not a valid user name", at)
    if name == "passwd" and not value:
        return _invalid(ctx, "passwd is empty", at)
    if name == "shell" and absolute_path_problem(value) is not None:
        return _invalid(ctx, f"shell {show(value)} is not a clean absolute path", at)
    return value


def _invalid(ctx: LineContext, message: str, at: int) -> None:
    ctx.error(
        FormfileCode.BAD_USER_VALUE,
        f"USER: {message}",
        at=at,
        hint="user and group names are `[a-z_][a-z0-9_-]{0,31}`; shell is an absolute path; "
        "passwd is not empty",
    )


def handle_user(ctx: LineContext) -> None:
    fields, ok = _fields(ctx)
    missing = [name for name in ("username", "passwd") if name not in fields]
    if missing:
        ctx.error(
            FormfileCode.MISSING_USER_FIELD,
            "USER needs " + " and ".join(missing),
            hint='write at least `USER username:<name> passwd:"<password>"`',
        )
        ok = False
    values = {}
    for name, (raw, at) in fields.items():
        value = _value(ctx, name, raw, at)
        if value is None:
            ok = False
        values[name] = value
    if not ok or not ctx.unique("username", values["username"], fields["username"][1]):
        return
    ctx.draft.users.append(FormfileUser(**values))
    ctx.draft.add_step(UserStep(username=values["username"]), ctx.number)
