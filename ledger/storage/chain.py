"""The hash every tamper-evident chain of the ledger uses: SHA-256, or HMAC-SHA-256 under a key kept outside
the database.

Unkeyed, a chain catches accidental corruption and an editor who does not recompute it: anyone who can write
the database can compute SHA-256 too. Keyed, no one without the key can compute a link, so an editor of the
database who lacks the key cannot forge a chain that verifies. The key never enters the database; what is
recorded is the chain's mode, naming the key by its id (an HMAC of a fixed text, which tells nothing of the
key), so that a ledger built with one key and checked with another (or none) says so in one line.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from typing import Protocol

#: Fewest bytes a chain key may have (`openssl rand -hex 32` gives 64 characters).
CHAIN_KEY_BYTES_MIN = 32
#: The mode of an unkeyed chain (every chain written before keys existed is one).
UNKEYED = "sha256"
#: The mode of a keyed chain, followed by ":" and the key's id.
KEYED = "hmac-sha256"
#: Hex digits of a key's id.
KEY_ID_CHARS = 16
_KEY_ID_TEXT = b"points-ledger chain key id"


class ChainKeyError(ValueError):
    """A chain key too short to be one."""


class ChainMismatchError(RuntimeError):
    """A chain recorded in one mode, asked to continue in another (another key, or none)."""


class Hasher(Protocol):
    """What hashlib's and hmac's objects share: a running hash over several pieces."""

    def update(self, data: bytes, /) -> None: ...

    def hexdigest(self) -> str: ...


@dataclass(frozen=True, repr=False)
class Chain:
    """How links are hashed: SHA-256 without a key, HMAC-SHA-256 with one."""

    key: bytes | None = None
    #: UNKEYED, or KEYED:key-id.
    mode: str = field(init=False, compare=False)

    def __post_init__(self) -> None:
        if self.key is not None and len(self.key) < CHAIN_KEY_BYTES_MIN:
            raise ChainKeyError(f"a chain key has at least {CHAIN_KEY_BYTES_MIN} bytes, this one {len(self.key)}")
        mode = UNKEYED if self.key is None else f"{KEYED}:{_mac(self.key, _KEY_ID_TEXT)[:KEY_ID_CHARS]}"
        object.__setattr__(self, "mode", mode)

    @property
    def keyed(self) -> bool:
        return self.key is not None

    def hash(self, data: bytes) -> str:
        """The link over `data`, as lowercase hex."""
        return hashlib.sha256(data).hexdigest() if self.key is None else _mac(self.key, data)

    def hasher(self) -> Hasher:
        """A running hash, for a digest over many pieces."""
        return hashlib.sha256() if self.key is None else hmac.new(self.key, digestmod=hashlib.sha256)

    def __repr__(self) -> str:  # never the key
        return f"Chain({self.mode!r})"


def _mac(key: bytes, data: bytes) -> str:
    return hmac.digest(key, data, "sha256").hex()


def describe(mode: str) -> str:
    """A chain's mode in words."""
    if mode == UNKEYED:
        return "unkeyed (SHA-256)"
    kind, _, key_id = mode.partition(":")
    return f"keyed (HMAC-SHA-256, key id {key_id})" if kind == KEYED and key_id else f"of unknown mode {mode!r}"


def mismatch(what: str, found: str, chain: Chain) -> str | None:
    """None when `found` is `chain`'s mode; else one line saying how `what` and this run differ."""
    if found == chain.mode:
        return None
    running = f"with chain key id {chain.mode.partition(':')[2]}" if chain.keyed else "without a chain key"
    return f"{what} is {describe(found)}, but this command runs {running}"
