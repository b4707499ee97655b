"""The keys agents call their models with, through the gateway.

An agent's VM reaches nothing but the gateway, and the gateway serves only keys it knows. So
the farm makes a key for each agent deployment, in the gateway's key store: billed to the
deployment's account and scoped to the agent's model deployment, so that the model calls an
agent makes are metered and billed like any caller's, each as an event of its own. The key is
revoked when the agent stops.

The farm keeps each agent's key (`agent-keys.json` in its state folder, readable by the farm
alone) because a VM made again (its host died, its domain crashed) must be given the same key
on its config disk: the gateway stores only a hash, so a key cannot be read back from there.
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator, Set
from pathlib import Path

import msgspec

from formarket.atomicfile import write_atomically
from formarket.errors import InputError, NotFoundError
from formarket.gateway.keys import create_key, load_keys, revoke_key
from formarket.schemas.deployment import Deployment

__all__ = ["AgentKey", "agent_key", "drop_agent_key", "sweep_agent_keys"]

_FORMAT = "formarket.farm-agent-keys/1"


class AgentKey(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The key one agent deployment calls its model deployment with."""

    key: str  # the whole key, as the VM presents it
    id: str  # its id in the gateway's key store
    account: str
    model_deployment: str


class _File(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    format: str
    agents: dict[str, AgentKey]


def _load(path: Path) -> dict[str, AgentKey]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    try:
        return dict(msgspec.json.decode(raw, type=_File).agents)
    except msgspec.DecodeError as exc:
        raise InputError(
            f"{path} is not the farm's file of agent keys: {exc}",
            hint="remove it: the farm makes new keys for the agents on their next deploy",
        ) from exc


def _save(path: Path, agents: dict[str, AgentKey]) -> None:
    data = msgspec.json.encode(_File(_FORMAT, dict(sorted(agents.items()))))
    write_atomically(path, data + b"\n")  # made 0600: it holds keys


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _revoke(keys: Path, key_id: str) -> None:
    with contextlib.suppress(NotFoundError):  # the key store was reset: nothing to revoke
        revoke_key(keys, key_id)


def agent_key(path: Path, keys: Path, deployment: Deployment) -> AgentKey:
    """The key of an agent deployment: the one it has while that is valid, else a new one
    (the old one revoked). `path` is the farm's file of agent keys, `keys` the gateway's."""
    model = deployment.model_deployment
    if deployment.kind != "agent" or model is None:
        raise InputError(f"{deployment.id} is not an agent with a model deployment")
    with _locked(path):
        agents = _load(path)
        current = agents.get(deployment.id)
        if current is not None:
            record = load_keys(keys).by_id.get(current.id)
            same = current.account == deployment.account and current.model_deployment == model
            if record is not None and not record.revoked and same:
                return current
            _revoke(keys, current.id)
        key, record = create_key(keys, deployment.account, scope=(model,))
        made = AgentKey(key=key, id=record.id, account=deployment.account, model_deployment=model)
        _save(path, {**agents, deployment.id: made})
    return made


def drop_agent_key(path: Path, keys: Path, deployment_id: str) -> bool:
    """Revoke an agent deployment's key and forget it; whether it had one."""
    with _locked(path):
        agents = _load(path)
        current = agents.pop(deployment_id, None)
        if current is None:
            return False
        _revoke(keys, current.id)
        _save(path, agents)
    return True


def sweep_agent_keys(path: Path, keys: Path, wanted: Set[str]) -> list[str]:
    """Revoke the keys of agent deployments that are not `wanted` running any more (a VM that
    vanished is never stopped, so its key would outlive it); the deployments swept."""
    if not path.exists():
        return []
    with _locked(path):
        agents = _load(path)
        gone = sorted(dep for dep in agents if dep not in wanted)
        for dep in gone:
            _revoke(keys, agents.pop(dep).id)
        if gone:
            _save(path, agents)
    return gone
