"""Store URLs read the way libpq reads them, and shown with anything that may be a password masked.

libpq (fe-connect.c, `conninfo_uri_parse_options`) does not read `postgresql://…` by RFC 3986: the user part
ends at the FIRST `@`, and only if no `/` comes before it; its password is all that follows its first `:`, so
`#`, `?` and `:` may stand unencoded in a password (RFC 3986 would end the authority there). Hosts are
`host[:port]` or `[ipv6][:port]`, comma-separated; then `/dbname`, then `?key=value&…` (a `password=` among
them is a password too). Every piece is percent-decoded once, a `%` must start two hex digits, `%00` is
refused, and `+` and `#` are plain characters. `split_postgres_url` mirrors that (tests/test_store_urls.py
checks it against libpq's own parser) and refuses what libpq would read other than the person who wrote it
meant: an unencoded `@` in a user name or password, or a `/` before the `@`, makes libpq take part of the
password for a host, port or database name.

`mask_url` shows a URL in messages and `config show`, and masks more than libpq would take as a password:
from the first `:` after `//` to the LAST `@`, and a query parameter whose name holds "password" together with
everything after it. A PostgreSQL URL that cannot be split, and a URL of a scheme we do not serve, are not
shown at all. No message of this module quotes any part of a URL.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import unquote, unquote_to_bytes

POSTGRES_SCHEMES = ("postgresql", "postgres")
#: Schemes whose URLs are shown (masked); any other URL is not shown at all.
SHOWN_SCHEMES = ("memory", "sqlite", *POSTGRES_SCHEMES)
#: Shown instead of a password.
MASK = "***"
#: Shown instead of a URL that cannot be shown safely.
NOT_SHOWN = "(not shown: it cannot be parsed, and may hold a password)"
#: Percent-decoding rounds applied to a query parameter's name before looking for "password" in it.
NAME_DECODING_ROUNDS_MAX = 3

_PERCENT_WITHOUT_TWO_HEX_DIGITS = re.compile(r"%(?![0-9A-Fa-f]{2})")
_PARAMETER_NAME = re.compile(r"[?&]([^=&]*)(=?)")


class UrlError(ValueError):
    """What is wrong with a URL, in words that never quote it (it may hold a password)."""


@dataclass(frozen=True)
class PostgresUrl:
    """The pieces of a `postgresql://` URL as libpq reads them: percent-decoded by `split_postgres_url`, as written
    where `_cut` gives them."""

    user: str | None
    password: str | None = field(repr=False)
    #: One (host, port) per comma-separated host; port "" where none is written.
    hosts: tuple[tuple[str, str], ...]
    dbname: str | None
    #: The query's (name, value) pairs in order, repeats kept (a `password` among them: not in the repr).
    parameters: tuple[tuple[str, str], ...] = field(repr=False)


def scheme_of(url: str) -> str:
    """The URL's scheme in lower case ("" when it has none)."""
    scheme, colon, _ = url.partition(":")
    return scheme.lower() if colon else ""


def mask_url(url: str) -> str:
    """`url` for a message: any password masked, or NOT_SHOWN when it cannot be shown safely."""
    scheme = scheme_of(url)
    if scheme not in SHOWN_SCHEMES:
        return NOT_SHOWN
    if scheme in POSTGRES_SCHEMES:
        try:
            _cut(url)
        except UrlError:
            return NOT_SHOWN
    spans = [span for span in (_userinfo_password(url), _password_parameter(url)) if span is not None]
    return _masked(url, spans)


def quoted(url: str) -> str:
    """`mask_url(url)` in quotes, ready for a sentence (NOT_SHOWN as it is)."""
    shown = mask_url(url)
    return shown if shown == NOT_SHOWN else repr(shown)


def holds_password(url: str) -> bool:
    """Could `url` hold a password: would `mask_url` hide anything of it?"""
    return mask_url(url) != url


def _userinfo_password(url: str) -> tuple[int, int] | None:
    """Where a person may have meant the password: from the first ':' after '//' to the last '@'."""
    start = url.find(":") + 1
    if not url.startswith("//", start):
        return None
    at = url.rfind("@")
    colon = url.find(":", start + 2, max(at, 0))
    return None if colon == -1 else (colon + 1, at)


def _password_parameter(url: str) -> tuple[int, int] | None:
    """The first query parameter whose name holds "password" (in any case, however often percent-encoded): its
    value and all after it, as a value with an unencoded '&' would otherwise show its tail."""
    for found in _PARAMETER_NAME.finditer(url):
        name = found[1]
        for _ in range(NAME_DECODING_ROUNDS_MAX):
            name = unquote(name)
        if "password" in name.casefold():
            return (found.end() if found[2] else found.start() + 1), len(url)
    return None


def _masked(url: str, spans: list[tuple[int, int]]) -> str:
    """`url` with each span (overlapping ones merged) replaced by MASK. Both readings of a URL such as
    `postgresql://h:1?password=a@b` (libpq's password `1?password=a`, or a parameter `a@b`) are then hidden."""
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    pieces, cursor = [], 0
    for start, end in merged:
        pieces += [url[cursor:start], MASK]
        cursor = end
    return "".join(pieces) + url[cursor:]


def split_postgres_url(url: str) -> PostgresUrl:
    """`url`'s pieces as libpq reads them, decoded; UrlError for what libpq would refuse or read otherwise."""
    written = _cut(url)
    named = [(_decoded(name, "a query parameter's name") or "", value) for name, value in written.parameters]
    if not all(name for name, _ in named):
        raise UrlError("malformed query: a parameter has no name")
    return PostgresUrl(
        user=_decoded(written.user, "the user name"),
        password=_decoded(written.password, "the password"),
        hosts=tuple((_decoded(host, "a host") or "", _decoded(port, "a port") or "") for host, port in written.hosts),
        dbname=_decoded(written.dbname, "the database name"),
        parameters=tuple((name, _decoded(value, f"the value of {name}") or "") for name, value in named),
    )


def _cut(url: str) -> PostgresUrl:
    """Cut `url` where libpq cuts it; UrlError if it is not a PostgreSQL URL or libpq would misread it."""
    scheme, separator, rest = url.partition("://")
    if not separator or scheme.lower() not in POSTGRES_SCHEMES:
        raise UrlError("a PostgreSQL URL starts with postgresql:// or postgres://")
    at, slash = rest.find("@"), rest.find("/")
    user = password = None
    if at != -1 and (slash == -1 or at < slash):
        userinfo, rest = rest[:at], rest[at + 1 :]
        user, colon, after_colon = userinfo.partition(":")
        password = after_colon if colon else None
    if "@" in rest:
        raise UrlError(
            "an '@' after the user part (a second '@', or one after a '/'): write an '@' as %40, and a '/' in a user "
            "name or password as %2F, or give the password in a file"
        )
    hosts, end = _hosts(rest)
    dbname = query = None
    if rest.startswith("/", end):
        query_at = rest.find("?", end)
        dbname, end = (rest[end + 1 :], len(rest)) if query_at == -1 else (rest[end + 1 : query_at], query_at)
    if rest.startswith("?", end):
        query = rest[end + 1 :]
    return PostgresUrl(user, password, hosts, dbname, _parameters(query))


def _hosts(rest: str) -> tuple[tuple[tuple[str, str], ...], int]:
    """The comma-separated `host[:port]` list at the start of `rest`, and where it ends."""
    hosts: list[tuple[str, str]] = []
    position = 0
    while True:
        if rest.startswith("[", position):
            close = rest.find("]", position)
            if close == -1:
                raise UrlError("an IPv6 address opens with '[' and has no ']'")
            if close == position + 1:
                raise UrlError("an IPv6 address between '[' and ']' is empty")
            host, position = rest[position + 1 : close], close + 1
            if position < len(rest) and rest[position] not in ":/?,":
                raise UrlError("an IPv6 address's ']' is followed by something other than ':', '/', '?' or ','")
        else:
            end = _end(rest, position, ":/?,")
            host, position = rest[position:end], end
        port = ""
        if rest.startswith(":", position):
            end = _end(rest, position + 1, "/?,")
            port, position = rest[position + 1 : end], end
        hosts.append((host, port))
        if not rest.startswith(",", position):
            return tuple(hosts), position
        position += 1


def _end(text: str, start: int, stops: str) -> int:
    """The index of the first of `stops` in `text` from `start`, or its length."""
    return next((index for index in range(start, len(text)) if text[index] in stops), len(text))


def _decoded(raw: str | None, what: str) -> str | None:
    """`raw` percent-decoded as libpq decodes it (UTF-8 text here); UrlError naming `what`, never its value."""
    if raw is None:
        return None
    if _PERCENT_WITHOUT_TWO_HEX_DIGITS.search(raw):
        raise UrlError(f"{what} holds a '%' that does not start two hex digits (write a '%' as %25)")
    data = unquote_to_bytes(raw)
    if b"\0" in data:
        raise UrlError(f"{what} holds %00, which libpq refuses")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise UrlError(f"{what} is not UTF-8 once percent-decoded") from None


def _parameters(query: str | None) -> tuple[tuple[str, str], ...]:
    """The query's `name=value` pairs as written, split as libpq splits them: on every '&', each with one '='."""
    if query is None:
        return ()
    items = query.split("&")
    if not items[-1]:  # libpq accepts an empty query and a '&' at its end
        items.pop()
    pairs = []
    for item in items:
        name, equals, value = item.partition("=")
        if not equals:
            raise UrlError("malformed query: a parameter has no '=' (write a parameter as name=value)")
        if "=" in value:
            raise UrlError("malformed query: a parameter has a second '=' (write a '=' in a value as %3D)")
        pairs.append((name, value))
    return tuple(pairs)
