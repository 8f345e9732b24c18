"""Tamper evidence for finance: one hash that commits to the log itself, up to a position.

The digest is the chain's hash (SHA-256, or HMAC-SHA-256 under the chain key: ledger.storage.chain) over every stored
event up to the position, in log order: for each, a JSON array of its position, member id, version, topic and
length in bytes, then the bytes. Change, drop or insert any stored event at or before the position and the
digest changes. It reads the log only, never the views, so a view edited by hand cannot make it lie. Finance
keeps `points-ledger digest` at each period close; `verify --digest FILE` later recomputes it from the log.

A digest taken before digests read the log (its file has no "chain") is SHA-256 over every member's audit
chain head at its position, in member order; those heads are computed from the log too, and `legacy_digest`
recomputes them from it (never from the views), so such a digest still verifies.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import orjson

from ledger.application import LedgerApplication
from ledger.storage.chain import Chain
from projections.building import decode, prefetched_pages, whole_log
from projections.member_log import MemberLog
from projections.views import ChainHead, audit_row

#: Fields of a saved digest, as `digest --format json` writes them (a digest of the log adds CHAIN_FIELD).
DIGEST_FIELDS = ("position", "digest", "members", "events")
#: The chain's mode (ledger.storage.chain) a digest of the log was taken in.
CHAIN_FIELD = "chain"
#: Log events read per page.
DIGEST_PAGE = 5_000


@dataclass(frozen=True, slots=True)
class Digest:
    position: int
    digest: str
    members: int
    events: int
    #: The chain's mode of a digest of the log; None for a digest of the audit trail's chain heads (older).
    chain: str | None = None

    def as_dict(self) -> dict[str, Any]:
        fields = {"position": self.position, "digest": self.digest, "members": self.members, "events": self.events}
        return fields if self.chain is None else {**fields, CHAIN_FIELD: self.chain}


class DigestFileError(ValueError):
    """A saved digest that is not one `digest --format json` wrote."""


def parse_digest(data: Any) -> Digest:
    if not isinstance(data, dict) or set(data) - {CHAIN_FIELD} != set(DIGEST_FIELDS):
        raise DigestFileError(
            f"a digest file holds one JSON object with exactly {', '.join(DIGEST_FIELDS)} (and {CHAIN_FIELD})"
        )
    counts = [data["position"], data["members"], data["events"]]
    if not all(isinstance(value, int) and not isinstance(value, bool) and value >= 0 for value in counts):
        raise DigestFileError("position, members and events must be whole numbers >= 0")
    text = data["digest"]
    if not (isinstance(text, str) and len(text) == 64 and all(c in "0123456789abcdef" for c in text)):
        raise DigestFileError("digest must be 64 lowercase hex digits")
    chain = data.get(CHAIN_FIELD)
    if CHAIN_FIELD in data and not (isinstance(chain, str) and chain):
        raise DigestFileError(f"{CHAIN_FIELD} must name the chain's mode, e.g. sha256")
    return Digest(data["position"], text, data["members"], data["events"], chain)


def log_digest(app: LedgerApplication, position: int, chain: Chain) -> Digest:
    """The digest of the log up to `position` (see the module doc); `members` counts the enrolments in it."""
    hasher = chain.hasher()
    events = members = 0
    for page in prefetched_pages(whole_log(app), DIGEST_PAGE, position):
        for notification in page:
            header = [notification.id, str(notification.originator_id), notification.originator_version,
                      notification.topic, len(notification.state)]  # fmt: skip
            hasher.update(orjson.dumps(header))
            hasher.update(notification.state)
            events += 1
            members += notification.originator_version == 1
    return Digest(position, hasher.hexdigest(), members, events, chain.mode)


def legacy_digest(app: LedgerApplication, position: int) -> Digest:
    """A digest as taken before digests read the log: SHA-256 over (member key, version, audit chain head) of
    every member at `position`, in member key order, the SHA-256 chains recomputed from the log."""
    return _digest_of_heads(position, _chain_heads(app, position))


def _chain_heads(app: LedgerApplication, position: int) -> Iterator[tuple[str, int, str, int]]:
    """Each member's last unkeyed audit row at `position`, in member key order: (member key, version, hash,
    the member's events up to `position`)."""
    keys: dict[UUID | str, str] = {}
    unkeyed = Chain()
    current: tuple[str, int, str, int] | None = None
    head: ChainHead | None = None
    for page in MemberLog(app, position).pages():
        for log_event in decode(app, page, keys):
            if current is not None and current[0] != log_event.member_key:
                yield current
                current, head = None, None
            row = audit_row(log_event, head, unkeyed)
            head = ChainHead(row[3], row[10], row[12], row[-1])
            events = 1 if current is None else current[3] + 1
            current = (log_event.member_key, log_event.event.originator_version, head.hash, events)
    if current is not None:
        yield current


def _digest_of_heads(position: int, heads: Iterable[tuple[str, int, str, int]]) -> Digest:
    """SHA-256 over "member_key version head" lines, heads in member key order (as the log reads them)."""
    hasher = Chain().hasher()
    members = events = 0
    last = ""
    for member_key, version, head, member_events in heads:
        if member_key <= last:
            raise ValueError(f"members out of order: {member_key} after {last}")
        hasher.update(f"{member_key} {version} {head}\n".encode())
        members, events, last = members + 1, events + member_events, member_key
    return Digest(position, hasher.hexdigest(), members, events)
