"""Git has one porcelain: outside `formarket.market`, no module names a branch's ref, opens or
makes a repository itself, or learns the bot from anywhere but `market.governance`."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MARKET = ROOT / "src" / "formarket" / "market"
GOVERNANCE = "formarket.market.governance"
_OPENERS = {"Repo", "Repo.init", "Repo.init_bare", "Repo.discover", "Repo.create"}


def _sources() -> list[Path]:
    found = sorted((ROOT / "src" / "formarket").rglob("*.py")) + sorted(
        (ROOT / "benchmarks").rglob("*.py")
    )
    return [path for path in found if MARKET not in path.parents]


def _name(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_name(node.value)}.{node.attr}"
    return ""


def test_only_the_market_spells_a_branch_ref() -> None:
    spelled = [path for path in _sources() if "refs/heads" in path.read_text()]
    assert spelled == []


def test_only_the_market_opens_or_makes_a_repository() -> None:
    found = []
    for path in _sources():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and _name(node.func) in _OPENERS:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert found == []


def test_the_bot_is_learnt_from_governance_only() -> None:
    found = []
    for path in _sources():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.ImportFrom) or node.module == GOVERNANCE:
                continue
            if any(alias.name == "bot_identity" for alias in node.names):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} from {node.module}")
    assert found == []
