"""A link checker for a built site: every internal link and asset of every page must resolve
to a file of the site, and every `#fragment` to an element of the page it names.

External links (http(s) to another host, mailto) are not followed: the machines that build the
site may have no network, and a third party's outage must not fail a build.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

from formarket.site.output import STATE

__all__ = ["BrokenLink", "check_links"]

_LINKING = {"a": "href", "link": "href", "script": "src", "img": "src", "iframe": "src"}


@dataclass(frozen=True, slots=True, order=True)
class BrokenLink:
    page: str  # the page's path in the site
    url: str
    reason: str


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        for name in ("id", "name"):
            value = values.get(name)
            if value:
                self.ids.add(value)
        attr = _LINKING.get(tag)
        value = values.get(attr) if attr else None
        if value is not None:
            self.links.append(value)


def _parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text("utf-8", "replace"))
    page.close()
    return page


def _pages(root: Path) -> Iterator[Path]:
    for path in sorted(root.rglob("*.html")):
        if STATE not in path.relative_to(root).parts:
            yield path


def check_links(root: Path) -> list[BrokenLink]:
    """Every broken internal link of the site built in `root`, sorted."""
    parsed: dict[Path, _Page] = {}

    def page_of(path: Path) -> _Page:
        if path not in parsed:
            parsed[path] = _parse(path)
        return parsed[path]

    broken: list[BrokenLink] = []
    for path in _pages(root):
        rel = path.relative_to(root).as_posix()
        for url in page_of(path).links:
            parts = urlsplit(url)
            if parts.scheme or parts.netloc:
                if parts.scheme in ("http", "https", "mailto", "data"):
                    continue
                broken.append(BrokenLink(rel, url, f"scheme {parts.scheme}: is not allowed"))
                continue
            if not parts.path:
                target = path
            else:
                # A path from the root (404.html has them: it is served at any depth).
                base = "" if parts.path.startswith("/") else posixpath.dirname(rel)
                joined = posixpath.normpath(posixpath.join(base, unquote(parts.path).lstrip("/")))
                if joined.startswith("../") or joined == "..":
                    broken.append(BrokenLink(rel, url, "leaves the site"))
                    continue
                target = root / joined
                if target.is_dir():
                    target = target / "index.html"
                if not target.is_file():
                    broken.append(BrokenLink(rel, url, "no such file"))
                    continue
            fragment = unquote(parts.fragment)
            if fragment and target.suffix == ".html" and fragment not in page_of(target).ids:
                broken.append(BrokenLink(rel, url, f"no element with id {fragment!r}"))
    return sorted(broken)
