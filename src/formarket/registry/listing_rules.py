"""Rules over one typed listing and the files of its folder."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Decimal

import jsonschema_rs

from formarket.registry.entries import MAX_README
from formarket.registry.findings import Finding, finding
from formarket.registry.smoke import compile_pattern
from formarket.schemas.listing import AgentListing, ModelListing
from formarket.schemas.pricing import (
    FreePricing,
    PerInstanceHourPricing,
    PerRequestPricing,
    PerTokenPricing,
    SubscriptionPricing,
)
from formarket.yamldoc import LoadedYaml

__all__ = ["listing_findings"]

# Prices above these are almost always a misplaced decimal point; a warning, not an error.
_HIGH_PER_REQUEST = Decimal(10)
_HIGH_PER_MILLION = Decimal(1000)
_HIGH_PER_HOUR = Decimal(500)


def listing_findings(
    listing: ModelListing | AgentListing,
    doc: LoadedYaml,
    folder: str,
    ident: str,
    files: Mapping[str, int],
    read: Callable[[str], bytes | None],
    known_bases: frozenset[str],
    known_gpus: frozenset[str],
) -> list[Finding]:
    path = doc.path
    out: list[Finding] = []

    def at(*where: str | int) -> int:
        return doc.locate(where).line

    if listing.id != ident:
        out.append(
            finding(
                "REG003",
                path,
                f"id {listing.id!r} does not match the folder, which says {ident!r}",
                line=at("id"),
                hint=f"set id: {ident}, or move the folder to match the id",
            )
        )
    if listing.readme not in files:
        out.append(
            finding(
                "REG010",
                path,
                f"{listing.readme} is missing from {folder}/",
                line=at("readme"),
                hint="every listing needs a README that says what it does and how to use it",
            )
        )
    elif files[listing.readme] > MAX_README:
        out.append(
            finding(
                "REG029",
                f"{folder}/{listing.readme}",
                f"the README is {files[listing.readme]} bytes; the limit is {MAX_README}",
                hint="keep the README to what the listing does and how to use it, and link"
                " longer documentation from it",
            )
        )
    out.extend(_formfile_findings(listing, doc, folder, files, read, known_bases, known_gpus))
    out.extend(_pricing_findings(listing, doc))
    if listing.test is not None and listing.test.expect.pattern is not None:
        try:
            compile_pattern(listing.test.expect.pattern)
        except ValueError as exc:
            out.append(
                finding(
                    "REG035",
                    path,
                    f"RE2 refuses the smoke test's pattern: {exc}",
                    line=at("test", "expect", "pattern"),
                    hint="write it in RE2's syntax: no backreferences or lookaround, and no"
                    " counted repetitions that multiply into thousands of states",
                )
            )
    if isinstance(listing, ModelListing) and listing.tokenizer is not None:
        from formarket.registry.tokenizer_file import (  # start-up: the tokenizers library
            tokenizer_findings,
        )

        out.extend(tokenizer_findings(listing, doc, folder, files, read))
    if listing.settings_schema is not None:
        schema = listing.settings_schema
        valid = jsonschema_rs.meta.is_valid(schema)
        if not valid or schema.get("type") != "object":
            out.append(
                finding(
                    "REG022",
                    path,
                    "settings_schema must be a valid JSON Schema whose type is object",
                    line=at("settings_schema"),
                    hint="check it with a JSON Schema validator; settings are a mapping of names",
                )
            )
    return out


def _formfile_findings(
    listing: ModelListing | AgentListing,
    doc: LoadedYaml,
    folder: str,
    files: Mapping[str, int],
    read: Callable[[str], bytes | None],
    known_bases: frozenset[str],
    known_gpus: frozenset[str],
) -> list[Finding]:
    from formarket.formfile.parser import check_formfile  # start-up: uncached listings only

    ff_path = f"{folder}/{listing.formfile}"
    raw = read(ff_path) if listing.formfile in files else None
    if raw is None:
        return [
            finding(
                "REG008",
                doc.path,
                f"{listing.formfile} is missing from {folder}/",
                line=doc.locate(("formfile",)).line,
                hint="the Formfile says how the listing's VM image is built",
            )
        ]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return [finding("REG008", ff_path, "not UTF-8", hint="save the Formfile as UTF-8")]
    result = check_formfile(text, path=ff_path, known_bases=known_bases, known_gpus=known_gpus)
    if result.formfile is None or result.errors:
        return [
            finding(
                "REG008",
                ff_path,
                f"{err.message} [{err.code}]",
                line=err.line,
                column=err.column,
                hint=err.hint,
            )
            for err in result.errors
        ]
    ff = result.formfile
    out: list[Finding] = []
    low = listing.resources.minimum
    high = listing.resources.effective_recommended
    checks = (
        ("VCPU", ff.vcpus, low.vcpus, high.vcpus, "vcpus"),
        ("MEMORY", ff.memory_mib, low.memory_mib, high.memory_mib, "memory_mib"),
        ("DISK", ff.disk_gib, low.disk_gib, high.disk_gib, "disk_gib"),
    )
    for keyword, value, lowest, highest, field in checks:
        if value is None:
            continue
        if not lowest <= value <= highest:
            out.append(
                finding(
                    "REG009",
                    ff_path,
                    f"{keyword} {value} is outside the listing's resources"
                    f" ({field} from {lowest} to {highest})",
                    hint="the Formfile's size is what the VM boots with by default; it must"
                    " lie between resources.minimum and resources.recommended",
                )
            )
    gpu = low.gpu
    ff_gpus = {g.model: g.count for g in ff.gpus}
    if gpu is None and ff_gpus:
        out.append(
            finding(
                "REG009",
                ff_path,
                f"the Formfile asks for GPUs ({', '.join(ff_gpus)}) but the listing needs none",
                hint="declare resources.minimum.gpu in listing.yaml",
            )
        )
    elif gpu is not None and ff_gpus.get(gpu.model, 0) < gpu.count:
        out.append(
            finding(
                "REG009",
                ff_path,
                f"the listing needs {gpu.count} {gpu.model} but the Formfile asks for"
                f" {ff_gpus.get(gpu.model, 0)}",
                hint=f"add `GPU {gpu.model}:{gpu.count}` to the Formfile",
            )
        )
    if isinstance(listing, AgentListing):
        required = listing.compatibility.requires_model
        for model_id in ff.model_required:
            if model_id != required:
                out.append(
                    finding(
                        "REG009",
                        ff_path,
                        f"the Formfile requires model {model_id!r} but the listing's"
                        f" compatibility.requires_model is {required!r}",
                        hint="users see the listing: say the same thing in both places",
                    )
                )
    elif ff.model_required or ff.model_preferred:
        out.append(
            finding(
                "REG009", ff_path, "MODEL is for agents; a model listing cannot require a model"
            )
        )
    test = listing.test
    if test is not None and (
        not ff.expose or (test.port is not None and test.port not in ff.expose)
    ):
        exposed = ", ".join(str(port) for port in ff.expose) or "no port"
        out.append(
            finding(
                "REG036",
                doc.path,
                f"the smoke test calls port {test.port or 'the first EXPOSEd'}, and the"
                f" Formfile exposes {exposed}",
                line=doc.locate(("test", "port") if test.port is not None else ("test",)).line,
                hint="EXPOSE the port the service listens on, and name it in test.port or"
                " leave test.port out to call the first EXPOSEd port",
            )
        )
    if ff.name != listing.slug:
        out.append(
            finding(
                "REG025",
                ff_path,
                f"NAME {ff.name!r} differs from the listing's slug {listing.slug!r}",
                hint="use the slug as NAME so that images and listings are easy to match",
            )
        )
    return out


def _pricing_findings(listing: ModelListing | AgentListing, doc: LoadedYaml) -> list[Finding]:
    pricing = listing.pricing
    metered = set(listing.monetization.metered)
    out: list[Finding] = []
    # Lines are looked up only for findings (by `where`): locating needs the slow reader.
    pricing_at: tuple[str | int, ...] = ("pricing",)
    needs: tuple[str, ...] = ()
    high = False
    if isinstance(pricing, PerTokenPricing):
        needs = ("input_tokens", "output_tokens")
        if pricing.input_per_million == 0 and pricing.output_per_million == 0:
            out.append(
                finding(
                    "REG013",
                    doc.path,
                    "both token prices are zero",
                    where=pricing_at,
                    hint="write `model: free` instead",
                )
            )
        high = max(pricing.input_per_million, pricing.output_per_million) > _HIGH_PER_MILLION
    elif isinstance(pricing, PerRequestPricing):
        needs = ("requests",)
        high = pricing.per_request > _HIGH_PER_REQUEST
    elif isinstance(pricing, PerInstanceHourPricing):
        needs = ("instance_hours",)
        high = pricing.per_hour > _HIGH_PER_HOUR
    elif isinstance(pricing, SubscriptionPricing):
        needs = ("requests",)
    elif isinstance(pricing, FreePricing) and listing.monetization.royalty_percent > 0:
        out.append(
            finding(
                "REG013",
                doc.path,
                "a free listing earns nothing, so its royalty share has nothing to share",
                where=("monetization", "royalty_percent"),
                hint="set royalty_percent: 0, or price the listing",
            )
        )
    if high:
        out.append(
            finding(
                "REG013",
                doc.path,
                "the price is unusually high; is the decimal point in the right place?",
                where=pricing_at,
            )
        )
    missing = [m for m in needs if m not in metered]
    if missing:
        out.append(
            finding(
                "REG014",
                doc.path,
                f"pricing model {pricing.model!r} charges by {', '.join(needs)} but"
                f" monetization.metered lacks {', '.join(missing)}",
                where=("monetization", "metered"),
                hint=f"add {', '.join(missing)} to monetization.metered",
            )
        )
    return out
