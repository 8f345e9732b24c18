"""Store URLs are read as libpq reads them, and a password is never shown, however the URL is written.

libpq itself is the oracle: psycopg's `conninfo_to_dict` runs libpq's own URI parser (PQconninfoParse), so
every URL our splitter accepts is checked to read exactly as libpq reads it, and every password libpq would
take from any URL is checked to be masked.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from psycopg import ProgrammingError, pq
from psycopg.conninfo import conninfo_to_dict

from ledger.storage.store import StoreError, parse_store_url
from ledger.storage.store_urls import NOT_SHOWN, UrlError, holds_password, mask_url, split_postgres_url

#: The characters that end a URL's pieces somewhere (RFC 3986, libpq, or both), and the escape character.
SPECIALS = "#/?@:%&=+[],"
#: The connection parameters libpq knows.
LIBPQ_KEYWORDS = {option.keyword.decode() for option in pq.Conninfo.get_defaults()}
#: Starts and ends every planted password; made of letters no other piece of a generated URL uses.
MARK = "Zq"


def libpq_reads(url: str) -> dict[str, Any] | None:
    """What libpq takes from `url` ({} if it takes bytes that are not UTF-8 text), or None when it refuses it."""
    try:
        return conninfo_to_dict(url)
    except ProgrammingError:
        return None
    except UnicodeDecodeError:  # libpq took it; psycopg cannot show it as text
        return {}


def percent_encoded(secret: str) -> str:
    return quote(secret, safe="")


def partly_encoded(secret: str) -> str:
    """Only what libpq needs encoded; '#', '?' and ':' stay as they are."""
    return secret.replace("%", "%25").replace("/", "%2F").replace("@", "%40")


@st.composite
def postgres_urls(draw: st.DrawFn) -> tuple[str, str]:
    """A PostgreSQL URL with a password planted somewhere in it, and that password."""
    secret = f"{MARK}{draw(st.text(alphabet=SPECIALS + 'ab09', max_size=10))}{MARK}"
    written = draw(st.sampled_from([secret, percent_encoded(secret), partly_encoded(secret)]))
    user = draw(st.text(alphabet="ab" + SPECIALS, max_size=4))
    host = draw(st.sampled_from(["h", "127.0.0.1", "[::1]", "h1,h2", "db.example", "", "[", "h]"]))
    port = draw(st.sampled_from(["", ":5432", ":x", ":5432,h2:5432", ":"]))
    dbname = draw(st.sampled_from(["/db", "/d%2Fb", "/", "", "/d#b", "/d+b"]))
    parameters = draw(st.lists(st.sampled_from(
        ["sslmode=require", "application_name=a+b#c", "connect_timeout=3", "a=b=c", "noequals", "", "sslmode=x%zz"]
    ), max_size=3))  # fmt: skip
    if draw(st.booleans()):
        parameters.insert(
            draw(st.integers(0, len(parameters))), f"{draw(st.sampled_from(['password', 'pass%77ord']))}={written}"
        )
        userinfo = f"{user}@" if user or draw(st.booleans()) else ""
    else:
        userinfo = f"{user}:{written}@"
    with_query = bool(parameters) or draw(st.booleans())
    query = f"?{'&'.join(parameters)}" if with_query else ""
    scheme = draw(st.sampled_from(["postgresql", "postgres"]))
    return f"{scheme}://{userinfo}{host}{port}{dbname}{query}", secret


@settings(max_examples=2000, deadline=None)
@given(postgres_urls())
def test_no_password_libpq_would_take_is_ever_shown(planted: tuple[str, str]) -> None:
    url, _ = planted
    shown = mask_url(url)
    assert MARK not in shown, (url, shown)
    read = libpq_reads(url)
    taken = (read or {}).get("password", "")
    if len(taken) >= 3:  # shorter ones may stand in the URL's other pieces by chance
        assert taken not in shown, (url, read, shown)
    try:
        store = parse_store_url(url)
    except StoreError as error:
        assert MARK not in str(error), (url, str(error))
        assert error.__cause__ is None or MARK not in str(error.__cause__)
    else:
        assert MARK not in store.describe() and MARK not in repr(store)
    assert holds_password(url)  # every generated URL holds one, so none of them is allowed in a config file


@settings(max_examples=2000, deadline=None)
@given(postgres_urls())
def test_every_url_we_accept_reads_as_libpq_reads_it(planted: tuple[str, str]) -> None:
    url, _ = planted
    read = libpq_reads(url)
    try:
        ours = split_postgres_url(url)
    except UrlError as error:
        # Where libpq reads a URL we refuse, it would take part of a user name or password for something else.
        deliberate = ("an '@' after the user part", "is not UTF-8")  # libpq takes any bytes; we want text
        assert read is None or any(reason in str(error) for reason in deliberate), (url, read, str(error))
        return
    parameters = dict(ours.parameters)
    if parameters.keys() - LIBPQ_KEYWORDS:
        assert read is None, url  # libpq refuses a name it does not know at once; we do when building the store
        return
    assert read is not None, url
    assert read.get("host", "") == ",".join(host for host, _ in ours.hosts)
    assert read.get("port", "") == ",".join(port for _, port in ours.hosts)
    assert read.get("user") == (ours.user or None)
    assert read.get("dbname") == (ours.dbname or None)
    assert read.get("password") == (parameters.get("password") or ours.password or None)
    for name, value in parameters.items():
        assert read.get(name) == (value if name != "password" else read.get("password")), (url, name)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://u:p#a?s:s@h/db", "postgresql://u:***@h/db"),  # '#', '?', ':' in a password: libpq takes them
        (
            "postgresql://u:p%23a%2Fs%3Fs%40w%3Ao%25rd@h:5432/db?sslmode=require",
            "postgresql://u:***@h:5432/db?sslmode=require",
        ),
        ("postgresql://u:p/ss@h/db", NOT_SHOWN),  # libpq: host u, port p, database ss@h/db
        ("postgresql://u:p@ss@h/db", NOT_SHOWN),  # libpq: password p, host ss@h
        ("postgresql://admin@server:pw@h/db", NOT_SHOWN),  # an Azure-style user name with an unencoded '@'
        ("postgresql://u@h/db?sslmode=require&password=a#b&c=d", "postgresql://u@h/db?sslmode=require&password=***"),
        ("postgresql://u@h/db?sslmode=require&c", NOT_SHOWN),  # a malformed query
        ("postgresql://u@h/db?PASS%2577ORD=x", "postgresql://u@h/db?PASS%2577ORD=***"),
        ("sqlite:///l.db?passwordx", "sqlite:///l.db?***"),
        ("postgresql://u:@h/db", "postgresql://u:***@h/db"),
        ("postgresql://u:p%zz@h/db", "postgresql://u:***@h/db"),  # a bad escape: refused, but still masked
        ("sqlite:///ledger.db", "sqlite:///ledger.db"),
        ("sqlite://u:pw@h/x.db", "sqlite://u:***@h/x.db"),
        ("memory://", "memory://"),
        ("mysql://u:pw@h/db", NOT_SHOWN),
        ("hunter2", NOT_SHOWN),
        ("p:ss", NOT_SHOWN),
        ("host=h password=pw", NOT_SHOWN),  # libpq's key=value form: not a URL we read
    ],
)
def test_mask_url(url: str, shown: str) -> None:
    assert mask_url(url) == shown


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("postgresql://u:p#a/s?s@w:o%rd@h/db", "an '@' after the user part"),
        ("postgresql://u:pw@h/db?application_name=a@b", "an '@' after the user part"),
        ("postgresql://u:p%zz@h/db", "the password holds a '%' that does not start two hex digits"),
        ("postgresql://u:p%00@h/db", "the password holds %00"),
        ("postgresql://u:p%FF@h/db", "the password is not UTF-8"),
        ("postgresql://u:pw@[::1/db", "has no ']'"),
        ("postgresql://u:pw@[::1]x/db", "followed by something other than"),
        ("postgresql://u:pw@h/db?a=b=c", "a parameter has a second '='"),
        ("postgresql://u:pw@h/db?&sslmode=require", "a parameter has no '='"),
        ("postgresql://u:pw@h/db?=require", "a parameter has no name"),
        ("postgresql:/h/db", "starts with postgresql://"),
    ],
)
def test_urls_libpq_would_refuse_or_misread_are_refused(url: str, reason: str) -> None:
    with pytest.raises(UrlError, match=re.escape(reason)):
        split_postgres_url(url)


def test_what_libpq_reads_is_what_we_connect_with() -> None:
    url = (
        "postgres://us%65r:p%23a%2Fs%3Fs%40w%3Ao%25rd@db.example:6432/led%2Fger?application_name=a+b#c&sslmode=require"
    )
    store = parse_store_url(url)
    read = conninfo_to_dict(url)
    assert (store.env["POSTGRES_USER"], store.env["POSTGRES_PASSWORD"]) == (read["user"], read["password"]) == (
        "user", "p#a/s?s@w:o%rd",
    )  # fmt: skip
    assert (store.env["POSTGRES_HOST"], store.env["POSTGRES_PORT"], store.env["POSTGRES_DBNAME"]) == (
        read["host"], read["port"], read["dbname"],
    )  # fmt: skip
    assert dict(store.libpq) == {"application_name": "a+b#c", "sslmode": "require"}  # '+' and '#' as libpq has them
    assert store.describe() == "postgres://us%65r:***@db.example:6432/led%2Fger?application_name=a+b#c&sslmode=require"


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("postgresql://u@h1:5432,h2:5433/db", "the hosts have different ports"),
        ("postgresql://u@h:99999/db", "the port is not a number from 1 to 65535"),
        ("postgresql://u@/db", "no host"),
        ("postgresql://u@h/", "no database name"),
        ("postgresql://u:hunter2@h/db?password=hunter2", "unknown parameter(s) password (give the password in a"),
    ],
)
def test_bad_postgres_urls_say_why_and_show_the_url_masked(url: str, reason: str) -> None:
    with pytest.raises(StoreError) as raised:
        parse_store_url(url)
    assert reason in str(raised.value) and "hunter2" not in str(raised.value)
    assert mask_url(url) in str(raised.value)


def test_several_hosts_sharing_a_port_reach_libpq_as_one_host_list() -> None:
    store = parse_store_url("postgresql://u@h1:6432,h2:6432/db")
    assert (store.env["POSTGRES_HOST"], store.env["POSTGRES_PORT"]) == ("h1,h2", "6432")
