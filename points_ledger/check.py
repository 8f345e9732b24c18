"""`points-ledger check`: a preflight for operators, one line per check with what is wrong and how to fix it.

It uses the effective settings (flags > environment > config file > defaults), tries each thing the
ledger needs once (no retries), and exits 1 if any check failed. Nothing is written anywhere.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import click

from points_ledger import output
from points_ledger.context import Context, format_option, pass_context
from points_ledger.errors import EXIT_FAILED, first_line
from points_ledger.kafka_options import consumed_topic_options, kafka_options

if TYPE_CHECKING:
    import psycopg

    from consumers.kafka_settings import KafkaSettings
    from ledger.storage.store import Store
    from points_ledger.config import LedgerSettings, Sources

#: Largest clock difference accepted between us and the database, or ahead of us in a record timestamp.
CLOCK_SKEW_MAX = timedelta(seconds=60)


@dataclass(frozen=True)
class Check:
    """One line of the report."""

    name: str
    ok: bool
    detail: str
    fix: str = ""
    #: Worth a look but no reason not to start (the exit status stays 0).
    warning: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"check": self.name, "ok": self.ok, "warning": self.warning, "detail": self.detail,
                "fix": self.fix or None}  # fmt: skip

    @property
    def status(self) -> str:
        return "FAIL" if not self.ok else "WARN" if self.warning else "ok  "


def passed(name: str, detail: str) -> Check:
    return Check(name, True, detail)


def failed(name: str, detail: str, fix: str) -> Check:
    return Check(name, False, detail, fix)


# ---- the store ---------------------------------------------------------------------------------


def store_checks(store: Store) -> Iterator[Check]:
    import psycopg

    from ledger.storage.store_probes import server, server_clock
    from points_ledger.preflight import connect

    if store.kind == "memory":
        yield failed("store", "memory:// keeps nothing after the process ends", "use sqlite:///FILE or postgresql://")
        return
    if store.kind == "sqlite":
        yield _sqlite_check(store)
        return
    try:
        connection = connect(store)
    except psycopg.Error as error:
        yield failed("store", f"{store.describe()}: {first_line(error)}", _postgres_fix(str(error)))
        return
    with connection:
        found = server(connection)
        tls = "TLS" if found.tls else "no TLS"
        yield passed("store", f"{store.describe()}: PostgreSQL {found.major_version}, {tls}")
        try:
            yield _postgres_privileges(connection)
            server_now = server_clock(connection)
        except psycopg.Error as error:
            yield failed("store", f"{store.describe()}: {first_line(error)}", _postgres_fix(str(error)))
            return
        if server_now is not None:
            yield _clock_check("store clock", "the database server's clock", server_now, datetime.now(UTC))


def _sqlite_check(store: Store) -> Check:
    from ledger.storage.store import StoreError

    path = store.path
    if path is None:
        raise StoreError("a SQLite store has a path")
    folder = path.parent if str(path.parent) else None
    if path.exists():
        return passed("store", f"SQLite ledger {path} ({path.stat().st_size:,} bytes)")
    if folder is not None and not folder.is_dir():
        return failed("store", f"no folder {folder} for the SQLite ledger {path}", f"create it: mkdir -p {folder}")
    return passed("store", f"SQLite ledger {path} does not exist yet; ingest or consume creates it")


def _postgres_fix(reason: str) -> str:
    if "password authentication failed" in reason or "no password supplied" in reason:
        return "check the password: PGPASSWORD, store.password_file (LEDGER_STORE_PASSWORD_FILE) or the passfile"
    if "does not exist" in reason and "database" in reason:
        return "create the database (createdb), or fix the database name in the store URL"
    if "certificate" in reason or "SSL" in reason or "ssl" in reason:
        return "check sslmode and sslrootcert (the CA that signed the server's certificate) in the URL or PG* vars"
    if "refused" in reason or "timeout" in reason or "could not translate host name" in reason:
        return "is PostgreSQL running and reachable at that host and port? check the store URL"
    return "see the reason above"


def _postgres_privileges(connection: psycopg.Connection[Any]) -> Check:
    """The ledger creates its tables on first use, then inserts and reads; the first start of this version
    beside an older ledger creates the tables it lacks, which needs CREATE."""
    from ledger.storage.store_probes import table_rights

    rights = table_rights(connection)
    if rights is None:
        return failed("store privileges", "cannot read the catalog", "grant the ledger's user access to the database")
    user, schema, missing = rights.user, rights.schema, rights.missing
    if rights.tables:
        if not rights.can_read_and_append:
            return failed("store privileges", f"user {user} cannot insert into and read {', '.join(rights.tables)}",
                          f"GRANT SELECT, INSERT ON ALL TABLES IN SCHEMA {schema} TO {user}")  # fmt: skip
        if missing and not rights.can_create:
            return failed("store privileges", f"the ledger has no {' and no '.join(missing)} yet, and user {user} "
                          f"cannot create them in {schema}", f"GRANT CREATE ON SCHEMA {schema} TO {user} for the "
                          "first start, which creates them and fills them from the ledger")  # fmt: skip
        return passed("store privileges", f"user {user} can read and append to the ledger's tables")
    if not rights.can_create:
        return failed("store privileges", f"no ledger tables yet, and user {user} cannot create them in {schema}",
                      f"GRANT CREATE ON SCHEMA {schema} TO {user}, or create the tables as their owner")  # fmt: skip
    return passed("store privileges", f"no ledger tables yet; user {user} may create them in schema {schema}")


def _clock_check(name: str, other: str, their_time: datetime, our_time: datetime, *, record: bool = False) -> Check:
    """`other` (a clock) against ours. A `record`'s timestamp may lie far in the past, and one ahead of us is
    a producer's clock to fix, not a reason to stop: the consumer caps record times at its own clock."""
    skew = their_time - our_time
    seconds = skew.total_seconds()
    if (skew > CLOCK_SKEW_MAX) if record else (abs(skew) > CLOCK_SKEW_MAX):
        fix = "synchronise the clocks (NTP: timedatectl set-ntp true)"
        detail = f"{other} is {seconds:+.1f} s from our clock (limit {CLOCK_SKEW_MAX.seconds} s)"
        return Check(name, True, detail, fix, warning=True) if record else failed(name, detail, fix)
    return passed(name, f"{other} is {seconds:+.1f} s from our clock")


# ---- Kafka -------------------------------------------------------------------------------------


def kafka_checks(settings: KafkaSettings, config: LedgerSettings) -> Iterator[Check]:
    from kafka.errors import KafkaError

    from consumers.kafka_clients import KafkaSecurityError, accepts_connections
    from consumers.kafka_probes import admin_client, topic_names

    servers = settings.bootstrap_servers
    if not accepts_connections(servers):
        yield failed("kafka", f"no bootstrap server accepts a connection: {servers}",
                     "check --bootstrap-servers / KAFKA_BOOTSTRAP_SERVERS and that the brokers run")  # fmt: skip
        return
    try:
        admin = admin_client(settings)
    except KafkaSecurityError as error:
        yield failed("kafka", str(error), _security_fix(settings))
        return
    except (KafkaError, OSError, ValueError) as error:
        yield failed("kafka", f"{servers}: {first_line(error)}", "check the Kafka connection settings")
        return
    topics: set[str] = set()
    try:
        yield passed("kafka", f"{servers}: connected ({settings.security_protocol})")
        topics = topic_names(admin)
        yield from _topic_checks(topics, config)
        yield _group_check(admin, config.consume.group)
    except KafkaError as error:
        yield failed("kafka", f"{servers}: {first_line(error)}", "check the Kafka connection settings and ACLs")
    finally:
        admin.close()
    yield from _record_clock_checks(settings, [t for t in config.consume.topics if t in topics])


def _security_fix(settings: KafkaSettings) -> str:
    if settings.security_protocol.startswith("SASL"):
        return "check the SASL mechanism, user and password (KAFKA_SASL_PASSWORD or the password file) and the CA"
    return "check --ssl-cafile (the CA that signed the brokers' certificates) and the broker host names"


def _topic_checks(existing: set[str], config: LedgerSettings) -> Iterator[Check]:
    create = "points-ledger topics create, with the settings given here"
    for topic, dead_letters in config.consume.dead_letter_topics().items():
        if topic in existing:
            yield passed(f"topic {topic}", "exists and is readable")
        else:
            yield failed(
                f"topic {topic}", "does not exist (or this user may not describe it)",
                f"create it: {create} (--partitions: as many as consumers), or grant DESCRIBE/READ on {topic}",
            )  # fmt: skip
        if dead_letters in existing:
            yield passed(f"topic {dead_letters}", f"dead letters of {topic}: exists")
        else:
            yield failed(f"topic {dead_letters}", f"dead letters of {topic}: does not exist",
                         f"create it: {create} (a cluster without topic auto-creation refuses the first dead "
                         "letter)")  # fmt: skip


def _group_check(admin: Any, group: str) -> Check:
    from kafka.errors import KafkaError

    from consumers.kafka_probes import committed_partitions

    try:
        partitions = committed_partitions(admin, group)
    except KafkaError as error:
        return failed(f"group {group}", first_line(error), f"grant READ/DESCRIBE on group {group} to this user")
    return passed(f"group {group}", f"coordinator answers; {partitions} partition(s) with committed offsets")


def _record_clock_checks(settings: KafkaSettings, topics: list[str]) -> Iterator[Check]:
    """A record stamped ahead of our clock means a producer's clock (or ours) is wrong: the ledger would then
    judge messages from the future by a wrong time."""
    from kafka.errors import KafkaError

    from consumers.kafka_probes import newest_timestamps

    try:
        for topic, newest in newest_timestamps(settings, topics):
            if newest is None:
                yield passed(f"clock {topic}", "no records to compare with yet")
            else:
                yield _clock_check(f"clock {topic}", "the newest record's timestamp", newest, datetime.now(UTC),
                                   record=True)  # fmt: skip
    except KafkaError as error:
        yield failed("kafka clock", first_line(error), "grant READ on the consumed topics")


# ---- the rest ----------------------------------------------------------------------------------


def codec_check() -> Check:
    from consumers.kafka_probes import unreadable_codecs

    missing = unreadable_codecs()
    if missing:
        return failed("codecs", f"cannot read batches compressed with {', '.join(missing)}",
                      "reinstall points-ledger with its dependencies (lz4, python-snappy, zstandard)")  # fmt: skip
    return passed("codecs", "gzip, snappy, lz4 and zstd batches are readable")


def metrics_check(config: LedgerSettings) -> Check | None:
    port, address = config.metrics.port, config.metrics.address
    if port is None:
        return None
    bound = _bindable(address, port)
    if bound is not None:
        return failed("metrics", f"cannot serve metrics on {address}:{port}: {bound}",
                      "choose a free --metrics-port or stop what uses it")  # fmt: skip
    return passed("metrics", f"{address}:{port} is free")


def api_checks(config: LedgerSettings, store: Store) -> Iterator[Check]:
    """What `serve` needs beyond the store: its address free to listen on (a warning: the server may be the
    one listening), and API keys to let anyone in."""
    api = config.api
    bound = _bindable(api.host, api.port)
    if bound is None:
        pinned = "each on a CPU of its own" if api.pin_cpu else "unpinned"
        processes = f"{api.workers} worker(s) of {api.threads} thread(s), {pinned}"
        yield passed("api", f"{api.host}:{api.port} is free; {processes}")
    else:
        yield Check("api", True, f"cannot listen on {api.host}:{api.port}: {bound}",
                    "stop what listens there (a running `serve`?) or choose api.port", warning=True)  # fmt: skip
    if store.kind not in {"sqlite", "postgresql"}:
        return
    yield _api_keys_check(store)


def _api_keys_check(store: Store) -> Check:
    import sqlite3

    import psycopg

    from ledger.storage.api_keys import active_key_roles
    from points_ledger.preflight import connect

    try:
        if store.kind == "sqlite":
            if store.path is None or not store.path.exists():
                return Check("api keys", True, "no ledger yet, so no API keys", "api-key create", warning=True)
            with closing(sqlite3.connect(f"file:{store.path}?mode=ro", uri=True)) as connection:
                roles = active_key_roles(connection)
        else:
            with connect(store) as connection:
                roles = active_key_roles(connection)
    except (sqlite3.Error, psycopg.Error) as error:
        return failed("api keys", f"cannot read the API keys: {first_line(error)}", "grant SELECT on them")
    if not roles:
        return Check("api keys", True, "no active API key: every /v1 request gets 401",
                     "points-ledger api-key create --name NAME --role ROLE", warning=True)  # fmt: skip
    listed = ", ".join(f"{count} {role}" for role, count in roles.items())
    return passed("api keys", f"{sum(roles.values())} active key(s): {listed}")


def _bindable(address: str, port: int) -> str | None:
    """None if a server could listen on `address`:`port` now; else why not."""
    try:
        family, kind, _, _, where = socket.getaddrinfo(address, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers do
            probe.bind(where)
    except OSError as error:
        return str(error.strerror or error)
    return None


def run_checks(load: Callable[[], tuple[LedgerSettings, Sources]]) -> list[Check]:
    from ledger.program import ProgramError, load_program
    from ledger.storage.store import StoreError
    from points_ledger.config import ConfigError

    try:
        config, sources = load()
        program = load_program(config.program)
        store = config.store_config()
        kafka = config.kafka_settings()
    except (ConfigError, ProgramError, StoreError) as error:
        return [failed("settings", str(error), "fix the flag, environment variable or config file it names")]
    where = f"config file {sources.path}" if sources.path else "no config file"
    results = [passed("settings", f"{where}; program: {config.program or 'the default program'} ({program.currency})")]
    results += store_checks(store)
    results += kafka_checks(kafka, config)
    results.append(codec_check())
    metrics = metrics_check(config)
    if metrics is not None:
        results.append(metrics)
    results += api_checks(config, store)
    return results


@click.command()
@kafka_options
@consumed_topic_options
@format_option
@pass_context
def check(context: Context, output_format: str) -> None:
    """Check the store, Kafka, topics, group, permissions and clocks with the effective settings.

    One line per check, with what is wrong and how to fix it; exit status 1 if
    any check failed. Reads only: nothing is created or written.
    """
    results = run_checks(context.load)
    if output_format == "json":
        output.print_json_lines(result.as_dict() for result in results)
    else:
        for result in results:
            fix = f" — fix: {result.fix}" if result.fix else ""
            click.echo(f"{result.status} {result.name}: {result.detail}{fix}")
    if not all(result.ok for result in results):
        raise SystemExit(EXIT_FAILED)
