"""Answers as bytes: JSON exactly as the CLI's --format json writes it (decimals as strings, times in ISO
8601, points_ledger.output.jsonable), and CSV exactly as its --format csv does."""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from starlette.responses import Response

from points_ledger.output import jsonable, write_csv

JSON_MEDIA_TYPE = "application/json"
CSV_MEDIA_TYPE = "text/csv; charset=utf-8"


def json_bytes(value: Any) -> bytes:
    return json.dumps(jsonable(value), ensure_ascii=False).encode()


def json_response(value: Any, status: int = 200) -> Response:
    return Response(json_bytes(value), status, media_type=JSON_MEDIA_TYPE)


def csv_response(columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> Response:
    text = io.StringIO()
    write_csv(text, columns, rows)
    return Response(text.getvalue(), media_type=CSV_MEDIA_TYPE)


def wants_csv(accept: str | None) -> bool:
    """Does the Accept header ask for CSV before JSON? (A client that names both gets what it names first.)"""
    if not accept:
        return False
    for part in accept.split(","):
        media = part.split(";")[0].strip().lower()
        if media == "text/csv":
            return True
        if media in {"application/json", "application/*", "*/*"}:
            return False
    return False
