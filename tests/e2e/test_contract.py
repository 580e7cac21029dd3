"""The OpenAPI document as a contract: schemathesis against a running server, over every operation of
``/openapi.json``, its links included (so that stateful scenarios reach real ids), with a bounded number of
cases (``schemathesis.toml``): no 5xx, every reply as documented (status, media type, body, headers), OPTIONS
and 405 with ``Allow``, requests that break the document refused, valid ones accepted or refused by a rule
(422). Seeded: a failure comes back with the same seed (its output shows how to replay each case);
``PROCESSION_TEST_SEED`` tries another. Then, by hand, what the document says of headers, methods and types
and the server checks."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.e2e.conftest import Api

CONFIG = Path(__file__).with_name("schemathesis.toml")
SEED = os.environ.get("PROCESSION_TEST_SEED", "17")
TIMEOUT_S = 300  # a run takes well under a minute; past this it hangs
LEADS = "/v1/ext/procedure/lead/process"


def schemathesis(api: Api, workdir: Path, *args: str) -> str:
    """``st run`` on the server's document with the team's admin key; its output, once it passed. Every check
    is on (schemathesis's default; ``schemathesis.toml`` says where one cannot apply: a check named on the
    command line would override it)."""
    command = [
        str(Path(sys.executable).with_name("st")),
        "--config-file",
        str(CONFIG),
        "run",
        f"{api.url}/openapi.json",
        "--header",
        f"Authorization: {api.http.headers['Authorization']}",
        "--workers",
        "1",
        "--seed",
        SEED,
        "--generation-database",
        "none",
        "--no-color",
        *args,
    ]
    done = subprocess.run(command, cwd=workdir, capture_output=True, text=True, timeout=TIMEOUT_S)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-30_000:]
    return output


def test_every_operation_answers_as_its_document_says(api: Api, tmp_path: Path) -> None:
    output = schemathesis(api, tmp_path)
    tested = re.search(r"Tested:\s+(\d+)", output)
    operations = re.search(r"Operations:\s+(\d+) selected", output)
    assert tested and operations and tested[1] == operations[1], output  # none skipped


def test_stateful_scenarios_go_from_what_a_call_made_to_the_calls_on_it(api: Api, tmp_path: Path) -> None:
    """Scenarios that start from creations (procedures, processes, bulk jobs, automations, entities) and
    follow the document's links to the reads, updates, deletes, histories and jobs of what they made. The
    uploads and the webhook subscriptions are left out of this run: schemathesis starts scenarios only from
    the operations it judges sure to succeed when there are any, and those are the uploads and the creation of
    a subscription alone (every other creation takes a procedure or a body it cannot tell is real); the first
    run follows the links from those."""
    left_out = "^/v1/(ext/photo|admin/webhooks)"
    output = schemathesis(api, tmp_path, "--phases", "stateful", "--exclude-path-regex", left_out)
    covered = re.search(r"API Links:\s+(\d+) covered", output)
    assert covered and int(covered[1]) >= 5, output


def test_options_tells_the_methods_of_a_path_and_a_405_tells_them_too(api: Api) -> None:
    for path, methods in (
        (f"{LEADS}/any-id", "DELETE, GET, OPTIONS, PUT"),
        (f"{LEADS}/list", "OPTIONS, POST"),  # not the methods of /process/{processId}
        (f"{LEADS}/any-id/events", "GET, OPTIONS"),
        ("/v1/ext/photo/any-id", "GET, OPTIONS, POST"),
    ):
        r = api.client(None).options(path)  # no key needed: it says nothing of what exists
        assert (r.status_code, r.headers["Allow"], r.content) == (204, methods, b""), path
        refused = api.http.request("TRACE", path)
        assert (refused.status_code, refused.headers["Allow"]) == (405, methods), path
    assert api.http.options("/v1/nowhere").status_code == 404


def test_booleans_and_integers_are_never_coerced(api: Api) -> None:
    p = api.http.post(LEADS, json={"nextActionAt": "1618558867539"}).json()[
        "_data"
    ]  # a numeric string, as the spec
    assert p["nextActionAt"] == 1618558867539
    for body in ({"version": False}, {"version": "1"}, {"isDeleted": 0}, {"nextActionAt": True}):
        r = api.http.put(f"{LEADS}/{p['id']}", json=body)
        assert r.status_code == 422, (body, r.text)
    assert api.http.put(f"{LEADS}/{p['id']}", json={"version": 1.0, "isDeleted": False}).status_code == 200
    assert api.http.post(f"{LEADS}/list", json={"limit": "5"}).status_code == 422
    assert api.http.post(f"{LEADS}/list", json={"limit": 5, "includeDeleted": True}).status_code == 200
    automations = "/v1/admin/procedures/lead/automations"
    for retry in (
        {"maxAttempts": "3"},
        {"maxAttempts": 0},
        {"backoffSeconds": "x"},
        {"backoffSeconds": 1e300},
    ):
        r = api.http.post(automations, json={"name": "a", "trigger": {"type": "manual"}, "retry": retry})
        assert r.status_code == 422, (retry, r.text)  # some were 500s
    assert (
        api.http.post(
            automations, json={"name": "a", "trigger": {"type": "manual"}, "enabled": 1}
        ).status_code
        == 422
    )


def test_if_match_is_the_version_as_documented(api: Api) -> None:
    p = api.http.post(LEADS, json={}).json()["_data"]
    document = api.http.get("/openapi.json").json()
    header = next(
        h
        for h in document["paths"]["/v1/ext/procedure/{procedureShortId}/process/{processId}"]["put"][
            "parameters"
        ]
        if h["name"] == "If-Match"
    )
    assert header["schema"]["pattern"] == '^(W/)?("[0-9]{1,18}"|[0-9]{1,18})$'
    for value in ("²".encode("latin-1"), b"1.0", b'""1""', b"x", b"1" * 19):  # "²" is a str.isdigit(): a 500
        r = api.http.put(f"{LEADS}/{p['id']}", json={}, headers={"If-Match": value})
        assert (r.status_code, r.json()["_errors"][0]["code"]) == (422, "invalid_header"), value
    for version, value in enumerate(("1", '"2"', 'W/"3"'), start=2):
        r = api.http.put(f"{LEADS}/{p['id']}", json={"data": {"score": version}}, headers={"If-Match": value})
        assert (r.status_code, r.json()["_data"]["version"]) == (200, version), value
    assert api.http.put(f"{LEADS}/{p['id']}", json={}, headers={"If-Match": "1"}).status_code == 409


def test_a_download_is_sent_as_a_media_type(api: Api) -> None:
    r = api.http.post(
        "/v1/ext/photo", files={"photo": ("a.txt", b"x", "text/plain")}, data={"filetype": "äì"}
    )
    assert r.status_code == 422 and r.json()["_errors"][0]["field"] == "filetype", r.text
    sent = {"photo": ("a.bin", b"x", "not a type")}  # the part's own type, when no filetype: it was a 500
    stored = api.http.post("/v1/ext/photo", files=sent).json()["_data"]
    assert stored["filetype"] == "application/octet-stream"
    r = api.http.get(f"/v1/ext/photo/{stored['id']}")
    assert (r.status_code, r.headers["content-type"], r.content) == (200, "application/octet-stream", b"x")


def test_a_jobs_entries_show_each_item_as_sent(api: Api) -> None:
    """A bare number as a bulk item (invalid, kept as sent): SQLite gives a JSON column's number back as a
    number, not as text (found by the stateful run: it was a 500)."""
    items = [5, -3.5e177, "5", True, None, [1]]
    job = api.http.patch(LEADS, json={"processes": items}).json()["_data"]
    r = api.http.get(f"/v1/ext/background-job/{job['id']}/entries")
    assert r.status_code == 200, r.text
    assert [e["item"] for e in r.json()["_data"]] == items
