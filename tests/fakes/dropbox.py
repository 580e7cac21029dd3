"""A fake Dropbox (API v2) for tests: a real HTTP server on a thread (``Receiver``) serving both the RPC
and the content routes, as Dropbox answers them: ``files/upload`` with its ``Dropbox-API-Arg`` header (mode
add: a 409 path/conflict on an existing file; overwrite: the same file, a new rev),
``sharing/create_shared_link_with_settings`` (a second one: 409 shared_link_already_exists with the link's
metadata), ``sharing/list_shared_links``; 401 without its token, 429 with ``retry_after`` and
``Retry-After`` when throttled. Its ledger (``files``, ``uploads``) lets a test count files."""

from __future__ import annotations

import hashlib
import itertools
import json
import threading
import uuid
from datetime import UTC, datetime
from typing import Any

from tests.fakes.receiver import Received, Receiver, Reply


class FakeDropbox(Receiver):
    def __init__(self, token: str = "sl.test-dropbox-token") -> None:
        super().__init__()
        self.token = token
        self._files: dict[str, dict[str, Any]] = {}  # path_lower -> metadata and content
        self._links: dict[str, str] = {}
        self._revs = itertools.count(1)
        self._throttled = 0
        self.uploads = 0
        self._ledger_lock = threading.Lock()

    def files(self) -> dict[str, bytes]:
        """Every file held now, by its path (the ledger)."""
        with self._ledger_lock:
            return {f["path_display"]: f["content"] for f in self._files.values()}

    def shared(self) -> dict[str, str]:
        with self._ledger_lock:
            return dict(self._links)

    def throttle(self, n: int) -> None:
        with self._ledger_lock:
            self._throttled = n

    def answer(self, received: Received, n: int) -> Reply:
        with self._ledger_lock:
            return self._answer(received)

    def _answer(self, r: Received) -> Reply:
        if r.headers.get("authorization") != f"Bearer {self.token}":
            return _route_error(401, "invalid_access_token/..", {".tag": "invalid_access_token"})
        if self._throttled > 0:
            self._throttled -= 1
            body = {"error_summary": "too_many_requests/..",
                    "error": {"reason": {".tag": "too_many_requests"}, "retry_after": 1}}  # fmt: skip
            return _json(429, body, {"Retry-After": "1"})
        if r.path == "/2/files/upload":
            return self._upload(r)
        try:
            args = json.loads(r.body)
        except ValueError:
            return Reply(400, b"Error in call to API function: request body could not be decoded as JSON")
        path = str(args.get("path", "")).lower()
        if r.path == "/2/sharing/create_shared_link_with_settings":
            if path not in self._files:
                return _route_error(409, "path/not_found/..", {".tag": "path", "path": {".tag": "not_found"}})
            if path in self._links:
                metadata = self._link_metadata(path)
                error = {".tag": "shared_link_already_exists",
                         "shared_link_already_exists": {".tag": "metadata", "metadata": metadata}}  # fmt: skip
                return _route_error(409, "shared_link_already_exists/..", error)
            self._links[path] = (
                f"https://www.dropbox.com/s/{uuid.uuid4().hex[:15]}/{self._files[path]['name']}?dl=0"
            )
            return _json(200, self._link_metadata(path))
        if r.path == "/2/sharing/list_shared_links":
            links = [self._link_metadata(path)] if path in self._links else []
            return _json(200, {"links": links, "has_more": False})
        return Reply(400, f"Unknown API function: {r.path}".encode())

    def _upload(self, r: Received) -> Reply:
        if r.headers.get("content-type") != "application/octet-stream":
            return Reply(400, b'Bad HTTP "Content-Type" header: expecting application/octet-stream')
        raw = r.headers.get("dropbox-api-arg", "")
        if not raw.isascii():
            return Reply(400, b"Dropbox-API-Arg header must be ASCII")
        arg = json.loads(raw)
        path = str(arg.get("path", ""))
        if not path.startswith("/"):
            return _route_error(
                409, "path/malformed_path/..", {".tag": "path", "reason": {".tag": "malformed_path"}}
            )
        mode = arg.get("mode", "add")
        mode = mode.get(".tag") if isinstance(mode, dict) else mode
        existing = self._files.get(path.lower())
        if existing is not None and mode == "add":
            error = {".tag": "path", "reason": {".tag": "conflict", "conflict": {".tag": "file"}},
                     "upload_session_id": uuid.uuid4().hex}  # fmt: skip
            return _route_error(409, "path/conflict/file/..", error)
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        metadata = {
            "name": path.rsplit("/", 1)[-1],
            "id": existing["id"] if existing else f"id:{uuid.uuid4().hex[:22]}",
            "client_modified": now,
            "server_modified": now,
            "rev": f"{next(self._revs):09x}",
            "size": len(r.body),
            "path_lower": path.lower(),
            "path_display": path,
            "content_hash": hashlib.sha256(r.body).hexdigest(),
            "is_downloadable": True,
        }
        self._files[path.lower()] = {**metadata, "content": r.body}
        self.uploads += 1
        return _json(200, metadata)

    def _link_metadata(self, path: str) -> dict[str, Any]:
        f = self._files[path]
        return {".tag": "file", "url": self._links[path], "name": f["name"], "path_lower": path, "id": f["id"],
                "link_permissions": {"can_revoke": True}, "rev": f["rev"], "size": f["size"]}  # fmt: skip


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> Reply:
    out = {"content-type": "application/json", "x-dropbox-request-id": uuid.uuid4().hex, **(headers or {})}
    return Reply(status, json.dumps(body).encode(), out)


def _route_error(status: int, summary: str, error: dict[str, Any]) -> Reply:
    return _json(status, {"error_summary": summary, "error": error})
