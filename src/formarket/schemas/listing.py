"""Model and agent listings: what a publisher offers, how it is built, priced and shared."""

from __future__ import annotations

import re
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, model_validator

from formarket.schemas._base import Document
from formarket.schemas._types import (
    HttpUrl,
    LicenseId,
    ListingId,
    RelativePath,
    SemVer,
    Sha256,
    Tag,
)
from formarket.schemas.pricing import Monetization, Pricing
from formarket.schemas.resources import Resources
from formarket.schemas.smoke import SmokeTest

# A weight file's name from its URL, kept only when it is a plain file name.
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,254}$")

__all__ = [
    "AgentListing",
    "AgentPermissions",
    "AgentTool",
    "Capability",
    "Compatibility",
    "Links",
    "Listing",
    "ModelListing",
    "ModelTask",
    "TokenizerFile",
    "VersionMark",
    "WeightFile",
]

ModelTask = Literal[
    "text-generation",
    "chat",
    "embeddings",
    "reranking",
    "image-generation",
    "image-classification",
    "speech-to-text",
    "text-to-speech",
    "translation",
    "summarization",
    "object-detection",
]
Capability = Literal[
    "chat", "tools", "json-mode", "vision", "streaming", "code", "function-calling", "long-context"
]
Quantization = Literal[
    "none",
    "fp32",
    "fp16",
    "bf16",
    "fp8",
    "int8",
    "int4",
    "q8_0",
    "q6_k",
    "q5_k_m",
    "q4_k_m",
    "q4_0",
    "gptq",
    "awq",
]
AgentType = Literal[
    "assistant",
    "research",
    "coding",
    "data-analysis",
    "customer-support",
    "workflow",
    "retrieval",
    "monitoring",
    "other",
]
Framework = Literal[
    "langchain",
    "langgraph",
    "llamaindex",
    "crewai",
    "autogen",
    "haystack",
    "semantic-kernel",
    "custom",
]
Runtime = Literal["python", "node", "rust", "go", "java", "binary"]


class Links(Document):
    """Where to read more."""

    repository: HttpUrl | None = None
    paper: HttpUrl | None = None
    demo: HttpUrl | None = None
    homepage: HttpUrl | None = None


class VersionMark(Document):
    """An owner's word on one published version: still deployable with a warning (deprecated),
    or closed to new deployments (yanked). Running deployments of a yanked version are told."""

    status: Literal["deprecated", "yanked"]
    message: str = Field(
        min_length=1,
        max_length=500,
        description="Why, and what to use instead; shown wherever the version is.",
    )


class _ListingBase(Document):
    """What every listing says about itself."""

    id: ListingId = Field(description="`<publisher>/<slug>`, matching the listing's folder.")
    name: str = Field(min_length=1, max_length=80, description="The display name.")
    version: SemVer = Field(description="This version; a published version is never rewritten.")
    description: str = Field(min_length=10, max_length=2000, description="One paragraph.")
    license: LicenseId
    tags: tuple[Tag, ...] = Field(default=(), max_length=20)
    links: Links = Field(default_factory=Links)
    readme: RelativePath = Field(default="README.md", description="The long description.")
    formfile: RelativePath = Field(default="Formfile", description="The build recipe.")
    test: SmokeTest | None = Field(
        default=None,
        description="A smoke test: one request to the running listing and the answer expected."
        " `formarket test` and every pull request that changes the listing run it.",
    )
    settings_schema: dict[str, Any] | None = Field(
        default=None,
        description="A JSON Schema (draft 2020-12) for the settings a user gives at deploy time"
        " (an agent's options; a model's context length or parallel requests). The VM reads"
        " them as FORMARKET_SETTINGS and SETTING_<NAME>. Without one, the listing takes none.",
    )
    resources: Resources
    pricing: Pricing
    monetization: Monetization
    version_marks: dict[SemVer, VersionMark] = Field(
        default_factory=dict,
        max_length=200,
        description="Published versions marked deprecated or yanked by the listing's owners,"
        " each with its message. A version not named here is in good standing.",
    )

    @model_validator(mode="after")
    def _tags_unique(self) -> _ListingBase:
        if len(set(self.tags)) != len(self.tags):
            raise ValueError("tags must be unique")
        return self

    @property
    def publisher(self) -> str:
        return self.id.split("/", 1)[0]

    @property
    def slug(self) -> str:
        return self.id.split("/", 1)[1]


class WeightFile(Document):
    """A file of model weights, fetched and verified by digest when the image is built, and
    given to the VM on a read-only data disk."""

    url: HttpUrl
    sha256: Sha256
    size_bytes: int = Field(ge=1, description="Size in bytes.")
    mirrors: tuple[HttpUrl, ...] = Field(
        default=(),
        max_length=8,
        description="Other places that serve the same bytes, tried in order after `url`.",
    )
    path: RelativePath | None = Field(
        default=None,
        description="Where the file lies on the data disk (mounted at /weights in the VM);"
        " by default the last part of `url`.",
    )

    @property
    def disk_path(self) -> str:
        """The file's path on the data disk."""
        if self.path is not None:
            return self.path
        name = urlsplit(self.url).path.rsplit("/", 1)[-1]
        return name if _SAFE_NAME.match(name) and name not in (".", "..") else self.sha256


class TokenizerFile(Document):
    """The model's own tokenizer, with which the gateway counts the tokens it bills.

    The template's overheads are bounded by what the gateway believes any chat template spends
    (8 tokens per message, 16 for the reply's opening): a listing is paid by the token, so what
    it declares here is capped where the gateway's own bound is.
    """

    file: RelativePath = Field(
        default="tokenizer.json",
        description="A Hugging Face `tokenizer.json` in the listing's folder (at most 10 MiB).",
    )
    per_message: int = Field(
        ge=0,
        le=8,
        description="Tokens the chat template adds around each message (role markers,"
        " separators, end of turn).",
    )
    per_reply: int = Field(
        ge=0,
        le=16,
        description="Tokens the chat template adds once per request to open the reply (such as"
        " `<|im_start|>assistant` and its newline).",
    )


class ModelListing(_ListingBase):
    """A model: weights plus a server that exposes them over an OpenAI-compatible API."""

    kind: Literal["model"] = "model"
    task: ModelTask = Field(description="What the model does (Hugging Face's pipeline tag).")
    capabilities: tuple[Capability, ...] = Field(default=())
    parameters: int | None = Field(
        default=None, ge=1, description="Number of parameters, such as 7000000000."
    )
    architecture: str | None = Field(default=None, max_length=60)
    base_model: str | None = Field(
        default=None, max_length=120, description="The model this one was fine-tuned from."
    )
    quantization: Quantization = "none"
    context_length: int | None = Field(default=None, ge=1, le=10_000_000)
    languages: tuple[str, ...] = Field(default=(), description="ISO 639-1 codes.")
    weights: tuple[WeightFile, ...] = Field(default=(), max_length=64)
    tokenizer: TokenizerFile | None = Field(
        default=None,
        description="The model's tokenizer. Without one, the gateway's token counts are"
        " estimates from the text's bytes, and the listing's page says so.",
    )


class AgentTool(Document):
    """A tool the agent can call."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")
    description: str = Field(min_length=1, max_length=300)


class AgentPermissions(Document):
    """What the agent may reach beyond its VM; shown to users before they deploy it."""

    internet: bool = False
    filesystem: Literal["none", "read-only", "read-write"] = "none"
    external_apis: tuple[str, ...] = Field(
        default=(), description="Host names of outside APIs the agent calls."
    )


class Compatibility(Document):
    """Which models an agent works with: one named model, or constraints any model must meet."""

    requires_model: ListingId | None = Field(
        default=None, description="The one model this agent needs."
    )
    model_tasks: tuple[str, ...] = Field(
        default=(), description="The model must do one of these tasks."
    )
    min_context_length: int | None = Field(default=None, ge=1)
    capabilities: tuple[Capability, ...] = Field(
        default=(), description="The model must have all of these."
    )

    @property
    def needs_model(self) -> bool:
        return bool(
            self.requires_model or self.model_tasks or self.min_context_length or self.capabilities
        )


class AgentListing(_ListingBase):
    """An agent: code that acts for its user, usually with a model behind it."""

    kind: Literal["agent"] = "agent"
    agent_type: AgentType
    framework: Framework
    runtime: Runtime
    tools: tuple[AgentTool, ...] = Field(default=(), max_length=64)
    permissions: AgentPermissions = Field(default_factory=AgentPermissions)
    compatibility: Compatibility = Field(default_factory=Compatibility)
    preferred_models: tuple[ListingId, ...] = Field(default=(), max_length=16)


Listing = ModelListing | AgentListing
