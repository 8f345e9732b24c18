"""JSON Schema export of the wire contract: one document per inbound message type and per outbound balance event."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel

from schemas.balance_events import BALANCE_EVENT_MODELS, schema_file
from schemas.messages import MESSAGE_MODELS


def json_schemas() -> dict[str, str]:
    """`<type>.schema.json` for every inbound message type and `<Event>.v<N>.schema.json` for every outbound
    balance event (validation schemas of what we accept, serialization schemas of what we send), each file
    name with its text; the CLI writes them."""
    files: list[tuple[str, type[BaseModel], Any]] = [
        *((f"{name}.schema.json", model, "validation") for name, model in MESSAGE_MODELS.items()),
        *((schema_file(name), model, "serialization") for name, model in BALANCE_EVENT_MODELS.items()),
    ]
    documents = {}
    for file_name, model, mode in files:
        schema = model.model_json_schema(mode=mode, by_alias=True)
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["$id"] = f"points-ledger/{file_name}"
        documents[file_name] = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    return documents
