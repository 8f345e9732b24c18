"""JSON Schema export of the wire contract: one file per inbound message type and per outbound balance event."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from schemas.balance_events import BALANCE_EVENT_MODELS, schema_file
from schemas.messages import MESSAGE_MODELS


def export_json_schemas(directory: Path) -> list[Path]:
    """Write `<type>.schema.json` for every inbound message type and `<Event>.v<N>.schema.json` for every
    outbound balance event (validation schemas of what we accept, serialization schemas of what we send)."""
    directory.mkdir(parents=True, exist_ok=True)
    files: list[tuple[str, type[BaseModel], Any]] = [
        *((f"{name}.schema.json", model, "validation") for name, model in MESSAGE_MODELS.items()),
        *((schema_file(name), model, "serialization") for name, model in BALANCE_EVENT_MODELS.items()),
    ]
    written = []
    for file_name, model, mode in files:
        schema = model.model_json_schema(mode=mode, by_alias=True)
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["$id"] = f"points-ledger/{file_name}"
        path = directory / file_name
        path.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        written.append(path)
    return written
