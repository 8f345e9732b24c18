"""The effective settings: flags > environment > config file > defaults, and where each one came from.

One TOML file (`points-ledger.toml` in the working directory, or `--config FILE` / `LEDGER_CONFIG`)
holds the store, the Kafka connection and its security, topics, group, batch size and the metrics
address. pydantic-settings layers the sources and our pydantic models validate the result. Secrets
(the Kafka SASL password, a TLS key's password, the chain key) come from the environment or from a file
named in any layer, never from a flag or from the config file itself, and are SecretStr everywhere after
loading. A store URL may carry a password: the config file may not, and output shows the URL masked. All
follow one rule, the `Secret` mark on the setting.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from consumers.defaults import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_BOOTSTRAP_SERVERS,
    DEFAULT_GROUP,
    DEFAULT_ISOLATION_LEVEL,
    DEFAULT_TOPIC,
    Compression,
    IsolationLevel,
    SaslMechanism,
    SecurityProtocol,
)
from consumers.kafka_settings import KafkaSettings, check_topic_name, dead_letter_topic
from consumers.retry import RetryPolicy
from ledger.limits import BATCH_SIZE_MAX, DEFAULT_STORE_URL
from ledger.storage.chain import Chain, ChainKeyError
from ledger.storage.store import Store, StoreError, parse_store_url, read_password_file
from ledger.storage.store_urls import holds_password, mask_url

#: The config file read when neither --config nor LEDGER_CONFIG names one (if it exists).
DEFAULT_CONFIG_FILE = Path("points-ledger.toml")
#: Shown instead of a secret's value.
MASK = "********"


class ConfigError(ValueError):
    """The config file, an environment variable or a secret file cannot be used as it is."""


def _is_set(value: Any) -> bool:
    return value is not None


def _masked(value: Any) -> Any:
    return None if value is None else MASK


def _url_holds_password(value: Any) -> bool:
    return isinstance(value, str) and holds_password(value)


@dataclass(frozen=True)
class Secret:
    """Marks a setting that is, or may hold, a secret. One rule for every such setting: a config file must not
    hold the secret (the environment, or the file that `file_setting` names, does), and output shows
    `shown(value)`, never the value itself."""

    #: The setting of the same section that names a file holding the secret instead.
    file_setting: str
    #: Does a value (as a config file gives it) hold the secret?
    held_in: Callable[[Any], bool] = _is_set
    #: What the refusal says of such a value, after the setting's name ("" when all of it is the secret).
    holding: str = ""
    #: Environment variables that may carry the secret, besides the setting's own.
    also_in: tuple[str, ...] = ()
    shown: Callable[[Any], Any] = _masked


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StoreSection(_Section):
    url: Annotated[
        str,
        Secret(
            "password_file", _url_holds_password, " with a password (or one that cannot be parsed, which may hide one)",
            also_in=("PGPASSWORD",), shown=mask_url,
        ),
    ] = DEFAULT_STORE_URL  # fmt: skip
    #: A file holding the PostgreSQL password (one line); PGPASSWORD and libpq's passfile work too.
    password_file: Path | None = None
    #: The key of the keyed hash chains (LEDGER_CHAIN_KEY only), or a file holding it (one line).
    chain_key: Annotated[SecretStr | None, Secret("chain_key_file")] = None
    chain_key_file: Path | None = None


class KafkaSection(_Section):
    bootstrap_servers: str = DEFAULT_BOOTSTRAP_SERVERS
    client_id: Annotated[str, Field(min_length=1, max_length=255)] = "points-ledger"
    security_protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism | None = None
    sasl_username: str | None = None
    #: From KAFKA_SASL_PASSWORD only; or name a file in any layer.
    sasl_password: Annotated[SecretStr | None, Secret("sasl_password_file")] = None
    sasl_password_file: Path | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    ssl_key_password: Annotated[SecretStr | None, Secret("ssl_key_password_file")] = None
    ssl_key_password_file: Path | None = None
    ssl_check_hostname: bool = True
    compression: Compression = "none"
    isolation_level: IsolationLevel = DEFAULT_ISOLATION_LEVEL
    session_timeout_ms: Annotated[int, Field(ge=1_000, le=300_000)] = KafkaSettings.session_timeout_ms
    idempotent_producer: bool = False

    @field_validator("bootstrap_servers")
    @classmethod
    def _no_credentials(cls, servers: str) -> str:
        """A server list never holds a login; one written into it would be printed wherever the list is."""
        if "@" in servers:
            raise ValueError(
                "a server list holds no credentials ('@'): give the SASL user as sasl_username and its password "
                "in KAFKA_SASL_PASSWORD or a file named by sasl_password_file"
            )
        return servers


class ConsumeSection(_Section):
    topics: Annotated[tuple[str, ...], Field(min_length=1)] = (DEFAULT_TOPIC,)
    group: Annotated[str, Field(min_length=1, max_length=255)] = DEFAULT_GROUP
    dead_letter_topic: str | None = None
    batch_size: Annotated[int, Field(ge=1, le=BATCH_SIZE_MAX)] = DEFAULT_BATCH_SIZE
    store_attempts: Annotated[int, Field(ge=1, le=20)] = RetryPolicy.attempts

    @field_validator("topics", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        return tuple(part.strip() for part in value.split(",") if part.strip()) if isinstance(value, str) else value

    @field_validator("topics")
    @classmethod
    def _topic_names(cls, topics: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(dict.fromkeys(check_topic_name(topic) for topic in topics))

    @field_validator("dead_letter_topic")
    @classmethod
    def _dead_letter_name(cls, topic: str | None) -> str | None:
        return None if topic is None else check_topic_name(topic)

    def dead_letter_topics(self) -> dict[str, str]:
        """Each consumed topic's dead-letter topic: the one named, else <topic>.dlq (raises ValueError when that
        name is too long for Kafka)."""
        return {topic: self.dead_letter_topic or check_topic_name(dead_letter_topic(topic)) for topic in self.topics}


class MetricsSection(_Section):
    port: Annotated[int, Field(ge=1, le=65_535)] | None = None
    address: str = "127.0.0.1"


class ApiSection(_Section):
    """`serve`: where the HTTP API listens, how many processes and threads answer, and when it is ready."""

    host: Annotated[str, Field(min_length=1, max_length=255)] = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65_535)] = 8080
    #: Server processes, each with its own ledger connection pool.
    workers: Annotated[int, Field(ge=1, le=32)] = 1
    #: Requests a process works on at once (its thread pool), and the size of its PostgreSQL connection pool.
    threads: Annotated[int, Field(ge=1, le=256)] = 4
    #: Run each server process, its event loop and its threads on one CPU (points_ledger.api.cpus).
    pin_cpu: bool = True
    #: /readyz answers 503 while the views are more than this many events behind the log.
    ready_lag_max: Annotated[int, Field(ge=0, le=1_000_000_000)] = 10_000
    #: Serve /metrics (Prometheus text) on the API's own port.
    metrics: bool = True
    #: Seconds a SIGTERM waits for the requests in flight before it closes their connections.
    shutdown_timeout_s: Annotated[int, Field(ge=1, le=3_600)] = 30


#: Environment variable -> setting (section, name). Secrets appear here, never among the flags.
ENVIRONMENT: dict[str, tuple[str, str]] = {
    "LEDGER_CONFIG": ("", "config_file"),
    "LEDGER_STORE": ("store", "url"),
    "LEDGER_STORE_PASSWORD_FILE": ("store", "password_file"),
    "LEDGER_CHAIN_KEY": ("store", "chain_key"),
    "LEDGER_CHAIN_KEY_FILE": ("store", "chain_key_file"),
    "LEDGER_PROGRAM": ("", "program"),
    "KAFKA_BOOTSTRAP_SERVERS": ("kafka", "bootstrap_servers"),
    "KAFKA_CLIENT_ID": ("kafka", "client_id"),
    "KAFKA_SECURITY_PROTOCOL": ("kafka", "security_protocol"),
    "KAFKA_SASL_MECHANISM": ("kafka", "sasl_mechanism"),
    "KAFKA_SASL_USERNAME": ("kafka", "sasl_username"),
    "KAFKA_SASL_PASSWORD": ("kafka", "sasl_password"),
    "KAFKA_SASL_PASSWORD_FILE": ("kafka", "sasl_password_file"),
    "KAFKA_SSL_CAFILE": ("kafka", "ssl_cafile"),
    "KAFKA_SSL_CERTFILE": ("kafka", "ssl_certfile"),
    "KAFKA_SSL_KEYFILE": ("kafka", "ssl_keyfile"),
    "KAFKA_SSL_KEY_PASSWORD": ("kafka", "ssl_key_password"),
    "KAFKA_SSL_KEY_PASSWORD_FILE": ("kafka", "ssl_key_password_file"),
    "KAFKA_SSL_CHECK_HOSTNAME": ("kafka", "ssl_check_hostname"),
    "KAFKA_COMPRESSION": ("kafka", "compression"),
    "KAFKA_ISOLATION_LEVEL": ("kafka", "isolation_level"),
    "LEDGER_TOPICS": ("consume", "topics"),
    "LEDGER_GROUP": ("consume", "group"),
    "LEDGER_DEAD_LETTER_TOPIC": ("consume", "dead_letter_topic"),
    "LEDGER_BATCH_SIZE": ("consume", "batch_size"),
    "LEDGER_METRICS_PORT": ("metrics", "port"),
    "LEDGER_METRICS_ADDRESS": ("metrics", "address"),
    "LEDGER_API_HOST": ("api", "host"),
    "LEDGER_API_PORT": ("api", "port"),
    "LEDGER_API_WORKERS": ("api", "workers"),
    "LEDGER_API_THREADS": ("api", "threads"),
    "LEDGER_API_PIN_CPU": ("api", "pin_cpu"),
    "LEDGER_API_READY_LAG_MAX": ("api", "ready_lag_max"),
    "LEDGER_API_METRICS": ("api", "metrics"),
    "LEDGER_API_SHUTDOWN_TIMEOUT_S": ("api", "shutdown_timeout_s"),
}


def _nest(flat: Mapping[tuple[str, str], Any]) -> dict[str, Any]:
    nested: dict[str, Any] = {}
    for (section, name), value in flat.items():
        if section:
            nested.setdefault(section, {})[name] = value
        else:
            nested[name] = value
    return nested


class EnvironmentVariables(PydanticBaseSettingsSource):
    """The documented environment variables (ENVIRONMENT), nothing else of the environment."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str] | None = None) -> None:
        super().__init__(settings_cls)
        self.environ = os.environ if environ is None else environ

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # __call__ answers for every field at once

    def __call__(self) -> dict[str, Any]:
        return _nest({path: self.environ[name] for name, path in ENVIRONMENT.items() if self.environ.get(name)})


def read_config_file(path: Path) -> dict[str, Any]:
    """The config file's settings; secrets written into it are refused (they belong in the environment)."""
    try:
        with path.open("rb") as file:
            data = tomllib.load(file)
    except FileNotFoundError as error:
        raise ConfigError(f"config file {path} does not exist") from error
    except OSError as error:
        raise ConfigError(f"cannot read config file {path}: {error.strerror}") from error
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"config file {path} is not valid TOML: {error}") from error
    if "config_file" in data:
        raise ConfigError(f"config file {path}: config_file cannot be set inside a config file")
    for (section, name), secret in SECRETS.items():
        written = data.get(section)
        if isinstance(written, dict) and name in written and secret.held_in(written[name]):
            environment = ", ".join((_env_name(section, name), *secret.also_in))
            raise ConfigError(
                f"config file {path}: {section}.{name}{secret.holding} must not be written in the file; put it in "
                f"the environment ({environment}) or in a file named by {section}.{secret.file_setting}"
            )
    return data


class ConfigFile(PydanticBaseSettingsSource):
    """The TOML config file: the one a flag or LEDGER_CONFIG names (it must exist), else ./points-ledger.toml
    if there is one. It sees the layers above it (`current_state`), which is where a named file comes from."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # __call__ answers for every field at once

    def __call__(self) -> dict[str, Any]:
        named = self.current_state.get("config_file")
        path = Path(named) if named else (DEFAULT_CONFIG_FILE if DEFAULT_CONFIG_FILE.is_file() else None)
        return {} if path is None else {**read_config_file(path), "config_file": path}


class LedgerSettings(BaseSettings):
    """Everything a command may be configured with; load it with `load_settings`."""

    model_config = SettingsConfigDict(extra="forbid", frozen=True)

    config_file: Path | None = None
    store: StoreSection = StoreSection()
    program: Path | None = None
    kafka: KafkaSection = KafkaSection()
    consume: ConsumeSection = ConsumeSection()
    metrics: MetricsSection = MetricsSection()
    api: ApiSection = ApiSection()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Flags (init arguments) > our environment variables > the config file > defaults."""
        return init_settings, EnvironmentVariables(settings_cls), ConfigFile(settings_cls)

    # ---- what the commands need, built from the settings --------------------------------------

    def store_config(self) -> Store:
        store = parse_store_url(self.store.url, password_file=self.store.password_file)
        return replace(store, chain=self.chain())

    def chain(self) -> Chain:
        """How the ledger's chains are hashed: keyed when a chain key is configured, its file read now."""
        secret = self.store.chain_key or _read_secret(self.store.chain_key_file, "store.chain_key_file")
        if secret is None:
            return Chain()
        try:
            return Chain(secret.get_secret_value().encode())
        except ChainKeyError as error:
            raise ConfigError(f"store.chain_key: {error}") from None

    def kafka_settings(self, **overrides: Any) -> KafkaSettings:
        """The Kafka client settings, secrets read from their files now; `overrides` for tests and the demo."""
        kafka = self.kafka
        values: dict[str, Any] = {
            "bootstrap_servers": kafka.bootstrap_servers,
            "client_id": kafka.client_id,
            "session_timeout_ms": kafka.session_timeout_ms,
            "heartbeat_interval_ms": max(kafka.session_timeout_ms // 3, 100),
            "enable_idempotence": kafka.idempotent_producer,
            "compression": kafka.compression,
            "isolation_level": kafka.isolation_level,
            "security_protocol": kafka.security_protocol,
            "sasl_mechanism": kafka.sasl_mechanism,
            "sasl_username": kafka.sasl_username,
            "sasl_password": kafka.sasl_password or _read_secret(kafka.sasl_password_file, "kafka.sasl_password_file"),
            "ssl_cafile": _existing(kafka.ssl_cafile, "kafka.ssl_cafile"),
            "ssl_certfile": _existing(kafka.ssl_certfile, "kafka.ssl_certfile"),
            "ssl_keyfile": _existing(kafka.ssl_keyfile, "kafka.ssl_keyfile"),
            "ssl_key_password": kafka.ssl_key_password
            or _read_secret(kafka.ssl_key_password_file, "kafka.ssl_key_password_file"),
            "ssl_check_hostname": kafka.ssl_check_hostname,
        }
        try:
            return KafkaSettings(**(values | overrides))
        except ValueError as error:
            raise ConfigError(f"Kafka settings: {error}") from error


def _secrets() -> dict[tuple[str, str], Secret]:
    """Every setting marked as a Secret, by (section, name)."""
    found: dict[tuple[str, str], Secret] = {}
    for section, section_field in LedgerSettings.model_fields.items():
        model = section_field.annotation
        if isinstance(model, type) and issubclass(model, BaseModel):
            for name, setting in model.model_fields.items():
                found.update(((section, name), mark) for mark in setting.metadata if isinstance(mark, Secret))
    return found


#: The settings that are, or may hold, secrets: refused in a config file, shown masked.
SECRETS = _secrets()


def load_settings(flags: Mapping[str, Any]) -> tuple[LedgerSettings, Sources]:
    """The effective settings for `flags` ({section: {name: value}}, unset flags left out)."""
    try:
        settings = LedgerSettings(**flags)
    except ValidationError as error:
        # Not chained: pydantic's own text quotes the values given, which may be secrets.
        raise ConfigError(f"bad settings: {describe_validation(error)}") from None
    file_data = read_config_file(settings.config_file) if settings.config_file else {}
    sources = Sources(flags, EnvironmentVariables(LedgerSettings)(), file_data, settings.config_file)
    return _secret_files_given_by_flag_win(settings, sources), sources


def _secret_files_given_by_flag_win(settings: LedgerSettings, sources: Sources) -> LedgerSettings:
    """A secret and a file for it both set: the one from the higher layer wins. Secrets come only from the
    environment, so only a flag naming the file outranks them; otherwise the secret itself is used."""
    for (section, name), secret in sorted(SECRETS.items()):
        held = getattr(settings, section)
        whole = isinstance(getattr(held, name), SecretStr)  # all of it the secret (a URL is more than its password)
        if whole and sources.of(section, secret.file_setting) == "flag":
            settings = settings.model_copy(update={section: held.model_copy(update={name: None})})
    return settings


def describe_validation(error: ValidationError) -> str:
    """Each problem as `section.name: what is wrong`, never the value given (it may be a secret)."""
    return "; ".join(
        f"{'.'.join(str(part) for part in detail['loc']) or 'settings'}: {detail['msg']}"
        for detail in error.errors(include_url=False, include_input=False)
    )


class Sources:
    """Where each effective setting came from: a flag, an environment variable, the file, or the default."""

    def __init__(
        self, flags: Mapping[str, Any], env: Mapping[str, Any], file_data: Mapping[str, Any], path: Path | None
    ) -> None:
        self.flags, self.env, self.file_data, self.path = flags, env, file_data, path

    def of(self, section: str, name: str) -> str:
        for layer, label in ((self.flags, "flag"), (self.env, f"env {_env_name(section, name)}"),
                             (self.file_data, f"file {self.path}")):  # fmt: skip
            holder = layer.get(section, {}) if section else layer
            if isinstance(holder, Mapping) and name in holder:
                return label
        return "default"


def _env_name(section: str, name: str) -> str:
    return next((env for env, path in ENVIRONMENT.items() if path == (section, name)), "-")


def effective_rows(settings: LedgerSettings, sources: Sources) -> list[dict[str, Any]]:
    """One row per setting: {setting, value, source}; secrets masked, unset ones as None."""
    rows = []
    for section_name, value in settings:
        if isinstance(value, BaseModel):
            for name, item in value:
                rows.append(_row(section_name, name, item, sources))
        else:
            rows.append(_row("", section_name, value, sources))
    return rows


def _row(section: str, name: str, value: Any, sources: Sources) -> dict[str, Any]:
    secret = SECRETS.get((section, name))
    if secret is not None:
        shown: Any = secret.shown(value)
    elif isinstance(value, Path):
        shown = str(value)
    elif isinstance(value, tuple):
        shown = list(value)
    else:
        shown = value
    source = sources.of(section, name)
    if value is None and source != "default":  # a secret set in the environment, outranked by a file's flag
        source += " (outranked by the flag naming its file)"
    return {"setting": f"{section}.{name}" if section else name, "value": shown, "source": source}


def _existing(path: Path | None, setting: str) -> str | None:
    if path is None:
        return None
    if not path.is_file():
        raise ConfigError(f"{setting}: no file {path}")
    return str(path)


def _read_secret(path: Path | None, setting: str) -> SecretStr | None:
    """A secret file's first line, read as the store's password file is; a file that cannot be used is an error."""
    if path is None:
        return None
    try:
        return SecretStr(read_password_file(path, what=f"{setting}: file"))
    except StoreError as error:
        raise ConfigError(str(error)) from error
