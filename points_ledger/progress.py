"""Progress bars: on a terminal only; piped output stays the summary alone."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, TypeAlias

if TYPE_CHECKING:
    from ledger.outcomes import Tally

OnBatch: TypeAlias = "Callable[[Tally, int | None], None]"


@contextmanager
def ingest_progress(total_bytes: int | None, *, enabled: bool) -> Iterator[OnBatch]:
    """Yield a callback taking (tally so far, bytes read so far)."""
    if not enabled:
        yield lambda tally, position: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(
        TextColumn("ingest"),
        BarColumn(),
        DownloadColumn(),
        TextColumn("{task.fields[summary]}"),
        TimeElapsedColumn(),
        console=Console(file=sys.stderr),
        transient=True,
    )
    task = progress.add_task("ingest", total=total_bytes, summary="")

    def update(tally: Tally, position: int | None) -> None:
        summary = f"{tally.processed:,} lines, {tally.recorded:,} recorded"
        progress.update(task, completed=position or 0, summary=summary)

    with progress:
        yield update


@contextmanager
def count_progress(label: str, total: int | None, *, enabled: bool) -> Iterator[Callable[[int, str], None]]:
    """Yield a callback taking (items done, summary); a bar if `total` is known, a counter otherwise."""
    if not enabled:
        yield lambda done, summary: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    columns = [TextColumn(label), BarColumn()] if total else [TextColumn(label)]
    progress = Progress(
        *columns,
        TextColumn("{task.fields[summary]}"),
        TimeElapsedColumn(),
        console=Console(file=sys.stderr),
        transient=True,
    )
    task = progress.add_task(label, total=total, summary="")

    def update(done: int, summary: str) -> None:
        progress.update(task, completed=done, summary=summary)

    with progress:
        yield update
