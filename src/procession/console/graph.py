"""A procedure's state graph drawn as SVG by the server: the states in a row, each allowed move an arrow
(moves to the right arc above the row, moves to the left below it), the initial state outlined twice."""

from __future__ import annotations

from typing import Any

from markupsafe import Markup, escape

BOX_W, BOX_H, GAP, TOP = 140, 40, 40, 20


def state_graph(procedure: dict[str, Any]) -> Markup:
    states = [s["shortId"] for s in procedure["states"]]
    at = {s: i for i, s in enumerate(states)}
    moves = [
        (a, b) for a, targets in procedure["transitions"].items() for b in targets if a in at and b in at
    ]
    span = max([abs(at[a] - at[b]) for a, b in moves] or [1])
    lift = 28 * span + 10  # room for the highest arc
    y = TOP + lift
    width = len(states) * (BOX_W + GAP) + GAP
    height = y + BOX_H + lift + TOP
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="graph" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-labelledby="graph-title">',
        '<title id="graph-title">State graph: ' + escape(_described(procedure, moves)) + "</title>",
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#445"/></marker></defs>',
    ]
    for a, b in moves:
        i, j = at[a], at[b]
        x1, x2 = _centre(i) + (8 if j > i else -8), _centre(j) + (-8 if j > i else 8)
        if j > i:  # above
            edge, peak = y, y - 28 * (j - i) - 10
        else:  # below
            edge, peak = y + BOX_H, y + BOX_H + 28 * (i - j) + 10
        parts.append(
            f'<path d="M{x1},{edge} Q{(x1 + x2) / 2},{peak * 2 - edge} {x2},{edge}" fill="none" '
            f'stroke="#445" stroke-width="1.5" marker-end="url(#arrow)"/>'
        )
    initial = procedure.get("initialState")
    for i, s in enumerate(states):
        x = GAP + i * (BOX_W + GAP)
        stroke = 3 if s == initial else 1.5
        parts.append(
            f'<rect x="{x}" y="{y}" width="{BOX_W}" height="{BOX_H}" rx="8" fill="#eef3ff" stroke="#335" '
            f'stroke-width="{stroke}"/><text x="{x + BOX_W / 2}" y="{y + 25}" text-anchor="middle" '
            f'font-size="13" font-family="sans-serif">{escape(s)}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def _centre(i: int) -> float:
    return GAP + i * (BOX_W + GAP) + BOX_W / 2


def _described(procedure: dict[str, Any], moves: list[tuple[str, str]]) -> str:
    listed = "; ".join(f"{a} to {b}" for a, b in moves) or "no moves"
    return f"starts at {procedure.get('initialState')}; moves: {listed}"
