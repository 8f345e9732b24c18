"""Tamper evidence: one hash that commits to the whole log up to a position.

Each audit row's hash covers the previous row's hash (per member), the row's own content and the stored
event's bytes (projections.views.chain_hash). The digest is SHA-256 over every member's chain head at
the position, in member order: change, drop or insert any stored event at or before the position and the
digest changes. Finance keeps `points-ledger digest` at each period close; `verify --digest FILE` later
recomputes it from the log itself, not from the views.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from projections.db import Sql

#: Fields of a saved digest, as `digest --format json` writes them.
DIGEST_FIELDS = ("position", "digest", "members", "events")


@dataclass(frozen=True, slots=True)
class Digest:
    position: int
    digest: str
    members: int
    events: int

    def as_dict(self) -> dict[str, Any]:
        return {"position": self.position, "digest": self.digest, "members": self.members, "events": self.events}


class DigestFileError(ValueError):
    """A saved digest that is not one `digest --format json` wrote."""


def parse_digest(data: Any) -> Digest:
    if not isinstance(data, dict) or set(data) != set(DIGEST_FIELDS):
        raise DigestFileError(f"a digest file holds one JSON object with exactly {', '.join(DIGEST_FIELDS)}")
    counts = [data["position"], data["members"], data["events"]]
    if not all(isinstance(value, int) and not isinstance(value, bool) and value >= 0 for value in counts):
        raise DigestFileError("position, members and events must be whole numbers >= 0")
    text = data["digest"]
    if not (isinstance(text, str) and len(text) == 64 and all(c in "0123456789abcdef" for c in text)):
        raise DigestFileError("digest must be 64 lowercase hex digits (SHA-256)")
    return Digest(data["position"], text, data["members"], data["events"])


def digest_of(position: int, heads: Iterable[tuple[str, int, str]], events: int) -> Digest:
    """The digest over (member key, version, chain head hash), taken in member key order."""
    hasher = hashlib.sha256()
    members = 0
    for member_key, version, head in sorted(heads):
        hasher.update(f"{member_key} {version} {head}\n".encode())
        members += 1
    return Digest(position, hasher.hexdigest(), members, events)


def digest_from_views(sql: Sql, position: int) -> Digest:
    """The digest at `position` from the audit view's chain heads (the view must have reached `position`)."""
    heads = sql.rows(
        "SELECT a.member_key, a.version, a.hash FROM pl_audit a JOIN (SELECT member_key, MAX(version) AS version "
        "FROM pl_audit WHERE position <= ? GROUP BY member_key) last "
        "ON a.member_key = last.member_key AND a.version = last.version",
        (position,),
    )
    events = sql.scalar("SELECT COUNT(*) FROM pl_audit WHERE position <= ?", (position,))
    return digest_of(position, ((r["member_key"], int(r["version"]), r["hash"]) for r in heads), int(events or 0))
