"""`projections status`, `projections follow` and `rebuild`: the read models' life cycle."""

from __future__ import annotations

import getpass
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from points_ledger import output
from points_ledger.context import Context, format_option, pass_context
from points_ledger.errors import CommandError, warn
from points_ledger.lifecycle import crash_hook, stop_on_signals
from points_ledger.progress import count_progress
from projections.defaults import (
    ACCEPTANCE_TEXT_CHARS_MAX,
    ACCEPTANCES_TABLE,
    PARALLEL_REBUILD_MIN_EVENTS,
    POLL_INTERVAL_S_MAX,
    POLL_INTERVAL_S_MIN,
    REBUILD_WORKERS_MAX,
)

if TYPE_CHECKING:
    from projections.log_check import Acceptance

F = TypeVar("F", bound=Callable[..., Any])


@click.group("projections")
def projections_group() -> None:
    """The read models (views) that queries read: their state, and keeping them current."""


@projections_group.command("status")
@format_option
@pass_context
def status(context: Context, output_format: str) -> None:
    """Each view's position, the log head, the lag in events and when it last advanced (or was rebuilt)."""
    from projections.answers import projections_status
    from projections.runner import Projections

    with context.ledger(must_exist=True) as app:
        rows = projections_status(Projections(app))
    if output_format == "json":
        output.print_json_lines(rows)
    else:
        output.print_rows("views", list(rows[0]), (list(row.values()) for row in rows))


@projections_group.command("follow")
@click.option(
    "--poll-interval",
    "poll_interval_s",
    type=click.FloatRange(POLL_INTERVAL_S_MIN, POLL_INTERVAL_S_MAX),
    default=2.0,
    show_default=True,
    help="Seconds between polls of the log. On PostgreSQL a NOTIFY wakes the follower at once; the poll is "
    "the fallback for a lost notification. On SQLite it is the only way.",
)
@click.option(
    "--until-idle",
    "until_idle_s",
    type=click.FloatRange(0.1, None),
    default=None,
    help="Stop after this many seconds with nothing new to apply (default: run until SIGTERM/SIGINT).",
)
@format_option
@pass_context
def follow_command(context: Context, poll_interval_s: float, until_idle_s: float | None, output_format: str) -> None:
    """Keep every view current until SIGTERM or SIGINT (then finish the batch in flight and exit 0).

    Run it beside `consume` in production so that queries find the views at the log head. Any number of
    followers and queries may catch up at once: each batch and its position commit together, exactly once.
    """
    from projections.follow import follow
    from projections.runner import Projections

    started = time.monotonic()
    with context.ledger(must_exist=False) as app, stop_on_signals() as stop:
        tally = follow(Projections(app), stop, poll_interval_s=poll_interval_s, until_idle_s=until_idle_s)
    result = {
        "events": tally.events,
        "batches": tally.batches,
        "position": tally.position,
        "seconds": round(time.monotonic() - started, 3),
    }
    _print(result, "projections follow", output_format)


def workers_option(what: str) -> Callable[[F], F]:
    """`--workers`: how many processes `what`, each for a share of the members (PostgreSQL only)."""
    return click.option(
        "--workers",
        type=click.IntRange(1, REBUILD_WORKERS_MAX),
        default=None,
        help=(
            f"Processes that {what}, each for a share of the members (PostgreSQL only). Default: one per "
            f"core on a log of at least {PARALLEL_REBUILD_MIN_EVENTS:,} events, else 1."
        ),
    )


@click.command()
@click.argument("view_names", nargs=-1, metavar="[VIEW]...")
@workers_option("build the views")
@click.option(
    "--accept-log-changes",
    "accept_log_changes",
    is_flag=True,
    help="Rebuild from the log as it is even where it no longer gives the audit trail being replaced (an "
    "event edited, deleted or inserted since); needs --reason. Recorded, with who and when, in "
    f"{ACCEPTANCES_TABLE}.",
)
@click.option(
    "--reason",
    default=None,
    help=f"Why the log changes are accepted (1-{ACCEPTANCE_TEXT_CHARS_MAX} characters), for the record.",
)
@format_option
@pass_context
def rebuild(  # noqa: PLR0917 (one parameter per option, as click passes them)
    context: Context,
    view_names: tuple[str, ...],
    workers: int | None,
    accept_log_changes: bool,
    reason: str | None,
    output_format: str,
) -> None:
    """Rebuild views (all by default) from the whole event log, without downtime.

    Builds into fresh tables and swaps them in at the end in one transaction: queries keep reading the old
    views until then, and a rebuild that is killed leaves them serving (run it again). Views: members
    (balances, tiers, lots), audit (the audit trail and its hash chains). On PostgreSQL, worker processes
    build the tables side by side, one share of the members each; they stop with the rebuild.

    A rebuild never launders a changed log: the fresh audit trail's hashes must equal the old trail's up to
    the position it reflected. Where they differ it refuses (exit 1), naming the first member, version and
    event, and swaps nothing in; run `verify` to see what changed. --accept-log-changes --reason TEXT
    rebuilds from the log as it is, and records who, why and when.
    """
    from projections.log_check import LogChangedError
    from projections.runner import Projections, RebuildWorkersError, UnknownViewError, select_views

    try:
        views = select_views(view_names)
    except UnknownViewError as error:  # a usage error, before anything is opened
        raise click.BadParameter(str(error), param_hint="VIEW") from error
    accept = _acceptance(accept_log_changes, reason)
    show_progress = sys.stderr.isatty()
    committed = crash_hook()  # tests only: a rebuild killed midway
    started = time.monotonic()
    with context.ledger(must_exist=True) as app:
        projections = Projections(app)
        head = projections.db.head()
        done = 0
        with count_progress("rebuild", head or None, enabled=show_progress) as progress:

            def on_batch(applied: int, position: int) -> None:
                nonlocal done
                done += applied
                committed()
                rate = done / max(time.monotonic() - started, 1e-6)
                progress(position, f"{position:,}/{head:,} events, {rate:,.0f} events/s")

            try:
                rebuilt = projections.rebuild(views, on_batch, workers=workers, accept=accept)
            except RebuildWorkersError as error:
                raise click.BadParameter(str(error), param_hint="--workers") from error
            except LogChangedError as error:
                raise CommandError(str(error)) from error
    seconds = time.monotonic() - started
    position = rebuilt.position
    result: dict[str, Any] = {
        "views": [view.name for view in views],
        "position": position,
        "events": position,
        "seconds": round(seconds, 3),
        "events_per_s": round(position / seconds) if seconds > 0 else None,
    }
    if accept is not None:
        change = rebuilt.accepted
        result["log_changes_accepted"] = 0 if change is None else change.differences
        result["log_checked"] = rebuilt.log_checked
        if change is not None:
            warn(f"rebuilt from a changed log, as accepted ({change.describe()}); recorded in {ACCEPTANCES_TABLE}")
        if not rebuilt.log_checked:
            warn(f"the log was not checked against the trail replaced (another key); recorded in {ACCEPTANCES_TABLE}")
    _print(result, "rebuild", output_format)


def _acceptance(accept_log_changes: bool, reason: str | None) -> Acceptance | None:
    """The acceptance the flags give: --accept-log-changes with a --reason, by the user running the command."""
    from projections.log_check import Acceptance

    if not accept_log_changes:
        if reason is not None:
            raise click.BadParameter("is only for --accept-log-changes", param_hint="--reason")
        return None
    if reason is None:
        raise click.UsageError("--accept-log-changes needs --reason TEXT (why the changes are accepted)")
    try:
        return Acceptance(reason, getpass.getuser())
    except (ValueError, OSError, KeyError) as error:  # getpass: no login name known
        raise click.BadParameter(str(error), param_hint="--reason") from error


def _print(result: dict[str, Any], title: str, output_format: str) -> None:
    if output_format == "json":
        output.print_json(result)
    else:
        output.print_record(title, result)


# One command, two names: `rebuild` at the top (as it has always been) and `projections rebuild`, beside
# `projections status` and `projections follow`, where a reader of the group looks for it.
projections_group.add_command(rebuild)

COMMANDS = [projections_group, rebuild]
