"""Answers as bytes: JSON with the values the CLI's --format json writes (decimals as strings, times in ISO
8601, points_ledger.output.jsonable), and CSV exactly as its --format csv does."""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

import orjson
from starlette.responses import Response

from points_ledger.output import write_csv

JSON_MEDIA_TYPE = "application/json"
CSV_MEDIA_TYPE = "text/csv; charset=utf-8"


def _encoded(value: Any) -> Any:
    """What orjson cannot write itself, as `jsonable` writes it for the CLI (decimals as strings)."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, set | frozenset):
        return list(value)
    raise TypeError(f"cannot write a {type(value).__name__} as JSON")


def json_bytes(value: Any) -> bytes:
    """The JSON the CLI's `jsonable` + json.dumps write (decimals as strings, times in ISO 8601 with their
    offset, text unescaped but for control characters), without its spaces, by orjson: a third of a balance
    look-up's time went into the standard library's walk over its lots (tests/test_api.py compares the two)."""
    return orjson.dumps(value, default=_encoded, option=orjson.OPT_NON_STR_KEYS)


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
