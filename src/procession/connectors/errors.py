"""What an outbound call can fail with, and what each means for a retry."""

from __future__ import annotations


class Refused(Exception):
    """The address or URL is not allowed (the message says which and why), or the call cannot be made as
    written; trying again cannot help."""


class Unreachable(Exception):
    """No reply: a transient failure worth retrying. ``timed_out`` when the deadline cut the call."""

    def __init__(self, message: str, *, timed_out: bool = False) -> None:
        super().__init__(message)
        self.timed_out = timed_out
