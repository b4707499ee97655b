"""What each generated page shows, as plain JSON-like data ("views").

A view holds everything its page depends on and nothing else: the build hashes it to decide
whether the page must be rendered again, so a listing page is re-rendered exactly when
something on it changed (its own document, a compatible listing's name, its usage, ...). Views
are cheap; turning one into HTML (Markdown, templates) is the expensive part that is skipped.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any
from urllib.parse import quote, urlencode

from formarket.site.catalog import Catalog, Entry, price_label
from formarket.site.charts import bar_chart, format_amount
from formarket.site.compat import Compatibility
from formarket.site.deploys import Command, command_line, mark_of, setting_args
from formarket.site.history import Version
from formarket.site.markdown import safe_url

__all__ = [
    "COMPAT_SHOWN",
    "chart_view",
    "deploy_view",
    "listing_view",
    "publisher_view",
    "record",
    "solution_view",
]

COMPAT_SHOWN = 12  # compatible listings named on a page; the explorer has the rest
_DESCRIPTION = 200


def record(entry: Entry) -> dict[str, Any]:
    """A listing as a catalog card shows it."""
    data = entry.data
    facet = data.get("task") or data.get("agent_type") or ""
    pricing = data.get("pricing")
    description = " ".join(str(data.get("description", "")).split())
    if len(description) > _DESCRIPTION:
        description = description[: _DESCRIPTION - 1].rstrip() + "…"
    return {
        "kind": entry.kind,
        "id": entry.id,
        "name": entry.name,
        "url": entry.url,
        "version": str(data.get("version", "")),
        "license": str(data.get("license", "")),
        "facet": str(facet),
        "price": price_label(pricing) if isinstance(pricing, Mapping) else "",
        "description": description,
    }


def _link(entry: Entry | None, ident: str, note: str = "") -> dict[str, str]:
    if entry is None:
        return {"id": ident, "name": ident, "url": "", "note": note or "not listed"}
    return {"id": ident, "name": entry.name, "url": entry.url, "note": note}


def _issue_url(catalog: Catalog, fields: Mapping[str, str]) -> str | None:
    repository = catalog.settings.repository
    if repository is None:
        return None
    query = urlencode({"template": "deploy.yml", **fields}, quote_via=quote)
    return f"https://github.com/{repository}/issues/new?{query}"


def deploy_view(
    catalog: Catalog,
    commands: Sequence[Command],
    *,
    intro: str,
    issue: Mapping[str, str] | None = None,
    warning: str = "",
    closed: str = "",
) -> dict[str, Any]:
    """The deploy section: its commands (the first is the one to copy), a prefilled
    deployment issue when there is an agent to name, and a version's mark."""
    note = (
        "The deployment-issue link appears when the site knows its GitHub repository"
        " (`formarket site build --repository OWNER/NAME`)."
        if catalog.settings.repository is None
        else "A deployment issue needs an agent."
    )
    return {
        "intro": intro,
        "commands": [c.view() for c in commands],
        "command": commands[0].line if commands else "",
        "issue_url": _issue_url(catalog, issue) if issue and not closed else None,
        "issue_note": note,
        "warning": warning,
        "closed": closed,
    }


def _issue(agent: str, model: str | None, solution: str | None = None) -> dict[str, str]:
    fields = {"title": f"Deploy {solution or agent}" + (f" with {model}" if model else "")}
    fields["agent"] = agent
    if model is not None:
        fields["model"] = model
    if solution is not None:
        fields["solution"] = solution
    return fields


def _agent_command(
    agent: Entry, model: str | None, label: str, other: Entry | None = None
) -> Command:
    """The command for an agent (with `model`); `other` is the listing of the pair that the
    page is not about, whose deprecation the command's notes pass on."""
    args = setting_args(agent.data.get("settings_schema"))
    notes = []
    warning = _mark_texts(other)[0] if other is not None else ""
    if warning:
        notes.append(warning)
    if args.chosen:
        notes.append(f"Filled in for you to change: {', '.join(args.chosen)}.")
    if args.supply:
        notes.append(
            f"Replace {', '.join(a.upper() for a in args.supply)} with your"
            f" {', '.join(args.supply)}: {agent.id} requires them and has no default."
        )
    return Command(
        label,
        command_line(agent.id, model, sets=args.sets),
        complete=not args.supply and model != "MODEL-ID",
        notes=tuple(notes),
    )


def _mark_texts(entry: Entry) -> tuple[str, str]:
    """(warning, closed) for the entry's current version by its marks."""
    version = str(entry.data.get("version", ""))
    mark = mark_of(entry.data, version)
    name = entry.id
    if mark is None:
        return "", ""
    status, message = mark
    if status == "yanked":
        return "", f"{name} {version} is yanked and takes no new deployments: {message}"
    return f"{name} {version} is deprecated: {message}", ""


def _deploy_for(entry: Entry, catalog: Catalog, compat: Compatibility) -> dict[str, Any]:
    warning, closed = _mark_texts(entry)
    if closed:
        return deploy_view(catalog, [], intro="", warning=warning, closed=closed)
    if entry.kind == "agent":
        if entry.id in compat.standalone:
            command = _agent_command(entry, None, "The agent on its own")
            return deploy_view(
                catalog,
                [command],
                intro="This agent runs without a model:",
                issue=_issue(entry.id, None),
                warning=warning,
            )
        preferred = [m for m in entry.data.get("preferred_models") or () if m in catalog.models]
        candidates = [m for m in preferred if compat.fits(entry.id, m)]
        candidates += compat.models_for(entry.id, COMPAT_SHOWN)
        model = next((m for m in candidates if _open(catalog.models.get(m))), None)
        command = _agent_command(
            entry, model or "MODEL-ID", "With its model", catalog.models.get(model or "")
        )
        return deploy_view(
            catalog,
            [command],
            intro="Deploy with the command line, or ask the farm through a deployment issue:"
            if model
            else "No listed model meets this agent's requirements yet; name one of your own:",
            issue=_issue(entry.id, model) if model else None,
            warning=warning,
        )
    commands = [Command("The model on its own", command_line(model=entry.id))]
    agents = [a for a in compat.agents_for(entry.id, COMPAT_SHOWN) if _open(catalog.agents[a])]
    for agent in agents:
        commands.append(
            _agent_command(
                catalog.agents[agent], entry.id, f"Behind {agent}", catalog.agents[agent]
            )
        )
    return deploy_view(
        catalog,
        commands,
        intro="Deploy the model on its own (an OpenAI-compatible endpoint), or behind an agent"
        " that runs on it:"
        if agents
        else "Deploy the model on its own (an OpenAI-compatible endpoint); no listed agent"
        " runs on it yet:",
        issue=_issue(agents[0], entry.id) if agents else None,
        warning=warning,
    )


def _open(entry: Entry | None) -> bool:
    """Whether the entry's current version takes new deployments (it is not yanked)."""
    if entry is None:
        return False
    mark = mark_of(entry.data, str(entry.data.get("version", "")))
    return mark is None or mark[0] != "yanked"


def chart_view(
    points: Sequence[tuple[str, Decimal | int]],
    *,
    title: str,
    unit: str,
    chart_id: str,
    empty: str,
    period_label: str = "Month",
) -> dict[str, Any]:
    """A chart and its numbers, or what to say when there are none."""
    if not points or not any(value for _, value in points):
        return {"svg": "", "empty": empty}
    return {
        "svg": bar_chart(points, title=title, unit=unit, chart_id=chart_id),
        "caption": title,
        "unit": unit,
        "period_label": period_label,
        "rows": [[label, format_amount(value)] for label, value in points],
        "empty": "",
    }


def _usage_note(catalog: Catalog, what: str) -> str:
    if not catalog.usage_recorded:
        return "No usage recorded yet: the registry holds no usage logs so far."
    return f"No usage recorded yet for {what}."


def _versions(entry: Entry, catalog: Catalog) -> tuple[list[dict[str, Any]], str]:
    current = str(entry.data.get("version", ""))
    repository = catalog.settings.repository
    rows = [
        {
            "version": v.version,
            "date": v.date[:10],
            "commit": v.commit[:10],
            "commit_url": f"https://github.com/{repository}/commit/{v.commit}"
            if repository
            else "",
            "current": v.version == current,
            "mark": _mark_label(entry.data, v.version),
        }
        for v in reversed(entry.versions)
    ]
    if not catalog.history.available:
        note = f"Version history comes from git: {catalog.history.note}."
    elif not any(v.version == current for v in entry.versions):
        note = f"Version {current} is not committed to the branch yet."
    else:
        note = ""
    return rows, note


def _mark_label(data: Mapping[str, Any], version: str) -> str:
    mark = mark_of(data, version) if "version_marks" in data else None
    return f"{mark[0]}: {mark[1]}" if mark else ""


def _gib(mib: Any) -> str:
    value = Decimal(int(mib)) / 1024
    return f"{format_amount(value)} GiB"


def _resources(data: Mapping[str, Any]) -> list[dict[str, str]]:
    resources = data.get("resources") or {}
    out = []
    for key, label in (("minimum", "Minimum"), ("recommended", "Recommended")):
        spec = resources.get(key)
        if not spec:
            continue
        gpu = spec.get("gpu")
        gpu_text = "none"
        if gpu:
            gpu_text = f"{gpu.get('count', 1)} × {gpu.get('model')}"
            if gpu.get("vram_gib"):
                gpu_text += f" ({gpu['vram_gib']} GiB)"
        out.append(
            {
                "label": label,
                "vcpus": str(spec.get("vcpus")),
                "memory": _gib(spec.get("memory_mib", 0)),
                "disk": f"{spec.get('disk_gib')} GiB",
                "gpu": gpu_text,
            }
        )
    return out


def _pricing(data: Mapping[str, Any]) -> tuple[list[list[str]], list[dict[str, str]], str]:
    pricing = data.get("pricing") or {}
    currency = pricing.get("currency", "")
    model = pricing.get("model")
    rows: list[list[str]] = [["Pricing model", str(model).replace("_", " ")]]
    tiers: list[dict[str, str]] = []

    def money(value: Any) -> str:
        return f"{format_amount(Decimal(str(value)))} {currency}"

    if model == "per_request":
        rows.append(["Per request", money(pricing["per_request"])])
    elif model == "per_token":
        rows.append(["Per million input tokens", money(pricing["input_per_million"])])
        rows.append(["Per million output tokens", money(pricing["output_per_million"])])
    elif model == "per_instance_hour":
        rows.append(["Per instance-hour", money(pricing["per_hour"])])
    elif model == "subscription":
        for tier in pricing.get("tiers") or ():
            overage = tier.get("overage_per_request")
            tiers.append(
                {
                    "name": str(tier.get("name")),
                    "monthly": money(tier.get("monthly")),
                    "requests": format_amount(tier["included_requests"])
                    if tier.get("included_requests") is not None
                    else "—",
                    "tokens": format_amount(tier["included_tokens"])
                    if tier.get("included_tokens") is not None
                    else "—",
                    "overage": money(overage) if overage is not None else "—",
                }
            )
    else:
        rows.append(["Price", "Free"])
    monetization = data.get("monetization") or {}
    metered = ", ".join(str(m).replace("_", " ") for m in monetization.get("metered") or ())
    if metered:
        rows.append(["Metered", metered])
    share = Decimal(str(monetization.get("royalty_percent", 0)))
    royalty = (
        f"the publisher receives {format_amount(share)}% of what this listing earns; the"
        f" platform keeps {format_amount(Decimal(100) - share)}%."
    )
    return rows, tiers, royalty


def _details(entry: Entry) -> tuple[list[list[str]], list[dict[str, str]]]:
    data = entry.data
    rows: list[list[str]] = []

    def add(label: str, value: Any) -> None:
        if value not in (None, "", (), []):
            rows.append([label, str(value)])

    if entry.kind == "model":
        add("Task", data.get("task"))
        add("Capabilities", ", ".join(data.get("capabilities") or ()))
        params = data.get("parameters")
        add("Parameters", format_amount(int(params)) if params else None)
        add("Architecture", data.get("architecture"))
        add("Base model", data.get("base_model"))
        add("Quantization", data.get("quantization"))
        context = data.get("context_length")
        add("Context length", f"{format_amount(int(context))} tokens" if context else None)
        add("Languages", ", ".join(data.get("languages") or ()))
        weights = data.get("weights") or ()
        if weights:
            size = sum(int(w.get("size_bytes", 0)) for w in weights)
            add("Weights", f"{len(weights)} file(s), {format_amount(size)} bytes, sha256-checked")
        return rows, []
    add("Type", data.get("agent_type"))
    add("Framework", data.get("framework"))
    add("Runtime", data.get("runtime"))
    permissions = data.get("permissions") or {}
    add("Internet access", "yes" if permissions.get("internet") else "no")
    add("Host files", permissions.get("filesystem", "none"))
    add("Outside APIs", ", ".join(permissions.get("external_apis") or ()))
    tools = [
        {"name": str(t.get("name")), "description": str(t.get("description"))}
        for t in data.get("tools") or ()
    ]
    return rows, tools


def _compat(entry: Entry, catalog: Catalog, compat: Compatibility) -> dict[str, Any]:
    if entry.kind == "agent":
        if entry.id in compat.standalone:
            return {
                "anchor": "compatible-models",
                "title": "Compatible models",
                "standalone": "This agent needs no model: it is deployed on its own.",
            }
        preferred = [m for m in entry.data.get("preferred_models") or () if m in catalog.models]
        found = compat.models_for(entry.id, COMPAT_SHOWN)
        first = [m for m in preferred if compat.fits(entry.id, m)]
        ordered = first + [m for m in found if m not in first]
        items = [
            _link(catalog.models.get(m), m, "preferred" if m in first else "")
            for m in ordered[:COMPAT_SHOWN]
        ]
        count = compat.model_count(entry.id)
        return {
            "anchor": "compatible-models",
            "title": "Compatible models",
            "standalone": "",
            "items": items,
            "count": count,
            "explorer": f"/compatibility/?agent={quote(entry.id, safe='/')}",
            "more": f"All {count} compatible models in the explorer",
            "empty": "No listed model meets this agent's requirements yet.",
        }
    found = compat.agents_for(entry.id, COMPAT_SHOWN)
    count = compat.agent_count(entry.id)
    return {
        "anchor": "compatible-agents",
        "title": "Compatible agents",
        "standalone": "",
        "items": [_link(catalog.agents.get(a), a) for a in found],
        "count": count,
        "explorer": f"/compatibility/?model={quote(entry.id, safe='/')}",
        "more": f"All {count} compatible agents in the explorer",
        "empty": "No listed agent runs on this model yet.",
    }


def _usage(entry: Entry, catalog: Catalog) -> dict[str, Any]:
    points: list[tuple[str, Decimal | int]] = [(m.month, m.requests) for m in entry.usage]
    return chart_view(
        points,
        title=f"Requests to {entry.id} per month",
        unit="requests",
        chart_id="usage",
        empty=_usage_note(catalog, "this listing"),
    )


def listing_view(entry: Entry, catalog: Catalog, compat: Compatibility) -> dict[str, Any]:
    """Everything a model or agent page shows."""
    data = entry.data
    publisher = catalog.publishers.get(entry.publisher) or {}
    pricing_rows, tiers, royalty = _pricing(data)
    details, tools = _details(entry)
    versions, versions_note = _versions(entry, catalog)
    links = [
        {"label": key, "url": url}
        for key, value in sorted((data.get("links") or {}).items())
        if isinstance(value, str) and (url := safe_url(value)) is not None
    ]
    schema = data.get("settings_schema")
    compat_view = _compat(entry, catalog, compat)
    toc = [
        ["deploy", "Deploy"],
        ["pricing", "Pricing"],
        ["resources", "Resources"],
        [compat_view["anchor"], compat_view["title"]],
        ["usage", "Usage"],
        ["readme", "Readme"],
        ["details", "Details"],
        ["versions", "Versions"],
        ["formfile", "Formfile"],
    ]
    return {
        "kind": entry.kind,
        "id": entry.id,
        "anchor": "top",
        "name": entry.name,
        "version": str(data.get("version", "")),
        "license": str(data.get("license", "")),
        "description": str(data.get("description", "")),
        "tags": [str(t) for t in data.get("tags") or ()],
        "publisher_name": str(publisher.get("name") or entry.publisher),
        "publisher_url": f"/publishers/{entry.publisher}/",
        "deploy": _deploy_for(entry, catalog, compat),
        "pricing_rows": pricing_rows,
        "tiers": tiers,
        "royalty": royalty,
        "resources": _resources(data),
        "compat": compat_view,
        "usage": _usage(entry, catalog),
        "readme": entry.readme,
        "readme_folder": entry.folder,
        "details": details,
        "tools": tools,
        "links": links,
        "settings_schema": json.dumps(schema, indent=2, sort_keys=True) if schema else "",
        "versions": versions,
        "versions_note": versions_note,
        "api_url": f"/api/v1/{entry.kind}s/{entry.id}.json",
        "formfile": entry.formfile,
        "tokenizer": _tokenizer(entry.kind, data),
        "toc": toc,
    }


def _tokenizer(kind: str, data: Mapping[str, Any]) -> dict[str, Any] | None:
    """How the gateway counts this listing's tokens: with its tokenizer, or None (estimates)."""
    declared = data.get("tokenizer") if kind == "model" else None
    if not isinstance(declared, Mapping):
        return None
    return {
        "file": str(declared.get("file", "tokenizer.json")),
        "per_message": declared.get("per_message"),
        "per_reply": declared.get("per_reply"),
    }


def solution_view(entry: Entry, catalog: Catalog) -> dict[str, Any]:
    """Everything a solution page shows."""
    data = entry.data
    publisher = catalog.publishers.get(entry.publisher) or {}
    parts = []
    refs: dict[str, str] = {}
    warnings: list[str] = []
    closed: list[str] = []
    for role, kind in (("Agent", "agent"), ("Model", "model")):
        ref = data.get(kind) or {}
        ident = str(ref.get("id", ""))
        refs[kind] = ident
        target = catalog.entry(kind, ident)
        pricing = target.data.get("pricing") if target else None
        pinned = ref.get("version")
        mark = (
            mark_of(target.data, str(pinned or target.data.get("version", ""))) if target else None
        )
        if mark is not None:
            said = f"{ident} {pinned or target.data.get('version', '') if target else ''}"
            if mark[0] == "yanked":
                closed.append(f"{said} is yanked and takes no new deployments: {mark[1]}")
            else:
                warnings.append(f"{said} is deprecated: {mark[1]}")
        parts.append(
            {
                "role": role,
                "id": ident,
                "name": target.name if target else ident,
                "url": target.url if target else "",
                "version": str(pinned or "newest"),
                "mark": f"{mark[0]}: {mark[1]}" if mark else "",
                "price": price_label(pricing) if isinstance(pricing, Mapping) else "not listed",
            }
        )
    versions, versions_note = _versions(entry, catalog)
    settings = data.get("settings")
    return {
        "kind": "solution",
        "id": entry.id,
        "anchor": "top",
        "name": entry.name,
        "version": str(data.get("version", "")),
        "description": str(data.get("description", "")),
        "tags": [str(t) for t in data.get("tags") or ()],
        "publisher_name": str(publisher.get("name") or entry.publisher),
        "publisher_url": f"/publishers/{entry.publisher}/",
        "deploy": deploy_view(
            catalog,
            [] if closed else [Command("The solution", command_line(solution=entry.id))],
            intro="Deploy the agent with the model and the settings below:",
            issue=_issue(refs["agent"], refs["model"], entry.id),
            warning=" ".join(warnings),
            closed=" ".join(closed),
        ),
        "parts": parts,
        "settings": json.dumps(settings, indent=2, sort_keys=True) if settings else "",
        "versions": versions,
        "versions_note": versions_note,
        "api_url": f"/api/v1/solutions/{entry.id}.json",
        "toc": [
            ["deploy", "Deploy"],
            ["parts", "Agent and model"],
            ["settings", "Settings"],
            ["versions", "Versions"],
        ],
    }


def publisher_view(
    ident: str, catalog: Catalog, mine: Sequence[Entry] | None = None
) -> dict[str, Any]:
    """A publisher's page: their listings (`mine`, when the caller has them at hand), usage
    per month and earnings per period."""
    data = catalog.publishers.get(ident) or {}
    if mine is None:
        mine = [e for e in catalog.all_entries() if e.publisher == ident]
    months: dict[str, int] = {}
    for entry in mine:
        for month in entry.usage:
            months[month.month] = months.get(month.month, 0) + month.requests
    usage = chart_view(
        sorted(months.items()),
        title=f"Requests to {ident}'s listings per month",
        unit="requests",
        chart_id="usage",
        empty=_usage_note(catalog, "this publisher's listings"),
    )
    by_currency: dict[str, list[tuple[str, Decimal | int]]] = {}
    for earning in catalog.earnings.get(ident, ()):
        by_currency.setdefault(earning.currency, []).append((earning.period, earning.amount))
    earnings = [
        chart_view(
            sorted(points),
            title=f"{ident}'s royalties per period, in {currency}",
            unit=currency,
            chart_id=f"earnings-{currency.lower()}",
            empty="",
            period_label="Period",
        )
        for currency, points in sorted(by_currency.items())
    ]
    if catalog.periods_closed:
        earnings_note = (
            f"No earnings recorded yet: none in the {len(catalog.periods_closed)} closed"
            " royalty period(s)."
        )
    else:
        earnings_note = "No earnings recorded yet: no royalty period has been closed so far."
    website = data.get("website")
    listings = []
    for kind, title in (("model", "Models"), ("agent", "Agents"), ("solution", "Solutions")):
        items = [_link(e, e.id) for e in mine if e.kind == kind]
        listings.append(
            {
                "anchor": f"{kind}s",
                "title": title,
                "items": items,
                "empty": f"No {kind}s listed.",
            }
        )
    return {
        "id": ident,
        "anchor": "top",
        "name": str(data.get("name") or ident),
        "description": str(data.get("description") or ""),
        "website": safe_url(website) if isinstance(website, str) else None,
        "owners": [str(o) for o in data.get("owners") or ()],
        "usage": usage,
        "earnings": [e for e in earnings if e["svg"]],
        "earnings_note": earnings_note,
        "listings": listings,
        "toc": [
            ["usage", "Usage"],
            ["earnings", "Earnings"],
            ["models", "Models"],
            ["agents", "Agents"],
            ["solutions", "Solutions"],
        ],
    }


def version_rows(versions: Sequence[Version]) -> list[dict[str, str]]:
    """Versions as the API lists them, oldest first."""
    return [{"version": v.version, "date": v.date, "commit": v.commit} for v in versions]
