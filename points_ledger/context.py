"""What every command shares: the effective settings, the ledger, the time type and the --format option.

Light to import, as every command module is: the settings, the ledger and their libraries load when a
command first asks for them, not when the CLI declares its commands (`points-ledger --help` stays quick).

Flags are recorded (not passed as parameters) by `setting_option`, so that a flag the user did not give
stays unset and the environment, the config file or the default can speak (points_ledger/config.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

import click

from ledger.limits import BATCH_SIZE_MAX
from points_ledger.errors import reported_errors

if TYPE_CHECKING:
    from ledger.application import LedgerApplication
    from ledger.program import Program
    from ledger.storage.store import Store
    from points_ledger.config import LedgerSettings, Sources

F = TypeVar("F", bound=Callable[..., Any])
#: Where the flags given are collected, in click's context meta (shared by a command and its group).
FLAGS = "points_ledger.flags"


def setting_option(section: str, name: str, *declarations: str, **attributes: Any) -> Callable[[F], F]:
    """A flag for setting `section.name`: recorded only when given, never passed to the command."""

    def record(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        if value is not None and value != ():
            flags = ctx.meta.setdefault(FLAGS, {})
            (flags.setdefault(section, {}) if section else flags)[name] = value
        return value

    return click.option(*declarations, expose_value=False, callback=record, **attributes)


class Context:
    """The effective settings, loaded on first use (after every flag was recorded)."""

    def __init__(self) -> None:
        self._loaded: tuple[LedgerSettings, Sources] | None = None

    def load(self) -> tuple[LedgerSettings, Sources]:
        """The settings and their sources; raises ConfigError."""
        from points_ledger.config import load_settings

        if self._loaded is None:
            self._loaded = load_settings(click.get_current_context().meta.get(FLAGS, {}))
        return self._loaded

    def loaded(self) -> tuple[LedgerSettings, Sources]:
        """The same, a ConfigError reported as a usage error (exit 2)."""
        with reported_errors(lambda: "-"):
            return self.load()

    @property
    def settings(self) -> LedgerSettings:
        return self.loaded()[0]

    def store(self) -> Store:
        return self.settings.store_config()

    def program(self) -> Program:
        from ledger.program import load_program

        return load_program(self.settings.program)

    def ledger(self, *, must_exist: bool) -> AbstractContextManager[LedgerApplication]:
        return open_ledger(self.store, self.program, self.describe_store, must_exist=must_exist)

    def describe_store(self) -> str:
        from ledger.storage.store_urls import mask_url

        return mask_url(self.settings.store.url)


@contextmanager
def open_ledger(
    store_of: Callable[[], Store],
    program_of: Callable[[], Program],
    description: Callable[[], str],
    *,
    must_exist: bool,
) -> Iterator[LedgerApplication]:
    """The ledger in the store `store_of` gives, once a first connection says it can be reached; failures
    reported as one line naming the store by `description` (never a password)."""
    from ledger.application import LedgerApplication
    from ledger.storage.position_log import NOT_POSITIONS
    from points_ledger.preflight import check_reachable

    with reported_errors(description):
        store = store_of()
        if must_exist:
            store.require_existing()
        check_reachable(store)
        program = program_of()
        created = store.is_new_file()
        try:
            app = LedgerApplication(store, program)
            try:
                yield app
            finally:
                app.close()
        except BaseException:
            if created:  # a command that failed before writing anything leaves no empty ledger behind
                store.discard_if_unwritten(NOT_POSITIONS)
            raise


class UtcTime(click.ParamType[datetime]):
    """An ISO 8601 time with a UTC offset (Z or +hh:mm); naive times are refused."""

    name = "TIME"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            return parse_utc_time(str(value))
        except ValueError as error:
            self.fail(str(error), param, ctx)


def parse_utc_time(text: str) -> datetime:
    """An ISO 8601 time with a UTC offset, in UTC; ValueError (saying what is wrong) for anything else. The
    one reading of a time given by a person or a client: the CLI's options and the API's parameters."""
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is not an ISO 8601 time such as 2024-03-31T23:59:59Z") from None
    if parsed.tzinfo is None:
        raise ValueError(f"{text!r} has no UTC offset; add Z or +hh:mm")
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"{text!r} is outside the range of representable times") from None


TIME = UtcTime()


def format_option(command: F) -> F:
    return click.option(
        "--format",
        "output_format",
        type=click.Choice(["table", "json"]),
        default="table",
        show_default=True,
        help="table for people, json for machines.",
    )(command)


def batch_size_option(default: int, help_text: str) -> Callable[[F], F]:
    """`--batch-size`: how many messages one transaction holds, up to the most the ledger allows."""
    return click.option(
        "--batch-size", type=click.IntRange(1, BATCH_SIZE_MAX), default=default, show_default=True, help=help_text
    )


pass_context = click.make_pass_decorator(Context)
