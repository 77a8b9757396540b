"""Small SVG charts drawn on the server (the dashboard): nothing loaded from elsewhere."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

PALETTE = ("#3370ff", "#34c724", "#ffc60a", "#f54a45", "#7f3bf5", "#14c0ff", "#ff8800")


def bars(title: str, items: Sequence[tuple[str, float]], unit: str = "") -> str:
    """Horizontal bars, one per (label, value), scaled to the largest; value printed beside."""
    width, row, label_width = 520, 26, 120
    height = max(row, row * len(items)) + 8
    top = max((value for _, value in items), default=0) or 1
    parts = [
        (
            f'<svg viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}" '
            f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>'
        )
    ]
    span = width - label_width - 90
    for index, (label, value) in enumerate(items):
        y = index * row + 4
        length = max(1.0, span * value / top) if value else 0.0
        colour = PALETTE[index % len(PALETTE)]
        shown = f"{value:,.1f}{unit}" if isinstance(value, float) and unit else f"{value:,}"
        parts.append(
            f'<text x="{label_width - 8}" y="{y + 16}" font-size="12" text-anchor="end" '
            f'fill="#1f2329">{escape(label)}</text>'
            f'<rect x="{label_width}" y="{y + 3}" width="{length:.1f}" height="{row - 8}" '
            f'rx="3" fill="{colour}"/>'
            f'<text x="{label_width + length + 6:.1f}" y="{y + 16}" font-size="12" '
            f'fill="#646a73">{escape(shown)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)
