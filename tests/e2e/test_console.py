"""The console in a browser (Debian's Chromium, driven by Playwright) against a real ``procession serve``:
signing in and out, a member kept out of the settings, a lead created from the form and moved across the
board (and a move the state graph refuses, with its reason), its timeline, an automation run by hand against
a local receiver, a failed run resumed, a batch over 1,000 processes from the control panel watched to
100%, an API key made and revoked, and ``/docs`` with nothing fetched from elsewhere."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from procession.bootstrap import Services
from procession.services.accounts import set_password
from procession.services.automations import AutomationInput, save_automation
from procession.services.commands import CreateProcess, ProcedureInput
from procession.services.configuration import define_procedure
from procession.services.processes import create_in, create_process
from tests.conftest import Team, make_team
from tests.e2e.conftest import free_port, server_env, start, stop, wait_until_up
from tests.e2e.console_browser import FLAGS, Shots, chromium_or_skip
from tests.fakes.receiver import Receiver, Reply

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("console-browser")]
ADMIN_PASSWORD, MEMBER_PASSWORD = "admin password 1", "member password 1"
QUICK = {"maxAttempts": 2, "backoffSeconds": 0.05}
SLOW = 20_000  # ms: what the server may take under a loaded machine


@pytest.fixture(scope="module")
def team(sqlite_services: Services) -> Team:
    team = make_team(sqlite_services)
    sqlite_services.run(set_password, team.id, "admin", ADMIN_PASSWORD)
    sqlite_services.run(set_password, team.id, "shane.warne", MEMBER_PASSWORD)
    return team


@pytest.fixture(scope="module")
def url(sqlite_services: Services, team: Team) -> Iterator[str]:
    port = free_port()
    proc = start("serve", server_env(sqlite_services), port)
    try:
        wait_until_up(f"http://127.0.0.1:{port}")
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc)


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    path = chromium_or_skip()
    with sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=path, args=FLAGS)
        yield launched
        launched.close()


@pytest.fixture
def shot(request: pytest.FixtureRequest) -> Shots:
    return Shots(request.node.name)


def signed_in(browser: Browser, url: str, team: Team, username: str, password: str) -> BrowserContext:
    context = browser.new_context(base_url=url, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(SLOW)
    page = context.new_page()
    page.goto("/sign-in")
    page.get_by_label("Team").fill(team.slug)
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Procedures")).to_be_visible()
    page.close()
    return context


@pytest.fixture(scope="module")
def admin(browser: Browser, url: str, team: Team) -> Iterator[BrowserContext]:
    context = signed_in(browser, url, team, "admin", ADMIN_PASSWORD)
    yield context
    context.close()


@pytest.fixture
def page(admin: BrowserContext) -> Iterator[Page]:
    page = admin.new_page()
    yield page
    page.close()


def a_lead(team: Team, **data: Any) -> str:
    _, lead = team.services.run(
        create_process, team.caller, "lead", CreateProcess.model_validate({"data": data})
    )
    return str(lead["id"])


def automation(team: Team, procedure: str, body: dict[str, Any]) -> str:
    saved = team.services.run(
        save_automation, team.id, procedure, AutomationInput.model_validate({"retry": QUICK} | body)
    )
    return str(saved["id"])


def test_sign_in_and_out(browser: Browser, url: str, team: Team, shot: Shots) -> None:
    context = browser.new_context(base_url=url)
    page = context.new_page()
    page.goto("/procedures/lead")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    shot(page, "sign-in")
    page.get_by_label("Team").fill(team.slug)
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("the team, username or password is wrong")
    shot(page, "sign-in-refused")
    page.get_by_label("Password").fill(ADMIN_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Lead")).to_be_visible()  # back where it was going
    shot(page, "procedure")
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.goto("/procedures")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    context.close()


def test_a_member_is_refused_the_settings(browser: Browser, url: str, team: Team, shot: Shots) -> None:
    context = signed_in(browser, url, team, "shane.warne", MEMBER_PASSWORD)
    page = context.new_page()
    page.goto("/procedures")
    expect(page.get_by_role("navigation", name="Main").get_by_role("link", name="Settings")).to_have_count(0)
    shot(page, "procedures-as-member")
    reply = page.goto("/settings")
    assert reply is not None and reply.status == 403
    expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()
    shot(page, "settings-refused")
    context.close()


def test_create_a_lead_from_the_form(page: Page, shot: Shots) -> None:
    page.goto("/procedures/lead/processes/new")
    shot(page, "new-lead")
    page.get_by_label("Firstname").fill("Ted")
    page.get_by_label("Lastname").fill("Mosby")
    page.get_by_label("Score").fill("5")
    page.get_by_label("Phone number").fill("7701214822")
    page.get_by_label("Email").fill("ted.mosby@yahoo.com")
    page.get_by_label("Assignee").select_option("rahul.dravid")
    page.get_by_role("button", name="Create Lead").click()
    expect(page.get_by_role("heading", name="LEAD-")).to_be_visible()
    expect(page.locator("dl.fields").first).to_contain_text("Rahul Dravid")
    expect(page.get_by_text("Ted Mosby")).to_be_visible()  # the derived full name
    expect(page.get_by_text("ted.mosby@yahoo.com")).to_be_visible()  # its record's
    shot(page, "lead")
    page.goto("/procedures/lead/processes?attribute=lastname&value=Mosby")
    expect(page.locator("#processes tbody tr")).to_have_count(1)
    shot(page, "lead-table")


def test_move_a_lead_across_the_board_and_a_refused_move(page: Page, team: Team, shot: Shots) -> None:
    lead = a_lead(team, firstname="Barney", lastname="Stinson")
    page.goto("/procedures/lead/board")
    card = page.locator(f'.card[data-id="{lead}"]')
    expect(page.locator('.lane[data-state="NEW"]').locator(card)).to_have_count(1)
    shot(page, "board")
    card.drag_to(page.locator('.lane[data-state="IN_PROGRESS"]'))  # by drag
    expect(page.locator('.lane[data-state="IN_PROGRESS"]').locator(f'.card[data-id="{lead}"]')).to_have_count(
        1
    )
    shot(page, "board-moved")
    card = page.locator(f'.card[data-id="{lead}"]')
    card.get_by_label("Move to").select_option("CONVERTED")  # by keyboard
    card.get_by_role("button", name="Move").focus()
    page.keyboard.press("Enter")
    expect(page.locator('.lane[data-state="CONVERTED"]').locator(f'.card[data-id="{lead}"]')).to_have_count(1)
    card = page.locator(f'.card[data-id="{lead}"]')
    expect(card.get_by_label("Move to")).to_have_count(0)  # no move is allowed from CONVERTED
    card.drag_to(page.locator('.lane[data-state="NEW"]'))
    expect(page.locator("#board-message")).to_contain_text("cannot move from CONVERTED to NEW")
    expect(page.locator('.lane[data-state="CONVERTED"]').locator(f'.card[data-id="{lead}"]')).to_have_count(1)
    shot(page, "board-refused")
    page.goto(f"/processes/{lead}")  # its timeline: who changed what
    timeline = page.locator("#timeline")
    expect(timeline).to_contain_text("state changed by admin")
    expect(timeline).to_contain_text("IN_PROGRESS → CONVERTED")
    expect(timeline).to_contain_text("NEW → IN_PROGRESS")
    expect(timeline).to_contain_text("created by admin")
    shot(page, "process-timeline")


def test_run_an_automation_by_hand(page: Page, team: Team, receiver: Receiver, shot: Shots) -> None:
    page.goto("/procedures/lead/automations")
    page.get_by_role("link", name="New automation").click()
    page.get_by_label("Name").fill("push to crm")
    page.get_by_label("Runs when").select_option(label="only when someone runs it")
    page.get_by_label("Steps").fill(
        '[{"name": "post", "type": "http", "method": "POST", "url": "{{ data.( }}"}]'
    )
    page.get_by_label("Attempts per step").fill("2")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#steps-error")).to_contain_text("steps[0]")  # where the mistake is
    shot(page, "automation-refused")
    step = f'[{{"name": "post", "type": "http", "method": "POST", "url": "{receiver.url}/by-hand"}}]'
    page.get_by_label("Steps").fill(step)
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_have_text("Saved.")
    shot(page, "automation-saved")
    lead = a_lead(team, firstname="Robin", lastname="Scherbatsky")
    page.goto(f"/processes/{lead}")
    shot(page, "process")
    page.get_by_role("button", name="Run “push to crm”").click()
    expect(page.locator("#run-status")).to_have_text("SUCCEEDED")
    expect(page.locator("#attempts")).to_contain_text("200")
    shot(page, "run-succeeded")
    assert len(receiver.received("/by-hand")) == 1
    page.goto("/procedures/lead/automations")
    expect(page.locator("#automations")).to_contain_text("push to crm")
    shot(page, "automations")


def test_a_failed_run_is_resumed(page: Page, team: Team, receiver: Receiver, shot: Shots) -> None:
    receiver.script("/flaky", Reply(500), Reply(500))
    step = {"name": "call", "type": "http", "method": "POST", "url": f"{receiver.url}/flaky"}
    automation(team, "lead", {"name": "flaky", "trigger": {"type": "manual"}, "steps": [step]})
    lead = a_lead(team, firstname="Lily", lastname="Aldrin")
    page.goto(f"/processes/{lead}")
    page.get_by_role("button", name="Run “flaky”").click()
    expect(page.locator("#run-status")).to_have_text("FAILED")
    expect(page.locator("#attempts")).to_contain_text("500")
    shot(page, "run-failed")
    page.get_by_role("button", name="Resume from the failed step").click()
    expect(page.locator("#run-status")).to_have_text("SUCCEEDED")
    shot(page, "run-resumed")


def test_a_batch_over_1000_processes_from_the_control_panel(page: Page, team: Team, shot: Shots) -> None:
    team.services.run(
        define_procedure, team.id,
        ProcedureInput.model_validate(
            {"shortId": "visit", "label": "Visit", "attributes": [{"shortId": "n", "type": "integer"},
             {"shortId": "note", "type": "string"}], "states": [{"shortId": "OPEN"}]}
        ),
    )  # fmt: skip
    with team.uow() as uow:
        for n in range(1000):
            create_in(uow, team.caller, "visit", CreateProcess.model_validate({"data": {"n": n}}))
        uow.commit()
    step = {"name": "mark", "type": "update_process", "data": {"note": "'seen'"}}
    automation(team, "visit", {"name": "mark seen", "trigger": {"type": "manual"}, "steps": [step]})
    page.goto("/control-panel?procedure=visit")
    expect(page.locator("#count")).to_have_text("1,000 matching processes")
    page.get_by_label("Status").select_option("OPEN")
    page.get_by_label("Automation").select_option(label="mark seen")
    shot(page, "control-panel")
    page.get_by_role("button", name="Start the batch").click()
    expect(page.locator("#job-percent")).to_have_text("100%", timeout=60_000)
    expect(page.locator("#job-status")).to_have_text("COMPLETED")
    expect(page.locator("#job-progress")).to_have_attribute("value", "100")
    shot(page, "batch-done")
    page.goto("/jobs")
    expect(page.locator("table.list")).to_contain_text("1000 / 0 / 1000")
    shot(page, "jobs")


def test_create_and_revoke_an_api_key(page: Page, url: str, shot: Shots) -> None:
    page.goto("/settings")
    shot(page, "settings")
    page.get_by_role("link", name="API keys").click()
    page.get_by_label("Label").fill("warehouse sync")
    page.get_by_label("Role").select_option("member")
    page.get_by_role("button", name="Create a key").click()
    key = page.locator("#new-key").inner_text()
    assert key.startswith("prk_")
    shot(page, "key-made")
    config = f"{url}/v1/ext/config"
    assert httpx.get(config, headers={"Authorization": f"Bearer {key}"}).status_code == 200
    page.goto("/settings/keys")
    expect(page.locator("#new-key")).to_have_count(0)  # shown once
    page.get_by_role("button", name="Revoke key " + key[:12] + " warehouse sync").click()
    expect(page.locator("#keys tr", has_text="warehouse sync")).to_contain_text("revoked")
    shot(page, "key-revoked")
    assert httpx.get(config, headers={"Authorization": f"Bearer {key}"}).status_code == 401
    page.goto("/settings/users")
    shot(page, "users")


def test_docs_render_offline(page: Page, url: str, shot: Shots) -> None:
    outside: list[str] = []

    def only_local(route: Any) -> None:
        if route.request.url.startswith(url):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", only_local)
    page.goto("/docs")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("Procession")
    expect(page.locator(".opblock").first).to_be_visible()
    shot(page, "docs")
    assert outside == []


def test_every_other_page_renders(page: Page, team: Team, shot: Shots) -> None:
    lead = a_lead(team, firstname="Marshall", lastname="Eriksen")
    for path, heading in [
        ("/procedures", "Procedures"), ("/procedures/lead", "Lead"), ("/procedures/ticket/board", "Ticket: board"),
        ("/procedures/lead/automations/new", "New automation"), ("/jobs", "Jobs"),
        ("/entities/customer/records", "Customer records"), (f"/processes/{lead}", "LEAD-"),
    ]:  # fmt: skip
        reply = page.goto(path)
        assert reply is not None and reply.status == 200, path
        expect(page.get_by_role("heading", name=heading).first).to_be_visible()
        shot(page, path.strip("/").replace("/", "-"))
    page.set_viewport_size({"width": 390, "height": 844})  # a phone
    page.goto("/procedures/lead/processes")
    shot(page, "phone-processes")
