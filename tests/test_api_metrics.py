"""The API's metrics in memory (points_ledger.api.observe.ApiMetrics): each label set counted apart, also when
its child is remembered between requests."""

from __future__ import annotations

from prometheus_client import generate_latest

from points_ledger.api.observe import ApiMetrics


def _count(text: str, route: str, status: str, role: str) -> float:
    prefix = f'points_ledger_api_requests_total{{method="GET",role="{role}",route="{route}",status="{status}"}} '
    [line] = [line for line in text.splitlines() if line.startswith(prefix)]
    return float(line.removeprefix(prefix))


def test_each_label_set_counts_its_own_requests() -> None:
    metrics = ApiMetrics()
    for _ in range(3):
        metrics.observe("/v1/members/{member_id}", "GET", 200, "pos", 0.002)
    metrics.observe("/v1/members/{member_id}", "GET", 404, "pos", 0.001)
    metrics.observe("/v1/digest", "GET", 200, "finance", 0.2)
    text = generate_latest(metrics.registry).decode()
    assert _count(text, "/v1/members/{member_id}", "200", "pos") == 3
    assert _count(text, "/v1/members/{member_id}", "404", "pos") == 1
    assert _count(text, "/v1/digest", "200", "finance") == 1
    member_count = 'points_ledger_api_request_duration_seconds_count{method="GET",route="/v1/members/{member_id}"} 4.0'
    assert member_count in text
    assert 'points_ledger_api_request_duration_seconds_bucket{le="0.25",method="GET",route="/v1/digest"} 1.0' in text
