"""The static JSON API under `/api/v1/`: its documents, as frozen models, and their schemas.

    index.json                   what is here: counts, the commit it was built from, the files
    models.json, agents.json,    a summary of every listing of a kind
    solutions.json
    publishers.json              every publisher and what it lists
    changes.json                 the change feed, newest first (the latest 500 changes)
    models/P/S.json, ...         one listing with the document of each of its versions
    schemas/NAME.schema.json     the JSON Schema of each document above

The models are the only definition of the format: the JSON Schemas are generated from them
and the documentation page (site/docs/api.md) points at the schemas. A change that breaks
readers needs a new version folder (`/api/v2/`), never an edit of v1.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal

from pydantic import ConfigDict, Field

from formarket.schemas._base import Document
from formarket.site.catalog import SECTIONS, Catalog, Entry
from formarket.site.clientdata import dumps
from formarket.site.deploys import mark_of

__all__ = [
    "API_ROOT",
    "FEED_LENGTH",
    "ApiIndex",
    "ChangeFeed",
    "ListingFile",
    "SummaryList",
    "api_files",
    "api_schemas",
]

API_ROOT = "api/v1"
API_VERSION = 1
FEED_LENGTH = 500


class _ApiDocument(Document):
    # Listing documents inside are whatever the registry's own schemas allow.
    model_config = ConfigDict(frozen=True, extra="forbid")

    api_version: Literal[1] = Field(default=1, description="The version of this API.")


class Summary(Document):
    """One listing in a list."""

    id: str = Field(description="`<publisher>/<slug>`.")
    kind: Literal["model", "agent", "solution"]
    name: str
    version: str = Field(description="The current version.")
    description: str
    publisher: str
    license: str | None = Field(default=None, description="An SPDX id; none for solutions.")
    tags: tuple[str, ...] = ()
    task: str | None = Field(default=None, description="Models: what the model does.")
    agent_type: str | None = Field(default=None, description="Agents: what kind of agent.")
    pricing: dict[str, Any] | None = Field(
        default=None, description="As in the listing (schemas/model.schema.json)."
    )
    royalty_percent: str | None = Field(default=None, description="The publisher's share.")
    published: str | None = Field(
        default=None, description="When the current version reached the branch (ISO 8601)."
    )
    page: str = Field(description="The listing's page, relative to the site's root.")
    api: str = Field(description="The listing's file in this API, relative to the site's root.")


class SummaryList(_ApiDocument):
    """Every listing of one kind, by name."""

    kind: Literal["model", "agent", "solution"]
    count: int
    items: tuple[Summary, ...]


class VersionEntry(Document):
    """One version of a listing."""

    version: str
    date: str | None = Field(description="When it reached the branch (ISO 8601, UTC).")
    commit: str | None = Field(description="The first commit of the branch that has it.")
    document: dict[str, Any] | None = Field(
        description="The listing document of that version; null when it cannot be read."
    )
    status: Literal["deprecated", "yanked"] | None = Field(
        default=None,
        description="The owners' mark (the current listing's `version_marks`): deprecated"
        " still deploys, with a warning; yanked takes no new deployments. Null: good standing.",
    )
    message: str | None = Field(default=None, description="Why the version is marked.")


class ListingFile(_ApiDocument):
    """One listing: its current document and every version."""

    kind: Literal["model", "agent", "solution"]
    id: str
    current: str = Field(description="The current version.")
    listing: dict[str, Any] = Field(description="The current listing document.")
    versions: tuple[VersionEntry, ...] = Field(description="Oldest first.")
    history: bool = Field(description="Whether versions come from git history.")
    page: str


class ChangeEntry(Document):
    date: str
    commit: str
    kind: Literal["model", "agent", "solution"]
    id: str
    change: Literal["added", "updated", "changed", "removed"] = Field(
        description="added, updated (a new version), changed (same version, edited) or removed."
    )
    version: str | None


class ChangeFeed(_ApiDocument):
    """What changed in the catalog, newest first."""

    history: bool = Field(description="False when the registry is not a git repository.")
    total: int = Field(description="Changes in the whole history.")
    items: tuple[ChangeEntry, ...] = Field(description=f"The latest {FEED_LENGTH} at most.")


class PublisherSummary(Document):
    id: str
    name: str
    website: str | None = None
    models: int
    agents: int
    solutions: int
    page: str


class PublisherList(_ApiDocument):
    count: int
    items: tuple[PublisherSummary, ...]


class ApiIndex(_ApiDocument):
    """The entry point: what the catalog holds and where each file is."""

    commit: str | None = Field(description="The registry commit the files were built from.")
    counts: dict[str, int]
    files: dict[str, str] = Field(description="Relative to this file's folder.")
    listing_file: str = Field(description="The pattern of one listing's file.")
    schemas: dict[str, str]


_SCHEMAS: Mapping[str, type[Document]] = {
    "index": ApiIndex,
    "summary-list": SummaryList,
    "listing": ListingFile,
    "changes": ChangeFeed,
    "publishers": PublisherList,
}


def _summary(entry: Entry) -> dict[str, Any]:
    """A `Summary` as JSON-ready data. Built directly, not through the model: the lists hold
    10,000 of them, and the tests hold the output to the model's schema."""
    data = entry.data
    monetization = data.get("monetization") or {}
    royalty = monetization.get("royalty_percent")
    return {
        "id": entry.id,
        "kind": entry.kind,
        "name": entry.name,
        "version": str(data.get("version", "")),
        "description": str(data.get("description", "")),
        "publisher": entry.publisher,
        "license": str(data["license"]) if data.get("license") else None,
        "tags": [str(t) for t in data.get("tags") or ()],
        "task": str(data["task"]) if data.get("task") else None,
        "agent_type": str(data["agent_type"]) if data.get("agent_type") else None,
        "pricing": dict(data["pricing"]) if data.get("pricing") else None,
        "royalty_percent": str(royalty) if royalty is not None else None,
        "published": entry.published or None,
        "page": entry.url.lstrip("/"),
        "api": f"{API_ROOT}/{SECTIONS[entry.kind]}/{entry.id}.json",
    }


def _json(document: Document) -> bytes:
    return dumps(document.model_dump(mode="json"))


ReadDocument = Callable[[str], Mapping[str, Any] | None]


def _mark(entry: Entry, version: str) -> dict[str, str | None]:
    mark = mark_of(entry.data, version)
    return {"status": mark[0], "message": mark[1]} if mark else {"status": None, "message": None}


def listing_file(entry: Entry, catalog: Catalog, read_document: ReadDocument) -> bytes:
    """One listing's file (a `ListingFile`, built as data directly like the summaries: there
    is one per listing); `read_document` reads an older version's document by blob id."""
    current = str(entry.data.get("version", ""))
    versions: list[dict[str, Any]] = []
    for v in entry.versions:
        document = entry.data if v.version == current else read_document(v.blob)
        versions.append(
            {
                "version": v.version,
                "date": v.date,
                "commit": v.commit,
                "document": dict(document) if document is not None else None,
                **_mark(entry, v.version),
            }
        )
    if not any(v["version"] == current for v in versions):
        versions.append(
            {
                "version": current,
                "date": None,
                "commit": None,
                "document": dict(entry.data),
                **_mark(entry, current),
            }
        )
    return dumps(
        {
            "api_version": API_VERSION,
            "kind": entry.kind,
            "id": entry.id,
            "current": current,
            "listing": dict(entry.data),
            "versions": versions,
            "history": catalog.history.available,
            "page": entry.url.lstrip("/"),
        }
    )


def api_files(catalog: Catalog) -> dict[str, bytes]:
    """Every API file except the one-per-listing files (see `listing_file`)."""
    files: dict[str, bytes] = {}
    for kind in ("model", "agent", "solution"):
        entries = list(catalog.of_kind(kind).values())
        files[f"{API_ROOT}/{SECTIONS[kind]}.json"] = dumps(
            {
                "api_version": API_VERSION,
                "kind": kind,
                "count": len(entries),
                "items": [_summary(e) for e in entries],
            }
        )
    changes = catalog.changes()
    files[f"{API_ROOT}/changes.json"] = _json(
        ChangeFeed(
            history=catalog.history.available,
            total=len(changes),
            items=tuple(
                ChangeEntry(
                    date=c.date,
                    commit=c.commit,
                    kind=c.kind,
                    id=c.id,
                    change=c.change,
                    version=c.version,
                )
                for c in changes[:FEED_LENGTH]
            ),
        )
    )
    counts: dict[str, dict[str, int]] = {}
    for entry in catalog.all_entries():
        per = counts.setdefault(entry.publisher, {"model": 0, "agent": 0, "solution": 0})
        per[entry.kind] += 1
    publishers = []
    for ident, data in catalog.publishers.items():
        per = counts.get(ident, {"model": 0, "agent": 0, "solution": 0})
        website = data.get("website")
        publishers.append(
            PublisherSummary(
                id=ident,
                name=str(data.get("name") or ident),
                website=website if isinstance(website, str) else None,
                models=per["model"],
                agents=per["agent"],
                solutions=per["solution"],
                page=f"publishers/{ident}/",
            )
        )
    files[f"{API_ROOT}/publishers.json"] = _json(
        PublisherList(count=len(publishers), items=tuple(publishers))
    )
    files[f"{API_ROOT}/index.json"] = _json(
        ApiIndex(
            commit=catalog.history.head,
            counts={
                "models": len(catalog.models),
                "agents": len(catalog.agents),
                "solutions": len(catalog.solutions),
                "publishers": len(catalog.publishers),
            },
            files={
                "models": "models.json",
                "agents": "agents.json",
                "solutions": "solutions.json",
                "publishers": "publishers.json",
                "changes": "changes.json",
            },
            listing_file="{kind}s/{publisher}/{slug}.json",
            schemas={name: f"schemas/{name}.schema.json" for name in _SCHEMAS},
        )
    )
    files.update(api_schemas())
    return files


def api_schemas() -> dict[str, bytes]:
    """The JSON Schema of every API document, by file."""
    out = {}
    for name, model in _SCHEMAS.items():
        schema = model.model_json_schema()
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["$id"] = f"{name}.schema.json"
        out[f"{API_ROOT}/schemas/{name}.schema.json"] = dumps(schema)
    return out
