"""Our dependencies and theirs, as installed: what constraints.txt pins.

    python -m tests.dependency_closure > constraints.txt

prints `name==version` for every distribution `points-ledger[dev]` needs here (the demo extra included), read
from pyproject.toml for our own requirements and from the installed distributions' metadata for theirs.
"""

from __future__ import annotations

import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import NormalizedName, canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
PROJECT = canonicalize_name("points-ledger")


def project_requirements(extras: tuple[str, ...] = ("dev",)) -> list[Requirement]:
    """pyproject.toml's requirements with `extras`, our own extras (`points-ledger[demo]`) expanded."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    found = [Requirement(line) for line in project["dependencies"]]
    wanted, seen = list(extras), set()
    while wanted:
        extra = wanted.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for line in project["optional-dependencies"][extra]:
            requirement = Requirement(line)
            if canonicalize_name(requirement.name) == PROJECT:
                wanted.extend(requirement.extras)
            else:
                found.append(requirement)
    return found


def installed_closure() -> dict[NormalizedName, str]:
    """Every installed distribution our requirements reach, with its version."""
    versions: dict[NormalizedName, str] = {}
    pending = [(requirement, "") for requirement in project_requirements()]
    visited: set[tuple[NormalizedName, str]] = set()
    while pending:
        requirement, parent_extra = pending.pop()
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": parent_extra}):
            continue
        name = canonicalize_name(requirement.name)
        distribution = metadata.distribution(requirement.name)
        versions[name] = distribution.version
        for extra in ("", *requirement.extras):
            if (name, extra) in visited:
                continue
            visited.add((name, extra))
            pending.extend((Requirement(line), extra) for line in distribution.requires or [])
    return versions


HEADER = """\
# The exact versions of everything points-ledger[dev] installs, as the tests last ran with them (CPython 3.11,
# Linux x86_64). Install with: pip install -c constraints.txt -e '.[dev]'
# Regenerate after a tested upgrade: python -m tests.dependency_closure > constraints.txt"""


def main() -> None:
    print(HEADER)
    for name, version in sorted(installed_closure().items()):
        print(f"{name}=={version}")


if __name__ == "__main__":
    main()
