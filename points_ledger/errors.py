"""Exit statuses and the one-line error reporting every command shares."""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Generic, TypeVar

import click

from points_ledger.output import terminal_text

if TYPE_CHECKING:
    from consumers.legacy_csv import BadRow

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_STORE_UNAVAILABLE = 3


class CommandError(click.ClickException):
    """A failure the user can act on; printed as one line, with its own exit status."""

    exit_code = EXIT_FAILED

    def show(self, file: object = None) -> None:
        say(f"points-ledger: error: {self.message}")


class UsageProblemError(CommandError):
    """A bad store URL or program file: the invocation has to change."""

    exit_code = EXIT_USAGE


class StoreUnavailableError(CommandError):
    """The store cannot be reached or opened; trying again later may work."""

    exit_code = EXIT_STORE_UNAVAILABLE


def say(line: str) -> None:
    """One line on stderr for the person at the terminal; what it quotes (member ids, reasons, file names) can
    neither act on the terminal nor break the line (`terminal_text`)."""
    click.echo(terminal_text(line), err=True)


def warn(text: str) -> None:
    """A message for the person at the terminal (stderr), not an error."""
    say(f"points-ledger: {text}")


#: Bad rows of an input file listed on stderr before the rest are only counted.
BAD_ROWS_SHOWN = 50
T = TypeVar("T")


@dataclass(slots=True)
class FirstShown(Generic[T]):
    """Entries met one by one (bad rows, refusals): every one counted, the first BAD_ROWS_SHOWN kept to show."""

    shown: list[T] = field(default_factory=list)
    count: int = 0

    def add(self, entry: T) -> None:
        self.count += 1
        if len(self.shown) < BAD_ROWS_SHOWN:
            self.shown.append(entry)

    def more(self) -> str:
        """What to add after listing `shown`: how many were not shown, if any."""
        return f" ({self.count - len(self.shown)} more not shown)" if self.count > len(self.shown) else ""


def list_bad_rows(name: str, bad: FirstShown[BadRow]) -> str:
    """List a file's bad rows on stderr, each with its line; returns what to add when some were not shown."""
    for row in bad.shown:
        say(f"{name}, line {row.line} ({row.member_id or 'no member_id'}): {row.reason}")
    return bad.more()


def first_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0]


#: The exception classes that tell the failures apart, as "module:class". Only modules already imported are
#: asked (`raised`): an exception of a class never imported cannot have been raised, and importing psycopg,
#: eventsourcing or kafka-python just to ask would cost every command its start-up time.
NOT_FOUND = (
    "ledger.storage.store:StoreNotFoundError", "projections.db:ViewsUnavailableError",
    "consumers.catch_up:MissingTopicError", "consumers.catch_up:EndUnknownError",
)  # fmt: skip
BAD_USAGE = ("ledger.storage.store:StoreError", "ledger.program:ProgramError", "points_ledger.config:ConfigError")
CONFLICT = ("eventsourcing.persistence:IntegrityError",)
UNAVAILABLE = ("psycopg:OperationalError", "sqlite3:OperationalError", "eventsourcing.persistence:PersistenceError")
BATCH_STOPPED = ("consumers.kafka_deadletters:DeadLetterWriteError", "consumers.kafka_consumer:UnreadableBatchError")
#: A refused certificate or login, a UTF-16 file, a local broker that cannot start (or is not installed).
REFUSED = (
    "consumers.kafka_clients:KafkaSecurityError", "consumers.jsonlines:InputEncodingError",
    "devkit.broker:BrokerError",
)  # fmt: skip
#: A hash chain kept with another key (or none) than the one configured.
CHAIN_MISMATCH = ("ledger.storage.chain:ChainMismatchError",)
INVARIANT = ("ledger.invariants:LedgerInvariantError",)
REBUILD_STOPPED = ("projections.partitions:RebuildWorkerError",)


def raised(classes: Sequence[str]) -> tuple[type[BaseException], ...]:
    """The classes named "module:class" whose modules are imported (all of them, once imported)."""
    found = []
    for name in classes:
        module, _, attribute = name.partition(":")
        if (loaded := sys.modules.get(module)) is not None:
            found.append(getattr(loaded, attribute))
    return tuple(found)


@contextmanager
def reported_errors(store_description: Callable[[], str]) -> Iterator[None]:
    """Turn the failures a user can meet into one line on stderr and an exit status."""
    try:
        yield
    except click.ClickException:
        raise
    except Exception as error:
        raise _reported(error, store_description) from error


def _reported(error: Exception, store_description: Callable[[], str]) -> CommandError:
    if isinstance(error, raised(NOT_FOUND)):
        return CommandError(str(error))
    if isinstance(error, raised(BAD_USAGE)):
        return UsageProblemError(str(error))
    if isinstance(error, raised(CONFLICT)):
        return CommandError(f"another writer kept changing the same members; nothing recorded for this batch: {error}")
    if isinstance(error, raised(UNAVAILABLE)):
        return StoreUnavailableError(f"store {store_description()} unavailable: {first_line(error)}")
    if isinstance(error, raised(BATCH_STOPPED)):
        return CommandError(f"{error}; stopped, nothing recorded for this batch")
    if isinstance(error, raised((*REFUSED, *CHAIN_MISMATCH))):
        return CommandError(str(error))
    if isinstance(error, raised(INVARIANT)):
        return CommandError(f"ledger invariant broken, nothing recorded for this batch: {error}")
    if isinstance(error, raised(REBUILD_STOPPED)):
        if os.environ.get("LEDGER_DEBUG"):
            click.echo(getattr(error, "output", ""), err=True)
        return CommandError(f"{error}; rebuild stopped, the old views keep serving (LEDGER_DEBUG=1 shows more)")
    if isinstance(error, OSError):
        return CommandError(first_line(error))
    if os.environ.get("LEDGER_DEBUG"):
        traceback.print_exc(file=sys.stderr)
    return CommandError(f"internal error ({type(error).__name__}): {first_line(error)}; set LEDGER_DEBUG=1 for details")
