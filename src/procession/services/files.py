"""Uploaded files (photos, documents): stored under the data folder, one row each."""

from __future__ import annotations

import re
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
        path = file_path(root, uow.team_id, file_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".part")
        tmp.write_bytes(content)
        row = {
            "id": file_id,
            "filename": filename[:255],
            "filetype": filetype[:100],
            "size": len(content),
            "created_at": now_ms(),
        }
        uow.files.add(**row)
        tmp.replace(path)
        uow.commit()
        return {
            "id": file_id,
            "filename": row["filename"],
            "filetype": row["filetype"],
            "size": row["size"],
            "createdAt": row["created_at"],
        }


def get_file(uows: UnitsOfWork, team_id: str, root: Path, file_id: str) -> tuple[dict[str, Any], Path]:
    with uows.read(team_id) as uow:
        found = uow.files.get(file_id)
        if found is None:
            raise NotFound(f"no file {file_id!r}")
        return found, file_path(root, uow.team_id, file_id)
