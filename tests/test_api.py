"""The HTTP API through real HTTP, on SQLite and on PostgreSQL: every route answers what the CLI answers,
every role against every route, the outcomes of POST /v1/messages, hostile input, OpenAPI, metrics and the
access log. (Concurrency, kills, outages and Kafka: tests/test_api_faults.py.)"""

from __future__ import annotations

import http.client
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from tests.api_helpers import ROLES, Server, running_server
from tests.cli_helpers import SAMPLE, cli
from tests.conftest import throwaway_database
from tests.kafka_helpers import wait_for

MEMBER = "M000040"  # in samples/stream.jsonl, with purchases through 2024 and 2025
PROBLEM = "application/problem+json"


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server per store for the module, on a ledger of the sample stream."""
    folder = tmp_path_factory.mktemp("api")
    with throwaway_database() if request.param == "postgresql" else _Nothing() as url:
        store = url or f"sqlite:///{folder / 'ledger.db'}"
        assert cli("ingest", str(SAMPLE), store=store).returncode == 0
        with running_server(store, folder) as running:
            yield running


class _Nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *_: object) -> None:
        return None


_counter = iter(range(1, 1_000_000))


def fresh(prefix: str = "api") -> str:
    return f"{prefix}-{next(_counter)}"


def purchase(member: str, amount: str = "100.00", **fields: Any) -> dict[str, Any]:
    return {"type": "purchase", "event_id": fresh("evt"), "member_id": member, "occurred_at": "2026-06-01T10:00:00Z",
            "transaction_id": fresh("txn"), "amount": amount, "currency": "USD", **fields}  # fmt: skip


def redemption(member: str, points: int) -> dict[str, Any]:
    return {"type": "redemption", "event_id": fresh("evt"), "member_id": member, "occurred_at": "2026-06-02T10:00:00Z",
            "redemption_id": fresh("rdm"), "points": points}  # fmt: skip


def adjustment(member: str, points: int, operator: str = "someone") -> dict[str, Any]:
    return {"type": "adjustment", "event_id": fresh("evt"), "member_id": member, "occurred_at": "2026-06-03T10:00:00Z",
            "adjustment_id": fresh("adj"), "points": points, "reason": "goodwill", "operator": operator}  # fmt: skip


def refund(member: str, transaction_id: str, amount: str) -> dict[str, Any]:
    return {"type": "refund", "event_id": fresh("evt"), "member_id": member, "occurred_at": "2026-06-04T10:00:00Z",
            "refund_id": fresh("rfd"), "transaction_id": transaction_id, "amount": amount}  # fmt: skip


def enrollment(member: str) -> dict[str, Any]:
    return {"type": "enrollment", "event_id": fresh("evt"), "member_id": member, "occurred_at": "2026-05-01T10:00:00Z"}


def cli_json(server: Server, *args: str) -> Any:
    result = cli(*args, "--format", "json", store=server.store)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    return json.loads(lines[0]) if len(lines) == 1 and args[0] not in {"history"} else [json.loads(x) for x in lines]


def is_problem(answer: Any, status: int, kind: str) -> dict[str, Any]:
    assert answer.status == status, (answer.status, answer.body)
    assert answer.media_type == PROBLEM, answer.headers
    document: dict[str, Any] = answer.json()
    assert document["type"] == f"urn:points-ledger:problem:{kind}", document
    assert document["status"] == status and document["title"] and document["detail"]
    return document


# ---- reads: the CLI's answers ------------------------------------------------------------------------


def test_a_balance_is_the_cli_balance_now_and_as_of_a_time(server: Server) -> None:
    answer = server.get(f"/v1/members/{MEMBER}", "pos")
    assert answer.status == 200 and answer.media_type == "application/json"
    assert answer.json() == cli_json(server, "balance", MEMBER)
    as_of = "2024-06-30T23:59:59Z"
    then = server.get(f"/v1/members/{MEMBER}?as_of={quote(as_of)}", "pos").json()
    assert then == cli_json(server, "balance", MEMBER, "--as-of", as_of)
    assert then["balance"] != answer.json()["balance"]


def test_history_pages_put_together_are_the_cli_history(server: Server) -> None:
    whole = cli_json(server, "history", MEMBER)
    pages, cursor = [], None
    while True:
        path = f"/v1/members/{MEMBER}/history?limit=7" + (f"&after={cursor}" if cursor else "")
        page = server.get(path, "helpdesk").json()
        assert set(page) == {"items", "next"} and len(page["items"]) <= 7
        pages += page["items"]
        cursor = page["next"]
        if cursor is None:
            break
    assert pages == whole and len(whole) > 7
    line = pages[-1]  # a statement line: what happened, the change, the balance after, the tier, where from
    assert {"event", "change", "balance", "tier", "provenance", "effective_at"} <= set(line)


@pytest.mark.parametrize(
    ("path", "cli_args"),
    [
        ("/v1/reports/liability?as_of=2025-12-31T23:59:59Z",
         ("report", "liability", "--as-of", "2025-12-31T23:59:59Z")),
        ("/v1/reports/liability?as_of=2025-12-31T23:59:59Z&breakage=estimated&breakage_window_days=90",
         ("report", "liability", "--as-of", "2025-12-31T23:59:59Z", "--breakage", "estimated",
          "--breakage-window-days", "90")),
        ("/v1/reports/rollforward?from=2024-01-01T00:00:00Z&to=2025-01-01T00:00:00Z",
         ("report", "rollforward", "--from", "2024-01-01T00:00:00Z", "--to", "2025-01-01T00:00:00Z")),
        ("/v1/reports/rollforward?from=2024-01-01T00:00:00Z&to=2025-01-01T00:00:00Z&by=quarter",
         ("report", "rollforward", "--from", "2024-01-01T00:00:00Z", "--to", "2025-01-01T00:00:00Z", "--by",
          "quarter")),
        ("/v1/reports/kpis?from=2024-01-01T00:00:00Z&to=2024-07-01T00:00:00Z&by=month",
         ("report", "kpis", "--from", "2024-01-01T00:00:00Z", "--to", "2024-07-01T00:00:00Z", "--by", "month")),
    ],
)  # fmt: skip
def test_reports_answer_the_cli_json_and_with_accept_csv_the_cli_csv(
    server: Server, path: str, cli_args: tuple[str, ...]
) -> None:
    answer = server.get(path, "finance")
    assert answer.status == 200, answer.body
    expected = cli(*cli_args, "--format", "json", store=server.store).stdout.splitlines()
    multi_line = "by=" in path or "kpis" in path
    assert answer.json() == ([json.loads(x) for x in expected] if multi_line else json.loads(expected[0]))
    as_csv = server.get(path, "finance", headers={"Accept": "text/csv"})
    assert as_csv.status == 200 and as_csv.media_type == "text/csv"
    assert as_csv.body.decode() == cli(*cli_args, "--format", "csv", store=server.store).stdout


def test_digest_and_projections_status_answer_as_the_cli(server: Server) -> None:
    assert server.get("/v1/digest", "finance").json() == cli_json(server, "digest")
    assert server.get(f"/v1/members/{MEMBER}", "admin").status == 200  # a read catches the views up first
    views = server.get("/v1/projections/status", "finance").json()
    assert [view["view"] for view in views] == [row["view"] for row in cli_json(server, "projections", "status")]
    assert all(view["lag"] == 0 for view in views)


def test_unknown_members_get_404_as_a_problem(server: Server) -> None:
    for path, role in (("/v1/members/nobody", "pos"), ("/v1/members/nobody/history", "helpdesk"),
                       (f"/v1/members/{MEMBER}?as_of=2000-01-01T00:00:00Z", "pos")):  # fmt: skip
        is_problem(server.get(path, role), 404, "not-found")


# ---- keys and roles -----------------------------------------------------------------------------------

READS = {
    f"/v1/members/{MEMBER}": {"pos", "helpdesk", "admin"},
    f"/v1/members/{MEMBER}/history": {"helpdesk", "admin"},
    "/v1/reports/liability?as_of=2025-12-31T23:59:59Z": {"finance", "admin"},
    "/v1/reports/rollforward?from=2024-01-01T00:00:00Z&to=2025-01-01T00:00:00Z": {"finance", "admin"},
    "/v1/reports/kpis?from=2024-01-01T00:00:00Z&to=2025-01-01T00:00:00Z": {"finance", "admin"},
    "/v1/digest": {"finance", "admin"},
    "/v1/projections/status": {"finance", "admin"},
}
POSTS = {
    "purchase": {"pos", "admin"},
    "refund": {"pos", "admin"},
    "redemption": {"pos", "admin"},
    "adjustment": {"helpdesk", "admin"},
    "enrollment": {"admin"},
}


def a_message_of(kind: str, member: str) -> dict[str, Any]:
    made = {"purchase": lambda: purchase(member), "refund": lambda: refund(member, "txn-11-00000004", "1.00"),
            "redemption": lambda: redemption(member, 1), "adjustment": lambda: adjustment(member, 5),
            "enrollment": lambda: enrollment(member)}  # fmt: skip
    return made[kind]()


@pytest.mark.parametrize("role", ROLES)
def test_each_role_against_each_route(server: Server, role: str) -> None:
    for path, allowed in READS.items():
        answer = server.get(path, role)
        if role in allowed:
            assert answer.status == 200, (role, path, answer.body)
        else:
            assert is_problem(answer, 403, "forbidden")["detail"].startswith(f"a {role} key may not"), path
    for kind, allowed in POSTS.items():
        member = fresh(f"roles-{role}")
        answer = server.post(a_message_of(kind, member), role)
        if role in allowed:
            assert answer.status in {201, 409}, (role, kind, answer.body)
        else:
            is_problem(answer, 403, "forbidden")
            assert server.get(f"/v1/members/{member}", "admin").status == 404  # nothing was recorded


def test_no_key_a_malformed_key_an_unknown_key_and_a_revoked_key_get_401(server: Server) -> None:
    path = f"/v1/members/{MEMBER}"
    assert is_problem(server.get(path), 401, "unauthorized")
    assert server.get(path).headers["www-authenticate"].startswith("Bearer")
    pos_key = server.keys["pos"]
    wrong_secret = pos_key[:-1] + ("B" if pos_key.endswith("A") else "A")  # (once, a key that ends in A got 200)
    for key in ("nonsense", "plk_0123456789abcdef_" + "x" * 43, wrong_secret, "x" * 10_000):
        is_problem(server.get(path, key=key), 401, "unauthorized")
    made = json.loads(cli("api-key", "create", "--name", fresh("soon-revoked"), "--role", "pos", "--operator", "t",
                          "--format", "json", store=server.store).stdout)  # fmt: skip
    before = server.get(path, key=made["key"])
    assert before.status == 200, before.body
    revoked = cli("api-key", "revoke", made["id"], "--operator", "t", "--format", "json", store=server.store)
    assert revoked.returncode == 0 and json.loads(revoked.stdout)["revoked_at"], revoked
    after = server.get(path, key=made["key"])
    assert after.status == 401, (after.status, after.body, server.log_text()[-3000:])  # on the very next request
    is_problem(after, 401, "unauthorized")


def test_health_readiness_metrics_and_openapi_need_no_key(server: Server) -> None:
    assert server.get("/healthz").json() == {"status": "ok"}
    ready = server.get("/readyz")
    assert ready.status == 200 and ready.json()["status"] == "ready"
    assert server.get("/metrics").status == 200
    assert server.get("/openapi.json").status == 200


# ---- writes at the till -------------------------------------------------------------------------------


def test_a_recorded_message_answers_201_with_the_balance_tier_and_position(server: Server) -> None:
    member = fresh("till")
    first = server.post(purchase(member, "250.00"), "pos")
    assert first.status == 201, first.body
    body = first.json()
    assert body == {"outcome": "recorded", "member_id": member, "balance": 250, "tier": body["tier"],
                    "position": body["position"]}  # fmt: skip
    assert isinstance(body["position"], int) and body["position"] > 0
    spent = server.post(redemption(member, 200), "pos").json()
    assert spent["balance"] == 50 and spent["position"] > body["position"]
    assert server.get(f"/v1/members/{member}", "pos").json()["balance"] == 50


def test_a_rule_rejection_is_409_with_its_reason_and_is_recorded(server: Server) -> None:
    member = fresh("poor")
    server.post(purchase(member, "10.00"), "pos")
    message = redemption(member, 500)
    problem = is_problem(server.post(message, "pos"), 409, "rejected")
    assert problem["reason"] == "insufficient_points" and problem["balance"] == 10
    lines = server.get(f"/v1/members/{member}/history", "helpdesk").json()["items"]
    assert [line["event"] for line in lines][-1] == "MessageRejected"
    again = is_problem(server.post(message, "pos"), 409, "rejected")  # a retry learns the same
    assert again["duplicate"] is True and again["reason"] == "insufficient_points"
    assert len(server.get(f"/v1/members/{member}/history", "helpdesk").json()["items"]) == len(lines)


def test_a_duplicate_event_id_answers_200_and_changes_nothing(server: Server) -> None:
    member = fresh("dup")
    message = purchase(member, "40.00")
    assert server.post(message, "pos").status == 201
    before = server.get(f"/v1/members/{member}/history", "helpdesk").json()["items"]
    again = server.post(message, "pos")
    assert again.status == 200
    assert again.json() == {"outcome": "duplicate", "member_id": member, "balance": 40, "tier": before[-1]["tier"],
                            "position": again.json()["position"]}  # fmt: skip
    assert server.get(f"/v1/members/{member}/history", "helpdesk").json()["items"] == before


def test_the_idempotency_key_must_be_the_event_id(server: Server) -> None:
    member = fresh("idem")
    message = purchase(member)
    is_problem(server.post(message, "pos", headers={"Idempotency-Key": "something-else"}), 400, "bad-request")
    assert server.get(f"/v1/members/{member}", "pos").status == 404
    assert server.post(message, "pos", headers={"Idempotency-Key": message["event_id"]}).status == 201
    assert server.post(message, "pos", headers={"Idempotency-Key": message["event_id"]}).status == 200


def test_the_operator_of_an_adjustment_is_the_key_name_and_provenance_says_api(server: Server) -> None:
    member = fresh("goodwill")
    server.post(purchase(member, "10.00"), "pos")
    assert server.post(adjustment(member, 25, operator="mallory"), "helpdesk").status == 201
    line = server.get(f"/v1/members/{member}/history", "helpdesk").json()["items"][-1]
    assert line["event"] == "PointsAdjusted" and line["details"]["operator"] == "helpdesk-key"
    assert line["provenance"]["source"] == {"api": "helpdesk-key"}


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"{not json", "JSON"),
        (b"", "empty"),
        (b"[]", ""),
        (json.dumps({**purchase("x"), "extra": 1}).encode(), "extra"),
        (json.dumps({**purchase("x"), "occurred_at": "2026-06-01T10:00:00"}).encode(), "occurred_at"),
        (json.dumps({**purchase("x"), "points": "5"}).encode(), ""),
        (json.dumps({**purchase("x"), "type": "gift"}).encode(), ""),
        (json.dumps({**purchase("x"), "amount": "1e999999"}).encode(), "amount"),
        (json.dumps({**purchase("x"), "member_id": "m" * 65}).encode(), "member_id"),
        (json.dumps({**purchase("x"), "member_id": "a\u0000b"}).encode(), "NUL"),
        ('{"type": "purchase", "event_id": "\udcff"}'.encode("utf-8", "surrogatepass"), ""),
        (b"\xff\xfe not utf-8", "UTF-8"),
    ],
)
def test_invalid_messages_get_422_and_record_nothing(server: Server, body: bytes, fragment: str) -> None:
    head = server.get("/v1/projections/status", "admin").json()[0]["head"]
    problem = is_problem(server.post(body, "admin"), 422, "invalid-message")
    assert fragment in problem["detail"]
    assert server.get("/v1/projections/status", "admin").json()[0]["head"] == head


# ---- hostile input ------------------------------------------------------------------------------------


def test_a_body_over_one_mib_gets_413_declared_or_streamed(server: Server) -> None:
    big = b'{"type": "purchase", "pad": "' + b"x" * (1_048_576 + 10) + b'"}'
    is_problem(server.post(big, "pos"), 413, "too-large")
    connection = http.client.HTTPConnection(server.host, server.port, timeout=30)
    try:  # no Content-Length: chunked, so only counting what streams in can stop it
        connection.putrequest("POST", "/v1/messages")
        connection.putheader("Authorization", f"Bearer {server.keys['pos']}")
        connection.putheader("Transfer-Encoding", "chunked")
        connection.endheaders()
        for start in range(0, len(big), 65_536):
            chunk = big[start : start + 65_536]
            connection.send(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        connection.send(b"0\r\n\r\n")
        response = connection.getresponse()
        assert response.status == 413 and response.getheader("content-type") == PROBLEM
    finally:
        connection.close()


@pytest.mark.parametrize(
    "path",
    [
        "/v1/members/..%2F..%2Fetc%2Fpasswd",
        "/v1/members/%27%20OR%201%3D1%20--",
        "/v1/members/x%3BDROP%20TABLE%20ledger_events",
        "/v1/members/%00",
        "/v1/members/" + "m" * 5_000,
        "/v1/members/%F0%9F%92%A9/history",
        "/v1/members/%ff%fe",
    ],
)
def test_hostile_member_ids_get_404_never_500(server: Server, path: str) -> None:
    answer = server.get(path, "admin")
    assert answer.status == 404 and answer.media_type == PROBLEM, (answer.status, answer.body)


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        (f"/v1/members/{MEMBER}?as_of=yesterday", "invalid"),
        (f"/v1/members/{MEMBER}?as_of=2024-06-30T23:59:59", "invalid"),
        (f"/v1/members/{MEMBER}?as_of=9999-12-31T23:59:59-14:00", "invalid"),
        (f"/v1/members/{MEMBER}/history?limit=0", "invalid"),
        (f"/v1/members/{MEMBER}/history?limit=1001", "invalid"),
        (f"/v1/members/{MEMBER}/history?after=1%20OR%201=1", "invalid"),
        (f"/v1/members/{MEMBER}/history?after=-1", "invalid"),
        ("/v1/reports/liability", "invalid"),
        ("/v1/reports/rollforward?from=2025-01-01T00:00:00Z&to=2024-01-01T00:00:00Z", "invalid"),
        ("/v1/reports/kpis?from=2024-01-01T00:00:00Z&to=2025-01-01T00:00:00Z&by=week", "invalid"),
        ("/v1/reports/rollforward?from=0001-01-01T00:00:00Z&to=9999-12-31T00:00:00Z&by=month", "invalid"),
        ("/v1/nothing-here", "not-found"),
        ("/v1/../../etc/passwd", "not-found"),
    ],
)
def test_bad_parameters_and_unknown_routes_are_problems_never_500(server: Server, path: str, kind: str) -> None:
    answer = server.get(path, "admin")
    assert answer.status in {404, 422}, (answer.status, answer.body)
    is_problem(answer, answer.status, kind)


def test_a_wrong_method_is_405_and_the_server_logged_no_trace(server: Server) -> None:
    is_problem(server.request("DELETE", f"/v1/members/{MEMBER}", role="admin"), 405, "method-not-allowed")
    is_problem(server.request("GET", "/v1/messages", role="admin"), 405, "method-not-allowed")
    assert "Traceback" not in server.log_text()


# ---- OpenAPI, metrics, the access log -----------------------------------------------------------------


def test_the_openapi_document_is_served_and_exported_alike(server: Server, tmp_path: Path) -> None:
    served = server.get("/openapi.json").json()
    assert cli("schemas", "export", str(tmp_path), store=server.store).returncode == 0
    assert json.loads((tmp_path / "openapi.json").read_text()) == served
    assert {"/v1/members/{member_id}", "/v1/members/{member_id}/history", "/v1/messages", "/v1/reports/liability",
            "/v1/reports/rollforward", "/v1/reports/kpis", "/v1/digest", "/v1/projections/status", "/healthz",
            "/readyz", "/metrics"} <= set(served["paths"])  # fmt: skip
    body = served["paths"]["/v1/messages"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/Message"} and "Redemption" in served["components"]["schemas"]
    balance = served["paths"]["/v1/members/{member_id}"]["get"]["parameters"]  # declared by hand (reads.py)
    assert [(p["name"], p["in"], p["required"]) for p in balance] == [("member_id", "path", True),
                                                                       ("as_of", "query", False)]  # fmt: skip


def test_metrics_count_requests_by_route_template_status_and_role(server: Server) -> None:
    server.get(f"/v1/members/{MEMBER}", "pos")
    text = server.get("/metrics").body.decode()
    labels = r'method="GET",role="pos",route="/v1/members/\{member_id\}",status="200"'
    pattern = r"points_ledger_api_requests_total\{" + labels + r"\} (\d+)"
    assert int(float(re.search(pattern, text).group(1))) >= 1  # type: ignore[union-attr]
    assert "points_ledger_api_request_duration_seconds_bucket" in text
    assert MEMBER not in text  # a member id is never a label


def test_the_access_log_has_a_line_per_request_and_never_a_key(server: Server) -> None:
    marker = fresh("logged")
    server.get(f"/v1/members/{marker}?api_key={server.keys['pos']}", "pos")
    wait_for(lambda: marker in server.log_text(), 10, "the access log line (written once the answer is sent)")
    text = server.log_text()
    lines = [line for line in text.splitlines() if marker in line]
    assert len(lines) == 1 and "404" in lines[0] and "key=pos-key role=pos" in lines[0]
    for key in server.keys.values():
        assert key not in text and key.split("_", 2)[2] not in text


def test_metrics_can_be_turned_off(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'ledger.db'}"
    with running_server(store, tmp_path, env={"LEDGER_API_METRICS": "false"}) as off:
        is_problem(off.get("/metrics"), 404, "not-found")
        assert off.get("/healthz").status == 200
