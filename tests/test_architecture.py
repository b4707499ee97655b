"""The architecture as tests: the floors drawn in docs/architecture.md, held against the code.

A module may import from its own part and from parts on lower floors; no import cycle between
modules; an import inside a function only in the command line or with a `# start-up` comment;
each effect behind the modules the page names.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "src" / "formarket"
PAGE = ROOT / "docs" / "architecture.md"

# Where a function may import what it uses when it runs: every command does, so that
# `formarket --help` loads no more than the command line itself.
LAZY_PARTS = {"commands", "cli"}
# Third-party modules that are effects, and the only modules that may import them.
EFFECTS: dict[str, set[str]] = {
    "subprocess": {"process"},
    "httpx": {"httpclient"},
    "libvirt": {"farm.libvirt_conn"},
    "celery": {"farm.celery_app", "farm.tasks", "farm.embedded"},
    "kombu": {"farm.celery_app", "farm.embedded"},
    "redis": {"farm.leases"},
    "uvicorn": {"gateway.server"},
}
# Moving a branch is the writer's alone.
BRANCH_MOVES = ("set_if_equals", "add_if_new", "commit_tree_changes")


@dataclass(frozen=True)
class Import:
    module: str  # the importing module, dotted below formarket (e.g. "farm.tasks")
    target: str  # what it names, dotted and absolute
    line: int
    nested: bool  # inside a function
    type_only: bool  # inside `if TYPE_CHECKING:`
    text: str  # the source line, comments included


def floors() -> dict[str, int]:
    """part -> floor, from the page's table."""
    text = PAGE.read_text()
    section = text.split("## Floors", 1)[1].split("\n## ", 1)[0]
    found = {}
    for match in re.finditer(r"^\| (\d+) \| `([\w_]+)` \|", section, re.MULTILINE):
        found[match.group(2)] = int(match.group(1))
    assert found, "docs/architecture.md has no floors table"
    return found


def modules() -> dict[str, Path]:
    """dotted name below formarket -> file; a package's __init__ is the package's name."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
        if parts[-1] == "__init__" and len(parts) > 1:
            parts.pop()
        out[".".join(parts)] = path
    return out


def part_of(module: str) -> str:
    return module.split(".", 1)[0]


def _type_checking_blocks(tree: ast.Module) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                for inner in ast.walk(child):
                    if hasattr(inner, "lineno"):
                        lines.add(inner.lineno)
    return lines


def _function_lines(tree: ast.Module) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for inner in ast.walk(node):
                if isinstance(inner, ast.Import | ast.ImportFrom):
                    lines.add(inner.lineno)
    return lines


def imports_of(module: str, path: Path) -> Iterator[Import]:
    source = path.read_text()
    lines = source.splitlines()
    tree = ast.parse(source, str(path))
    typed = _type_checking_blocks(tree)
    nested = _function_lines(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")[: -node.level] if path.name != "__init__.py" else None
                prefix = ".".join(["formarket", *(base or module.split("."))])
                anchor = f"{prefix}.{node.module}" if node.module else prefix
            else:
                anchor = node.module or ""
            names = [anchor] + [f"{anchor}.{alias.name}" for alias in node.names]
        else:
            continue
        end = getattr(node, "end_lineno", node.lineno) or node.lineno
        text = " ".join(lines[node.lineno - 1 : end])
        for name in names:
            yield Import(
                module, name, node.lineno, node.lineno in nested, node.lineno in typed, text
            )


def project_imports() -> list[Import]:
    known = modules()
    found = []
    for module, path in known.items():
        for imp in imports_of(module, path):
            if imp.target == "formarket" or imp.target.startswith("formarket."):
                found.append(imp)
    return found


def resolve(target: str, known: dict[str, Path]) -> str | None:
    """The project module an import names (a submodule, else its package); None for a name
    that is not a module (`from formarket.x import function` names module x, seen apart)."""
    dotted = target.removeprefix("formarket").removeprefix(".")
    if dotted in known:
        return dotted
    return None


def test_the_page_names_every_part_of_the_package() -> None:
    table = floors()
    parts = {part_of(module) for module in modules()}
    assert parts - set(table) == set(), "parts missing from docs/architecture.md's table"
    assert set(table) - parts == set(), "docs/architecture.md names parts that do not exist"


def test_no_module_imports_from_a_floor_above_its_own() -> None:
    table = floors()
    known = modules()
    upward = []
    for imp in project_imports():
        target = resolve(imp.target, known)
        if target is None:
            continue
        mine, theirs = part_of(imp.module), part_of(target)
        if theirs != mine and table[theirs] >= table[mine]:
            upward.append(
                f"{imp.module}:{imp.line} ({mine}, floor {table[mine]}) imports {target}"
                f" ({theirs}, floor {table[theirs]})"
            )
    assert upward == [], "\n".join(sorted(set(upward)))


def _graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports when it is loaded."""
    known = modules()
    graph: dict[str, set[str]] = {module: set() for module in known}
    for imp in project_imports():
        if imp.nested or imp.type_only:
            continue
        target = resolve(imp.target, known)
        if target is not None and target != imp.module:
            graph[imp.module].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def visit(node: str) -> None:
        nonlocal counter
        index[node] = low[node] = counter
        counter += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_there_is_no_import_cycle() -> None:
    assert cycles(_graph()) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_imports_inside_functions_only_keep_the_start_up_fast() -> None:
    hidden = []
    for module, path in modules().items():
        if part_of(module) in LAZY_PARTS:
            continue
        for imp in imports_of(module, path):
            if imp.nested and "# start-up" not in imp.text:
                hidden.append(f"{module}:{imp.line}: {imp.text.strip()}")
    assert sorted(set(hidden)) == [], (
        "an import inside a function needs a `# start-up` comment saying what it spares;"
        " a cycle is fixed by moving the shared piece down a floor"
    )


def test_no_import_goes_through_importlib_where_a_reader_cannot_follow() -> None:
    # The command line finds its commands by name, and schemas' package loads each model on
    # first use: both name what they load in a table beside the call.
    allowed = {"cli", "schemas"}
    users = sorted(
        module
        for module, path in modules().items()
        if "import_module(" in path.read_text() and module not in allowed
    )
    assert users == []


@pytest.mark.parametrize("library", sorted(EFFECTS))
def test_each_effect_has_its_own_modules(library: str) -> None:
    importers = set()
    for module, path in modules().items():
        for imp in imports_of(module, path):
            if imp.target.split(".")[0] == library:
                importers.add(module)
    assert importers <= EFFECTS[library]


def test_only_the_market_moves_a_branch() -> None:
    movers = sorted(
        module
        for module, path in modules().items()
        if part_of(module) != "market" and any(word in path.read_text() for word in BRANCH_MOVES)
    )
    assert movers == []
