"""The layering docs/architecture.md describes, checked on the source: the pure core imports no
I/O, every module says its one job, and the document names every package and module."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[1] / "src" / "quorumwatch"
ARCHITECTURE = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"

# The pure core: no network, no disk, no event loop of its own.
PURE = (
    "models",
    "analysis",
    "labels",
    "report",
    "probe",
    "exporter.state",
    "jails.events",
    "jails.storms",
    "jails.statistics",
    "alerting.model",
    "alerting.rules",
    "columns",
    "chains.ethereum.ssz",
    "chains.ethereum.parse",
    "chains.ethereum.status",
    "chains.ethereum.labels",
    "chains.ethereum.attribution",
)
# What the pure core must never import: I/O libraries and the project's I/O modules.
IO_MODULES = (
    "aiohttp",
    "aiomqtt",
    "asyncio",
    "sqlite3",
    "socket",
    "prometheus_client",
    "quorumwatch.store",
    "quorumwatch.endpoints",
    "quorumwatch.monitor",
    "quorumwatch.daemon",
    "quorumwatch.alerting.evaluator",
    "quorumwatch.alerting.sinks",
    "quorumwatch.jails.tracker",
    "quorumwatch.exporter",
    "quorumwatch.chains.base",
    "quorumwatch.simulator",
    "quorumwatch.cli",
)


def module_path(name: str) -> Path:
    path = SOURCE.joinpath(*name.split("."))
    package = path / "__init__.py"
    return package if package.exists() else path.with_suffix(".py")


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at any depth (TYPE_CHECKING blocks included: a type from
    an I/O module would tie the core to it too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def all_modules() -> list[Path]:
    return sorted(SOURCE.rglob("*.py"))


@pytest.mark.parametrize("name", PURE)
def test_pure_core_imports_no_io(name: str) -> None:
    """A pure-core module imports neither an I/O library nor an I/O module of quorumwatch."""
    imports = imported_modules(module_path(name))
    offending = sorted(
        module
        for module in imports
        if any(module == io or module.startswith(f"{io}.") for io in IO_MODULES)
    )
    assert offending == []


@pytest.mark.parametrize("path", all_modules(), ids=lambda p: str(p.relative_to(SOURCE)))
def test_every_module_states_its_job(path: Path) -> None:
    """Every module (and package) opens with a docstring saying what it is for."""
    docstring = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
    assert docstring, f"{path.relative_to(SOURCE)} has no module docstring"


def test_architecture_document_names_every_package_and_module() -> None:
    """docs/architecture.md names each package and top-level module of the tree, so it cannot
    silently fall behind a move or a new subsystem."""
    text = ARCHITECTURE.read_text(encoding="utf-8")
    missing = []
    for path in sorted(SOURCE.iterdir()):
        if path.name.startswith("_") or path.name == "py.typed":
            continue
        name = f"{path.name}/" if path.is_dir() else path.name
        if path.is_dir() and not (path / "__init__.py").exists():
            continue
        if f"`{name}" not in text:
            missing.append(name)
    for package in ("alerting", "jails", "store", "chains", "cli", "exporter"):
        for path in sorted((SOURCE / package).glob("*.py")):
            if path.name != "__init__.py" and f"{path.stem}" not in text:
                missing.append(f"{package}/{path.name}")
    assert missing == []
