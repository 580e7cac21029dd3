"""Rows of ``processes`` become ``Process`` objects positionally: the column map must follow the fields, and
name a column of the table for each."""

from __future__ import annotations

from dataclasses import fields

from procession.domain.process import Process
from procession.store import tables as t
from procession.store.batch import FIXED, MUTABLE


def test_process_columns_follow_the_process_fields_in_order() -> None:
    assert list(t.PROCESS_COLUMNS) == [f.name for f in fields(Process)]
    assert all(column in t.processes.c for column in t.PROCESS_COLUMNS.values())


def test_a_save_may_write_every_field_but_those_set_when_a_process_is_created() -> None:
    assert set(MUTABLE) == {f.name for f in fields(Process)} - FIXED
    assert MUTABLE["state"] == ("state_id", "text") and MUTABLE["data"] == ("data", "jsonb")
    assert (MUTABLE["version"], MUTABLE["is_deleted"]) == (("version", "integer"), ("is_deleted", "boolean"))
