"""In-memory fakes of the domain's outside interfaces, for unit tests."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class FakeLookups:
    """The domain's ``Lookups`` protocol, answered from dicts: users, files, records, processes."""

    users: dict[str, str] = field(default_factory=dict)  # user id -> username
    files: set[str] = field(default_factory=set)  # uploaded file ids
    records: dict[str, str] = field(default_factory=dict)  # record id -> entity id
    processes: dict[str, str] = field(default_factory=dict)  # process id -> procedure id

    def user_id(self, ref: str) -> str | None:
        """The id of the user with this id or username."""
        if ref in self.users:
            return ref
        return next((uid for uid, name in self.users.items() if name == ref), None)

    def file_exists(self, file_id: str) -> bool:
        return file_id in self.files

    def record_exists(self, record_id: str, entity_id: str | None) -> bool:
        return record_id in self.records and entity_id in (None, self.records[record_id])

    def process_exists(self, process_id: str, procedure_id: str | None) -> bool:
        return process_id in self.processes and procedure_id in (None, self.processes[process_id])


def team_lookups() -> FakeLookups:
    """A small team: two users, two files, one customer record, one lead process."""
    return FakeLookups(
        users={"u-1": "shane.warne", "u-2": "rahul.dravid"},
        files={"file-1", "file-2"},
        records={"rec-1": "ent-customer"},
        processes={"proc-1": "pr-lead"},
    )
