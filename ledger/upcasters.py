"""Upcasters: how the state of an event stored by an older version of the ledger becomes today's.

The library calls `upcast_vN_vN+1` on a decoded event's state when its stored `class_version` is older than
the class's (ledger.events); each of these edits that dict in place and knows nothing of any database.
"""

from __future__ import annotations

from typing import Any

#: Tags of the library's JSON format that member events hold, and nothing else.
_UNTAGGED = frozenset({"datetime_iso", "decimal_str"})


def untag(state: dict[str, Any]) -> None:
    """Upcaster into the compact format (ledger.storage.compact): each `{"_type_", "_data_"}` value of the
    library's format becomes its plain text, in place."""
    for key, value in state.items():
        state[key] = _untagged(value)


def _untagged(value: Any) -> Any:
    if isinstance(value, dict):
        if len(value) == 2 and "_type_" in value and "_data_" in value:
            if value["_type_"] not in _UNTAGGED:
                raise ValueError(f"a member event holds a {value['_type_']!r} value, which it never stores")
            return value["_data_"]
        return {key: _untagged(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_untagged(item) for item in value]
    return value


def no_credit_window_start(state: dict[str, Any]) -> None:
    """Upcaster of an outcome recorded before outcomes named their credit window's start: it forgets nothing."""
    state["credit_window_start"] = None
