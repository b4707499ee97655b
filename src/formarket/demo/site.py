"""The site's step of `formarket demo`: build the catalog of the demo repository and say where
to look at it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from formarket.site.build import build_site
from formarket.site.links import check_links

__all__ = ["demo_site"]


def demo_site(repo_path: Path, out: Path, echo: Callable[[str], None]) -> Path:
    """Build the site of the registry at `repo_path` into `out`; returns `out`."""
    report = build_site(repo_path, out, echo=echo)
    broken = check_links(out)
    echo(
        f"formarket site build: {report.listings} listings, {report.written} files in"
        f" {report.seconds:.2f}s; {len(broken)} broken internal links"
    )
    echo(
        "look at it with:\n"
        f"  formarket site serve --dir {out}\n"
        "  then open http://127.0.0.1:8000/ (the JSON API is under /api/v1/)"
    )
    return out
