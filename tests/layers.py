"""Our own source, read for its layering: which of our modules import which, and where the eventsourcing
library's private names are reached (tests/test_dependencies.py, tests/test_eventsourcing_contract.py)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import eventsourcing

ROOT = Path(__file__).resolve().parents[1]
#: Our packages, whose imports are read.
PACKAGES = ("ledger", "projections", "consumers", "schemas", "points_ledger", "devkit")
#: Where the library's private names may not be reached but through the adapter (tests inject faults there).
SOURCE_DIRECTORIES = (*PACKAGES, "benchmarks", "examples")
#: The ledger's application service: it wires the domain to storage.
SERVICE = frozenset({"ledger.application", "ledger.pipeline"})
#: The one module that reaches the library's private names; the domain and storage both use it.
ADAPTER = "ledger.eventsourcing_adapter"
#: Libraries that talk to a database or a broker: no module of the domain imports one.
IO_LIBRARIES = (
    "psycopg", "psycopg_pool", "sqlite3", "eventsourcing.postgres", "eventsourcing.sqlite", "kafka", "confluent_kafka",
)  # fmt: skip


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def our_modules() -> dict[str, Path]:
    return {module_name(path): path for package in PACKAGES for path in (ROOT / package).rglob("*.py")}


def _is_domain(module: str) -> bool:
    return (
        module.startswith("ledger.")
        and not module.startswith("ledger.storage")
        and module not in SERVICE
        and module != ADAPTER
    )


def domain_modules() -> list[str]:
    """ledger's own modules but the application service, the adapter and ledger.storage."""
    return sorted(module for module in our_modules() if _is_domain(module))


def storage_modules() -> list[str]:
    return sorted(
        module for module in our_modules() if module == "ledger.storage" or module.startswith("ledger.storage.")
    )


@cache
def imports_of(module: str) -> frozenset[str]:
    """Every module `module` imports, anywhere in it (functions and TYPE_CHECKING blocks too): ours by their
    module name (`from ledger import events` is ledger.events), others as written."""
    modules = our_modules()
    found: set[str] = set()
    for node in ast.walk(ast.parse(modules[module].read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None and node.level == 0:
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                found.add(submodule if submodule in modules else node.module)
    return frozenset(found)


def closure(module: str) -> set[str]:
    """`module` and every module of ours it imports, directly or through others of ours."""
    seen, pending = set(), [module]
    while pending:
        current = pending.pop()
        if current in seen or current not in our_modules():
            continue
        seen.add(current)
        pending.extend(imports_of(current))
    return seen


def is_io_library(name: str) -> bool:
    return any(name == library or name.startswith(f"{library}.") for library in IO_LIBRARIES)


@cache
def _library_private_names() -> frozenset[str]:
    """Underscore names (not dunders) the eventsourcing library defines as methods or sets on its objects."""
    names: set[str] = set()
    for path in Path(eventsourcing.__file__).parent.rglob("*.py"):
        if "tests" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                name = node.name
            elif (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in ("self", "cls")
            ):
                name = node.attr
            else:
                continue
            if name.startswith("_") and not name.startswith("__"):
                names.add(name)
    return frozenset(names)


def _sources() -> dict[str, ast.Module]:
    return {
        str(path.relative_to(ROOT)): ast.parse(path.read_text(encoding="utf-8"))
        for directory in SOURCE_DIRECTORIES
        for path in sorted((ROOT / directory).rglob("*.py"))
    }


def _base_names(node: ast.ClassDef) -> set[str]:
    return {ast.unparse(base).split(".")[0] for base in node.bases}


def _library_derived_classes(sources: dict[str, ast.Module]) -> set[str]:
    """Names of our classes that inherit from one of the library's, directly or through ours."""
    library_names = {
        alias.asname or alias.name
        for tree in sources.values()
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("eventsourcing")
        for alias in node.names
    }
    classes = [node for tree in sources.values() for node in ast.walk(tree) if isinstance(node, ast.ClassDef)]
    derived: set[str] = set()
    while True:
        more = {c.name for c in classes if _base_names(c) & (library_names | derived)} - derived
        if not more:
            return derived
        derived |= more


def library_private_uses() -> Iterator[tuple[str, int, str]]:
    """(path, line, name) of every attribute of ours named like one of the library's private names: on any
    object but `self`/`cls`, and on `self`/`cls` inside a class that inherits from one of the library's (an
    own class's `self._events` is its own)."""
    private = _library_private_names()
    sources = _sources()
    derived = _library_derived_classes(sources)
    for path, tree in sources.items():
        own = [node for node in ast.walk(tree) if isinstance(node, ast.ClassDef) and node.name not in derived]
        own_lines = {id(inner) for cls in own for inner in ast.walk(cls)}
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Attribute) and node.attr in private):
                continue
            on_self = isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")
            if on_self and id(node) in own_lines:
                continue
            yield path, node.lineno, node.attr
