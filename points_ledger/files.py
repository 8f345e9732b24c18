"""Files the user names for output: `reconcile --report`, `report liability --chart`, `schemas export` and the
`ingest --dead-letter` file.

An output is written to a temporary file beside its target, flushed to disk, then put in place in one step:
a reader (or a crash) never meets half a report. An existing target is refused unless `--force`; a symbolic
link, or anything but a regular file, is refused always, so that output never lands where a link points.
"""

from __future__ import annotations

import errno
import io
import os
import secrets
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import click

from points_ledger.errors import CommandError, UsageProblemError, warn

#: A new output file's mode before the umask: what any program's new file gets.
SHARED_MODE = 0o666
#: A file holding member data (member ids and balances, raw messages): its owner's alone, whatever the umask.
PRIVATE_MODE = 0o600
#: Random bytes in a temporary file's name (`.NAME.<hex>.partial` beside the target).
TEMPORARY_NAME_BYTES = 6


#: `--force` for every command that writes a file the user names.
force_option = click.option(
    "--force",
    is_flag=True,
    help="Replace the output file if it exists (never a symbolic link, nor anything but a regular file).",
)


def check_target(path: Path, force: bool) -> None:
    """Refuse, before any work is done, a target that writing would refuse at the end."""
    try:
        status = path.lstat()
    except FileNotFoundError:
        return
    except OSError as error:
        raise CommandError(f"cannot write {path}: {error.strerror}") from error
    if stat.S_ISLNK(status.st_mode):
        raise _is_a_link(path)
    if not stat.S_ISREG(status.st_mode):
        raise UsageProblemError(f"{path} exists and is not a regular file: name another file")
    if not force:
        raise _exists(path)


@contextmanager
def binary_output(path: Path, *, force: bool, private: bool = False) -> Iterator[IO[bytes]]:
    """A file to write `path`'s new content to; put in place only when the block ends without an error (then
    flushed to disk, directory entry included). Mode 0600 if `private`, else 0666 less the umask."""
    check_target(path, force)
    temporary = path.parent / f".{path.name}.{secrets.token_hex(TEMPORARY_NAME_BYTES)}.partial"
    try:
        try:
            descriptor = os.open(temporary, _CREATE_NEW, PRIVATE_MODE if private else SHARED_MODE)
        except OSError as error:
            raise _cannot_write(path, error) from error
        try:
            with os.fdopen(descriptor, "wb") as file:
                yield file
                file.flush()
                os.fsync(file.fileno())
            _put_in_place(temporary, path, force)
            _sync_directory(path.parent)
        except OSError as error:
            raise _cannot_write(path, error) from error
    finally:
        temporary.unlink(missing_ok=True)


@contextmanager
def text_output(path: Path, *, force: bool, private: bool = False) -> Iterator[IO[str]]:
    """`binary_output` as UTF-8 text, line endings written as given."""
    with binary_output(path, force=force, private=private) as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8", newline="")
        yield text
        text.flush()
        text.detach()  # `raw` stays open for binary_output to sync


@contextmanager
def private_appending(path: Path) -> Iterator[IO[str]]:
    """`path` opened to append UTF-8 lines: created 0600 if new (never through a symbolic link); an existing
    file is appended to with its mode unchanged, with a warning if anyone may read it."""
    try:
        descriptor = os.open(path, _APPEND, PRIVATE_MODE)
    except OSError as error:
        raise _cannot_write(path, error) from error
    status = os.fstat(descriptor)
    if stat.S_ISREG(status.st_mode) and status.st_mode & stat.S_IROTH:
        warn(f"{path} is readable by anyone (mode {stat.S_IMODE(status.st_mode):04o}): chmod o-r it")
    with os.fdopen(descriptor, "a", encoding="utf-8") as file:
        yield file


#: Create a new file, never an existing one nor through a link, and keep it from child processes.
_CREATE_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_APPEND = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC


def _put_in_place(temporary: Path, path: Path, force: bool) -> None:
    if force:
        os.replace(temporary, path)  # replaces a link itself, never what it points to
        return
    try:
        os.link(temporary, path)  # fails if anything took the name meanwhile: nothing is ever replaced
    except FileExistsError:
        raise _exists(path) from None


def _sync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _cannot_write(path: Path, error: OSError) -> CommandError:
    if error.errno == errno.ELOOP:  # what open(2) with O_NOFOLLOW says of a symbolic link
        return _is_a_link(path)
    return CommandError(f"cannot write {path}: {error.strerror or error}")


def _is_a_link(path: Path) -> UsageProblemError:
    return UsageProblemError(f"{path} is a symbolic link: name the file itself (output never follows a link)")


def _exists(path: Path) -> UsageProblemError:
    return UsageProblemError(f"{path} exists: give --force to replace it, or name another file")
