"""Creating kafka-python clients: wait for an unreachable broker without spinning, create topics, and tell a
refused TLS certificate or SASL login (never worth retrying) from an unreachable broker."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka import errors as kafka_errors
from kafka.admin import NewTopic
from kafka.errors import KafkaConnectionError, KafkaTimeoutError, TopicAlreadyExistsError
from kafka.net.sasl.scram import ScramClient
from kafka.protocol.metadata import ApiVersionsRequest
from kafka.protocol.parser import KafkaProtocol
from kafka.protocol.sasl import SaslAuthenticateRequest, SaslHandshakeRequest

from consumers.kafka_settings import KafkaSettings

#: Seconds between attempts to reach the broker: doubling from the first to the last.
CONNECT_DELAY_FIRST_S = 1.0
CONNECT_DELAY_MAX_S = 30.0
#: Seconds a TCP reachability check waits per bootstrap server.
TCP_CHECK_TIMEOUT_S = 2.0

#: Seconds the TLS/SASL check waits for each answer of a bootstrap server.
SECURITY_CHECK_TIMEOUT_S = 5.0

C = TypeVar("C")


class KafkaSecurityError(RuntimeError):
    """The broker refused our TLS or SASL credentials (or we cannot read our own): retrying will not help.

    The message says what failed and never contains a password.
    """


def accepts_connections(bootstrap_servers: str, timeout_s: float = TCP_CHECK_TIMEOUT_S) -> bool:
    """Does any bootstrap server accept a TCP connection? Checked before building a client, because a
    kafka-python client that fails to bootstrap leaks its network thread and sockets."""
    for server in bootstrap_servers.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            with socket.create_connection((host.strip("[]") or "localhost", int(port)), timeout=timeout_s):
                return True
        except (OSError, ValueError):
            continue
    return False


def connect(
    create: Callable[[], C], bootstrap_servers: str, warn: Callable[[str], None], stop: threading.Event
) -> C | None:
    """Create a client, retrying for as long as the broker is unreachable; None if `stop` is set first.

    Only unreachability is retried; other Kafka errors (configuration, authentication) are raised, and so
    is KafkaSecurityError (a refused certificate or login) from `create`.
    """
    delay = CONNECT_DELAY_FIRST_S
    while not stop.is_set():
        reason = "no TCP connection"
        if accepts_connections(bootstrap_servers):
            try:
                return create()
            except (KafkaTimeoutError, KafkaConnectionError) as error:
                reason = str(error) or type(error).__name__
        warn(f"Kafka broker {bootstrap_servers} unreachable ({reason}); retrying in {delay:g} s")
        stop.wait(delay)
        delay = min(delay * 2, CONNECT_DELAY_MAX_S)
    return None


def tls_context(settings: KafkaSettings) -> ssl.SSLContext:
    """The client context kafka-python builds from these settings; KafkaSecurityError if a file is unreadable."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = settings.ssl_check_hostname
    try:
        if settings.ssl_cafile:
            context.load_verify_locations(settings.ssl_cafile)
        else:
            context.load_default_certs()
    except (OSError, ssl.SSLError) as error:
        raise KafkaSecurityError(f"cannot read CA file {settings.ssl_cafile}: {_reason(error)}") from None
    if settings.ssl_certfile:
        password = settings.ssl_key_password.get_secret_value() if settings.ssl_key_password else None
        try:
            context.load_cert_chain(settings.ssl_certfile, settings.ssl_keyfile, password)
        except (OSError, ssl.SSLError) as error:
            key = settings.ssl_keyfile or settings.ssl_certfile
            raise KafkaSecurityError(
                f"cannot read client certificate {settings.ssl_certfile} or key {key} "
                f"(or its password is wrong): {_reason(error)}"
            ) from None
    elif settings.ssl_keyfile:
        raise KafkaSecurityError(f"client key {settings.ssl_keyfile} given without a client certificate")
    return context


def _reason(error: BaseException) -> str:
    if isinstance(error, ssl.SSLCertVerificationError):
        return f"certificate verify failed: {error.verify_message}"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error) or type(error).__name__


def check_security(settings: KafkaSettings, timeout_s: float = SECURITY_CHECK_TIMEOUT_S) -> None:
    """Before building a client on TLS or SASL: do the TLS handshake and SASL login it would do, by hand.

    kafka-python reports neither a refused certificate nor a refused login: it just fails to bootstrap
    (KafkaTimeoutError) and would be retried forever. Raises KafkaSecurityError when a broker refuses us (or
    we cannot read our own files), KafkaConnectionError when no bootstrap server could be asked; returns when
    one accepted. PLAINTEXT needs no check.
    """
    if settings.security_protocol == "PLAINTEXT":
        return
    context = tls_context(settings) if settings.uses_tls else None
    unreachable = []
    for server in settings.bootstrap_servers.split(","):
        host, _, port = server.strip().rpartition(":")
        host = host.strip("[]") or "localhost"
        try:
            with socket.create_connection((host, int(port)), timeout=timeout_s) as raw:
                if context is None:
                    _check_sasl(raw, settings, server.strip())
                    return
                with context.wrap_socket(raw, server_hostname=host) as sock:
                    _check_sasl(sock, settings, server.strip())
                    return
        except ssl.SSLCertVerificationError as error:
            raise KafkaSecurityError(
                f"TLS: Kafka broker {server.strip()} not trusted, {_reason(error)}"
                f" (CA file {settings.ssl_cafile or 'the system store'}, hostname check "
                f"{'on' if settings.ssl_check_hostname else 'off'})"
            ) from None
        except ssl.SSLError as error:
            if isinstance(error, ssl.SSLEOFError | ssl.SSLZeroReturnError):
                unreachable.append(f"{server.strip()}: TLS connection closed")
                continue
            raise KafkaSecurityError(
                f"TLS handshake with Kafka broker {server.strip()} refused: {error.reason or error}"
            ) from None
        except (OSError, ValueError, EOFError) as error:
            unreachable.append(f"{server.strip()}: {_reason(error)}")
    raise KafkaConnectionError("; ".join(unreachable) or "no bootstrap server")


def _check_sasl(sock: socket.socket, settings: KafkaSettings, server: str) -> None:
    """Ask for ApiVersions (a TLS refusal of our certificate shows up here under TLS 1.3), then log in."""
    protocol = KafkaProtocol(client_id=settings.client_id)

    def call(request: Any) -> Any:
        protocol.send_request(request)
        sock.sendall(protocol.send_bytes())
        while True:
            data = sock.recv(65536)
            if not data:
                raise EOFError("the broker closed the connection")
            responses = protocol.receive_bytes(data)
            if responses:
                return responses[0][1]

    call(ApiVersionsRequest[0]())
    if not settings.security_protocol.startswith("SASL_"):
        return
    mechanism, user = settings.sasl_mechanism, settings.sasl_username
    password = settings.sasl_password.get_secret_value() if settings.sasl_password else ""

    def refused(reason: str) -> KafkaSecurityError:
        reason = reason.replace(password, "***") if password else reason
        return KafkaSecurityError(
            f"SASL: authentication failed for user {user!r} with mechanism {mechanism} "
            f"at Kafka broker {server}: {reason}"
        )

    def login_step(request: Any) -> Any:
        # The broker answered ApiVersions on this very connection: closing it now is its answer to our login.
        try:
            return call(request)
        except EOFError:
            raise refused(f"the broker closed the connection on our {type(request).__name__}") from None

    handshake = login_step(SaslHandshakeRequest[1](mechanism=mechanism))
    if handshake.error_code:
        offered = ", ".join(handshake.mechanisms or []) or "none"
        answer = kafka_errors.for_code(handshake.error_code).__name__
        raise refused(f"the broker refused the SASL handshake for {mechanism} ({answer}; it lists: {offered})")
    if mechanism == "PLAIN":
        answer = login_step(SaslAuthenticateRequest[1](auth_bytes=f"\0{user}\0{password}".encode()))
        if answer.error_code:
            raise refused(answer.error_message or f"error code {answer.error_code}")
        return
    scram = ScramClient(user, password, mechanism)
    first = login_step(SaslAuthenticateRequest[1](auth_bytes=scram.first_message()))
    if first.error_code:
        raise refused(first.error_message or f"error code {first.error_code}")
    try:
        scram.process_server_first_message(bytes(first.auth_bytes))
    except (ValueError, KeyError) as error:
        raise refused(f"unexpected SCRAM challenge ({error})") from None
    final = login_step(SaslAuthenticateRequest[1](auth_bytes=scram.final_message()))
    if final.error_code:
        raise refused(final.error_message or f"error code {final.error_code}")
    fields = dict(
        part.split("=", 1) for part in bytes(final.auth_bytes).decode(errors="replace").split(",") if "=" in part
    )
    if "e" in fields:
        raise refused(fields["e"])
    try:
        scram.process_server_final_message(bytes(final.auth_bytes))
    except (ValueError, KeyError):
        raise refused("the broker's SCRAM signature is wrong (it does not know our password)") from None


def new_consumer(settings: KafkaSettings, group: str, max_poll_records: int) -> KafkaConsumer:
    check_security(settings)
    return KafkaConsumer(**settings.consumer_config(group, max_poll_records))


def new_producer(settings: KafkaSettings, **overrides: Any) -> KafkaProducer:
    """A producer with our settings (acks=all); `overrides` replace single kafka-python settings."""
    check_security(settings)
    return KafkaProducer(**{**settings.producer_config(), **overrides})


@dataclass(frozen=True, slots=True)
class TopicState:
    """A topic asked for: created now or found existing, with its partitions (None: not described)."""

    name: str
    created: bool
    partitions: int | None


def create_topics(
    settings: KafkaSettings, topics: dict[str, int], *, replication_factor: int = 1, describe: bool = True
) -> list[TopicState]:
    """Create the topics (name → partitions) that do not exist yet, each with `replication_factor` copies; a
    topic someone else creates meanwhile counts as existing. With `describe`, the partitions of the existing
    ones are read too."""
    check_security(settings)
    admin: Any = KafkaAdminClient(**settings.common())
    try:
        existing = set(admin.list_topics())
        created = set()
        for name, partitions in topics.items():
            if name in existing:
                continue
            try:
                admin.create_topics([NewTopic(name, partitions, replication_factor)])
                created.add(name)
            except TopicAlreadyExistsError:
                pass
        found: dict[str, int] = {}
        if describe and (others := sorted(set(topics) - created)):
            found = {
                topic["name"]: len(topic["partitions"])
                for topic in admin.describe_topics(others)
                if not topic.get("error_code")
            }
        return [
            TopicState(name, name in created, partitions if name in created else found.get(name))
            for name, partitions in topics.items()
        ]
    finally:
        admin.close()


def ensure_topics(settings: KafkaSettings, topics: dict[str, int]) -> list[str]:
    """Create the topics (name → partitions) that do not exist yet; return the ones created."""
    return [state.name for state in create_topics(settings, topics, describe=False) if state.created]
