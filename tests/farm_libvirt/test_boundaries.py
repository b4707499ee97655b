"""libvirt is reached through one module only, so its errors are translated in one place."""

from __future__ import annotations

import ast
from pathlib import Path

import formarket

PACKAGE = Path(formarket.__file__).parent


def _imports_libvirt(path: Path) -> bool:
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import) and any(
            a.name.split(".")[0] == "libvirt" for a in node.names
        ):
            return True
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "libvirt":
            return True
    return False


def test_only_libvirt_conn_imports_libvirt() -> None:
    importers = sorted(
        str(path.relative_to(PACKAGE)) for path in PACKAGE.rglob("*.py") if _imports_libvirt(path)
    )
    assert importers == ["farm/libvirt_conn.py"]


def test_the_pure_modules_import_no_effects() -> None:
    for name in ("farm/domain.py", "farm/configdisk.py", "standins/libvirt_test.py"):
        source = (PACKAGE / name).read_text()
        assert "libvirt_conn" not in source
        assert "formarket.process" not in source
