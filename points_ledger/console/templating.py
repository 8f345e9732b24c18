"""The console's HTML: Jinja2 templates (autoescaped) and the filters that write figures for people.

Figures are written one way everywhere: points with thousands separators, signed changes, money with two
decimals and its currency, rates as percents, times in UTC without microseconds.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import jinja2
from starlette.responses import HTMLResponse, Response

from points_ledger.readable import measure, money, number, percent, signed, when

#: Nothing from another host, no script; styles only from the console's own sheet; images from the server or
#: drawn into the page itself (the charts, as data: URIs of SVG, which an <img> shows without running).
CONTENT_SECURITY_POLICY = "; ".join((
    "default-src 'none'", "style-src 'self'", "img-src 'self' data:", "form-action 'self'",
    "frame-ancestors 'none'", "base-uri 'none'",
))  # fmt: skip
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

_environment = jinja2.Environment(
    loader=jinja2.PackageLoader("points_ledger.console", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,  # a template naming a field the page lacks fails, never prints nothing
    trim_blocks=True,
    lstrip_blocks=True,
)
_environment.filters.update(number=number, signed=signed, money=money, percent=percent, when=when)


def _day(moment: datetime | None) -> str:
    return "" if moment is None else moment.astimezone(UTC).date().isoformat()


_environment.filters["day"] = _day
_environment.filters["measure"] = lambda value, name: measure(name, value)  # {{ value | measure(name) }}


def download(response: Response, filename: str) -> Response:
    """`response` as a file to save (CSV, the digest), with the console's security headers: never cached."""
    response.headers.update({**SECURITY_HEADERS, "Content-Disposition": f'attachment; filename="{filename}"'})
    return response


def render(
    template: str, context: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None
) -> HTMLResponse:
    """The page `template` filled from `context`, with the console's security headers."""
    html = _environment.get_template(template).render(**context)
    return HTMLResponse(html, status, {**SECURITY_HEADERS, **(headers or {})})
