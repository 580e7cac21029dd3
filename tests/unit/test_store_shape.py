"""Rows of ``processes`` become ``Process`` objects positionally: the column map must follow the fields."""

from __future__ import annotations

from dataclasses import fields

from procession.domain.process import Process
from procession.store.repositories.processes import _PROCESS_COLUMNS


def test_process_columns_follow_the_process_fields_in_order() -> None:
    assert list(_PROCESS_COLUMNS) == [f.name for f in fields(Process)]
