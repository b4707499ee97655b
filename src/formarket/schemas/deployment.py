"""Deployments: what a user asks for, and the desired state the farm keeps in git.

A `DeploymentRequest` is what `formarket deploy` and a deployment issue both produce. Once every
check has passed it becomes one `Deployment` per virtual machine, each committed by the bot as
`registry/deployments/<id>.yaml`: the model's first (or a running one reused), then the agent's,
which names the model's deployment. git holds what should run; libvirt holds what does.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from formarket.schemas._base import Document
from formarket.schemas._types import ListingId, SemVer
from formarket.schemas.farm import GpuModel
from formarket.schemas.usage import ACCOUNT_PATTERN, DEPLOYMENT_PATTERN

__all__ = [
    "DEPLOYMENT_PATTERN",
    "Deployment",
    "DeploymentRequest",
    "DeploymentSize",
    "GpuRequest",
    "Origin",
    "PinnedListing",
    "RequestedListing",
    "SecretRef",
]

# Scale to zero: how long a deployment may go without a call before its VM is stopped.
IdleAfter = Annotated[
    int | None,
    Field(
        ge=10,
        le=30 * 86400,
        description="Seconds without a call after which the farm stops the VM, keeping its"
        " disk, until the next call wakes it (scale to zero); none: it runs until stopped.",
    ),
]

_BY_PSEUDONYM = (
    "The account's pseudonym (`acct_` and a keyed hash of its login) in what the bot commits;"
    " a login in documents committed before pseudonyms."
)

SECRET_NAME_PATTERN = r"^[A-Z][A-Z0-9_]{0,63}$"  # noqa: S105 - a pattern, not a secret
# A reference names where the farm finds the secret; the value never enters git or a log.
SECRET_REF_PATTERN = r"^(env|file|vault):[A-Za-z0-9_./:-]{1,200}$"  # noqa: S105


class RequestedListing(Document):
    """A listing as a user names it: the newest version when none is given."""

    id: ListingId
    version: SemVer | None = None


class PinnedListing(Document):
    """A listing at the exact version that runs."""

    id: ListingId
    version: SemVer


class GpuRequest(Document):
    model: GpuModel
    count: int = Field(default=1, ge=1, le=8)


class DeploymentSize(Document):
    """The virtual machine's size; a request may leave any part to the listing's recommendation."""

    vcpus: int = Field(ge=1, le=128)
    memory_mib: int = Field(ge=128, le=1048576)
    disk_gib: int = Field(ge=1, le=65535)
    gpu: GpuRequest | None = None


class SecretRef(Document):
    """An environment variable whose value the farm fetches when it starts the VM."""

    name: str = Field(pattern=SECRET_NAME_PATTERN, description="The variable inside the VM.")
    ref: str = Field(
        pattern=SECRET_REF_PATTERN,
        description="Where the farm reads the value: `env:NAME`, `file:/path` or `vault:path`.",
    )


class Origin(Document):
    """How the request reached the farm, for the record."""

    kind: Literal["cli", "issue"]
    issue: int | None = Field(default=None, ge=1, description="The issue number, for `issue`.")
    body_sha256: str | None = Field(
        default=None,
        pattern=r"^[0-9a-f]{64}$",
        description="sha256 of the issue body that was executed (bodies can be edited).",
    )


class DeploymentRequest(Document):
    """What a user asks for: an agent (with a model), a model alone, or a solution."""

    agent: RequestedListing | None = None
    model: RequestedListing | None = None
    solution: RequestedListing | None = None
    vcpus: int | None = Field(default=None, ge=1, le=128)
    memory_mib: int | None = Field(default=None, ge=128, le=1048576)
    gpu: GpuRequest | None = None
    settings: dict[str, Any] = Field(
        default_factory=dict,
        description="Settings for the agent, or for a model deployed alone, checked against"
        " its settings schema.",
    )
    secrets: tuple[SecretRef, ...] = Field(default=(), max_length=32)
    idle_after: IdleAfter = None
    requester: str = Field(pattern=ACCOUNT_PATTERN, description=f"Who asked. {_BY_PSEUDONYM}")
    account: str = Field(pattern=ACCOUNT_PATTERN, description=f"Who pays. {_BY_PSEUDONYM}")
    origin: Origin = Field(default_factory=lambda: Origin(kind="cli"))

    @model_validator(mode="after")
    def _something(self) -> DeploymentRequest:
        if self.solution is None and self.agent is None and self.model is None:
            raise ValueError("name an agent, a model or a solution")
        if self.solution is not None and (self.agent is not None or self.model is not None):
            raise ValueError("a solution names its own agent and model; give one or the other")
        return self


class Deployment(Document):
    """One virtual machine that should exist (or, once stopped, should not)."""

    id: str = Field(pattern=DEPLOYMENT_PATTERN, description="`dep-` and 12 hex digits.")
    kind: Literal["agent", "model"]
    listing: PinnedListing
    size: DeploymentSize
    state: Literal["running", "stopped"] = Field(
        description="What the farm must make true; libvirt tells what is."
    )
    model_deployment: str | None = Field(
        default=None,
        pattern=DEPLOYMENT_PATTERN,
        description="For an agent: the model deployment whose endpoint it is given.",
    )
    settings: dict[str, Any] = Field(
        default_factory=dict,
        description="The listing's settings, its schema's defaults applied; the VM reads them.",
    )
    secrets: tuple[SecretRef, ...] = ()
    idle_after: IdleAfter = None
    requester: str = Field(pattern=ACCOUNT_PATTERN, description=f"Who asked. {_BY_PSEUDONYM}")
    account: str = Field(
        pattern=ACCOUNT_PATTERN, description=f"Who pays for its usage. {_BY_PSEUDONYM}"
    )
    origin: Origin
    requested: str = Field(description="When it was asked for (UTC, ISO 8601).")
    request_sha256: str = Field(
        pattern=r"^[0-9a-f]{64}$", description="sha256 of the canonical request it came from."
    )

    @model_validator(mode="after")
    def _agent_fields(self) -> Deployment:
        if self.kind == "model" and self.model_deployment:
            raise ValueError("only an agent deployment has a model deployment")
        return self
