"""The compact stored format of member events: plain JSON, written and read by orjson in C.

The library's JSON format tags every time and decimal (`{"_type_": "datetime_iso", "_data_": "…"}`) and
writes each through a Python callback: measured, about 4.6 such callbacks per event and a sixth of the
ingest's deciding thread. Member events now store times as plain RFC 3339 strings (which orjson writes
itself) and decimals as plain strings: the compact format came as one `class_version` more of every member
event class (ledger.events: version 2 of `Event`, 3 of `PointsRedeemed`). Which field holds a time or a
decimal is known from the event class's own field types, so reading converts exactly those (`_readers`).

Events stored in the library's format still read: they carry an older `class_version`, so on the way in
they go through the classes' upcasters, among them `untag` (ledger.upcasters, the one into the compact
version), which replaces each tagged value by its plain text. Snapshots, and anything that is not a member
event, keep the library's own format and path (ledger.storage.transcoding).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson
from eventsourcing.persistence import Mapper, MapperDeserialisationError, StoredEvent, find_id_convertor
from eventsourcing.utils import get_topic, resolve_topic

Reader = Callable[[Any], Any]


def _optional_time(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def _provenance(provenance: dict[str, Any]) -> dict[str, Any]:
    occurred_at = provenance.get("occurred_at")
    if occurred_at is not None:
        provenance["occurred_at"] = datetime.fromisoformat(occurred_at)
    return provenance


#: How a field's declared type is read back from its plain JSON value.
_READERS_BY_TYPE: dict[str, Reader] = {
    "datetime": datetime.fromisoformat,
    "datetime | None": _optional_time,
    "Decimal": Decimal,
}

_readers_cache: dict[type[Any], dict[str, Reader]] = {}


def _readers(event_class: type[Any]) -> dict[str, Reader]:
    """Field name → reader, for the fields of `event_class` that plain JSON does not give back as they were."""
    readers = _readers_cache.get(event_class)
    if readers is None:
        readers = {}
        for field in dataclasses.fields(event_class):
            declared = str(field.type)
            reader = _provenance if field.name == "provenance" else _READERS_BY_TYPE.get(declared)
            if reader is not None:
                readers[field.name] = reader
            elif "datetime" in declared or "Decimal" in declared:
                raise TypeError(f"{event_class.__name__}.{field.name}: no compact reader for {declared}")
        _readers_cache[event_class] = readers
    return readers


def _plain(value: Any) -> Any:
    """What orjson does not write itself: decimals, as their exact text."""
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"a member event cannot store a {type(value).__name__}")


class CompactMapper(Mapper[Any]):
    """The library's mapper, with the compact format for the event classes in `compact` (member events).
    Constructed with a transcoder only: the ledger compresses and encrypts nothing."""

    def __init__(self, *args: Any, compact: Callable[[type[Any]], bool], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._compact = compact

    def to_stored_event(self, domain_event: Any) -> StoredEvent:
        event_class = type(domain_event)
        if not self._compact(event_class):
            return super().to_stored_event(domain_event)
        state = dict(domain_event.__dict__)
        originator_id = state.pop("originator_id")
        originator_version = state.pop("originator_version")
        state["class_version"] = event_class.class_version
        return StoredEvent(
            originator_id=originator_id,
            originator_version=originator_version,
            topic=get_topic(event_class),
            state=orjson.dumps(state, default=_plain),
        )

    def to_domain_event(self, stored_event: StoredEvent) -> Any:
        event_class = resolve_topic(stored_event.topic)
        if not self._compact(event_class):
            return super().to_domain_event(stored_event)
        try:
            state: dict[str, Any] = orjson.loads(stored_event.state)
            version = state.pop("class_version", 1)
            while version < event_class.class_version:
                getattr(event_class, f"upcast_v{version}_v{version + 1}")(state)
                version += 1
            for name, reader in _readers(event_class).items():
                if name in state:
                    state[name] = reader(state[name])
        except Exception as error:
            raise MapperDeserialisationError(
                f"cannot read stored event {stored_event.originator_id} version {stored_event.originator_version} "
                f"({stored_event.topic}): {error}"
            ) from error
        id_type: Any = type(stored_event.originator_id)
        state["originator_id"] = find_id_convertor(event_class, id_type)(stored_event.originator_id)
        state["originator_version"] = stored_event.originator_version
        domain_event = object.__new__(event_class)
        object.__setattr__(domain_event, "__dict__", state)
        return domain_event
