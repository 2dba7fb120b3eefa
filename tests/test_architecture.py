"""The structure holds: one direction of flow (import-linter contracts in pyproject.toml), no import cycles,
types checked (mypy), and no product file named like a test. docs/architecture.md is the map."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("guardrail", "runners", "web")
BIN = Path(sys.executable).parent


def _tool(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    exe = BIN / name
    if not exe.exists():
        pytest.fail(f"{name} is not installed in this environment (the dev extra installs it)")
    return subprocess.run([str(exe), *args], cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_import_contracts_hold():
    proc = _tool("lint-imports", "--no-cache")
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    assert " 0 broken" in proc.stdout


def test_no_import_cycles_among_product_modules():
    import grimp

    graph = grimp.build_graph(*PACKAGES)
    cycles = []
    for module in sorted(graph.modules):
        for imported in graph.find_modules_directly_imported_by(module):
            if module < imported and graph.chain_exists(importer=imported, imported=module):
                cycles.append(f"{module} <-> {imported}")
    assert cycles == []


def test_types_check():
    proc = _tool("mypy")
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]


def test_no_product_file_is_named_like_a_test():
    named = [
        str(p.relative_to(ROOT))
        for pkg in PACKAGES
        for p in (ROOT / pkg).rglob("*.py")
        if p.name.startswith("test_") or p.name in ("tests.py", "conftest.py")
    ]
    assert named == []


def test_no_product_class_needs_a_pytest_marker():
    marked = [
        str(p.relative_to(ROOT))
        for pkg in PACKAGES
        for p in (ROOT / pkg).rglob("*.py")
        if "__test__" in p.read_text(encoding="utf-8")
    ]
    assert marked == []


def test_module_map_names_every_module():
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "module-map"), "--check"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
