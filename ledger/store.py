"""Store URLs → the eventsourcing library's own persistence settings.

`memory://`, `sqlite:///relative.db` (`sqlite:////absolute.db`) and
`postgresql://user[:password]@host[:port]/dbname[?param=value&...]` with the libpq
connection parameters of `POSTGRES_URL_PARAMETERS` in the query. eventsourcing's own
`POSTGRES_*` environment variables and libpq's `PG*` ones still apply where the URL is silent.

The password, first found wins: the URL's, the `password_file` argument (a plain one-line
secret file), eventsourcing's `POSTGRES_PASSWORD`; with none of those no password is passed
at all, so libpq itself uses `PGPASSWORD`, then the passfile (`passfile=` / `PGPASSFILE` /
`~/.pgpass`). A password never appears in `describe()`, a repr or a message.
"""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit, urlunsplit

import psycopg
from eventsourcing.persistence import InterfaceError, OperationalError

from ledger.chain import Chain

#: Seconds to wait for PostgreSQL to accept a connection before giving up.
POSTGRES_CONNECT_TIMEOUT_S = 5
#: Seconds a writer waits for the events table lock (one writer at a time) before failing.
POSTGRES_LOCK_TIMEOUT_S = 30
#: Seconds SQLite waits for another writer's lock.
SQLITE_LOCK_TIMEOUT_S = 30
#: What a PostgreSQL URL's query may set: libpq connection parameters, passed to every connection.
#: `connect_timeout` is not among them: it is read into POSTGRES_CONNECT_TIMEOUT (the library's pool
#: wait as well as libpq's), see `_connect_timeout`.
POSTGRES_URL_PARAMETERS = frozenset(
    {"sslmode", "sslrootcert", "sslcert", "sslkey", "sslcrl", "passfile", "application_name"}
)
SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
#: Longest password file we read (a secret, not a document).
PASSWORD_FILE_BYTES_MAX = 4096


#: Failures that mean "the store cannot be reached right now"; trying again later may work.
UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    OperationalError,
    InterfaceError,
    psycopg.OperationalError,
    psycopg.InterfaceError,
    sqlite3.OperationalError,
)


class StoreError(ValueError):
    """A store URL we cannot use."""


class StoreNotFoundError(StoreError):
    """A reading command pointed at a ledger that does not exist."""


def mask_url(url: str) -> str:
    """`url` with any password (of the user part, or a `password=` in the query) replaced by ***."""
    parts = original = urlsplit(url)
    userinfo, at, hostport = parts.netloc.rpartition("@")
    if at and ":" in userinfo:
        parts = parts._replace(netloc=f"{userinfo.split(':', 1)[0]}:***@{hostport}")
    if "password" in parts.query.lower():
        pairs = [pair.partition("=") for pair in parts.query.split("&")]
        query = "&".join(
            f"{name}{eq}{'***' if 'password' in unquote(name).lower() and value else value}"
            for name, eq, value in pairs
        )
        parts = parts._replace(query=query)
    return url if parts == original else urlunsplit(parts)


@dataclass(frozen=True, repr=False)
class Store:
    """A parsed store URL and the eventsourcing environment it stands for.

    `libpq` holds the PostgreSQL connection parameters from the URL's query (sslmode, ...), which
    `ledger.pgconnect` gives to every connection: the CLI's first one and the library's pool. `chain` is
    how the ledger's tamper-evident chains are hashed (keyed when a chain key is configured).
    """

    url: str
    kind: str
    env: dict[str, str]
    path: Path | None = None
    libpq: Mapping[str, str] = field(default_factory=dict)
    chain: Chain = field(default_factory=Chain)

    def describe(self) -> str:
        """The URL with any password hidden, for messages."""
        return mask_url(self.url)

    def __repr__(self) -> str:  # the env and the URL may hold a password
        return f"Store({self.describe()!r}, kind={self.kind!r})"

    def require_existing(self) -> None:
        """Reading commands must not create an empty SQLite file by accident."""
        if self.path is not None and not self.path.exists():
            raise StoreNotFoundError(f"no ledger at {self.path} (store {self.url}); ingest something first")


def parse_store_url(url: str, *, password_file: Path | None = None) -> Store:
    """The store `url` names; `password_file` (PostgreSQL only) holds the password on its first line."""
    try:
        parts = urlsplit(url)
        mask_url(url)
    except ValueError as error:  # e.g. "Invalid IPv6 URL": say so without the URL, which may hold a password
        raise StoreError(f"the store URL cannot be parsed: {error}") from None
    scheme = parts.scheme.lower()
    if scheme == "memory":
        return Store(url, "memory", {"PERSISTENCE_MODULE": "eventsourcing.popo"})
    if scheme == "sqlite":
        return _sqlite_store(url, parts.netloc, parts.path)
    if scheme in {"postgresql", "postgres"}:
        return _postgres_store(url, password_file)
    raise StoreError(
        f"unsupported store URL {mask_url(url)!r}: use memory://, sqlite:///FILE or postgresql://USER@HOST:PORT/DB"
    )


def _sqlite_store(url: str, netloc: str, path: str) -> Store:
    if netloc or not path.startswith("/") or path == "/":
        raise StoreError(
            f"bad SQLite URL {mask_url(url)!r}: use sqlite:///relative/file.db or sqlite:////absolute/file.db"
        )
    file = Path(unquote(path[1:]))
    env = {
        "PERSISTENCE_MODULE": "eventsourcing.sqlite",
        "SQLITE_DBNAME": str(file),
        "SQLITE_LOCK_TIMEOUT": str(SQLITE_LOCK_TIMEOUT_S),
    }
    return Store(url, "sqlite", env, path=file)


def _postgres_store(url: str, password_file: Path | None) -> Store:
    shown = mask_url(url)
    parts = urlsplit(url)
    dbname = unquote(parts.path.lstrip("/"))
    try:
        port = parts.port
    except ValueError as error:
        raise StoreError(f"bad PostgreSQL URL {shown!r}: {error}") from error
    if not dbname or not parts.hostname:
        raise StoreError(
            f"bad PostgreSQL URL {shown!r}: use postgresql://USER[:PASSWORD]@HOST[:PORT]/DBNAME[?sslmode=...]"
        )
    query = _url_parameters(shown, parts.query)
    connect_timeout = _connect_timeout(shown, query.pop("connect_timeout", None))
    libpq = _checked_libpq_parameters(shown, query)
    password = _password(parts.password, password_file)
    if not password:
        _check_passfile(libpq.get("passfile") or os.environ.get("PGPASSFILE"))
    env = {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": dbname,
        "POSTGRES_HOST": parts.hostname,
        "POSTGRES_PORT": str(port or 5432),
        "POSTGRES_USER": unquote(
            parts.username or os.environ.get("POSTGRES_USER") or os.environ.get("PGUSER") or "postgres"
        ),
        # Empty means "none of ours": ledger.pgconnect then passes no password and libpq looks further.
        "POSTGRES_PASSWORD": password,
        "POSTGRES_CONNECT_TIMEOUT": connect_timeout,
        "POSTGRES_LOCK_TIMEOUT": os.environ.get("POSTGRES_LOCK_TIMEOUT", str(POSTGRES_LOCK_TIMEOUT_S)),
    }
    return Store(url, "postgresql", env, libpq=libpq)


def _url_parameters(shown: str, query: str) -> dict[str, str]:
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError as error:
        raise StoreError(f"bad PostgreSQL URL {shown!r}: malformed query: {error}") from error
    names = [name for name, _ in pairs]
    unknown = sorted({name for name in names if name not in POSTGRES_URL_PARAMETERS | {"connect_timeout"}})
    if unknown:
        allowed = ", ".join(sorted(POSTGRES_URL_PARAMETERS | {"connect_timeout"}))
        hint = " (give the password in the user part, PGPASSWORD or a password file)" if "password" in unknown else ""
        raise StoreError(
            f"bad PostgreSQL URL {shown!r}: unknown parameter(s) {', '.join(unknown)}{hint}; known: {allowed}"
        )
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise StoreError(f"bad PostgreSQL URL {shown!r}: parameter(s) given twice: {', '.join(repeated)}")
    empty = sorted(name for name, value in pairs if not value)
    if empty:
        raise StoreError(f"bad PostgreSQL URL {shown!r}: parameter(s) without a value: {', '.join(empty)}")
    return dict(pairs)


def _connect_timeout(shown: str, from_url: str | None) -> str:
    """URL `connect_timeout`, else POSTGRES_CONNECT_TIMEOUT, else PGCONNECT_TIMEOUT, else the default."""
    candidates = [
        (f"URL {shown!r}: connect_timeout", from_url),
        ("POSTGRES_CONNECT_TIMEOUT", os.environ.get("POSTGRES_CONNECT_TIMEOUT")),
        ("PGCONNECT_TIMEOUT", os.environ.get("PGCONNECT_TIMEOUT")),
    ]
    source, value = next(((source, value) for source, value in candidates if value), ("", None))
    if value is None:
        return str(POSTGRES_CONNECT_TIMEOUT_S)
    if not (value.strip().isdigit() and int(value) > 0):
        raise StoreError(f"bad PostgreSQL {source}={value!r}: use a whole number of seconds > 0")
    return value.strip()


def _checked_libpq_parameters(shown: str, parameters: dict[str, str]) -> dict[str, str]:
    sslmode = parameters.get("sslmode")
    if sslmode is not None and sslmode not in SSLMODES:
        raise StoreError(f"bad PostgreSQL URL {shown!r}: sslmode={sslmode!r}; use one of {', '.join(SSLMODES)}")
    for name in ("sslrootcert", "sslcert", "sslkey", "sslcrl"):
        file = parameters.get(name)
        if file is None or (name == "sslrootcert" and file == "system"):
            continue
        # libpq silently skips a missing root certificate under sslmode=require: no verification at all.
        if not Path(file).is_file():
            raise StoreError(f"bad PostgreSQL URL {shown!r}: {name} {file!r} is not a file")
    return parameters


def _password(from_url: str | None, password_file: Path | None) -> str:
    if from_url:
        return unquote(from_url)
    if password_file is not None:
        return read_password_file(password_file)
    return os.environ.get("POSTGRES_PASSWORD", "")


def read_password_file(path: Path, what: str = "password file") -> str:
    """The first line of a plain secret file (its line ending removed); unreadable or empty is a StoreError
    whose message calls the file `what`."""
    try:
        with path.open("rb") as file:
            content = file.read(PASSWORD_FILE_BYTES_MAX + 1)
    except OSError as error:
        raise StoreError(f"{what} {str(path)!r} cannot be read: {error.strerror or error}") from error
    if len(content) > PASSWORD_FILE_BYTES_MAX:
        raise StoreError(f"{what} {str(path)!r} is over {PASSWORD_FILE_BYTES_MAX} bytes: not a secret file")
    try:
        first_line = content.decode("utf-8").splitlines()[0] if content.strip() else ""
    except UnicodeDecodeError as error:
        raise StoreError(f"{what} {str(path)!r} is not UTF-8 text") from error
    if not first_line:
        raise StoreError(f"{what} {str(path)!r} is empty")
    return first_line


def _check_passfile(passfile: str | None) -> None:
    """A libpq passfile named in the URL or PGPASSFILE must be one libpq will use: libpq itself skips
    a missing or group/world-readable one (the latter with a warning) and then fails for want of a password."""
    if passfile is None:
        return
    path = Path(passfile).expanduser()
    try:
        mode = path.stat().st_mode
        with path.open("rb"):
            pass
    except OSError as error:
        raise StoreError(f"password file {passfile!r} cannot be read: {error.strerror or error}") from error
    if not stat.S_ISREG(mode):
        raise StoreError(f"password file {passfile!r} is not a regular file")
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise StoreError(
            f"password file {passfile!r} has group or world access, so libpq would ignore it: chmod 0600 it"
        )
