"""`api-key create | list | revoke`: the keys the HTTP API accepts, kept hashed in the ledger's database.

Only parsing and printing here: the keys are made, hashed, listed and revoked by ledger.storage.api_keys,
and the roles are ledger.access's (both light to import, the store only when a command runs).
"""

from __future__ import annotations

import getpass
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from ledger.access import ApiKeyNameError, Role, check_name
from points_ledger import output
from points_ledger.context import Context, format_option, pass_context
from points_ledger.errors import CommandError, warn

if TYPE_CHECKING:
    from ledger.access import ApiKey
    from ledger.storage.api_keys import ApiKeyStore

F = TypeVar("F", bound=Callable[..., Any])
#: What `list` shows of a key, and `revoke` of the key it revoked: never the secret, nor its hash.
KEY_COLUMNS = ("id", "name", "role", "created_at", "created_by", "revoked_at", "revoked_by")


def _checked(what: str) -> Callable[[click.Context, click.Parameter, str | None], str | None]:
    def check(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return check_name(value, what)
        except ApiKeyNameError as error:
            raise click.BadParameter(str(error)) from error

    return check


def operator_option(command: F) -> F:
    return click.option(
        "--operator",
        metavar="NAME",
        default=None,
        callback=_checked("operator"),
        help="Who does this, recorded with the key and shown by `api-key list`. Default: the OS user.",
    )(command)


def _operator(given: str | None) -> str:
    if given is not None:
        return given
    try:
        return check_name(getpass.getuser(), "operator")
    except (OSError, KeyError, ApiKeyNameError) as error:
        raise CommandError(f"cannot tell who you are ({error}): say it with --operator NAME") from error


def _store(app: Any) -> ApiKeyStore:
    from ledger.storage.api_keys import ApiKeyError, api_key_store

    try:
        return api_key_store(app)
    except ApiKeyError as error:
        raise CommandError(str(error)) from error


def _row(key: ApiKey) -> dict[str, Any]:
    return {column: output.jsonable(getattr(key, column)) for column in KEY_COLUMNS}


def _print_table(rows: list[dict[str, Any]]) -> None:
    """Plain aligned lines, times to the second: every id whole, however narrow the terminal (a boxed table
    would cut them, and `revoke` needs them)."""
    cells = [[_cell(row[column]) for column in KEY_COLUMNS] for row in rows]
    widths = [max([len(column), *(len(line[i]) for line in cells)]) for i, column in enumerate(KEY_COLUMNS)]
    columns = [output.Column(column, width) for column, width in zip(KEY_COLUMNS, widths, strict=True)]
    output.print_rows_as_they_come("api keys", columns, cells)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, str) and value.endswith("+00:00"):  # a time, as jsonable wrote it
        return value[:19] + "Z"
    return str(value)


@click.group("api-key")
def api_key_group() -> None:
    """Keys for the HTTP API: each with a role (pos, helpdesk, finance, admin); shown once, stored hashed."""


@api_key_group.command("create")
@click.option("--name", required=True, callback=_checked("name"),
              help="What the key is for (1-64 printable characters), unique among active keys; recorded as the "
                   "operator of what the key posts.")  # fmt: skip
@click.option("--role", required=True, type=click.Choice([role.value for role in Role]), help="What the key may do.")
@operator_option
@format_option
@pass_context
def api_key_create(context: Context, name: str, role: str, operator: str | None, output_format: str) -> None:
    """Create a key and print it, this once: only its hash is kept, so a lost key is revoked and replaced.

    Prints {"id", "name", "role", "key"}. The key reads plk_<id>_<secret>; `api-key revoke ID` takes the id.
    """
    from ledger.storage.api_keys import NameTakenError

    who = _operator(operator)
    with context.ledger(must_exist=False) as app:
        try:
            created, key = _store(app).create(name, Role(role), who)
        except NameTakenError as error:
            raise CommandError(str(error)) from error
    shown = {"id": created.id, "name": created.name, "role": created.role.value, "key": key}
    # Messages go before the data, here and in `revoke`: stderr is unbuffered and stdout may not be, so this is
    # the order a terminal, a pipe and a log all show.
    warn("the key below is shown only this once; keep it in the client's secret store")
    if output_format == "json":
        output.print_json(shown)
    else:
        output.print_record("api key", {k: v for k, v in shown.items() if k != "key"})
        click.echo(f"key: {key}")  # on a line of its own: never wrapped or cut by a table


@api_key_group.command("list")
@format_option
@pass_context
def api_key_list(context: Context, output_format: str) -> None:
    """Every key, active and revoked, oldest first: who created and revoked it, when. Never a secret."""
    with context.ledger(must_exist=True) as app:
        rows = [_row(key) for key in _store(app).list()]
    if output_format == "json":
        output.print_json_lines(rows)
    else:
        _print_table(rows)


@api_key_group.command("revoke")
@click.argument("key_id", metavar="ID")
@operator_option
@format_option
@pass_context
def api_key_revoke(context: Context, key_id: str, operator: str | None, output_format: str) -> None:
    """Revoke the key ID: refused from the API's next request on. Revoking a revoked key changes nothing."""
    from ledger.storage.api_keys import UnknownKeyError

    who = _operator(operator)
    with context.ledger(must_exist=True) as app:
        try:
            key, revoked_now = _store(app).revoke(key_id, who)
        except UnknownKeyError as error:
            raise CommandError(str(error)) from error
    row = _row(key)
    if revoked_now:
        warn(f"revoked the key {key.id} ({key.name})")
    else:
        warn(f"the key {key.id} ({key.name}) was already revoked at {row['revoked_at']} by "
             f"{key.revoked_by}; nothing changed")  # fmt: skip
    if output_format == "json":
        output.print_json(row)
    else:
        output.print_record("api key", row)


COMMANDS = [api_key_group]
