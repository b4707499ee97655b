"""`render_site`: the whole site as {path: bytes}, a pure function of the catalog and the theme.

Every output has a key: for a listing's or publisher's page, a digest of its view (what it
shows) and of the theme; for a listing's API file, of its document and versions; for
everything else, a digest of its bytes. Given the keys of the previous
build, the expensive outputs whose key did not change are not rendered at all, so a build after
one listing changed renders that listing's files and the small aggregate files (catalog pages,
data shards, API lists), not 10,000 pages.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from formarket.site.api import API_ROOT, ReadDocument, api_files, listing_file
from formarket.site.catalog import SECTIONS, Catalog, Entry
from formarket.site.clientdata import ClientData, client_data
from formarket.site.compat import Compatibility, compatibility
from formarket.site.frame import Theme, depth, digest, file_of, url_function
from formarket.site.pages import rendering_pages
from formarket.site.views import record

__all__ = ["GENERATED", "MARKER", "Rendered", "Theme", "render_site"]

MARKER = "<!-- formarket:generated -->"
# Hand-written pages that get a generated part, and the template that renders it.
GENERATED = {
    "/": "home.html",
    "/models/": "catalog.html",
    "/agents/": "catalog.html",
    "/solutions/": "catalog.html",
    "/compatibility/": "explorer.html",
    "/publishers/": "publishers.html",
}
FIRST_CARDS = 48
_SORTS = {
    "model": [["name", "Name"], ["popular", "Most used"], ["newest", "Newest"], ["price", "Price"]],
    "agent": [["name", "Name"], ["popular", "Most used"], ["newest", "Newest"], ["price", "Price"]],
    "solution": [["name", "Name"], ["popular", "Most used"], ["newest", "Newest"]],
}


@dataclass(frozen=True, slots=True)
class Rendered:
    """Outputs rendered by this build, and the key of every output (rendered or kept)."""

    files: dict[str, bytes] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)
    skipped: int = 0


@dataclass
class _Run:
    catalog: Catalog
    theme: Theme
    previous: Mapping[str, str]
    read_document: ReadDocument
    files: dict[str, bytes] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)
    skipped: int = 0

    def add(self, path: str, content: bytes) -> None:
        self.keys[path] = digest(content)
        self.files[path] = content


def _listing_file(run: _Run, path: str, key: str) -> None:
    """A listing's API file, if its key (computed by the page workers) changed. Rendered
    here, not in the workers: reading older versions goes through the repository, whose open
    pack files a forked process must not share."""
    run.keys[path] = key
    if run.previous.get(path) == key:
        run.skipped += 1
        return
    kind, ident = path.removeprefix(f"{API_ROOT}/").removesuffix(".json").split("/", 1)
    entry = run.catalog.of_kind(kind.removesuffix("s"))[ident]
    run.files[path] = listing_file(entry, run.catalog, run.read_document)


def _section_view(
    page_path: str, catalog: Catalog, data: ClientData, compat: Compatibility
) -> dict[str, Any]:
    if page_path == "/":
        entries = catalog.all_entries()
        dated = sorted((e for e in entries if e.published), key=lambda e: e.published)
        popular = sorted((e for e in entries if e.popularity), key=lambda e: -e.popularity)
        return {
            "total": len(entries),
            "counts": {
                "model": len(catalog.models),
                "agent": len(catalog.agents),
                "solution": len(catalog.solutions),
                "publisher": len(catalog.publishers),
            },
            "new": [record(e) for e in reversed(dated[-8:])],
            "new_note": "What is new comes from the git history: "
            + (catalog.history.note or "nothing has been published yet."),
            "popular": [record(e) for e in popular[:8]],
            "data": data.page_config(scope="all"),
        }
    if page_path == "/compatibility/":
        return {
            "agents": len(catalog.agents),
            "models": len(catalog.models),
            "data": data.page_config(scope="explorer"),
        }
    if page_path == "/publishers/":
        counts: dict[str, dict[str, int]] = {}
        for entry in catalog.all_entries():
            per = counts.setdefault(entry.publisher, {"model": 0, "agent": 0, "solution": 0})
            per[entry.kind] += 1
        return {
            "publishers": [
                {
                    "id": ident,
                    "name": str(p.get("name") or ident),
                    "url": f"/publishers/{ident}/",
                    **counts.get(ident, {"model": 0, "agent": 0, "solution": 0}),
                }
                for ident, p in catalog.publishers.items()
            ]
        }
    kind = next(k for k, section in SECTIONS.items() if f"/{section}/" == page_path)
    entries = list(catalog.of_kind(kind).values())
    plural = SECTIONS[kind]
    return {
        "kind": kind,
        "plural": plural,
        "sorts": _SORTS[kind],
        "facets": data.facet_config(kind),
        "first": [record(e) for e in entries[:FIRST_CARDS]],
        "more": len(entries) > FIRST_CARDS,
        "status": f"{len(entries)} {plural}"
        + (f", the first {FIRST_CARDS} by name" if len(entries) > FIRST_CARDS else ""),
        "data": data.page_config(
            scope=kind, plural=plural, facets=data.facet_config(kind), first=FIRST_CARDS
        ),
    }


def _hand_written(run: _Run, data: ClientData, compat: Compatibility) -> None:
    theme = run.theme
    for page_path, chrome in theme.chromes.items():
        original = chrome.original["content"]
        template = GENERATED.get(page_path)
        if template is None:
            run.add(file_of(page_path), chrome.render(depth(page_path), {}).encode())
            continue
        view = _section_view(page_path, run.catalog, data, compat)
        # The data block is JSON inside <script>: no "<" at all, so neither "</script>" nor
        # "<!--" can change how the browser reads it.
        data_json = json.dumps(view.get("data", {}), sort_keys=True).replace("<", "\\u003c")
        generated = theme.templates.get_template(template).render(
            v=view, u=url_function(page_path), data_json=data_json
        )
        if MARKER in original:
            content = original.replace(MARKER, generated, 1)
        else:
            content = original + generated
        run.add(file_of(page_path), chrome.render(depth(page_path), {"content": content}).encode())


def _ranked(catalog: Catalog) -> tuple[dict[str, Mapping[str, Any]], dict[str, Mapping[str, Any]]]:
    """Agents and models, most used first: compatible listings are shown in that order."""

    def order(entries: Mapping[str, Entry]) -> dict[str, Mapping[str, Any]]:
        ranked = sorted(entries.values(), key=lambda e: (-e.popularity, e.name.lower(), e.id))
        return {e.id: e.data for e in ranked}

    return order(catalog.agents), order(catalog.models)


def render_site(
    catalog: Catalog,
    theme: Theme,
    previous: Mapping[str, str] | None = None,
    read_document: ReadDocument | None = None,
    jobs: int | None = None,
) -> Rendered:
    """Every file of the site. `previous` holds the keys of outputs already on disk from an
    earlier build; those whose key is unchanged are left out of `files` (but keep their key).
    `read_document` reads an older version of a listing document by its git blob id; `jobs`
    processes render the listing pages (default: one per core for large catalogs)."""
    agents, models = _ranked(catalog)
    compat = compatibility(agents, models)
    run = _Run(catalog, theme, previous or {}, read_document or (lambda blob: None))
    with rendering_pages(catalog, theme, compat, run.previous, jobs) as pages:
        # The small files are made while worker processes render the pages.
        for path, content in theme.static.items():
            run.add(path, content)
        data = client_data(catalog, compat)
        for path, content in data.files.items():
            run.add(path, content)
        for path, content in api_files(catalog).items():
            run.add(path, content)
        _hand_written(run, data, compat)
        for path, key, page in pages():
            if path.startswith(f"{API_ROOT}/"):
                _listing_file(run, path, key)
            elif page is None:
                run.keys[path] = key
                run.skipped += 1
            else:
                run.keys[path] = key
                run.files[path] = page
    run.add(".nojekyll", b"")
    return Rendered(run.files, run.keys, run.skipped)
