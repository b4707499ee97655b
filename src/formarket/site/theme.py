"""Running mkdocs on the site project (top-level `site/`) and keeping what it built.

mkdocs builds only the hand-written pages (a second or two), and only when the project or the
versions of mkdocs and Material changed: its output does not depend on the registry, because
the registry's parts are put into those pages afterwards (see `render`). It runs in this
process, through its Python API.
"""

from __future__ import annotations

import logging
import shutil
from importlib import metadata
from pathlib import Path

import jinja2

from formarket.errors import FormarketError, NotFoundError
from formarket.site.chrome import ChromeError, chrome_from_page
from formarket.site.frame import Theme, digest
from formarket.site.render import GENERATED

__all__ = ["ThemeError", "find_project", "load_theme"]

_SKIPPED = frozenset({"sitemap.xml", "sitemap.xml.gz"})  # mkdocs' sitemap lists only its pages


class ThemeError(FormarketError):
    """mkdocs could not build the site project."""


def find_project(registry_root: Path, given: Path | None = None) -> Path:
    """The mkdocs project: `given`, else `site/` beside the registry, else the one of the
    formarket checkout this code runs from."""
    candidates = [given] if given is not None else [registry_root / "site"]
    if given is None:
        candidates.append(Path(__file__).resolve().parents[3] / "site")
    for candidate in candidates:
        if candidate is not None and (candidate / "mkdocs.yml").is_file():
            return candidate
    raise NotFoundError(
        f"no mkdocs project (site/mkdocs.yml) at {candidates[0]}",
        hint="run in the marketplace repository, or pass --site-project",
    )


def _project_digest(project: Path) -> str:
    parts: list[bytes | str] = [
        metadata.version("mkdocs"),
        metadata.version("mkdocs-material"),
    ]
    for path in sorted(project.rglob("*")):
        rel = path.relative_to(project)
        if path.is_file() and not any(p.startswith(".") for p in rel.parts):
            parts.extend((str(rel), path.read_bytes()))
    return digest(*parts)


def _run_mkdocs(project: Path, into: Path) -> None:
    # start-up: mkdocs and its plugins take about a second to import; most builds reuse the
    # hand-written pages and never run it.
    from mkdocs.commands.build import build  # start-up
    from mkdocs.config import load_config  # start-up
    from mkdocs.exceptions import MkDocsException  # start-up

    # mkdocs reads a relative site_dir from the folder of mkdocs.yml, not from ours.
    into = into.resolve()
    if into.exists():
        shutil.rmtree(into)
    # mkdocs reports through logging; only its warnings and errors are worth showing here.
    logging.getLogger("mkdocs").setLevel(logging.WARNING)
    try:
        config = load_config(str(project / "mkdocs.yml"), site_dir=str(into))
        build(config)
    except (MkDocsException, SystemExit) as exc:
        raise ThemeError(
            f"mkdocs could not build {project}: {exc}",
            hint="run `mkdocs build -f site/mkdocs.yml -d /tmp/x` to see its messages",
        ) from exc


def _renderer_digest() -> str:
    """What else a page's HTML depends on: this package's code and the renderers' versions.
    (Not all of formarket's code: an edit elsewhere must not re-render 10,000 pages.)"""
    here = Path(__file__).resolve().parent
    parts: list[bytes | str] = [metadata.version("markdown-it-py"), metadata.version("Jinja2")]
    for path in sorted(here.glob("*.py")):
        parts.extend((path.name, path.read_bytes()))
    return digest(*parts)


def _page_path(rel: str) -> str:
    return "/" + rel.removesuffix("index.html")


def load_theme(project: Path, state: Path) -> Theme:
    """The theme of the site project, built by mkdocs unless `state` holds a build of the
    same project by the same versions."""
    key = _project_digest(project)
    built = state / "mkdocs"
    stamp = state / "mkdocs.key"
    if not (built.is_dir() and stamp.is_file() and stamp.read_text() == key):
        stamp.unlink(missing_ok=True)
        _run_mkdocs(project, built)
        stamp.parent.mkdir(parents=True, exist_ok=True)
        stamp.write_text(key)
    import yaml  # start-up: only when the theme is rendered

    config = yaml.safe_load((project / "mkdocs.yml").read_text(encoding="utf-8")) or {}
    site_name = str(config.get("site_name") or "formarket")
    chromes = {}
    static: dict[str, bytes] = {}
    for path in sorted(built.rglob("*")):
        if not path.is_file():
            continue
        rel = path.relative_to(built).as_posix()
        if rel in _SKIPPED:
            continue
        if rel.endswith("index.html"):
            try:
                chromes[_page_path(rel)] = chrome_from_page(
                    path.read_text("utf-8"), _page_path(rel)
                )
            except ChromeError as exc:
                raise ThemeError(str(exc)) from exc
        else:
            static[rel] = path.read_bytes()
    missing = sorted(set(GENERATED) - set(chromes))
    if missing:
        raise ThemeError(
            f"the site project has no page for {', '.join(missing)}",
            hint="every page the generated parts go into must be in docs/ (see render.GENERATED)",
        )
    templates_dir = project / "templates"
    templates = jinja2.Environment(
        loader=jinja2.FileSystemLoader(templates_dir),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    template_parts: list[bytes | str] = [key, _renderer_digest()]
    for path in sorted(templates_dir.glob("*.html")):
        template_parts.extend((path.name, path.read_bytes()))
    return Theme(site_name, chromes, static, templates, digest(*template_parts))
