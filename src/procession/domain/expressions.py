"""Formulas: Common Expression Language (CEL), safe and non-Turing-complete. Never Python ``eval``."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import cel


@lru_cache(maxsize=4096)
def compile_formula(source: str) -> Any:
    """The compiled program for ``source``; ``ValueError`` with the parser's message if malformed."""
    try:
        return cel.compile(source)
    except Exception as e:  # the binding raises several types for bad input
        raise ValueError(str(e).splitlines()[0]) from None


def evaluate(source: str, variables: dict[str, Any]) -> Any:
    """The formula's value, or ``None`` when it cannot be computed (a missing value, a type mismatch)."""
    try:
        return compile_formula(source).execute(variables)
    except Exception:
        return None


def compute(source: str, variables: dict[str, Any]) -> Any:
    """The expression's value; ``ValueError`` saying why when it cannot be computed (a missing value, a
    type mismatch): for automations, where that is the run's failure, recorded with its input."""
    try:
        return compile_formula(source).execute(variables)
    except ValueError:
        raise
    except Exception as e:
        raise ValueError(f"{source}: {type(e).__name__}: {e}") from None
