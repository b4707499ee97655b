"""The compiled index of a registry: every document's summary by kind and id."""

from __future__ import annotations

import marshal
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["LazyData", "RegistryIndex", "Summary"]


@dataclass(frozen=True, slots=True)
class Summary:
    """What the registry-wide rules and the index need to know of one document."""

    kind: str  # model, agent, solution, publisher, governance
    id: str
    path: str
    valid: bool
    data: Mapping[str, Any] = field(default_factory=dict)
    # The slug as a reader sees it (see `confusables.skeleton`), kept so that look-alike names
    # are found without recomputing every listing's on every run.
    look: str = ""

    def to_plain(self) -> tuple[Any, ...]:
        data = self.data
        raw = data.raw if isinstance(data, LazyData) else marshal.dumps(dict(data))
        return (self.kind, self.id, self.path, self.valid, raw, self.look)

    @classmethod
    def from_plain(cls, plain: tuple[Any, ...]) -> Summary:
        kind, ident, path, valid, raw, look = plain
        return cls(kind, ident, path, valid, LazyData(raw), look)


class LazyData(Mapping[str, Any]):
    """A document's data, kept as bytes until someone reads it.

    A check of a large registry loads every summary from the cache but reads the data of only a
    few (the agents, and the listings a pull request touches); decoding all of them was most of
    the time of a pull-request check.
    """

    __slots__ = ("_data", "raw")

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self._data: dict[str, Any] | None = None

    def _decoded(self) -> dict[str, Any]:
        if self._data is None:
            data = marshal.loads(self.raw)  # noqa: S302 - written by our own cache
            self._data = data if isinstance(data, dict) else {}
        return self._data

    def __getitem__(self, key: str) -> Any:
        return self._decoded()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._decoded())

    def __len__(self) -> int:
        return len(self._decoded())


@dataclass(frozen=True, slots=True)
class RegistryIndex:
    publishers: dict[str, Summary] = field(default_factory=dict)
    models: dict[str, Summary] = field(default_factory=dict)
    agents: dict[str, Summary] = field(default_factory=dict)
    solutions: dict[str, Summary] = field(default_factory=dict)
    governance: Summary | None = None

    @classmethod
    def build(cls, summaries: Iterable[Summary]) -> RegistryIndex:
        index = cls()
        tables = {
            "publisher": index.publishers,
            "model": index.models,
            "agent": index.agents,
            "solution": index.solutions,
        }
        governance = None
        for summary in summaries:
            if summary.kind == "governance":
                governance = summary
            else:
                tables[summary.kind][summary.id] = summary
        if governance is not None:
            index = cls(index.publishers, index.models, index.agents, index.solutions, governance)
        return index

    def listing(self, ident: str) -> Summary | None:
        return self.models.get(ident) or self.agents.get(ident)

    def owners(self, publisher: str) -> frozenset[str]:
        summary = self.publishers.get(publisher)
        if summary is None or not summary.valid:
            return frozenset()
        return frozenset(summary.data.get("owners", ()))

    def maintainers(self) -> frozenset[str]:
        if self.governance is None or not self.governance.valid:
            return frozenset()
        return frozenset(self.governance.data.get("maintainers", ()))

    def bot(self) -> str | None:
        if self.governance is None or not self.governance.valid:
            return None
        bot = self.governance.data.get("bot")
        return bot if isinstance(bot, str) else None
