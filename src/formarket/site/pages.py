"""The thousands of pages: one per listing and per publisher, rendered in parallel.

Each page is a pure function of its view (see `views`) and the theme. Its key is a digest of
both, so a page whose key the previous build recorded is not rendered at all. Large catalogs
are split between worker processes, forked so that they share the catalog and the theme
without copying them; each returns its pages as bytes.
"""

from __future__ import annotations

import marshal
import multiprocessing
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from formarket.site.api import API_ROOT
from formarket.site.catalog import SECTIONS, Catalog, Entry
from formarket.site.compat import Compatibility
from formarket.site.frame import Theme, digest, file_of, frame, url_function, view_key
from formarket.site.markdown import render_readme
from formarket.site.views import listing_view, publisher_view, solution_view

__all__ = ["PARALLEL_FROM", "rendering_pages"]

PARALLEL_FROM = 2000  # listings; below this, starting processes costs more than it saves

Output = tuple[str, str, bytes | None]  # path, key, content (None: unchanged, not rendered)


@dataclass(frozen=True, slots=True)
class _Work:
    catalog: Catalog
    theme: Theme
    compat: Compatibility
    previous: Mapping[str, str]
    by_publisher: Mapping[str, Sequence[Entry]]


# What the forked workers read: set just before they start, inherited, never pickled.
_SHARED: _Work | None = None


def _listing_page(work: _Work, entry: Entry) -> Output:
    catalog, theme = work.catalog, work.theme
    if entry.kind == "solution":
        view = solution_view(entry, catalog)
    else:
        view = listing_view(entry, catalog, work.compat)
    path = file_of(entry.url)
    key = view_key(theme, entry.kind, view)
    if work.previous.get(path) == key:
        return path, key, None
    readme = ""
    if view.get("readme"):
        readme = render_readme(
            view["readme"],
            title=view["name"],
            folder=entry.folder,
            source_url=catalog.settings.source_url,
        )
    template = "solution.html" if entry.kind == "solution" else "listing.html"
    content = theme.templates.get_template(template).render(
        v=view, u=url_function(entry.url), readme_html=readme
    )
    page = frame(
        theme,
        theme.chromes[f"/{SECTIONS[entry.kind]}/"],
        entry.url,
        title=view["name"],
        description=view["description"],
        toc=view["toc"],
        content=content,
    )
    return path, key, page


def _publisher_page(work: _Work, ident: str) -> Output:
    view: dict[str, Any] = publisher_view(ident, work.catalog, work.by_publisher.get(ident, ()))
    page_path = f"/publishers/{ident}/"
    path = file_of(page_path)
    key = view_key(work.theme, "publisher", view)
    if work.previous.get(path) == key:
        return path, key, None
    content = work.theme.templates.get_template("publisher.html").render(
        v=view, u=url_function(page_path)
    )
    page = frame(
        work.theme,
        work.theme.chromes["/publishers/"],
        page_path,
        title=view["name"],
        description=view["description"] or f"{view['name']} on the catalog",
        toc=view["toc"],
        content=content,
    )
    return path, key, page


def _part(part: int, parts: int) -> list[Output]:
    """Every `parts`-th page from `part` on: interleaved, so each part gets its share of
    long and short pages."""
    work = _SHARED
    assert work is not None, "the pages' work is set before workers start"
    out: list[Output] = []
    history = str(work.catalog.history.available)
    for entry in work.catalog.all_entries()[part::parts]:
        out.append(_listing_page(work, entry))
        # The API file's key; the caller renders the file if it changed.
        key = digest("api", marshal.dumps(dict(entry.data)), repr(entry.versions), history)
        out.append((f"{API_ROOT}/{SECTIONS[entry.kind]}/{entry.id}.json", key, None))
    out += [_publisher_page(work, p) for p in list(work.catalog.publishers)[part::parts]]
    return out


def _jobs(catalog: Catalog, jobs: int | None) -> int:
    if jobs is not None:
        return max(1, jobs)
    if len(catalog.all_entries()) < PARALLEL_FROM:
        return 1
    return max(1, len(os.sched_getaffinity(0)))


@contextmanager
def rendering_pages(
    catalog: Catalog,
    theme: Theme,
    compat: Compatibility,
    previous: Mapping[str, str],
    jobs: int | None = None,
) -> Iterator[Callable[[], list[Output]]]:
    """Start rendering every listing and publisher page; the function it yields waits for
    them: (path, key, bytes), with None for the bytes of a page whose key is unchanged, and
    the key of each listing's API file (with None: the caller renders those).
    Worker processes render while the caller does other work; a small catalog is rendered
    in this process, when the function is called."""
    global _SHARED
    by_publisher: dict[str, list[Entry]] = {}
    for entry in catalog.all_entries():
        by_publisher.setdefault(entry.publisher, []).append(entry)
    _SHARED = _Work(catalog, theme, compat, previous, by_publisher)
    try:
        parts = _jobs(catalog, jobs)
        if parts == 1:
            yield lambda: _part(0, 1)
            return
        context = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(parts, mp_context=context) as pool:
            futures = [pool.submit(_part, part, parts) for part in range(parts)]
            yield lambda: [output for future in futures for output in future.result()]
    finally:
        _SHARED = None
