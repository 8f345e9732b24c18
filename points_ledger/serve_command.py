"""`points-ledger serve`: the HTTP API (points_ledger.api), until SIGTERM."""

from __future__ import annotations

import click

from points_ledger.context import FLAGS, Context, pass_context, setting_option
from points_ledger.errors import CommandError, warn


@click.command()
@setting_option("api", "host", "--host", metavar="ADDRESS", default=None,
                help="Address to listen on (env LEDGER_API_HOST). Default: 127.0.0.1.")  # fmt: skip
@setting_option("api", "port", "--port", type=click.IntRange(1, 65_535), default=None,
                help="Port to listen on (env LEDGER_API_PORT). Default: 8080.")  # fmt: skip
@setting_option("api", "workers", "--workers", type=click.IntRange(1, 32), default=None,
                help="Server processes (env LEDGER_API_WORKERS). Default: 1.")  # fmt: skip
@setting_option("api", "threads", "--threads", type=click.IntRange(1, 256), default=None,
                help="Requests each process works on at once, and its PostgreSQL connection pool's size "
                "(env LEDGER_API_THREADS). Default: 4: each process runs one thread of Python at a time, and more "
                "threads starve its event loop; raise it when a remote database's round trips keep threads "
                "waiting, add --workers for cores.")  # fmt: skip
@pass_context
def serve(context: Context) -> None:
    """Serve the HTTP API (docs/api.md) and the web console (/console/, docs/console.md) until SIGTERM or
    SIGINT, finishing the requests in flight.

    Reads (balances, history, reports) answer from the views, caught up first; POST /v1/messages decides a
    message at once. Every /v1 route needs an API key (`api-key create`); the console signs in with one, in
    a browser. /healthz, /readyz and /metrics need none. Other settings (readiness lag, metrics, shutdown
    timeout) come from the config file's [api] section or LEDGER_API_* variables; `check` checks them."""
    from points_ledger.api.server import serve as run_server

    settings = context.settings
    with context.ledger(must_exist=True) as app:  # reachable, and a ledger: say so now, not in each worker
        from ledger.storage.api_keys import api_key_store

        if not any(key.active for key in api_key_store(app).list()):
            warn("no active API key: every /v1 request will get 401 (api-key create)")
    flags = click.get_current_context().meta.get(FLAGS, {})
    try:
        run_server(flags, settings.api)
    except OSError as error:
        raise CommandError(f"cannot serve on {settings.api.host}:{settings.api.port}: {error}") from error


COMMANDS = [serve]
