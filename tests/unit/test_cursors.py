"""List cursors are signed with the server's key and their values checked against the sort keys: one edited,
made with another key, for another query, or holding values of the wrong type is refused (400)."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from procession.config import Settings
from procession.domain.errors import BadRequest
from procession.domain.query import Field, SortKey
from procession.store import search
from procession.store.search import decode_cursor, encode_cursor, with_tiebreak

KEY = b"k" * 32
KEYS = with_tiebreak(
    [
        SortKey(Field("data", "a1", kind="number"), True),
        SortKey(Field("data", "a2", kind="text"), False),
        SortKey(Field("is_deleted", kind="boolean", nullable=False), False),
    ]
)
VALUES: list[Any] = [5.0, "Pune", False, "p-1"]


def signed(key: bytes, sig: str, values: list[Any]) -> str:
    """A cursor as ``encode_cursor`` makes one, of any JSON values (integers past 64 bits too)."""
    payload = json.dumps({"s": sig, "v": values}).encode()
    return f"{search._b64(payload)}.{search._b64(search._tag(key, payload))}"


def refused(cursor: str, *, key: bytes = KEY, sig: str = "sig", keys: list[SortKey] = KEYS) -> None:
    with pytest.raises(BadRequest) as caught:
        decode_cursor(key, cursor, sig, keys)
    assert (caught.value.code, caught.value.field) == ("invalid_cursor", "cursor")


def resigned(cursor: str, edit: Any) -> str:
    """``cursor`` with its payload edited by ``edit`` and its tag kept (what a client can do)."""
    payload, tag = cursor.split(".")
    decoded = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    edit(decoded)
    return base64.urlsafe_b64encode(orjson.dumps(decoded)).rstrip(b"=").decode() + "." + tag


def test_a_cursor_round_trips() -> None:
    cursor = encode_cursor(KEY, "sig", VALUES)
    assert decode_cursor(KEY, cursor, "sig", KEYS) == VALUES
    nulls = [None, None, False, "p-2"]  # nullable keys may hold NULL
    assert decode_cursor(KEY, encode_cursor(KEY, "sig", nulls), "sig", KEYS) == nulls


def test_an_edited_cursor_is_refused() -> None:
    cursor = encode_cursor(KEY, "sig", VALUES)
    refused(resigned(cursor, lambda d: d["v"].__setitem__(0, 6.0)))
    refused(resigned(cursor, lambda d: d["v"].__setitem__(0, {"$gt": 1})))
    refused(resigned(cursor, lambda d: d.__setitem__("s", "other")))
    payload, tag = cursor.split(".")
    refused(f"{payload}.{tag[:-2]}AA")  # the tag edited
    refused(payload)  # no tag
    # the unsigned form the server made before: a plain hash anyone can recompute
    old = base64.urlsafe_b64encode(orjson.dumps({"s": "sig", "v": [[1], 2, 3, 4]})).decode()
    refused(old)
    for garbage in ("", ".", "é.é", "%%%.%%%", "a" * 100_000, "e30.e30"):
        refused(garbage)


def test_a_cursor_of_another_key_or_query_is_refused(tmp_path: Path) -> None:
    refused(encode_cursor(b"another key of 32 bytes........", "sig", VALUES))
    refused(encode_cursor(KEY, "sig", VALUES), sig="another query")
    refused(encode_cursor(KEY, "sig", VALUES), keys=KEYS[:2])  # another sort: another width
    # two settings on one data folder share the generated key; another folder has another
    one, same, other = (
        Settings(data_dir=tmp_path),
        Settings(data_dir=tmp_path),
        Settings(data_dir=tmp_path / "x"),
    )
    assert one.secret() == same.secret() != other.secret()
    assert (tmp_path / "secret-key").stat().st_mode & 0o777 == 0o600
    refused(encode_cursor(one.secret(), "sig", VALUES), key=other.secret())
    assert Settings(data_dir=tmp_path / "x", secret_key="s" * 16).secret() == b"s" * 16


@pytest.mark.parametrize(
    "values",
    [
        ["5", "Pune", False, "p-1"],  # a number key given text
        [True, "Pune", False, "p-1"],  # ... a bool
        [5, "Pune", False, 2**70],  # the id given a number past 64 bits (orjson reads it as a float)
        [5, ["Pune"], False, "p-1"],  # a text key given a list
        [5, {"x": 1}, False, "p-1"],  # ... an object
        [5, "Pune", 0, "p-1"],  # a boolean key given a number
        [5, "Pune", None, "p-1"],  # a key that is never NULL given NULL
        [5, "Pune", False, 7],  # the id given a number
        [5, "Pune", False],  # too few
        [5, "Pune", False, "p-1", "p-2"],  # too many
    ],
)
def test_values_of_the_wrong_type_are_refused_even_signed(values: list[Any]) -> None:
    refused(signed(KEY, "sig", values))


def test_the_signature_is_an_hmac_of_the_payload() -> None:
    """Not a hash anyone can recompute: the tag changes with the key."""
    cursor = encode_cursor(KEY, "sig", VALUES)
    payload = cursor.split(".")[0]
    plain = base64.urlsafe_b64encode(hashlib.sha256(payload.encode()).digest()).rstrip(b"=").decode()
    refused(f"{payload}.{plain}")
    assert cursor != encode_cursor(b"x" * 32, "sig", VALUES)
