"""Text a request may hold: every string and key must be encodable as UTF-8. JSON lets a body name a lone
UTF-16 surrogate (``"\\ud800"``, or its bytes in CESU-8), which Python's decoder keeps; such text can be
neither stored (JSON columns, PostgreSQL's text) nor compared, so it is refused where bodies are read,
naming where it is."""

from __future__ import annotations

from typing import Any

import orjson

from procession.domain.errors import Invalid

MESSAGE = "text must be Unicode that UTF-8 can encode: {found} is a lone UTF-16 surrogate"


def _lone(text: str) -> str | None:
    """The first lone surrogate of ``text``, if any."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        return text[e.start]
    return None


def shown(text: str) -> str:
    """``text`` with its lone surrogates replaced by U+FFFD, so that it can be shown (and encoded)."""
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def unencodable(value: Any, path: str = "") -> tuple[str, str] | None:
    """Where ``value`` (decoded JSON) holds a lone surrogate, in a string or a key: (its path, e.g.
    ``data.city`` or ``where.or.0.city``, shown with U+FFFD in place of surrogates; the surrogate), or None.
    Without recursion: a body may nest as deep as the decoder allows."""
    try:
        orjson.dumps(value)  # fast, and refuses lone surrogates; also big integers or deep nesting, so:
        return None
    except TypeError:
        pass
    stack: list[tuple[Any, str]] = [(value, path)]
    while stack:
        value, here = stack.pop()
        if isinstance(value, str):
            if (found := _lone(value)) is not None:
                return shown(here) or "body", found
        elif isinstance(value, dict):
            for key, inner in reversed(value.items()):
                where = f"{here}.{key}" if here else str(key)
                if isinstance(key, str) and (found := _lone(key)) is not None:
                    return shown(where), found
                stack.append((inner, where))
        elif isinstance(value, list):
            stack.extend(
                (inner, f"{here}.{i}" if here else str(i)) for i, inner in reversed(list(enumerate(value)))
            )
    return None


def check_encodable(value: Any, path: str = "") -> None:
    """``Invalid`` (``invalid_character``, naming the field) if ``value`` holds a lone surrogate."""
    found = unencodable(value, path)
    if found is not None:
        where, surrogate = found
        raise Invalid.one("invalid_character", MESSAGE.format(found=f"\\u{ord(surrogate):04x}"), where)
