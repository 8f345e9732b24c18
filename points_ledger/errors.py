"""Exit statuses and the one-line error reporting every command shares."""

from __future__ import annotations

import os
import sqlite3
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import click
import psycopg
from eventsourcing.persistence import IntegrityError, PersistenceError

from consumers.jsonlines import InputEncodingError
from consumers.kafka_clients import KafkaSecurityError
from consumers.kafka_consumer import UnreadableBatchError
from consumers.kafka_deadletters import DeadLetterWriteError
from consumers.legacy_csv import BadRow
from ledger.member import LedgerInvariantError
from ledger.program import ProgramError
from ledger.store import StoreError, StoreNotFoundError
from points_ledger.config import ConfigError
from projections.db import ViewsUnavailableError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_STORE_UNAVAILABLE = 3


class CommandError(click.ClickException):
    """A failure the user can act on; printed as one line, with its own exit status."""

    exit_code = EXIT_FAILED

    def show(self, file: object = None) -> None:
        click.echo(f"points-ledger: error: {self.message}", err=True)


class UsageProblemError(CommandError):
    """A bad store URL or program file: the invocation has to change."""

    exit_code = EXIT_USAGE


class StoreUnavailableError(CommandError):
    """The store cannot be reached or opened; trying again later may work."""

    exit_code = EXIT_STORE_UNAVAILABLE


def warn(text: str) -> None:
    """A message for the person at the terminal (stderr), not an error."""
    click.echo(f"points-ledger: {text}", err=True)


#: Bad rows of an input file listed on stderr before the rest are only counted.
BAD_ROWS_SHOWN = 50


def list_bad_rows(name: str, bad: Sequence[BadRow]) -> str:
    """List a file's bad rows on stderr, each with its line; returns what to add when some were not shown."""
    for row in bad[:BAD_ROWS_SHOWN]:
        click.echo(f"{name}, line {row.line} ({row.member_id or 'no member_id'}): {row.reason}", err=True)
    return f" ({len(bad) - BAD_ROWS_SHOWN} more not shown)" if len(bad) > BAD_ROWS_SHOWN else ""


def first_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0]


@contextmanager
def reported_errors(store_description: Callable[[], str]) -> Iterator[None]:
    """Turn the failures a user can meet into one line on stderr and an exit status."""
    try:
        yield
    except click.ClickException:
        raise
    except (StoreNotFoundError, ViewsUnavailableError) as error:
        raise CommandError(str(error)) from error
    except (StoreError, ProgramError, ConfigError) as error:
        raise UsageProblemError(str(error)) from error
    except IntegrityError as error:
        raise CommandError(
            f"another writer kept changing the same members; nothing recorded for this batch: {error}"
        ) from error
    except (psycopg.OperationalError, sqlite3.OperationalError, PersistenceError) as error:
        raise StoreUnavailableError(f"store {store_description()} unavailable: {first_line(error)}") from error
    except (DeadLetterWriteError, UnreadableBatchError) as error:
        raise CommandError(f"{error}; stopped, nothing recorded for this batch") from error
    except (KafkaSecurityError, InputEncodingError) as error:  # a refused certificate or login, a UTF-16 file
        raise CommandError(str(error)) from error
    except LedgerInvariantError as error:
        raise CommandError(f"ledger invariant broken, nothing recorded for this batch: {error}") from error
    except OSError as error:
        raise CommandError(first_line(error)) from error
    except Exception as error:
        if os.environ.get("LEDGER_DEBUG"):
            traceback.print_exc(file=sys.stderr)
        raise CommandError(
            f"internal error ({type(error).__name__}): {first_line(error)}; set LEDGER_DEBUG=1 for details"
        ) from error
