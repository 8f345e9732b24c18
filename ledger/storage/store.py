"""Store URLs → the eventsourcing library's own persistence settings.

`memory://`, `sqlite:///relative.db` (`sqlite:////absolute.db`) and
`postgresql://user[:password]@host[:port]/dbname[?param=value&...]` with the libpq
connection parameters of `POSTGRES_URL_PARAMETERS` in the query, read as libpq reads it
(`ledger.storage.store_urls`). eventsourcing's own `POSTGRES_*` environment variables and libpq's
`PG*` ones still apply where the URL is silent.

The password, first found wins: the URL's, the `password_file` argument (a plain one-line
secret file), eventsourcing's `POSTGRES_PASSWORD`; with none of those no password is passed
at all, so libpq itself uses `PGPASSWORD`, then the passfile (`passfile=` / `PGPASSFILE` /
`~/.pgpass`). A password never appears in `describe()`, a repr or a message: they show the
URL through `mask_url`, and no message quotes a piece of it that could be a password.
"""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

import psycopg
from eventsourcing.persistence import InterfaceError, OperationalError

from ledger.storage.chain import Chain
from ledger.storage.store_urls import POSTGRES_SCHEMES, UrlError, mask_url, quoted, scheme_of, split_postgres_url

#: The port of a PostgreSQL URL that names none, and the highest there is.
POSTGRES_PORT_DEFAULT = 5432
PORT_MAX = 65_535
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
UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (
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


@dataclass(frozen=True, repr=False)
class Store:
    """A parsed store URL and the eventsourcing environment it stands for.

    `libpq` holds the PostgreSQL connection parameters from the URL's query (sslmode, ...), which
    `ledger.storage.pgconnect` gives to every connection: the CLI's first one and the library's pool. `chain` is
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

    def is_new_file(self) -> bool:
        """A SQLite store whose file does not exist yet (opening the ledger creates it)."""
        return self.path is not None and not self.path.exists()

    def discard_if_unwritten(self, bookkeeping: frozenset[str]) -> bool:
        """Remove a SQLite ledger file (with its -wal, -shm and -journal files) that holds nothing written: every
        table empty, but for the tracking rows named in `bookkeeping` (the library's table layout, the ledger's
        id), which opening a ledger writes. True if it was removed. Only for a file this process created and
        has closed."""
        if self.path is None or not self.path.is_file():
            return False
        connection = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
        try:
            written = any(
                connection.execute(query, names).fetchone() for query, names in _row_probes(connection, bookkeeping)
            )
        finally:
            connection.close()
        if written:
            return False
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)
        return True

    def require_existing(self) -> None:
        """Reading commands must not create an empty SQLite file by accident."""
        if self.path is not None and not self.path.exists():
            raise StoreNotFoundError(f"no ledger at {self.path} (store {self.describe()}); ingest something first")


def _row_probes(connection: sqlite3.Connection, bookkeeping: frozenset[str]) -> list[tuple[str, tuple[str, ...]]]:
    """One query per table of a SQLite file that finds a row, if it holds one (the tracking table's
    `bookkeeping` rows not counted). Table names come from the file's own catalog."""
    names = tuple(sorted(bookkeeping))
    tables = [row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    marks = ", ".join("?" * len(names))
    return [
        (f'SELECT 1 FROM "{table}" WHERE application_name NOT IN ({marks}) LIMIT 1', names)  # noqa: S608
        if table == "tracking" and names
        else (f'SELECT 1 FROM "{table}" LIMIT 1', ())  # noqa: S608
        for table in tables
    ]


def parse_store_url(url: str, *, password_file: Path | None = None) -> Store:
    """The store `url` names; `password_file` (PostgreSQL only) holds the password on its first line."""
    scheme = scheme_of(url)
    if scheme == "memory":
        return Store(url, "memory", {"PERSISTENCE_MODULE": "eventsourcing.popo"})
    if scheme == "sqlite":
        return _sqlite_store(url)
    if scheme in POSTGRES_SCHEMES:
        return _postgres_store(url, password_file)
    raise StoreError(
        f"unsupported store URL {quoted(url)}: use memory://, sqlite:///FILE or postgresql://USER@HOST:PORT/DB"
    )


def _sqlite_store(url: str) -> Store:
    usage = f"bad SQLite URL {quoted(url)}: use sqlite:///relative/file.db or sqlite:////absolute/file.db"
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. "Invalid IPv6 URL", which would quote the URL
        raise StoreError(usage) from None
    if parts.netloc or not parts.path.startswith("/") or parts.path == "/":
        raise StoreError(usage)
    file = Path(unquote(parts.path[1:]))
    env = {
        "PERSISTENCE_MODULE": "eventsourcing.sqlite",
        "SQLITE_DBNAME": str(file),
        "SQLITE_LOCK_TIMEOUT": str(SQLITE_LOCK_TIMEOUT_S),
    }
    return Store(url, "sqlite", env, path=file)


def _postgres_store(url: str, password_file: Path | None) -> Store:
    shown = quoted(url)
    try:
        parts = split_postgres_url(url)
    except UrlError as error:
        raise StoreError(f"bad PostgreSQL URL {shown}: {error}") from None
    host, port = _host_and_port(shown, parts.hosts)
    if not parts.dbname:
        raise StoreError(
            f"bad PostgreSQL URL {shown}: no database name; use postgresql://USER[:PASSWORD]@HOST[:PORT]/DBNAME"
        )
    query = _url_parameters(shown, parts.parameters)
    connect_timeout = _connect_timeout(shown, query.pop("connect_timeout", None))
    libpq = _checked_libpq_parameters(shown, query)
    password = _password(parts.password, password_file)
    if not password:
        _check_passfile(libpq.get("passfile") or os.environ.get("PGPASSFILE"))
    env = {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": parts.dbname,
        "POSTGRES_HOST": host,
        "POSTGRES_PORT": port,
        "POSTGRES_USER": parts.user or os.environ.get("POSTGRES_USER") or os.environ.get("PGUSER") or "postgres",
        # Empty means "none of ours": ledger.storage.pgconnect then passes no password and libpq looks further.
        "POSTGRES_PASSWORD": password,
        "POSTGRES_CONNECT_TIMEOUT": connect_timeout,
        "POSTGRES_LOCK_TIMEOUT": os.environ.get("POSTGRES_LOCK_TIMEOUT", str(POSTGRES_LOCK_TIMEOUT_S)),
    }
    return Store(url, "postgresql", env, libpq=libpq)


def _host_and_port(shown: str, hosts: tuple[tuple[str, str], ...]) -> tuple[str, str]:
    """libpq's host list as one `host` value, and the one port every host shares (5432 if none is written)."""
    if not all(host for host, _ in hosts):
        raise StoreError(f"bad PostgreSQL URL {shown}: no host; use postgresql://USER[:PASSWORD]@HOST[:PORT]/DBNAME")
    ports = {port for _, port in hosts}
    if len(ports) > 1:
        raise StoreError(f"bad PostgreSQL URL {shown}: the hosts have different ports; give them all one port")
    port = ports.pop() or str(POSTGRES_PORT_DEFAULT)
    if not (port.isascii() and port.isdigit() and 1 <= int(port) <= PORT_MAX):
        raise StoreError(f"bad PostgreSQL URL {shown}: the port is not a number from 1 to {PORT_MAX}")
    return ",".join(host for host, _ in hosts), port


def _url_parameters(shown: str, pairs: tuple[tuple[str, str], ...]) -> dict[str, str]:
    names = [name for name, _ in pairs]
    unknown = sorted({name for name in names if name not in POSTGRES_URL_PARAMETERS | {"connect_timeout"}})
    if unknown:
        allowed = ", ".join(sorted(POSTGRES_URL_PARAMETERS | {"connect_timeout"}))
        hint = " (give the password in a password file, PGPASSWORD or the user part)" if "password" in unknown else ""
        raise StoreError(
            f"bad PostgreSQL URL {shown}: unknown parameter(s) {', '.join(unknown)}{hint}; known: {allowed}"
        )
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise StoreError(f"bad PostgreSQL URL {shown}: parameter(s) given twice: {', '.join(repeated)}")
    empty = sorted(name for name, value in pairs if not value)
    if empty:
        raise StoreError(f"bad PostgreSQL URL {shown}: parameter(s) without a value: {', '.join(empty)}")
    return dict(pairs)


def _connect_timeout(shown: str, from_url: str | None) -> str:
    """URL `connect_timeout`, else POSTGRES_CONNECT_TIMEOUT, else PGCONNECT_TIMEOUT, else the default."""
    candidates = [
        (f"URL {shown}: connect_timeout", from_url),
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
        raise StoreError(f"bad PostgreSQL URL {shown}: sslmode={sslmode!r}; use one of {', '.join(SSLMODES)}")
    for name in ("sslrootcert", "sslcert", "sslkey", "sslcrl"):
        file = parameters.get(name)
        if file is None or (name == "sslrootcert" and file == "system"):
            continue
        # libpq silently skips a missing root certificate under sslmode=require: no verification at all.
        if not Path(file).is_file():
            raise StoreError(f"bad PostgreSQL URL {shown}: {name} {file!r} is not a file")
    return parameters


def _password(from_url: str | None, password_file: Path | None) -> str:
    if from_url:
        return from_url
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
