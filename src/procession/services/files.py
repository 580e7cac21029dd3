"""Uploaded files (photos, documents): stored under the data folder, one row each."""

from __future__ import annotations

import re
import secrets
from pathlib import Path
from typing import Any

from procession.domain.clock import new_id, now_ms
from procession.domain.errors import Conflict, Invalid, NotFound
from procession.store.uow import UnitsOfWork

UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def file_path(root: Path, team_id: str, file_id: str) -> Path:
    return root / team_id / file_id


def store_file(
    uows: UnitsOfWork,
    team_id: str,
    root: Path,
    *,
    content: bytes,
    filename: str,
    filetype: str,
    client_id: str | None = None,
) -> dict[str, Any]:
    """Keep an upload; ``client_id`` lets a client choose the id (a UUID) up front."""
    with uows.write(team_id) as uow:
        if client_id is not None and not UUID.match(client_id):
            raise Invalid.one("invalid_id", "the client id must be a UUID", "clientUUID")
        file_id = (client_id or new_id()).lower()
        if uow.files.get(file_id) is not None:
            raise Conflict(f"a file with id {file_id} exists", field="clientUUID")
        row = {
            "id": file_id,
            "filename": filename[:255],
            "filetype": filetype[:100],
            "size": len(content),
            "created_at": now_ms(),
        }
        path = file_path(root, uow.team_id, file_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        # written under a name of its own, then renamed once its row is in: a failed upload (a full disk,
        # say) leaves neither a partial file nor its file, and never replaces another upload's
        tmp = path.with_name(f"{file_id}.{secrets.token_hex(4)}.part")
        placed: int | None = None  # the inode put at ``path``
        try:
            tmp.write_bytes(content)
            uow.files.add(**row)  # on PostgreSQL, a concurrent upload of this id fails here, before a rename
            placed = tmp.stat().st_ino
            tmp.replace(path)
            uow.commit()
        except BaseException:
            tmp.unlink(missing_ok=True)
            if placed is not None and _inode(path) == placed:
                path.unlink(missing_ok=True)
            raise
        return {
            "id": file_id,
            "filename": row["filename"],
            "filetype": row["filetype"],
            "size": row["size"],
            "createdAt": row["created_at"],
        }


def _inode(path: Path) -> int | None:
    try:
        return path.stat().st_ino
    except FileNotFoundError:
        return None


def get_file(uows: UnitsOfWork, team_id: str, root: Path, file_id: str) -> tuple[dict[str, Any], Path]:
    with uows.read(team_id) as uow:
        found = uow.files.get(file_id)
        if found is None:
            raise NotFound(f"no file {file_id!r}")
        return found, file_path(root, uow.team_id, file_id)
