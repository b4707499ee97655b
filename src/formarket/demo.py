"""The demo journey, as a function of a source folder, a scratch folder and a printer.

Each later part of formarket adds its step here; `formarket demo` and `make demo` run it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import yaml
from dulwich.refs import Ref
from dulwich.repo import Repo

from formarket.errors import NotFoundError
from formarket.gitstore import Identity, commit_changes, import_tree
from formarket.registry.cache import ResultCache, code_digest
from formarket.registry.findings import Severity
from formarket.registry.pr_check import check_pull_request
from formarket.registry.report import render_findings
from formarket.registry.snapshot import WorkTreeSnapshot
from formarket.registry.validate import Report, validate_snapshot

__all__ = ["run_demo", "starter_source"]

Echo = Callable[[str], None]
_STARTER = ("registry", "schemas", "builder", "royalties/policy.yaml")
MAIN, PR1, PR2 = Ref(b"refs/heads/main"), Ref(b"refs/heads/pr-1"), Ref(b"refs/heads/pr-2")


def starter_source() -> Path:
    """The checkout this formarket runs from, which holds the starter registry."""
    for candidate in (Path.cwd(), *Path(__file__).resolve().parents):
        if (candidate / "registry" / "publishers").is_dir() and (candidate / "schemas").is_dir():
            return candidate
    raise NotFoundError(
        "no starter registry found", hint="run it in a formarket checkout, or pass --source"
    )


def _step(echo: Echo, number: int, title: str) -> None:
    echo(f"\n== {number}. {title}")


def _show(echo: Echo, report: Report, what: str) -> None:
    summary = f"{what}: {report.documents} documents in {report.seconds:.2f}s"
    echo(render_findings(report.findings, "text", summary=summary))


def run_demo(source: Path, scratch: Path, echo: Echo) -> None:
    repo_path = scratch / "marketplace"
    if repo_path.exists():
        raise NotFoundError(f"{repo_path} exists already", hint="choose an empty --workdir")
    files = import_tree(source, _STARTER)
    if not any(p.startswith("registry/") for p in files):
        raise NotFoundError(f"{source} holds no registry/")
    repo = Repo.init(str(repo_path), mkdir=True)
    repo.refs.set_symbolic_ref(Ref(b"HEAD"), MAIN)
    cache = ResultCache(None, code_digest())
    governance = yaml.safe_load(files["registry/governance.yaml"])
    maintainer = Identity(governance["maintainers"][0], f"{governance['maintainers'][0]}@users")

    _step(echo, 1, "The marketplace repository")
    commit_changes(repo, "main", files, "Start the marketplace", maintainer)
    echo(f"a new git repository at {repo_path} holds the starter registry ({len(files)} files)")
    repo.get_worktree().reset_index()
    report = validate_snapshot(WorkTreeSnapshot(repo_path), cache)
    _show(echo, report, "formarket validate")
    if report.errors:
        raise NotFoundError("the starter registry does not validate; see the findings above")

    publisher, owner, listing_dir = _pick_publisher(files)
    other_dir = _pick_other_listing(files, publisher)
    slug = listing_dir.rsplit("/", 1)[1]
    new_slug = f"{slug}-mini"
    new_dir = listing_dir.rsplit("/", 1)[0] + "/" + new_slug
    author = Identity(owner, f"{owner}@users")

    _step(echo, 2, f"{owner} (owner of {publisher}) opens a pull request: a new listing")
    good: dict[str, bytes | None] = {}
    for path, content in files.items():
        if path.startswith(listing_dir + "/"):
            rel = path[len(listing_dir) + 1 :]
            if rel == "listing.yaml":
                data = yaml.safe_load(content)
                data["id"] = f"{publisher}/{new_slug}"
                data["name"] = f"{data['name']} Mini"
                data["version"] = "0.1.0"
                content = yaml.safe_dump(data, sort_keys=False, allow_unicode=True).encode()
            elif rel == "Formfile":
                content = content.replace(f"NAME {slug}".encode(), f"NAME {new_slug}".encode(), 1)
            good[f"{new_dir}/{rel}"] = content
    main_tip = repo.refs[MAIN]
    repo.refs[PR1] = main_tip
    commit_changes(repo, "pr-1", good, f"Add {publisher}/{new_slug}", author)
    echo(f"branch pr-1 adds {new_dir}/ ({len(good)} files)")
    report = check_pull_request(repo, "main", "pr-1", owner, cache)
    _show(echo, report, f"formarket check --base main --head pr-1 --author {owner}")
    if report.errors:
        raise NotFoundError("the good pull request was refused; see the findings above")
    repo.refs.set_if_equals(MAIN, main_tip, repo.refs[PR1])
    echo("the check passes; a maintainer merges pr-1 into main")

    _step(echo, 3, f"{owner} opens another pull request: it breaks two rules")
    bad: dict[str, bytes | None] = {}
    own = yaml.safe_load(files[f"{listing_dir}/listing.yaml"])
    own["monetization"]["royalty_percent"] = "99"
    bad[f"{listing_dir}/listing.yaml"] = yaml.safe_dump(own, sort_keys=False).encode()
    theirs = f"{other_dir}/README.md"
    bad[theirs] = files[theirs] + b"\nThis listing is better served by another one.\n"
    repo.refs[PR2] = repo.refs[MAIN]
    commit_changes(repo, "pr-2", bad, "Raise my royalty; edit a competitor's README", author)
    echo(
        f"branch pr-2 raises the royalty of {publisher}/{slug} without a new version, and edits"
        f" {theirs}"
    )
    report = check_pull_request(repo, "main", "pr-2", owner, cache)
    _show(echo, report, f"formarket check --base main --head pr-2 --author {owner}")
    refused = sorted({f.code for f in report.findings if f.severity is Severity.ERROR})
    if "REG011" not in refused or "REG016" not in refused:
        raise NotFoundError("the bad pull request was not refused as it should be")
    echo(f"refused ({', '.join(refused)}): pr-2 stays unmerged")

    _step(echo, 4, "The build farm builds a listing and boots it")
    from formarket.builder.demo import DEMO_LISTING, demo_build

    repo.get_worktree().reset_index()
    manifest = demo_build(repo_path, scratch / "store", echo)

    _step(echo, 5, "Calls go through the gateway, which meters them into git")
    from formarket.gateway.demo import demo_gateway

    demo_gateway(repo_path, echo)

    _step(echo, 6, "A royalty period is closed, its statements verified")
    from formarket.royalties.demo import demo_royalties

    demo_royalties(repo, echo)
    repo.get_worktree().reset_index()

    _step(echo, 7, "The catalog site is built from the registry")
    from formarket.site.demo import demo_site

    site = demo_site(repo_path, scratch / "site", echo)

    echo("\n== Summary")
    echo(f"  registry validated: {report.documents} documents, no errors")
    echo(f"  pr-1 by {owner}: passed, merged ({publisher}/{new_slug} is listed)")
    echo(f"  pr-2 by {owner}: refused with {', '.join(refused)}")
    echo(f"  {DEMO_LISTING}: image {manifest.build_id[:16]} built, booted and answered")
    echo(f"  the catalog: formarket site serve --dir {site}")


def _pick_publisher(files: dict[str, bytes]) -> tuple[str, str, str]:
    """A publisher with a model listing, one of its owners and that listing's folder."""
    for path in sorted(files):
        parts = path.split("/")
        if len(parts) == 5 and parts[1] == "models" and parts[4] == "listing.yaml":
            publisher = parts[2]
            pub = yaml.safe_load(files[f"registry/publishers/{publisher}.yaml"])
            return publisher, pub["owners"][0], "/".join(parts[:4])
    raise NotFoundError("the starter registry has no model listing")


def _pick_other_listing(files: dict[str, bytes], publisher: str) -> str:
    for path in sorted(files):
        parts = path.split("/")
        if (
            len(parts) == 5
            and parts[1] in ("models", "agents")
            and parts[4] == "README.md"
            and parts[2] != publisher
        ):
            return "/".join(parts[:4])
    raise NotFoundError("the starter registry has a single publisher")
