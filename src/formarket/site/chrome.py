"""The frame of a page mkdocs built, reused around pages formarket renders itself.

The theme override (`site/overrides/main.html`, `partials/toc.html`) puts markers around what
changes from page to page: `<!--fm:meta-->`, `title`, `toc` and `content`. Everything else (the
header, the tabs, the navigation, the footer, the scripts) is Material's, as mkdocs rendered it
once, so a listing page looks like a hand-written one without mkdocs rendering it. Material also
names the page in the header and in the skip link, outside any block; those two are cut out
by their markup, which is fixed by the pinned Material version (a test fails if it moves).

mkdocs writes relative URLs; the frame is cut from a page at one depth and reused at others, so
every relative URL is resolved to a site path once and written back relative to each page.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

__all__ = ["SLOTS", "Chrome", "ChromeError", "chrome_from_page", "relative_url"]

SLOTS = ("meta", "title", "topic", "skip", "tocopen", "toc", "content")
_MARKED = re.compile(r"<!--fm:(\w+)-->(.*?)<!--/fm:\1-->", re.DOTALL)
_TOPIC = re.compile(
    r'(data-md-component="header-topic">\s*<span class="md-ellipsis">)(.*?)(</span>)', re.DOTALL
)
_SKIP = re.compile(r'(<a href=")(#[^"]*)(" class="md-skip">)')
_ATTR = re.compile(r'\b(href|src)="([^"]*)"')
_SCOPE = re.compile(r'(new URL\(")([^"]*)(",location\))')
_CONFIG = re.compile(r'(<script id="__config" type="application/json">)(.*?)(</script>)', re.DOTALL)
_ICON = re.compile(r'<link rel="icon" href="([^"]*)"')
_BLANKS = re.compile(r"[ \t]*\n\s*")
_SITE = "https://site.invalid"


class ChromeError(ValueError):
    """A built page lacks a marker: the theme override or Material changed."""


def relative_url(depth: int, path: str) -> str:
    """A site path (`/models/x/`) as a URL relative to a page `depth` folders deep."""
    url = "../" * depth + path.lstrip("/")
    return url or "./"


@dataclass(frozen=True, slots=True)
class _Url:
    path: str  # a site path, with query and fragment


@dataclass(frozen=True, slots=True)
class _Slot:
    name: str


Part = str | _Url | _Slot


def _site_path(page_path: str, url: str) -> str | None:
    """The site path a relative URL on `page_path` points at, or None when it leaves the site
    or only names a place in the same page."""
    if not url or url.startswith("#"):
        return None
    if urlsplit(url).scheme or url.startswith("//"):
        return None
    joined = urlsplit(urljoin(_SITE + page_path, url))
    if f"{joined.scheme}://{joined.netloc}" != _SITE:
        return None
    path = joined.path
    if joined.query:
        path += "?" + joined.query
    if joined.fragment:
        path += "#" + joined.fragment
    return path


def _urls(text: str, page_path: str) -> list[Part]:
    """`text` cut into literals and the site paths of its relative URLs."""
    parts: list[Part] = []
    last = 0
    for match in _ATTR.finditer(text):
        target = _site_path(page_path, match.group(2))
        if target is None:
            continue
        start = match.start(2)
        parts.append(text[last:start])
        parts.append(_Url(target))
        last = match.end(2)
    parts.append(text[last:])
    return parts


def _literal(text: str, page_path: str) -> list[Part]:
    text = _BLANKS.sub("\n", text)
    parts: list[Part] = []
    pos = 0
    edits: list[tuple[int, int, Part]] = []
    for regex, slot in ((_TOPIC, "topic"), (_SKIP, "skip")):
        for match in regex.finditer(text):
            edits.append((match.start(2), match.end(2), _Slot(slot)))
    for match in _SCOPE.finditer(text):
        target = _site_path(page_path, match.group(2))
        if target is not None:
            edits.append((match.start(2), match.end(2), _Url(target)))
    for match in _CONFIG.finditer(text):
        edits.append((match.start(2), match.end(2), _Slot("__config")))
    for start, end, part in sorted(edits, key=lambda e: e[0]):
        parts.extend(_urls(text[pos:start], page_path))
        parts.append(part)
        pos = end
    parts.extend(_urls(text[pos:], page_path))
    return parts


@dataclass(frozen=True, slots=True)
class Chrome:
    """A page's frame; `original` holds what the source page had in each slot."""

    source: str  # the site path of the page it was cut from, such as /models/
    parts: tuple[Part, ...]
    original: Mapping[str, str]
    config: Mapping[str, object]  # Material's __config, whose URLs are resolved per page
    icon: str | None  # the site path of the favicon
    _cache: dict[int, tuple[str | _Slot, ...]] = field(default_factory=dict, compare=False)

    def _resolved(self, depth: int) -> tuple[str | _Slot, ...]:
        cached = self._cache.get(depth)
        if cached is not None:
            return cached
        out: list[str | _Slot] = []
        for part in self.parts:
            if isinstance(part, _Url):
                text = relative_url(depth, part.path)
            elif isinstance(part, _Slot) and part.name == "__config":
                text = self._config(depth)
            elif isinstance(part, _Slot):
                out.append(part)
                continue
            else:
                text = part
            if out and isinstance(out[-1], str):
                out[-1] += text
            else:
                out.append(text)
        resolved = tuple(out)
        self._cache[depth] = resolved
        return resolved

    def _config(self, depth: int) -> str:
        config = dict(self.config)
        for key in ("base", "search"):
            value = config.get(key)
            if isinstance(value, str):
                target = _site_path(self.source, value)
                if target is not None:
                    config[key] = relative_url(depth, target).rstrip("/") or "."
        return json.dumps(config, sort_keys=True)

    def render(self, depth: int, slots: Mapping[str, str]) -> str:
        """The page at `depth` folders below the site's root, with `slots` filled in (the
        source page's own content where a slot is not given)."""
        return "".join(
            part if isinstance(part, str) else slots.get(part.name, self.original[part.name])
            for part in self._resolved(depth)
        )


def chrome_from_page(html: str, page_path: str) -> Chrome:
    """The frame of a page mkdocs built at `page_path` (a site path such as `/models/`)."""
    parts: list[Part] = []
    original: dict[str, str] = {}
    pos = 0
    for match in _MARKED.finditer(html):
        parts.extend(_literal(html[pos : match.start()], page_path))
        name = match.group(1)
        if name not in original:
            original[name] = match.group(2)
        parts.append(_Slot(name))
        pos = match.end()
    parts.extend(_literal(html[pos:], page_path))
    for match in _TOPIC.finditer(html):
        original.setdefault("topic", match.group(2))
    for match in _SKIP.finditer(html):
        original.setdefault("skip", match.group(2))
    config_match = _CONFIG.search(html)
    missing = [s for s in SLOTS if s not in original]
    if config_match is None:
        missing.append("__config")
    if missing:
        raise ChromeError(
            f"the page built at {page_path} lacks the markers {', '.join(missing)}; is"
            " site/overrides/ in place and Material the pinned version?"
        )
    assert config_match is not None
    config = json.loads(config_match.group(2))
    icon = _ICON.search(original["meta"])
    icon_path = _site_path(page_path, icon.group(1)) if icon else None
    return Chrome(page_path, tuple(parts), original, config, icon_path)
