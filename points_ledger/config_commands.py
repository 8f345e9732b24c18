"""`config show`: the effective settings, secrets masked, each with where it came from."""

from __future__ import annotations

import click

from points_ledger import output
from points_ledger.context import Context, format_option, pass_context
from points_ledger.kafka_options import kafka_options


@click.group("config")
def config_group() -> None:
    """The settings in force: flags > environment > config file > defaults."""


@config_group.command("show")
@kafka_options
@format_option
@pass_context
def config_show(context: Context, output_format: str) -> None:
    """Print every effective setting and its source (flag, env NAME, file PATH or default).

    Secrets are shown as ******** when set. Global flags (--config, --store, …)
    go before the command: `points-ledger --config prod.toml config show`.
    """
    from points_ledger.config import effective_rows

    settings, sources = context.loaded()
    rows = effective_rows(settings, sources)
    if output_format == "json":
        output.print_json_lines(rows)
        return
    width = max(len(row["setting"]) for row in rows)
    for row in rows:  # one plain line per setting: long values (URLs, paths) stay whole and greppable
        value = "(not set)" if row["value"] is None else output.dumps(row["value"]).strip('"')
        click.echo(f"{row['setting']:<{width}}  {value}  [{row['source']}]")


COMMANDS = [config_group]
