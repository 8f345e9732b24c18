"""TLS and SASL against real listeners (tests/kafka_security.py): what works, and what is refused at once."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import click
import pytest
from cryptography.hazmat.primitives import serialization
from kafka import KafkaConsumer, TopicPartition
from pydantic import SecretStr

from consumers.kafka_clients import KafkaSecurityError, connect, ensure_topics, new_consumer, new_producer
from consumers.kafka_consumer import ConsumeOptions
from consumers.kafka_producer import produce_lines
from consumers.kafka_run import consume
from consumers.kafka_settings import KafkaSettings, dead_letter_topic
from devkit.streamgen import generate
from points_ledger.errors import reported_errors
from tests.cli_helpers import cli
from tests.kafka_helpers import open_ledger, positions, unique
from tests.kafka_security import (
    PROXY_MECHANISMS,
    SASL_PASSWORD,
    SASL_USERNAME,
    Certificates,
    SecureEndpoint,
    tls_endpoint,
)
from tests.ports import closed_port

#: When a retry loop, if connect() wrongly entered one, is ended (kafka-python alone would time out and retry forever).
RETRY_LOOP_ENDED_AFTER_S = 5.0


def produce_stream(settings: KafkaSettings, topic: str, partitions: int, messages: int) -> dict[int, int]:
    """Create `topic` and produce a generated stream over `settings`; the last offset of each partition."""
    assert ensure_topics(settings, {topic: partitions, dead_letter_topic(topic): 1}) == [
        topic,
        dead_letter_topic(topic),
    ]
    producer = new_producer(settings)
    try:
        result = produce_lines(producer, topic, generate(messages, 25, 60, seed=11))
    finally:
        producer.close()
    assert result.sent == messages
    return result.last_offsets


def consume_exactly_once(settings: KafkaSettings, topic: str, partitions: int, store: str) -> None:
    """Produce, consume into a SQLite ledger until caught up, and check every position is the last offset produced."""
    last_offsets = produce_stream(settings, topic, partitions, 200)
    app = open_ledger(store)
    warnings: list[str] = []
    try:
        tally = consume(app, settings, ConsumeOptions((topic,), unique("g"), 500, until_caught_up=True),
                        {topic: dead_letter_topic(topic)}, threading.Event(), warn=warnings.append)  # fmt: skip
    finally:
        app.close()
    assert tally.processed == 200, warnings
    assert positions(store, topic, partitions) == last_offsets
    assert not [w for w in warnings if "unreachable" in w]


def read_back(settings: KafkaSettings, topic: str) -> int:
    """How many records a group-less consumer over `settings` reads from partition 0 of `topic`."""
    consumer = KafkaConsumer(**{**settings.common(), "enable_auto_commit": False, "auto_offset_reset": "earliest"})
    try:
        consumer.assign([TopicPartition(topic, 0)])
        records = 0
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            batch = consumer.poll(timeout_ms=300)
            records += sum(len(part) for part in batch.values())
            if records and not batch:
                break
        return records
    finally:
        consumer.close()


def refused(settings: KafkaSettings) -> KafkaSecurityError:
    """connect() with a consumer on `settings` must raise KafkaSecurityError quickly, without a single retry."""
    warnings: list[str] = []
    stop = threading.Event()
    threading.Timer(RETRY_LOOP_ENDED_AFTER_S, stop.set).start()  # a retry loop ends instead of hanging
    with pytest.raises(KafkaSecurityError) as caught:  # a retry loop would end in None when the timer fires
        connect(lambda: new_consumer(settings, unique("g"), 10), settings.bootstrap_servers, warnings.append, stop)
    stop.set()
    assert warnings == []  # never reported as unreachable, never retried
    return caught.value


# --- TLS -------------------------------------------------------------------------------------------------


def test_tls_stream_is_consumed_exactly_once(kafka_tls: SecureEndpoint, sqlite_url: str) -> None:
    consume_exactly_once(kafka_tls.settings(), unique("tls"), 2, sqlite_url)


def test_tls_with_a_client_certificate(kafka_mtls: SecureEndpoint, kafka_certificates: Certificates) -> None:
    settings = kafka_mtls.settings()
    topic = unique("mtls")
    produce_stream(settings, topic, 1, 50)
    assert read_back(settings, topic) == 50
    error = refused(kafka_mtls.settings(ssl_certfile=None, ssl_keyfile=None))
    assert f"TLS handshake with Kafka broker {kafka_mtls.bootstrap_servers} refused" in str(error)
    assert "certificate" in str(error).lower()


def test_an_untrusted_certificate_is_refused_at_once(
    kafka_tls: SecureEndpoint, kafka_certificates: Certificates
) -> None:
    error = refused(kafka_tls.settings(ssl_cafile=str(kafka_certificates.other_ca)))
    assert f"Kafka broker {kafka_tls.bootstrap_servers} not trusted" in str(error)
    assert "certificate verify failed: unable to get local issuer certificate" in str(error)
    assert str(kafka_certificates.other_ca) in str(error)


def test_a_certificate_from_an_unknown_ca_is_refused_whatever_we_trust(
    kafka_certificates: Certificates, tmp_path: Path
) -> None:
    with tls_endpoint(kafka_certificates, cert=kafka_certificates.untrusted_cert,
                      key=kafka_certificates.untrusted_key) as endpoint:  # fmt: skip
        assert "certificate verify failed" in str(refused(endpoint.settings()))
        # Hostname checks off changes nothing: the chain is still verified.
        assert "certificate verify failed" in str(refused(endpoint.settings(ssl_check_hostname=False)))


def test_a_hostname_mismatch_is_refused_unless_the_check_is_off(kafka_certificates: Certificates) -> None:
    with tls_endpoint(kafka_certificates, cert=kafka_certificates.wrong_host_cert,
                      key=kafka_certificates.wrong_host_key) as endpoint:  # fmt: skip
        error = refused(endpoint.settings())
        assert "certificate verify failed: IP address mismatch" in str(error) and "hostname check on" in str(error)
        topic = unique("nocheck")
        assert ensure_topics(endpoint.settings(ssl_check_hostname=False), {topic: 1}) == [topic]


def test_unreadable_ca_certificate_or_key_files_are_named(
    kafka_tls: SecureEndpoint, kafka_certificates: Certificates, tmp_path: Path
) -> None:
    missing = tmp_path / "missing-ca.pem"
    error = refused(kafka_tls.settings(ssl_cafile=str(missing)))
    assert str(error) == f"cannot read CA file {missing}: No such file or directory"
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    assert f"cannot read CA file {garbage}" in str(refused(kafka_tls.settings(ssl_cafile=str(garbage))))
    no_key = refused(kafka_tls.settings(ssl_certfile=str(kafka_certificates.client_cert), ssl_keyfile=str(missing)))
    assert f"cannot read client certificate {kafka_certificates.client_cert} or key {missing}" in str(no_key)
    # An encrypted key with the wrong password: the message names the files, never the password.
    encrypted = tmp_path / "client-encrypted.key"
    _write_encrypted_key(kafka_certificates.client_key, encrypted, b"right-key-password")
    wrong = refused(kafka_tls.settings(ssl_certfile=str(kafka_certificates.client_cert), ssl_keyfile=str(encrypted),
                                       ssl_key_password=SecretStr("wrong-key-password")))  # fmt: skip
    assert "or its password is wrong" in str(wrong) and "wrong-key-password" not in str(wrong)


def _write_encrypted_key(source: Path, target: Path, password: bytes) -> None:
    key = serialization.load_pem_private_key(source.read_bytes(), password=None)
    target.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                         serialization.BestAvailableEncryption(password)))  # fmt: skip


# --- SASL ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mechanism", PROXY_MECHANISMS)
def test_sasl_plaintext_login_works(kafka_sasl: SecureEndpoint, mechanism: str) -> None:
    settings = kafka_sasl.settings(sasl_mechanism=mechanism)
    topic = unique(f"sasl-{mechanism.lower()}")
    produce_stream(settings, topic, 1, 30)
    assert read_back(settings, topic) == 30


@pytest.mark.parametrize("mechanism", PROXY_MECHANISMS)
def test_a_wrong_password_is_refused_without_showing_it(kafka_sasl: SecureEndpoint, mechanism: str) -> None:
    error = refused(kafka_sasl.settings(sasl_mechanism=mechanism, sasl_password=SecretStr("Wr0ng-" + SASL_PASSWORD)))
    assert str(error).startswith(
        f"SASL: authentication failed for user {SASL_USERNAME!r} with mechanism {mechanism} "
        f"at Kafka broker {kafka_sasl.bootstrap_servers}: "
    )
    assert "invalid credentials" in str(error)
    assert SASL_PASSWORD not in str(error) and SASL_PASSWORD not in repr(error)


def test_an_unknown_user_is_refused(kafka_sasl: SecureEndpoint) -> None:
    error = refused(kafka_sasl.settings(sasl_mechanism="SCRAM-SHA-512", sasl_username="intruder"))
    assert "for user 'intruder' with mechanism SCRAM-SHA-512" in str(error)


def test_sasl_ssl_stream_is_consumed_exactly_once(kafka_sasl_ssl: SecureEndpoint, sqlite_url: str) -> None:
    consume_exactly_once(kafka_sasl_ssl.settings(sasl_mechanism="SCRAM-SHA-512"), unique("saslssl"), 2, sqlite_url)


def test_sasl_ssl_checks_the_certificate_before_sending_credentials(
    kafka_sasl_ssl: SecureEndpoint, kafka_certificates: Certificates
) -> None:
    error = refused(kafka_sasl_ssl.settings(ssl_cafile=str(kafka_certificates.other_ca)))
    assert "certificate verify failed" in str(error) and "SASL" not in str(error)


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_tansu_own_scram_refuses_a_login_it_does_not_know(kafka_tansu_scram: SecureEndpoint, mechanism: str) -> None:
    error = refused(kafka_tansu_scram.settings(sasl_mechanism=mechanism))
    assert f"for user {SASL_USERNAME!r} with mechanism {mechanism}" in str(error)
    assert str(error).endswith(": unknown-user") and SASL_PASSWORD not in str(error)


def test_a_mechanism_the_broker_does_not_offer_is_refused(kafka_tansu_scram: SecureEndpoint) -> None:
    error = refused(kafka_tansu_scram.settings(sasl_mechanism="PLAIN"))
    assert "with mechanism PLAIN" in str(error) and "closed the connection on our SaslHandshakeRequest" in str(error)


# --- reporting -------------------------------------------------------------------------------------------


def test_a_security_error_is_one_line_with_exit_status_1() -> None:
    with pytest.raises(click.ClickException) as caught, reported_errors(lambda: "sqlite:///x"):
        raise KafkaSecurityError("SASL: authentication failed for user 'u' with mechanism PLAIN at Kafka broker b: no")
    assert caught.value.exit_code == 1
    assert caught.value.message == "SASL: authentication failed for user 'u' with mechanism PLAIN at Kafka broker b: no"


def test_a_closed_port_is_still_unreachable_not_a_security_error(kafka_certificates: Certificates) -> None:
    settings = KafkaSettings(
        f"127.0.0.1:{closed_port()}", security_protocol="SSL", ssl_cafile=str(kafka_certificates.ca)
    )
    warnings: list[str] = []
    stop = threading.Event()
    threading.Timer(1.5, stop.set).start()
    assert connect(lambda: new_producer(settings), settings.bootstrap_servers, warnings.append, stop) is None
    assert warnings and "unreachable (no TCP connection)" in warnings[0]


# ---- the same through the CLI: flags, environment, config file; `check` ---------------------------------


def _tls_flags(endpoint: SecureEndpoint, ca: Path) -> list[str]:
    return ["--bootstrap-servers", endpoint.bootstrap_servers, "--security-protocol", endpoint.security_protocol,
            "--ssl-cafile", str(ca)]  # fmt: skip


def test_the_cli_produces_consumes_and_checks_over_sasl_ssl(kafka_sasl_ssl: SecureEndpoint, tmp_path: Path) -> None:
    certificates = kafka_sasl_ssl.certificates
    assert certificates is not None
    topic = unique("cli-sasl")
    settings = kafka_sasl_ssl.settings()
    ensure_topics(settings, {topic: 2, dead_letter_topic(topic): 1})
    stream = tmp_path / "stream.jsonl"
    stream.write_bytes(b"\n".join(generate(400, 30, 60, seed=8)) + b"\n")
    password_file = tmp_path / "kafka.password"
    password_file.write_text(SASL_PASSWORD + "\n")
    sasl = ["--sasl-mechanism", "SCRAM-SHA-512", "--sasl-username", SASL_USERNAME]
    # produce: everything by flag, the password from a file
    produced = cli("produce", str(stream), "--topic", topic, *_tls_flags(kafka_sasl_ssl, certificates.ca), *sasl,
                   "--sasl-password-file", str(password_file), "--compression", "zstd", "--format", "json")  # fmt: skip
    assert produced.returncode == 0, produced.stderr
    sent = json.loads(produced.stdout)["sent"]
    # consume: the connection from a config file, the password from the environment
    store = f"sqlite:///{tmp_path / 'ledger.db'}"
    config = tmp_path / "points-ledger.toml"
    config.write_text(
        f'[store]\nurl = "{store}"\n[kafka]\nbootstrap_servers = "{kafka_sasl_ssl.bootstrap_servers}"\n'
        f'security_protocol = "SASL_SSL"\nsasl_mechanism = "SCRAM-SHA-512"\nsasl_username = "{SASL_USERNAME}"\n'
        f'ssl_cafile = "{certificates.ca}"\nsession_timeout_ms = 3000\n[consume]\ntopics = ["{topic}"]\n'
        f'group = "{unique("g")}"\n'
    )
    env = {"KAFKA_SASL_PASSWORD": SASL_PASSWORD}
    consumed = cli("--config", str(config), "consume", "--until-caught-up", "--format", "json", env=env)
    assert consumed.returncode == 0, consumed.stderr
    assert json.loads(consumed.stdout)["processed"] == sent
    checked = cli("--config", str(config), "check", env=env)
    assert "ok   kafka: " in checked.stdout and "(SASL_SSL)" in checked.stdout, checked.stdout
    assert f"ok   topic {topic}: " in checked.stdout
    for result in (produced, consumed, checked):
        assert SASL_PASSWORD not in result.stdout + result.stderr


def test_the_cli_refuses_an_untrusted_broker_and_a_wrong_password_at_once(
    kafka_tls: SecureEndpoint, kafka_sasl: SecureEndpoint, tmp_path: Path
) -> None:
    certificates = kafka_tls.certificates
    assert certificates is not None
    store = f"sqlite:///{tmp_path / 'ledger.db'}"
    untrusted = cli("consume", *_tls_flags(kafka_tls, certificates.other_ca), "--topic", "t", store=store)
    assert untrusted.returncode == 1, untrusted.stderr
    lines = untrusted.stderr.strip().splitlines()
    assert len(lines) == 1 and "not trusted" in lines[0] and "certificate verify failed" in lines[0], lines
    assert "unreachable" not in untrusted.stderr  # refused at once, not retried as "unreachable"
    checked = cli("check", *_tls_flags(kafka_tls, certificates.other_ca), store=store)
    assert checked.returncode == 1 and "FAIL kafka: " in checked.stdout and "not trusted" in checked.stdout
    assert "fix: check --ssl-cafile" in checked.stdout

    wrong = "not-the-password-42"
    refused = cli("produce", "-", "--bootstrap-servers", kafka_sasl.bootstrap_servers, "--security-protocol",
                  "SASL_PLAINTEXT", "--sasl-mechanism", "SCRAM-SHA-256", "--sasl-username", SASL_USERNAME,
                  env={"KAFKA_SASL_PASSWORD": wrong}, stdin=b"{}\n")  # fmt: skip
    assert refused.returncode == 1 and "authentication failed" in refused.stderr, refused.stderr
    assert wrong not in refused.stdout + refused.stderr and "Traceback" not in refused.stderr
