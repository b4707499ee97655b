"""Publishing listing versions the way merged pull requests do, for the lifecycle tests: a new
version over the current listing file, and owners' marks on published versions."""

from __future__ import annotations

from collections.abc import Mapping

import yaml
from dulwich.objects import ObjectID
from dulwich.repo import Repo

from formarket.market.refs import branch_tip
from formarket.market.trees import commit_tree, read_path
from formarket.market.writer import Identity, commit_changes

OWNER = Identity("tina-tinyforge", "tina@example.org")


def listing_path(listing_id: str, kind: str = "models") -> str:
    return f"registry/{kind}/{listing_id}/listing.yaml"


def publish(
    repo: Repo,
    listing_id: str,
    version: str,
    *,
    kind: str = "models",
    marks: Mapping[str, tuple[str, str]] | None = None,
    branch: str = "main",
) -> ObjectID:
    """Commit the listing at `version` (its other fields as the tip has them), with `marks`
    (version -> (status, message)) as its version_marks; the commit."""
    path = listing_path(listing_id, kind)
    raw = read_path(repo, commit_tree(repo, branch_tip(repo, branch)), path)
    assert raw is not None, path
    data = yaml.safe_load(raw)
    data["version"] = version
    data.pop("version_marks", None)
    if marks:
        data["version_marks"] = {
            v: {"status": status, "message": message} for v, (status, message) in marks.items()
        }
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True).encode()
    return commit_changes(repo, branch, {path: text}, f"{listing_id} {version}", OWNER)


def listing_text_at(version: str, listing_id: str, root_text: bytes) -> bytes:
    """The listing file `root_text` with its version set to `version`."""
    data = yaml.safe_load(root_text)
    data["version"] = version
    assert data["id"] == listing_id
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True).encode()
