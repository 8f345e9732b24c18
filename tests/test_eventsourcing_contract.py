"""The eventsourcing library's private names the ledger relies on (ledger/eventsourcing_adapter.py) still exist,
with the parameters we call them with: a library upgrade that changes one fails here, naming it."""

from __future__ import annotations

import inspect
from typing import Any

import pytest
from eventsourcing.utils import resolve_topic

from ledger.eventsourcing_adapter import CONTRACT, PrivateName
from ledger.member import Member
from ledger.program import Program
from tests.layers import library_private_uses
from tests.messages import enrollment


def _parameter_names(owner: type[Any], name: str) -> list[str] | None:
    """The parameter names of `owner.name` after self/cls ("**" for a keyword catch-all), each with whether it
    has a default; None if there is no such method."""
    found = inspect.getattr_static(owner, name, None)
    function = found.__func__ if isinstance(found, classmethod | staticmethod) else found
    if not callable(function):
        return None
    names = []
    for parameter in list(inspect.signature(function).parameters.values())[1:]:
        if parameter.kind is inspect.Parameter.VAR_KEYWORD:
            names.append("**")
        elif parameter.kind is inspect.Parameter.VAR_POSITIONAL:
            names.append("*")
        else:
            names.append(parameter.name if parameter.default is inspect.Parameter.empty else f"{parameter.name}=")
    return names


def _instance(owner: type[Any]) -> Any:
    """An instance of `owner`, for the names its instances set in __init__."""
    if issubclass(Member, owner):  # the library's aggregate class: a member, as the ledger starts one
        return Member.start(enrollment("M1"), {"file": "contract", "line": 1}, Program())
    return owner()  # an in-memory recorder takes no arguments


@pytest.mark.parametrize("private", CONTRACT, ids=lambda p: f"{p.owner.rpartition(':')[2]}.{p.name}")
def test_each_private_name_of_the_library_we_use_is_there_as_we_call_it(private: PrivateName) -> None:
    owner = resolve_topic(private.owner)
    where = f"eventsourcing changed {private.owner}.{private.name}, which ledger/eventsourcing_adapter.py uses:"
    if private.parameters is None:
        assert hasattr(_instance(owner), private.name), f"{where} its instances no longer have it"
        return
    names = _parameter_names(owner, private.name)
    assert names is not None, f"{where} there is no such method"
    # What we pass by name or position is there, in this order; anything else has a default.
    relied_on = [name.rstrip("=") for name in names if name.rstrip("=") in private.parameters]
    others = [name for name in names if name.rstrip("=") not in private.parameters and name not in ("*", "**")]
    assert relied_on == list(private.parameters), f"{where} it now takes ({', '.join(names)})"
    assert all(name.endswith("=") for name in others), f"{where} it now also needs ({', '.join(others)})"


def test_the_adapter_is_the_only_module_that_reaches_the_librarys_private_names() -> None:
    """Every private name the adapter uses is in its CONTRACT, and no other module of ours uses one."""
    uses = list(library_private_uses())
    outside = sorted(f"{path}:{line}: {name}" for path, line, name in uses if path != "ledger/eventsourcing_adapter.py")
    assert outside == [], "use ledger/eventsourcing_adapter.py for these"
    in_adapter = {name for path, _, name in uses if path == "ledger/eventsourcing_adapter.py"}
    assert in_adapter == {private.name for private in CONTRACT}
