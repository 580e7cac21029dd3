"""The console's settings and a process's requirements in a browser (Debian's Chromium through Playwright)
against a real ``procession serve``: a connector made with a credential that is never shown back, then
deleted; a webhook subscription whose secret is shown once, whose failed delivery is replayed from its log
to success against a local receiver; a user's role changed and a user removed, the last admin kept; a
board column paged by "More", a move refused naming the unmet requirement, the data edited, the move then
made."""
# ruff: noqa: F811 (the fixtures imported from test_console are this module's arguments)

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from procession.services.commands import CreateProcess, ProcedureInput
from procession.services.configuration import define_procedure
from procession.services.processes import create_process
from tests.conftest import Team
from tests.e2e.console_browser import Shots
from tests.e2e.test_console import (  # noqa: F401 (the fixtures, for a server of this module's own)
    admin,
    browser,
    page,
    receiver,
    shot,
    team,
    url,
)
from tests.fakes.receiver import Receiver, Reply

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("console-browser")]
SECRET = "Bearer never-shown-again-7"
DEAL = {
    "shortId": "deal", "label": "Deal",
    "attributes": [{"shortId": "title", "label": "Title", "type": "string"},
                   {"shortId": "amount", "label": "Amount", "type": "integer"}],
    "primaryKey": "title",
    "states": [{"shortId": "OPEN"}, {"shortId": "WON"}], "transitions": {"OPEN": ["WON"], "WON": ["OPEN"]},
    "requirements": [{"name": "priced", "use": "gate", "state": "WON", "condition": "process.data.amount > 0",
                      "message": "a deal is won at a price"}],
}  # fmt: skip


def test_a_connector_and_a_webhook_with_its_delivery_replayed(
    page: Page, team: Team, receiver: Receiver, shot: Shots
) -> None:
    page.goto("/settings")
    page.get_by_role("link", name="Connectors").click()
    page.get_by_label("Name").fill("crm")
    page.get_by_label("Kind").select_option("http")
    page.get_by_label("Base URL").fill(f"{receiver.url}/crm")
    page.locator("#c-http-auth").fill(SECRET)
    shot(page, "connector-new")
    page.get_by_role("button", name="Add the connector").click()
    expect(page.get_by_role("status")).to_contain_text("Connector crm saved")
    expect(page.locator("#connectors")).to_contain_text("auth: set")
    shot(page, "connectors")
    page.get_by_role("link", name="crm").click()
    expect(page.locator("#c-auth-state")).to_have_text("(set)")
    expect(page.locator("#c-auth")).to_have_value("")  # never shown back
    assert SECRET not in page.content()
    shot(page, "connector")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete this connector").click()
    expect(page.locator("#connectors")).to_contain_text("No connector yet")

    receiver.script("/hook", Reply(503, body=b"down for maintenance"))
    page.goto("/settings/webhooks")
    page.get_by_label("Endpoint URL").fill(f"{receiver.url}/hook")
    page.get_by_label("process.created").check()
    page.get_by_label("Attempts per delivery").fill("1")
    page.get_by_role("button", name="Subscribe").click()
    secret = page.locator("#new-secret").inner_text()
    assert secret.startswith("whsec_")
    shot(page, "webhook-made")
    team.services.run(create_process, team.caller, "ticket", CreateProcess.model_validate({}))
    page.get_by_role("link", name="Open it").click()
    failed = page.locator("#deliveries tbody tr").first
    expect(failed).to_contain_text("FAILED")  # the log updates itself while a delivery is being sent
    expect(failed).to_contain_text("down for maintenance")
    shot(page, "webhook-failed")
    failed.get_by_role("button", name="Replay delivery").click()
    expect(page.get_by_role("status")).to_contain_text("sent again")
    expect(page.locator("#deliveries tbody tr").first).to_contain_text("SUCCEEDED")
    shot(page, "webhook-replayed")
    assert secret not in page.content()
    assert len(receiver.received("/hook")) == 2


def test_a_users_role_is_changed_and_a_user_removed(page: Page, shot: Shots) -> None:
    page.goto("/settings/users")
    page.get_by_label("Role of admin", exact=True).select_option("member")
    page.get_by_role("button", name="Change the role of admin").click()
    expect(page.locator("#user-admin")).to_contain_text("a team keeps at least one admin")
    shot(page, "last-admin-kept")
    page.get_by_label("Role of rahul.dravid", exact=True).select_option("admin")
    page.get_by_role("button", name="Change the role of rahul.dravid").click()
    expect(page.get_by_label("Role of rahul.dravid", exact=True)).to_have_value("admin")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Remove rahul.dravid").click()
    expect(page.locator("#user-rahul\\.dravid")).to_have_count(0)
    shot(page, "user-removed")


def test_a_move_refused_by_a_requirement_is_made_once_the_data_meets_it(
    page: Page, team: Team, shot: Shots
) -> None:
    team.services.run(define_procedure, team.id, ProcedureInput.model_validate(DEAL))
    for n in range(24):
        body = CreateProcess.model_validate({"data": {"title": f"Deal {n:02d}"}})
        team.services.run(create_process, team.caller, "deal", body)
    page.goto("/procedures/deal")
    expect(page.locator("#requirement-priced")).to_contain_text("must hold to enter state WON")
    shot(page, "procedure-requirements")
    page.goto("/procedures/deal/board")
    lane = page.locator('.lane[data-state="OPEN"]')
    expect(lane.locator(".card")).to_have_count(20)
    lane.get_by_role("link", name="More OPEN").click()
    expect(lane.locator(".card")).to_have_count(24)
    expect(lane.get_by_role("link", name="More OPEN")).to_have_count(0)
    expect(lane.locator(".count")).to_have_text("(24)")
    shot(page, "board-more")
    card = lane.locator(".card", has_text="Deal 00")
    card.drag_to(page.locator('.lane[data-state="WON"]'))
    message = page.locator("#board-message")
    expect(message).to_contain_text("requirement 'priced' for state WON is not met")
    expect(message).to_contain_text("reads data.amount")
    shot(page, "board-refused-by-requirement")
    card.get_by_role("link", name="Deal 00").click()
    expect(page.locator("#requirements")).to_contain_text("not met")
    expect(page.get_by_text("Cannot enter WON until priced is met.")).to_be_visible()
    shot(page, "process-requirements")
    page.get_by_role("link", name="Edit the data").click()
    expect(page.get_by_label("Title")).to_have_value("Deal 00")  # the values stored
    page.get_by_label("Amount").fill("1200")
    page.get_by_role("button", name="Save the Deal").click()
    expect(page.get_by_role("status")).to_contain_text("Saved")
    shot(page, "edit-saved")
    page.get_by_role("link", name="Back to the process").click()
    page.get_by_label("Move from OPEN to").select_option("WON")
    page.get_by_role("button", name="Move", exact=True).click()
    expect(page.locator("dl.fields").first).to_contain_text("WON")
    expect(page.locator("#timeline")).to_contain_text("→ 1200")
    shot(page, "process-won")
