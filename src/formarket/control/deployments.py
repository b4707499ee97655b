"""The desired deployments grouped by account, read once per branch tip.

`GET /v1/deployments` is asked far more often than the branch moves; reading every document
at each request would cost an account with a thousand deployments a thousand lookups and the
answer's encoding each time. The index is rebuilt when the tip changes, and each account's
encoded list is kept with it.
"""

from __future__ import annotations

import json
import threading
from collections import defaultdict
from dataclasses import dataclass, field

from dulwich.repo import Repo

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
    def __init__(self, settings: FarmSettings) -> None:
        self.settings = settings
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

    def of(self, account: str) -> list[Deployment]:
        return list(self._current().by_account.get(account, ()))

    def get(self, account: str, deployment_id: str) -> Deployment | None:
        """The deployment when it is `account`'s; None when it is missing or someone else's."""
        found = self._current().by_id.get(deployment_id)
        return found if found is not None and found.account == account else None

    def encoded_list(self, account: str) -> bytes:
        snapshot = self._current()
        with self._lock:
            data = snapshot.encoded.get(account)
        if data is None:
            items = [summary(d) for d in snapshot.by_account.get(account, ())]
            data = json.dumps({"deployments": items}, separators=(",", ":")).encode()
            with self._lock:
                snapshot.encoded[account] = data
        return data
