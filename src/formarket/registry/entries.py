"""Checks of one registry document at a time: pure functions of the bytes of its files.

A listing folder's result depends only on what is inside it (and the contract), so results
are reused for any folder whose key did not change. What spans several documents (unique ids,
references, compatibility, ownership) is checked afterwards, in `invariants`, over the small
summaries these checks return.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from formarket.registry.contract import Contract
from formarket.registry.findings import Finding, finding
from formarket.registry.index import Summary
from formarket.registry.licenses import license_hint
from formarket.yamldoc import LoadedYaml, YamlError, load_yaml

__all__ = [
    "MAX_CONTEXT_FILE",
    "MAX_README",
    "Summary",
    "check_governance",
    "check_listing",
    "check_publisher",
    "check_solution",
    "check_yaml_document",
]

# A file in a listing folder larger than this does not belong in git: weights are fetched at
# build time from the URLs the listing declares.
MAX_CONTEXT_FILE = 10 << 20
# A README is rendered into the listing's page, at a cost that grows with its size (a 10 MB
# one took 88 s and 2.5 GB): above this, it is refused.
MAX_README = 1 << 20


def _read_yaml(raw: bytes, path: str) -> tuple[LoadedYaml | None, list[Finding]]:
    try:
        return load_yaml(raw, path), []
    except YamlError as exc:
        loc = exc.location
        return None, [
            finding(
                "REG002",
                path,
                f"{exc.message} [{exc.code}]",
                line=loc.line,
                column=loc.column,
                hint=exc.hint,
            )
        ]


def _model_check(model: type[BaseModel], doc: LoadedYaml) -> tuple[Any, list[Finding]]:
    """The typed model, or findings; runs after the contract so messages stay in its terms."""
    try:
        return model.model_validate(doc.data), []
    except ValidationError as exc:
        out: list[Finding] = []
        for err in exc.errors()[:20]:
            where = tuple(p for p in err["loc"] if isinstance(p, str | int))
            where = tuple(p for p in where if not (isinstance(p, str) and "[" in p))
            loc = doc.locate(where)
            dotted = ".".join(str(p) for p in where) or "(document)"
            out.append(
                finding(
                    "REG001",
                    doc.path,
                    f"{dotted}: {err['msg'].removeprefix('Value error, ')}",
                    line=loc.line,
                    column=loc.column,
                )
            )
        return None, out


def check_yaml_document(
    raw: bytes, path: str, kind: str, contract: Contract, model: type[BaseModel]
) -> tuple[LoadedYaml | None, Any, list[Finding]]:
    """Read, check against the contract, then build the typed model."""
    doc, findings = _read_yaml(raw, path)
    if doc is None:
        return None, None, findings
    if not isinstance(doc.data, dict):
        return (
            doc,
            None,
            [
                finding(
                    "REG001",
                    path,
                    "the document must be a mapping of fields",
                    line=1,
                    hint="see schemas/" + kind + ".schema.json",
                )
            ],
        )
    findings = contract.check(kind, doc)
    if findings:
        return doc, None, findings
    typed, findings = _model_check(model, doc)
    return doc, typed, findings


def check_publisher(
    raw: bytes, path: str, name: str, contract: Contract
) -> tuple[Summary, list[Finding]]:
    from formarket.schemas.publisher import Publisher  # start-up: pydantic, uncached only

    doc, typed, findings = check_yaml_document(raw, path, "publisher", contract, Publisher)
    ident = name
    if typed is not None and typed.id != name:
        loc = doc.locate(("id",)) if doc else None
        findings.append(
            finding(
                "REG003",
                path,
                f"id {typed.id!r} does not match the file name {name!r}",
                line=loc.line if loc else 0,
                hint=f"rename the file to {typed.id}.yaml or set id: {name}",
            )
        )
    data = doc.data if doc is not None and typed is not None else {}
    return Summary("publisher", ident, path, typed is not None, data), findings


def check_solution(
    raw: bytes, path: str, ident: str, contract: Contract
) -> tuple[Summary, list[Finding]]:
    from formarket.schemas.solution import Solution  # start-up: pydantic, uncached only

    doc, typed, findings = check_yaml_document(raw, path, "solution", contract, Solution)
    if typed is not None and doc is not None and typed.id != ident:
        loc = doc.locate(("id",))
        findings.append(
            finding(
                "REG003",
                path,
                f"id {typed.id!r} does not match the path, which says {ident!r}",
                line=loc.line,
                hint=f"set id: {ident}",
            )
        )
    data = doc.data if doc is not None and typed is not None else {}
    return Summary("solution", ident, path, typed is not None, data), findings


ReadFile = Callable[[str], bytes | None]


def check_listing(
    kind: str,
    folder: str,
    ident: str,
    files: Mapping[str, int],
    read: ReadFile,
    contract: Contract,
    known_bases: frozenset[str],
    known_gpus: frozenset[str],
) -> tuple[Summary, list[Finding]]:
    """Check a listing folder: `files` maps each file's path inside it to its size, with
    links and other non-regular entries given as -1."""
    from formarket.schemas.listing import AgentListing, ModelListing  # start-up: pydantic

    listing_path = f"{folder}/listing.yaml"
    findings: list[Finding] = []
    for name, size in sorted(files.items()):
        if size < 0:
            findings.append(
                finding(
                    "REG024",
                    f"{folder}/{name}",
                    "links and special files are not allowed in a listing",
                    hint="copy the file into the folder instead of linking to it",
                )
            )
        elif size > MAX_CONTEXT_FILE:
            findings.append(
                finding(
                    "REG024",
                    f"{folder}/{name}",
                    f"file is {size} bytes; the limit is {MAX_CONTEXT_FILE}",
                    hint="large files such as weights are fetched at build time: list them"
                    " under `weights` with their URL and sha256",
                )
            )
    raw = read(listing_path) if "listing.yaml" in files else None
    if raw is None:
        findings.append(
            finding(
                "REG020",
                folder,
                "a listing folder needs a listing.yaml",
                hint="`formarket new` writes a starting point",
            )
        )
        return Summary(kind, ident, listing_path, False), findings
    model = ModelListing if kind == "model" else AgentListing
    doc, typed, doc_findings = check_yaml_document(raw, listing_path, kind, contract, model)
    findings.extend(doc_findings)
    if typed is None or doc is None:
        return Summary(kind, ident, listing_path, False), findings

    from formarket.registry.listing_rules import listing_findings  # start-up: valid only

    findings.extend(
        listing_findings(typed, doc, folder, ident, files, read, known_bases, known_gpus)
    )
    hint = license_hint(typed.license)
    if hint is not None:
        loc = doc.locate(("license",))
        findings.append(
            finding(
                "REG021",
                listing_path,
                f"{typed.license!r} is not an SPDX license identifier",
                line=loc.line,
                hint=hint,
            )
        )
    return Summary(kind, ident, listing_path, True, doc.data), findings


def check_governance(raw: bytes, path: str, contract: Contract) -> tuple[Summary, list[Finding]]:
    from formarket.schemas.publisher import Governance  # start-up: pydantic, uncached only

    doc, typed, findings = check_yaml_document(raw, path, "governance", contract, Governance)
    findings = [
        finding("REG027", f.path, f.message, line=f.line, column=f.column, hint=f.hint)
        for f in findings
    ]
    data = doc.data if doc is not None and typed is not None else {}
    return Summary("governance", "governance", path, typed is not None, data), findings
