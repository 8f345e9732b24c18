"""What every command shares: the global options' context, the time type and the --format option."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

import click

from ledger.application import LedgerApplication
from ledger.program import Program, load_program
from ledger.store import Store, parse_store_url
from points_ledger.errors import reported_errors
from points_ledger.preflight import check_reachable

F = TypeVar("F", bound=Callable[..., Any])


class Context:
    """What the global options chose; the ledger is opened only by commands that need it."""

    def __init__(self, store_url: str, program_path: str | None) -> None:
        self.store_url = store_url
        self.program_path = program_path

    def store(self) -> Store:
        return parse_store_url(self.store_url)

    def program(self) -> Program:
        return load_program(self.program_path)

    @contextmanager
    def ledger(self, *, must_exist: bool) -> Iterator[LedgerApplication]:
        with reported_errors(self.describe_store):
            store = self.store()
            if must_exist:
                store.require_existing()
            check_reachable(store)
            app = LedgerApplication(store, self.program())
            try:
                yield app
            finally:
                app.close()

    def describe_store(self) -> str:
        try:
            return self.store().describe()
        except ValueError:
            return self.store_url


class UtcTime(click.ParamType[datetime]):
    """An ISO 8601 time with a UTC offset (Z or +hh:mm); naive times are refused."""

    name = "TIME"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            parsed = datetime.fromisoformat(str(value))
        except ValueError:
            self.fail(f"{value!r} is not an ISO 8601 time such as 2024-03-31T23:59:59Z", param, ctx)
        if parsed.tzinfo is None:
            self.fail(f"{value!r} has no UTC offset; add Z or +hh:mm", param, ctx)
        return parsed.astimezone(UTC)


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


pass_context = click.make_pass_decorator(Context)
