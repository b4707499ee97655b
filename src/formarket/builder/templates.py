"""Listing templates: `builder/templates/<name>/` scaffolded into a registry listing folder.

A template is data: `template.yaml` (its name, the kind of listing it makes, a description)
and `files/`, copied with `{{id}}`, `{{publisher}}`, `{{slug}}` and `{{title}}` replaced. A
placeholder the scaffolder does not know is an error in the template, never left in a listing.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Literal

from pydantic import ValidationError

from formarket.errors import InputError, NotFoundError, UsageError
from formarket.schemas._base import Document
from formarket.schemas._types import LISTING_ID_PATTERN
from formarket.yamldoc import load_yaml

__all__ = ["TEMPLATES_DIR", "Template", "find_templates_dir", "load_templates", "scaffold"]

TEMPLATES_DIR = Path("builder") / "templates"
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_]+)\s*\}\}")


class Template(Document):
    name: str
    kind: Literal["model", "agent"]
    description: str


def find_templates_dir(start: Path) -> Path:
    for candidate in (start.resolve(), *start.resolve().parents, *Path(__file__).parents):
        if (candidate / TEMPLATES_DIR).is_dir():
            return candidate / TEMPLATES_DIR
    raise NotFoundError("no builder/templates folder found", hint="run in a formarket checkout")


def load_templates(folder: Path) -> dict[str, tuple[Template, Path]]:
    found: dict[str, tuple[Template, Path]] = {}
    for meta in sorted(folder.glob("*/template.yaml")):
        try:
            template = Template.model_validate(load_yaml(meta.read_bytes(), str(meta)).data)
        except ValidationError as exc:
            raise InputError(f"{meta}: {exc.errors()[0]['msg']}") from exc
        found[template.name] = (template, meta.parent / "files")
    return found


def _title(slug: str) -> str:
    return " ".join(part.capitalize() for part in slug.split("-"))


def _render(text: str, values: dict[str, str], where: Path) -> str:
    def replace(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in values:
            raise InputError(f"{where}: unknown placeholder {{{{{key}}}}} in the template")
        return values[key]

    return _PLACEHOLDER.sub(replace, text)


def scaffold(
    templates: dict[str, tuple[Template, Path]],
    name: str,
    kind: str,
    listing_id: str,
    registry: Path,
) -> Path:
    """Write a new listing folder from a template; the folder it made."""
    if name not in templates:
        raise UsageError(
            f"no template {name!r}",
            hint="templates: " + ", ".join(f"{t} ({templates[t][0].kind})" for t in templates),
        )
    template, files = templates[name]
    if template.kind != kind:
        raise UsageError(
            f"template {name!r} makes {template.kind} listings, not {kind} listings",
            hint=f"run `formarket new {template.kind} {listing_id} --template {name}`",
        )
    if re.fullmatch(LISTING_ID_PATTERN, listing_id) is None:
        raise UsageError(
            f"{listing_id!r} is not a listing id",
            hint="write PUBLISHER/SLUG in lower case, for example tinyforge/my-model",
        )
    publisher, slug = listing_id.split("/")
    target = registry / f"{kind}s" / publisher / slug
    if target.exists():
        raise UsageError(f"{target} exists already", hint="choose another slug")
    values = {"id": listing_id, "publisher": publisher, "slug": slug, "title": _title(slug)}
    staging = target.with_name(f".{slug}.new")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        for source in sorted(files.rglob("*")):
            dest = staging / source.relative_to(files)
            if source.is_dir():
                dest.mkdir(parents=True, exist_ok=True)
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_text(_render(source.read_text(), values, source))
            dest.chmod(source.stat().st_mode & 0o777)
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target
