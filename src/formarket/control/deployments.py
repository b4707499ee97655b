"""The desired deployments grouped by account, read once per branch tip.

`GET /v1/deployments` is asked far more often than the branch moves; reading every document
at each request would cost an account with a thousand deployments a thousand lookups and the
answer's encoding each time. The index is rebuilt when the tip changes, and each account's
encoded list is kept with it.

git names an account by its pseudonym (formarket.accounts.pseudonym), or by its login in
deployments committed before pseudonyms; the index is asked by login and answers with both.
"""

from __future__ import annotations

import json
import threading
from collections import defaultdict
from dataclasses import dataclass, field

from dulwich.repo import Repo

from formarket.accounts.pseudonym import Pseudonyms
from formarket.farm import desired
from formarket.farm.settings import FarmSettings, open_market
from formarket.market.refs import find_tip
from formarket.schemas.deployment import Deployment

__all__ = ["DeploymentIndex", "summary"]


def summary(deployment: Deployment) -> dict[str, object]:
    """What a list shows of a deployment."""
    return {
        "id": deployment.id,
        "kind": deployment.kind,
        "listing": deployment.listing.id,
        "version": deployment.listing.version,
        "state": deployment.state,
        "vcpus": deployment.size.vcpus,
        "memory_mib": deployment.size.memory_mib,
    }


@dataclass
class _Snapshot:
    tip: bytes | None
    by_account: dict[str, list[Deployment]]
    by_id: dict[str, Deployment]
    encoded: dict[str, bytes] = field(default_factory=dict)


class DeploymentIndex:
    def __init__(self, settings: FarmSettings, pseudonyms: Pseudonyms) -> None:
        self.settings = settings
        self.pseudonyms = pseudonyms
        self._lock = threading.Lock()
        self._snapshot = _Snapshot(b"", {}, {})

    def _current(self) -> _Snapshot:
        repo: Repo = open_market(self.settings)
        try:
            tip = find_tip(repo, self.settings.branch)
            with self._lock:
                if tip == self._snapshot.tip:
                    return self._snapshot
            found = desired.read_deployments(repo, self.settings.branch, problems=[])
        finally:
            repo.close()
        by_account: dict[str, list[Deployment]] = defaultdict(list)
        for ident in sorted(found):
            by_account[found[ident].account].append(found[ident])
        snapshot = _Snapshot(tip, dict(by_account), found)
        with self._lock:
            self._snapshot = snapshot
        return snapshot

    def _of(self, snapshot: _Snapshot, login: str) -> list[Deployment]:
        found = [
            d for name in self.pseudonyms.names(login) for d in snapshot.by_account.get(name, ())
        ]
        return sorted(found, key=lambda d: d.id)

    def of(self, login: str) -> list[Deployment]:
        """`login`'s deployments, by id."""
        return self._of(self._current(), login)

    def get(self, login: str, deployment_id: str) -> Deployment | None:
        """The deployment when it is `login`'s; None when it is missing or someone else's."""
        found = self._current().by_id.get(deployment_id)
        return found if found is not None and self.pseudonyms.owns(found.account, login) else None

    def encoded_list(self, login: str) -> bytes:
        snapshot = self._current()
        with self._lock:
            data = snapshot.encoded.get(login)
        if data is None:
            items = [summary(d) for d in self._of(snapshot, login)]
            data = json.dumps({"deployments": items}, separators=(",", ":")).encode()
            with self._lock:
                snapshot.encoded[login] = data
        return data
