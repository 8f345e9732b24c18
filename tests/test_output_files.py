"""Files the user names for output: written whole or not at all, never over an existing file without --force,
never through a symbolic link; the dead-letter file created 0600."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from points_ledger.cli import main
from points_ledger.errors import CommandError, UsageProblemError
from points_ledger.files import binary_output, private_appending, text_output
from tests.messages import encode, wire

#: The umask the tests run under: a file created 0666 becomes 0644, one created 0600 stays 0600.
UMASK = 0o022


class WriterFailedError(Exception):
    """A writer failing halfway."""


@pytest.fixture(autouse=True)
def usual_umask() -> Iterator[None]:
    previous = os.umask(UMASK)
    yield
    os.umask(previous)


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def leftovers(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir() if path.name.endswith(".partial"))


def test_an_output_is_written_whole_with_the_mode_asked(tmp_path: Path) -> None:
    shared, private = tmp_path / "chart.png", tmp_path / "report.json"
    with binary_output(shared, force=False) as file:
        file.write(b"png")
    with text_output(private, force=False, private=True) as text:
        text.write("line\r\n")
    assert shared.read_bytes() == b"png" and private.read_bytes() == b"line\r\n"
    assert (mode(shared), mode(private)) == (0o666 & ~UMASK, 0o600)
    assert leftovers(tmp_path) == []


def test_an_existing_file_is_refused_without_force_and_replaced_with_it(tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    target.write_text("old")
    with pytest.raises(UsageProblemError, match="exists: give --force"), text_output(target, force=False) as file:
        file.write("new")
    assert target.read_text() == "old"
    with text_output(target, force=True) as file:
        file.write("new")
    assert target.read_text() == "new" and leftovers(tmp_path) == []


def test_a_writer_that_fails_leaves_no_file_and_an_old_one_intact(tmp_path: Path) -> None:
    fresh, kept = tmp_path / "fresh.csv", tmp_path / "kept.csv"
    kept.write_text("the old report")
    for target in (fresh, kept):
        with pytest.raises(WriterFailedError), text_output(target, force=True) as file:
            file.write("half a rep")
            raise WriterFailedError
    assert not fresh.exists() and kept.read_text() == "the old report"
    assert leftovers(tmp_path) == []


def test_a_file_that_appears_while_writing_is_not_replaced(tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    with pytest.raises(UsageProblemError, match="exists"), text_output(target, force=False) as file:
        file.write("ours")
        target.write_text("someone else's")
    assert target.read_text() == "someone else's" and leftovers(tmp_path) == []


def test_a_symbolic_link_or_other_non_regular_target_is_refused_even_with_force(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_text("not yours")
    link = tmp_path / "report.csv"
    link.symlink_to(elsewhere)
    for force in (False, True):
        with pytest.raises(UsageProblemError, match="is a symbolic link"), binary_output(link, force=force):
            pass
        with pytest.raises(UsageProblemError, match="not a regular file"), binary_output(tmp_path, force=force):
            pass
    assert elsewhere.read_text() == "not yours" and link.is_symlink()


def test_an_unwritable_place_is_one_error(tmp_path: Path) -> None:
    unwritable = tmp_path / "no" / "such" / "dir.png"
    with (
        pytest.raises(CommandError, match=r"cannot write .*No such file or directory"),
        binary_output(unwritable, force=False),
    ):
        pass


def test_the_dead_letter_file_is_created_0600_and_appended_to(tmp_path: Path) -> None:
    dead = tmp_path / "dead.jsonl"
    for line in ("first\n", "second\n"):
        with private_appending(dead) as file:
            file.write(line)
    assert dead.read_text() == "first\nsecond\n" and mode(dead) == 0o600
    link = tmp_path / "link.jsonl"
    link.symlink_to(dead)
    with pytest.raises(UsageProblemError, match="is a symbolic link"), private_appending(link):
        pass
    assert dead.read_text() == "first\nsecond\n"


def test_an_existing_dead_letter_file_keeps_its_mode_and_a_world_readable_one_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dead = tmp_path / "dead.jsonl"
    dead.write_text("earlier\n")
    dead.chmod(0o644)
    with private_appending(dead) as file:
        file.write("later\n")
    assert dead.read_text() == "earlier\nlater\n" and mode(dead) == 0o644
    assert capsys.readouterr().err == f"points-ledger: {dead} is readable by anyone (mode 0644): chmod o-r it\n"


# ---- through the commands ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> str:
    directory = tmp_path_factory.mktemp("outputs")
    stream = directory / "stream.jsonl"
    stream.write_bytes(b"".join(
        encode(wire("adjustment", f"M{n}", when=f"2024-0{n}-15", adjustment_id=f"a{n}", points=100 * n, reason="r",
                    operator="o")) + b"\n"
        for n in range(1, 4)
    ))  # fmt: skip
    store = f"sqlite:///{directory / 'ledger.db'}"
    assert run("--store", store, "ingest", str(stream)).exit_code == 0
    return store


def refused(result: Result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    assert len(result.stderr.splitlines()) == 1, result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


def test_reconcile_refuses_an_existing_report_before_comparing_and_writes_it_0600(ledger: str, tmp_path: Path) -> None:
    other = tmp_path / "other.csv"
    other.write_text("member_id,balance\nM1,1\n")
    report = tmp_path / "report.json"
    report.write_text("yesterday's report")
    reconcile = ["--store", ledger, "reconcile", "--against", str(other), "--report", str(report), "--format", "json"]
    refused(run(*reconcile), f"{report} exists: give --force to replace it")
    assert report.read_text() == "yesterday's report"
    assert run(*reconcile, "--force").exit_code == 0
    assert json.loads(report.read_text())["items"] and mode(report) == 0o600
    link = tmp_path / "link.json"
    link.symlink_to(report)
    refused(run(*reconcile[:-4], "--report", str(link), "--force"), "is a symbolic link")


def test_the_chart_refuses_an_existing_file_unless_forced(ledger: str, tmp_path: Path) -> None:
    chart = tmp_path / "liability.png"
    chart.write_bytes(b"an older chart")
    draw = ["--store", ledger, "report", "liability", "--chart", str(chart), "--from", "2024-01-01T00:00:00Z",
            "--to", "2024-06-30T00:00:00Z", "--format", "json"]  # fmt: skip
    refused(run(*draw), "exists: give --force")
    assert chart.read_bytes() == b"an older chart"
    assert run(*draw, "--force").exit_code == 0
    assert chart.read_bytes().startswith(b"\x89PNG") and mode(chart) == 0o666 & ~UMASK
    assert leftovers(tmp_path) == []


def test_schemas_export_replaces_nothing_without_force(tmp_path: Path) -> None:
    directory = tmp_path / "schemas"
    first = run("schemas", "export", str(directory))
    assert first.exit_code == 0, first.output
    written = sorted(directory.iterdir())
    (directory / "purchase.schema.json").write_text("edited")
    refused(run("schemas", "export", str(directory)), "exists: give --force")
    assert (directory / "purchase.schema.json").read_text() == "edited"
    assert run("schemas", "export", str(directory), "--force").exit_code == 0
    assert sorted(directory.iterdir()) == written
    assert json.loads((directory / "purchase.schema.json").read_text())["$id"] == "points-ledger/purchase.schema.json"


def test_ingest_creates_the_dead_letter_file_0600_and_refuses_a_link(ledger: str, tmp_path: Path) -> None:
    stream = tmp_path / "bad.jsonl"
    stream.write_bytes(b"not json\n")
    dead = tmp_path / "dead.jsonl"
    assert run("--store", ledger, "ingest", str(stream), "--dead-letter", str(dead)).exit_code == 0
    assert mode(dead) == 0o600 and json.loads(dead.read_text())["text"] == "not json"
    link = tmp_path / "link.jsonl"
    link.symlink_to(dead)
    refused(run("--store", ledger, "ingest", str(stream), "--dead-letter", str(link)), "is a symbolic link")
    assert len(dead.read_text().splitlines()) == 1
