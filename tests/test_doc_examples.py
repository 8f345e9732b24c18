"""Every command example in README.md and docs/ runs, against the data it names, and prints what the page shows.

One test per block, named by page and line (`operating.md:141`), so a failure names the example. The
convention (what `…` stands for, the markers) is in docs/testing.md ("Examples in the docs run as tests").
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from devkit.broker import free_port, kafka_cluster
from tests.doc_examples import (
    COMMAND_LANGUAGES,
    DATA_LANGUAGES,
    PLAIN,
    Block,
    all_blocks,
    console_commands,
    mismatch_report,
    output_matches,
    previous_runnable,
)
from tests.doc_runner import States, Workspace, link_shared, needs_kafka, serves, write_shims

BLOCKS = all_blocks()
RUNNABLE = [block for block in BLOCKS if block.runs]


@pytest.fixture(scope="module")
def shims(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_shims(tmp_path_factory.mktemp("doc-shims"))


@pytest.fixture(scope="module")
def states(tmp_path_factory: pytest.TempPathFactory) -> States:
    return States(tmp_path_factory.mktemp("doc-states"))


@pytest.fixture
def workspace(request: pytest.FixtureRequest, tmp_path: Path, shims: Path) -> Iterator[Workspace]:
    """The example's own directory; when it talks to Kafka, a broker of its own (Tansu starts in a tenth of a
    second), so that it meets the default topic names empty, as a reader's new broker would be; when it serves
    the HTTP API, a free port of its own in LEDGER_API_PORT. Jobs it leaves running are stopped afterwards."""
    block: Block = request.param
    directory = tmp_path / "example"
    directory.mkdir()
    link_shared(directory)
    env = {"LEDGER_API_PORT": str(free_port())} if serves(block) else {}
    with contextlib.ExitStack() as stack:
        if needs_kafka(block):
            bootstrap_servers, _ = stack.enter_context(kafka_cluster(None))
            env["KAFKA_BOOTSTRAP_SERVERS"] = bootstrap_servers
        workspace = Workspace(directory, shims, env)
        stack.callback(workspace.stop_jobs)
        yield workspace


@pytest.mark.parametrize("workspace", RUNNABLE, ids=[block.id for block in RUNNABLE], indirect=True)
def test_example(workspace: Workspace, states: States, request: pytest.FixtureRequest) -> None:
    """A console block prints what it shows (and fails where it shows an error); a bash block exits 0."""
    block: Block = request.node.callspec.params["workspace"]
    states.prepare(block, workspace)
    if block.language != "console":
        workspace.script(block.text, block.id)
    for shown in console_commands(block.text) if block.language == "console" else []:
        ran = workspace.run(shown.command)
        assert output_matches(shown.output, ran.lines), mismatch_report(shown.command, shown.output, ran.lines)
        assert (ran.status != 0) == shown.must_fail, f"`{shown.command}` exited {ran.status}:\n{ran.output}"
    states.remember_after(block, workspace)


def test_every_command_block_runs_or_says_why_not() -> None:
    """A block of commands runs unless marked `not run: REASON`; markers sit only where they mean something, and
    a fence in a language of its own (```shell-session) cannot slip past as neither."""
    for block in BLOCKS:
        assert block.language in COMMAND_LANGUAGES | DATA_LANGUAGES | {PLAIN}, f"{block.id}: ```{block.language}"
        if "not run" in block.markers:
            assert block.language in COMMAND_LANGUAGES and block.markers["not run"], f"{block.id}: not run, why?"
            assert {"setup", "continues"}.isdisjoint(block.markers), f"{block.id}: not run, yet set up"
        if "file" in block.markers:
            assert block.language in DATA_LANGUAGES and block.markers["file"], f"{block.id}: file marker"
        if {"setup", "continues"} & set(block.markers):
            assert block.runs, f"{block.id}: setup or continues on a block that does not run"
        if "continues" in block.markers:
            previous_runnable(block)
        if block.language == "console":
            console_commands(block.text)  # starts with a command


def test_the_examples_are_found() -> None:
    """The pages are read at all: a parsing slip would otherwise pass by running nothing."""
    pages = {block.page.name for block in RUNNABLE}
    assert {"README.md", "operating.md", "finance.md", "engineers.md", "rules.md", "program-team.md"} <= pages


@pytest.mark.parametrize(
    ("shown", "printed", "matches"),
    [
        (["a  b"], ["a  b  "], True),
        (["a b"], ["a  b"], False),
        (["x", "…", "z"], ["x", "z"], True),
        (["x", "…", "z"], ["x", "y", "y", "z"], True),
        (["x", "…"], ["y"], False),
        (["error: no member 'M1' as of …"], ["error: no member 'M1' as of 2024-01-01"], True),
        (['{"a": 1, "b": "x"}'], ['{"a": 1, "b": "x"}'], True),
        (['{"a": 1}'], ['{"a": 1, "b": 2}'], False),
        (['{"a": 1, ...}'], ['{"a": 1, "b": 2}'], True),
        (['{"b": 2, …}'], ['{"a": 1, "b": 2}'], True),
        (['{"b": 2, "a": 1}'], ['{"a": 1, "b": 2}'], False),
        (['{"a": 1}'], ['{"a": 1.0}'], False),
        (['{"a": 1}'], ['{"a": true}'], False),
        (['{"a": [1, ...]}'], ['{"a": [1, 2, 3]}'], True),
        (['{"a": [2, ...]}'], ['{"a": [1, 2, 3]}'], False),
        (['{"a": [...]}'], ['{"a": []}'], True),
        (['{"a": [1]}'], ['{"a": [1, 2]}'], False),
        (['{"a": {…}}'], ['{"a": {"b": {"c": 1}}}'], True),
        (['{"id": "correct-…-M1"}'], ['{"id": "correct-0f3a-M1"}'], True),
        (['{"id": "correct-…-M1"}'], ['{"id": "correct-0f3a-M2"}'], False),
        (['{"t": "a...b"}'], ['{"t": "a-b"}'], False),
        (['{"a": 1}'], ["not json"], False),
    ],
)
def test_the_matching_convention(shown: list[str], printed: list[str], matches: bool) -> None:
    """As docs/testing.md states it: exact lines; `…` for any text or lines; `…`/`...` for more JSON members."""
    assert output_matches(shown, printed) is matches
