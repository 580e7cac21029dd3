"""Dropbox API v2: ``dropbox.upload`` puts a file (the process exported as JSON or CSV, or a file uploaded to
it) at a path, then makes (or finds) its shared link.

    POST {content}/2/files/upload                          Dropbox-API-Arg: {"path", "mode": "overwrite", …}
    POST {api}/2/sharing/create_shared_link_with_settings  409 shared_link_already_exists: its metadata's url
    (POST {api}/2/sharing/list_shared_links                when that 409 carries no metadata)

Uploading overwrites the file at its path, so a step tried again, or run again later, updates the one file
(its id stays) rather than adding another; the link of a file that is linked already is kept without asking.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import orjson

from procession.connectors.flow import Account, Done, Fail, Made, Next, Retry, Verdict, json_body, recorded
from procession.connectors.outbound import Call, Reply, retry_after_ms, transient
from procession.domain.connectors import Link

RATE_LIMITED_MS = 5_000  # a 429 that says nothing of when: as Dropbox's own client waits


def export_json(process: dict[str, Any]) -> bytes:
    return orjson.dumps(process, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)


def export_csv(process: dict[str, Any]) -> bytes:
    """A header row and one row: the root fields, then ``data.<shortId>`` and ``record.<key>``; objects and
    lists as JSON."""
    row: dict[str, Any] = {
        k: v for k, v in process.items() if k not in ("data", "derivedData", "record") and v is not None
    }
    for part in ("data", "derivedData", "record"):
        row |= {f"{part}.{k}": v for k, v in sorted((process.get(part) or {}).items())}
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(row)
    writer.writerow(v if isinstance(v, str | int | float) else orjson.dumps(v).decode() for v in row.values())
    return out.getvalue().encode()


class Upload:
    """One attempt of a ``dropbox.upload`` step."""

    def __init__(self, account: Account, path: str, content: bytes, link: Link | None) -> None:
        self.account, self.path, self.content, self.link = account, path, content, link
        self.phase = "upload"
        self.file: dict[str, Any] = {}

    @staticmethod
    def object_type(path: str) -> str:
        """A Dropbox file's link is one per path (case-insensitive, as Dropbox's paths are)."""
        return "file:" + path.lower()

    def call(self, deadline_s: float) -> tuple[Call, dict[str, Any]]:
        secret = self.account.headers()
        connector = self.account.connector
        if self.phase == "upload":
            arg = {"path": self.path, "mode": "overwrite", "autorename": False, "mute": True,
                   "strict_conflict": False}  # fmt: skip
            headers = {
                **secret,
                "Content-Type": "application/octet-stream",
                "Dropbox-API-Arg": json.dumps(arg, ensure_ascii=True, separators=(",", ":")),  # ASCII only
            }
            call = Call("POST", f"{connector.content_url}/2/files/upload", headers, self.content, deadline_s)
            return call, recorded(call, secret, body=f"<{len(self.content)} bytes>")
        target = self.file.get("path_lower") or self.path
        if self.phase == "share":
            route, body = "/2/sharing/create_shared_link_with_settings", {"path": target}
        else:
            route, body = "/2/sharing/list_shared_links", {"path": target, "direct_only": True}
        headers = {**secret, "Content-Type": "application/json"}
        call = Call("POST", connector.url(route), headers, orjson.dumps(body), deadline_s)
        return call, recorded(call, secret)

    def judge(self, reply: Reply, now: int) -> Verdict:
        body = json_body(reply)
        if 200 <= reply.status < 300 and isinstance(body, dict):
            if self.phase == "upload":
                self.file = body
                link = self.link
                if link is not None and link.url and link.external_id == body.get("id"):
                    return self._done(link.url)  # the same file, shared already
                self.phase = "share"
                return Next({"id": body.get("id"), "rev": body.get("rev")})
            if self.phase == "share":
                return self._done(body.get("url"))
            links = body.get("links") or []
            if links:
                return self._done(links[0].get("url"))
            return Fail("Dropbox listed no shared link for the file it refused to share again")
        error = body.get("error") if isinstance(body, dict) else None
        summary = str(body.get("error_summary")) if isinstance(body, dict) else reply.body[:200].decode()
        exists = isinstance(error, dict) and error.get(".tag") == "shared_link_already_exists"
        if reply.status == 409 and self.phase == "share" and exists:
            assert isinstance(error, dict)
            metadata = (error.get("shared_link_already_exists") or {}).get("metadata") or {}
            if metadata.get("url"):
                return self._done(metadata["url"])
            self.phase = "list"
            return Next({"shared_link_already_exists": True})
        if reply.status == 401:
            return Fail(f"Dropbox refused the connector's credentials (401): {summary}")
        if transient(reply.status):
            after = None
            if reply.status == 429:
                asked = (error or {}).get("retry_after") if isinstance(error, dict) else None
                after = (
                    int(asked * 1000)
                    if isinstance(asked, int | float)
                    else retry_after_ms(reply.headers, now)
                )
                after = RATE_LIMITED_MS if after is None else after
            return Retry(f"Dropbox {reply.status}: {summary}", after)
        return Fail(f"Dropbox {reply.status} on {self.phase}: {summary}")

    def _done(self, url: Any) -> Done:
        f = self.file
        made = Made(
            self.object_type(self.path),
            str(f.get("id")),
            str(url) if url else None,
            created=self.link is None,
        )
        output = {
            "id": f.get("id"),
            "path": f.get("path_display") or self.path,
            "rev": f.get("rev"),
            "size": f.get("size"),
            "url": made.url,
        }
        return Done(output, made)
