"""The catalog's data for the browser, cut so that a page downloads only what it shows.

Every listing has an ordinal: its position when models, then agents, then solutions are each
listed by name. Everything else refers to ordinals:

- `catalog/records/N.json`: the cards of ordinals N*64 .. N*64+63 (name, id, version, ...);
- `catalog/postings/KIND/FACET/I.json`: the ordinals having value I of a facet;
- `catalog/terms/XY.json`: for each search word starting with XY, the ordinals whose name has
  it and those whose other text has it;
- `catalog/sort/KIND-KEY.json`: the rank of each listing of a kind in another order;
- `catalog/compat.json`: groups of interchangeable models and the groups each agent runs with;
- `catalog/ids/PUBLISHER.json`: ordinals by id, to open `?agent=ID` links.

Lists of ordinals are stored as differences from the previous one (short numbers). A catalog
page ships its first cards as HTML and loads nothing until the user searches, filters or sorts;
then it loads a few of these files (a few kB each at 10,000 listings).
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from formarket.site.catalog import KINDS, Catalog, Entry, price_value
from formarket.site.compat import Compatibility
from formarket.site.facets import Facet, build_facets
from formarket.site.views import record

__all__ = ["SHARD", "ClientData", "client_data", "deltas", "ordered", "tokens"]

SHARD = 64
_PRICING_ORDER = ("free", "per_request", "per_token", "per_instance_hour", "subscription")
_STOP = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "for",
        "from",
        "in",
        "is",
        "it",
        "its",
        "of",
        "on",
        "or",
        "that",
        "the",
        "this",
        "to",
        "with",
    ]
)
_WORD = re.compile(r"[a-z0-9]+")


def dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def deltas(ordinals: Iterable[int]) -> list[int]:
    """Sorted ordinals as differences: [3, 5, 9] -> [3, 2, 4]."""
    out: list[int] = []
    last = 0
    for value in sorted(ordinals):
        out.append(value - last)
        last = value
    return out


def tokens(text: str) -> set[str]:
    """Search words: lower case, accents folded, at least two characters, no stop words."""
    plain = text.lower()
    if not plain.isascii():  # most text is: folding accents is then skipped (10,000 listings)
        folded = unicodedata.normalize("NFKD", plain)
        plain = "".join(c for c in folded if not unicodedata.combining(c))
    return {w for w in _WORD.findall(plain) if len(w) >= 2 and w not in _STOP}


def ordered(catalog: Catalog) -> list[Entry]:
    """Every listing in ordinal order."""
    return [entry for kind in KINDS for entry in catalog.of_kind(kind).values()]


@dataclass(frozen=True, slots=True)
class ClientData:
    files: Mapping[str, bytes]  # site path (without the leading /) -> content
    facets: Mapping[str, tuple[Facet, ...]]  # by kind
    ranges: Mapping[str, tuple[int, int]]  # by kind: first ordinal, end
    version: str  # changes whenever any file does; appended to requests against stale caches

    def page_config(self, **extra: Any) -> dict[str, Any]:
        """What a page's script needs to find the data (ranges, shard size, version)."""
        return {
            "version": self.version,
            "shard": SHARD,
            "ranges": {kind: list(r) for kind, r in self.ranges.items()},
            **extra,
        }

    def facet_config(self, kind: str) -> list[dict[str, Any]]:
        return [
            {
                "key": facet.key,
                "label": facet.label,
                "values": [
                    {"key": v.key, "label": v.label, "count": len(v.ordinals)} for v in facet.values
                ],
            }
            for facet in self.facets.get(kind, ())
        ]


def _search_text(entry: Entry, publisher_name: str) -> tuple[str, str]:
    data = entry.data
    name = f"{entry.name} {entry.id.replace('/', ' ')}"
    other = " ".join(
        [
            str(data.get("description", "")),
            " ".join(str(t) for t in data.get("tags") or ()),
            str(data.get("task") or data.get("agent_type") or ""),
            str(data.get("framework") or ""),
            publisher_name,
        ]
    )
    return name, other


def _shard_key(token: str) -> str:
    return token[:2]


def _terms(entries: Sequence[Entry], catalog: Catalog) -> dict[str, bytes]:
    postings: dict[str, tuple[list[int], list[int]]] = {}
    for ordinal, entry in enumerate(entries):
        publisher = catalog.publishers.get(entry.publisher) or {}
        name, other = _search_text(entry, str(publisher.get("name") or ""))
        in_name = tokens(name)
        for column, words in ((0, in_name), (1, tokens(other) - in_name)):
            for word in words:
                found = postings.get(word)
                if found is None:
                    found = postings[word] = ([], [])
                found[column].append(ordinal)
    shards: dict[str, dict[str, list[list[int]]]] = {}
    for word in sorted(postings):
        named, elsewhere = postings[word]
        # Ordinals come in increasing order: differences without sorting again.
        shards.setdefault(_shard_key(word), {})[word] = [_diff(named), _diff(elsewhere)]
    return {f"catalog/terms/{key}.json": dumps(words) for key, words in shards.items()}


def _diff(ordinals: list[int]) -> list[int]:
    return [b - a for a, b in zip([0, *ordinals], ordinals, strict=False)]


def _sorts(kind: str, entries: Sequence[Entry]) -> dict[str, bytes]:
    """For each other order, the rank of each listing of the kind (by local index)."""
    keys: dict[str, Any] = {
        "newest": lambda e: (-_stamp(e.published), e.name.lower()),
        "popular": lambda e: (-e.popularity, e.name.lower()),
    }
    if kind != "solution":
        keys["price"] = lambda e: (
            _PRICING_ORDER.index(str((e.data.get("pricing") or {}).get("model", "free")))
            if str((e.data.get("pricing") or {}).get("model", "free")) in _PRICING_ORDER
            else 99,
            price_value(e.data.get("pricing") or {}),
            e.name.lower(),
        )
    out: dict[str, bytes] = {}
    for name, key in keys.items():
        order = sorted(range(len(entries)), key=lambda i: key(entries[i]))
        ranks = [0] * len(entries)
        for rank, index in enumerate(order):
            ranks[index] = rank
        out[f"catalog/sort/{kind}-{name}.json"] = dumps(ranks)
    return out


def _stamp(date: str) -> int:
    digits = "".join(c for c in date if c.isdigit())
    return int(digits) if digits else 0


def _compat(entries: Sequence[Entry], compat: Compatibility) -> bytes:
    ordinal = {(e.kind, e.id): i for i, e in enumerate(entries)}
    groups = [deltas(ordinal[("model", m)] for m in members) for members in compat.groups]
    agents: dict[str, Any] = {}
    for e in entries:
        if e.kind != "agent":
            continue
        key = str(ordinal[("agent", e.id)])
        if e.id in compat.standalone:
            agents[key] = "none"
        elif e.id in compat.required:
            agents[key] = {"model": ordinal[("model", compat.required[e.id])]}
        else:
            agents[key] = list(compat.agent_groups.get(e.id, ()))
    return dumps({"groups": groups, "agents": agents})


def client_data(catalog: Catalog, compat: Compatibility) -> ClientData:
    entries = ordered(catalog)
    files: dict[str, bytes] = {}
    for start in range(0, len(entries), SHARD):
        rows = []
        for entry in entries[start : start + SHARD]:
            r = record(entry)
            rows.append(
                [
                    r["kind"],
                    r["id"],
                    r["name"],
                    r["url"],
                    r["version"],
                    r["license"],
                    r["facet"],
                    r["price"],
                    r["description"],
                ]
            )
        files[f"catalog/records/{start // SHARD}.json"] = dumps(rows)
    ranges: dict[str, tuple[int, int]] = {}
    facets: dict[str, tuple[Facet, ...]] = {}
    position = 0
    for kind in KINDS:
        of_kind = list(catalog.of_kind(kind).values())
        ranges[kind] = (position, position + len(of_kind))
        numbered = list(enumerate(of_kind, start=position))
        facets[kind] = tuple(build_facets(kind, numbered))
        for facet in facets[kind]:
            for i, value in enumerate(facet.values):
                path = f"catalog/postings/{kind}/{facet.key}/{i}.json"
                files[path] = dumps(deltas(value.ordinals))
        files.update(_sorts(kind, of_kind))
        position += len(of_kind)
    files.update(_terms(entries, catalog))
    files["catalog/compat.json"] = _compat(entries, compat)
    ids: dict[str, dict[str, int]] = {}
    for i, entry in enumerate(entries):
        ids.setdefault(entry.publisher, {})[f"{entry.kind}:{entry.id}"] = i
    for publisher, table in ids.items():
        files[f"catalog/ids/{publisher}.json"] = dumps(table)
    digest = hashlib.blake2b(digest_size=8)
    for path in sorted(files):
        digest.update(path.encode() + b"\0" + files[path])
    return ClientData(files, facets, ranges, digest.hexdigest())
