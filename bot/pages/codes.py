"""Codes a till scans, drawn on the server as inline SVG: a QR code (segno) and a Code 128
barcode (python-barcode encodes; the bars are drawn here as one path, a tenth of the size of
the library's own SVG writer, which draws a rectangle per bar in millimetres)."""

from __future__ import annotations

from html import escape

import segno
from barcode import Code128

# The quiet zone either side of the bars, in modules (Code 128 asks for at least 10).
QUIET_MODULES = 10
BAR_HEIGHT = 60


def qr_svg(text: str, label: str) -> str:
    """``text`` as a QR code (error correction M; never a Micro QR, which segno picks for
    short data and many tills cannot read), scalable to its box."""
    svg = segno.make(text, error="m", micro=False).svg_inline(
        scale=4, border=2, omitsize=True, light="#fff"
    )
    return svg.replace("<svg ", f'<svg role="img" aria-label="{escape(label)}" ', 1)


def barcode_svg(text: str, label: str) -> str:
    """``text`` as a Code 128 barcode: one path of bars, scalable to its box."""
    modules = Code128(text).build()[0]
    width = len(modules) + 2 * QUIET_MODULES
    bars = []
    start = None
    for index, module in enumerate(modules + "0"):
        if module == "1" and start is None:
            start = index
        elif module == "0" and start is not None:
            bars.append(
                f"M{start + QUIET_MODULES} 0h{index - start}v{BAR_HEIGHT}h-{index - start}z"
            )
            start = None
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {BAR_HEIGHT}" '
        f'preserveAspectRatio="none" role="img" aria-label="{escape(label)}">'
        f'<rect width="{width}" height="{BAR_HEIGHT}" fill="#fff"/>'
        f'<path fill="#000" d="{"".join(bars)}"/></svg>'
    )
