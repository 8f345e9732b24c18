"""JSON Schema export of the wire contract, one file per message type."""

from __future__ import annotations

import json
from pathlib import Path

from schemas.messages import MESSAGE_MODELS


def export_json_schemas(directory: Path) -> list[Path]:
    """Write `<type>.schema.json` for every message type; returns the files written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for message_type, model in MESSAGE_MODELS.items():
        schema = model.model_json_schema(mode="validation")
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["$id"] = f"points-ledger/{message_type}.schema.json"
        path = directory / f"{message_type}.schema.json"
        path.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        written.append(path)
    return written
