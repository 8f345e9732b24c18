"""Who may do what through the API: the four roles, their permissions, and an API key's public face.

The roles and what each may do are data (`PERMISSIONS`), written once from issue 19's table, so the server
asks `may(role, permission)` and never spells a role's rights out in a route. No I/O here: the keys
themselves are kept by `ledger.storage.api_keys`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class Role(StrEnum):
    """What a key is for; the role travels with the key, never with a request."""

    POS = "pos"
    HELPDESK = "helpdesk"
    FINANCE = "finance"
    ADMIN = "admin"


class Permission(StrEnum):
    """One thing a request may do."""

    READ_MEMBERS = "read_members"
    READ_HISTORY = "read_history"
    POST_PURCHASE = "post_purchase"
    POST_REFUND = "post_refund"
    POST_REDEMPTION = "post_redemption"
    POST_ADJUSTMENT = "post_adjustment"
    READ_REPORTS = "read_reports"
    READ_DIGEST = "read_digest"
    READ_PROJECTIONS_STATUS = "read_projections_status"


#: Each role's permissions, as the issue's table gives them: the till reads balances and posts its own
#: messages; the helpdesk reads history and grants adjustments; finance reads; admin may do all of it.
PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.POS: frozenset(
        {Permission.READ_MEMBERS, Permission.POST_PURCHASE, Permission.POST_REFUND, Permission.POST_REDEMPTION}
    ),
    Role.HELPDESK: frozenset({Permission.READ_MEMBERS, Permission.READ_HISTORY, Permission.POST_ADJUSTMENT}),
    Role.FINANCE: frozenset({Permission.READ_REPORTS, Permission.READ_DIGEST, Permission.READ_PROJECTIONS_STATUS}),
    Role.ADMIN: frozenset(Permission),
}

#: What a message `type` needs to be posted (types no role but admin may post are absent: enrollments,
#: opening balances).
POST_PERMISSIONS: dict[str, Permission] = {
    "purchase": Permission.POST_PURCHASE,
    "refund": Permission.POST_REFUND,
    "redemption": Permission.POST_REDEMPTION,
    "adjustment": Permission.POST_ADJUSTMENT,
}


def may(role: Role, permission: Permission) -> bool:
    return permission in PERMISSIONS[role]


def may_post(role: Role, message_type: str) -> bool:
    """Whether `role` may post a message of `message_type` (admin: any type)."""
    if role is Role.ADMIN:
        return True
    permission = POST_PERMISSIONS.get(message_type)
    return permission is not None and may(role, permission)


#: A key's name: what the key is for, shown in `api-key list` and recorded as the operator of what it posts.
NAME_LENGTH_MAX = 64


class ApiKeyNameError(ValueError):
    """A key name or operator name that is empty, too long or not printable."""


def check_name(name: str, what: str = "name") -> str:
    """`name` if it is 1 to NAME_LENGTH_MAX printable characters; else ApiKeyNameError."""
    if not 1 <= len(name) <= NAME_LENGTH_MAX:
        raise ApiKeyNameError(f"a key's {what} is 1 to {NAME_LENGTH_MAX} characters, not {len(name)}")
    if not name.isprintable():
        raise ApiKeyNameError(f"a key's {what} must be printable characters only")
    return name


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A key as everyone but its holder sees it: never its secret, nor the secret's hash."""

    id: str
    name: str
    role: Role
    created_at: datetime
    created_by: str
    revoked_at: datetime | None = None
    revoked_by: str | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def may(self, permission: Permission) -> bool:
        return may(self.role, permission)
