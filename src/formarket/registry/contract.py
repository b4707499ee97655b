"""Validation against the exported JSON Schemas: the contract is the file, not the code.

Schemas are read from the registry's own `schemas/` folder (the revision being checked), so a
registry is validated against the contract it publishes; a registry without them falls back to
the schemas generated from the models in this version of formarket.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

from formarket.errors import InputError
from formarket.registry.choices import explain_choice, explain_pattern, fitting_branch
from formarket.registry.findings import Finding, finding

if TYPE_CHECKING:
    from formarket.yamldoc import LoadedYaml

__all__ = [
    "KINDS",
    "Contract",
    "compile_contract",
    "contract_files",
    "load_contract",
    "schemas_digest",
]

_UNEXPECTED = re.compile(r"'([^']*)' (?:was|were) unexpected")


class Contract:
    """Compiled validators, one per document kind."""

    def __init__(self, schemas: Mapping[str, bytes]) -> None:
        import jsonschema_rs  # start-up: compiled only when a document is checked

        self.digest = schemas_digest(schemas)
        self._schemas = {kind: json.loads(raw) for kind, raw in schemas.items()}
        self._validators = {
            kind: jsonschema_rs.Draft202012Validator(schema)
            for kind, schema in self._schemas.items()
        }

    def kinds(self) -> frozenset[str]:
        return frozenset(self._validators)

    def check(self, kind: str, doc: LoadedYaml) -> list[Finding]:
        validator = self._validators[kind]
        if validator.is_valid(doc.data):
            return []
        findings: list[Finding] = []
        for error in self._errors(self._schemas[kind], validator, doc.data, ()):
            where, message, hint = error.where, error.message, ""
            node = _node(error.root, error.schema_path[:-1])
            unexpected = _UNEXPECTED.search(message)
            if unexpected and isinstance(doc.data, dict):
                key = unexpected.group(1)
                where = (*where, key)
                allowed = list(node.get("properties", {})) if isinstance(node, dict) else []
                close = difflib.get_close_matches(key, allowed, n=1)
                message = f"unknown field {key!r}"
                listed = f"allowed here: {', '.join(sorted(allowed))}" if allowed else ""
                # A close match says enough where the place allows many keys.
                hint = (
                    f"did you mean {close[0]!r}?" + (f" {listed}" if len(allowed) <= 8 else "")
                    if close
                    else listed
                )
            elif error.schema_path and error.schema_path[-1] in ("anyOf", "oneOf"):
                message, hint, where = explain_choice(error.root, node, error.instance, where)
            elif error.schema_path and error.schema_path[-1] == "pattern":
                message, hint = explain_pattern(node, error.instance)
            location = doc.locate(where)
            dotted = ".".join(str(p) for p in where) or "(document)"
            findings.append(
                finding(
                    "REG001",
                    doc.path,
                    f"{dotted}: {message}",
                    line=location.line,
                    column=location.column,
                    hint=hint,
                )
            )
            if len(findings) >= 20:
                break
        return findings

    def _errors(
        self, root: dict[str, Any], validator: Any, instance: Any, prefix: tuple[str | int, ...]
    ) -> Iterator[_Error]:
        """Each error with the schema it was found in. A tagged union's failure is explained
        by the branch its tag selects, not by "matches none of five schemas"."""
        import jsonschema_rs  # start-up: only for a document that fails

        for error in validator.iter_errors(instance):
            where = (*prefix, *error.instance_path)
            schema_path = tuple(error.schema_path)
            branch = _tagged_branch(root, schema_path, error.instance)
            if branch is None and schema_path and schema_path[-1] in ("anyOf", "oneOf"):
                branch = fitting_branch(root, _node(root, schema_path[:-1]), error.instance)
            if branch is not None:
                yield from self._errors(
                    branch, jsonschema_rs.Draft202012Validator(branch), error.instance, where
                )
                continue
            yield _Error(where, error.message, schema_path, root, error.instance)


class _Error(NamedTuple):
    where: tuple[str | int, ...]
    message: str
    schema_path: tuple[Any, ...]
    root: dict[str, Any]  # the schema `schema_path` is in: the document's, or a union's branch
    instance: Any


def _resolve(root: dict[str, Any], ref: str) -> Any:
    node: Any = root
    for part in ref.removeprefix("#/").split("/"):
        node = node.get(part, {}) if isinstance(node, dict) else {}
    return node


def _node(root: dict[str, Any], path: tuple[Any, ...]) -> Any:
    """The subschema at `path`, with a `$ref` there followed."""
    node: Any = root
    for part in path:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return {}
    if isinstance(node, dict) and isinstance(node.get("$ref"), str):
        node = _resolve(root, node["$ref"])
    return node


def _tagged_branch(
    root: dict[str, Any], schema_path: tuple[Any, ...], instance: Any
) -> dict[str, Any] | None:
    if not schema_path or schema_path[-1] != "oneOf" or not isinstance(instance, dict):
        return None
    node = _node(root, schema_path[:-1])
    tag = node.get("discriminator") if isinstance(node, dict) else None
    if not isinstance(tag, dict):
        return None
    chosen = instance.get(tag.get("propertyName"))
    ref = tag.get("mapping", {}).get(chosen) if isinstance(chosen, str) else None
    if not isinstance(ref, str):
        return None
    return {"$defs": root.get("$defs", {}), **_resolve(root, ref)}


# The kinds of document the contract covers; `formarket.schemas.export.DOCUMENT_KINDS` has
# the models behind them (a test keeps the two in step without importing pydantic here).
KINDS = ("model", "agent", "publisher", "solution", "governance")


def schemas_digest(schemas: Mapping[str, bytes]) -> str:
    """What a contract is made of, as a digest: the same for the same schema files."""
    return hashlib.sha256(
        b"".join(k.encode() + b"\0" + v for k, v in sorted(schemas.items()))
    ).hexdigest()


def contract_files(files: Mapping[str, bytes | None]) -> dict[str, bytes]:
    """The schema of each kind from `<kind>.schema.json` files, each falling back to the
    built-in one."""
    chosen: dict[str, bytes] = {}
    for kind in KINDS:
        raw = files.get(f"{kind}.schema.json")
        if raw is not None:
            chosen[kind] = raw
    if len(chosen) < len(KINDS):
        from formarket.schemas.export import render_schemas  # start-up: pydantic, rarely

        builtin = render_schemas()
        for kind in KINDS:
            chosen.setdefault(kind, builtin[f"{kind}.schema.json"])
    return chosen


def load_contract(files: Mapping[str, bytes | None]) -> Contract:
    """The contract from `<kind>.schema.json` files, each falling back to the built-in one."""
    return compile_contract(contract_files(files))


def compile_contract(schemas: Mapping[str, bytes]) -> Contract:
    """The contract of the schema of each kind (as `contract_files` chooses them)."""
    import jsonschema_rs  # start-up: a cached run compiles nothing

    try:
        return Contract(schemas)
    except (ValueError, jsonschema_rs.ValidationError) as exc:
        raise InputError(
            f"the registry's JSON Schemas in schemas/ cannot be used: {exc}",
            hint="regenerate them with `formarket schema export`",
        ) from exc
