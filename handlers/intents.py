"""Comparing short fixed words members type (结束, 返回…): case, full width and trailing
punctuation do not matter. Understanding free text is ``handlers/understanding``'s."""

from __future__ import annotations

import unicodedata

_TRAILING = " \t\r\n。.!！~～、，,"


def normalize(text: str) -> str:
    """Fold full-width forms and case, trim space and trailing punctuation."""
    folded = unicodedata.normalize("NFKC", text).strip().casefold()
    # "积分？" asks for 积分, but a lone "?" is itself a keyword.
    return folded.rstrip(_TRAILING).rstrip("?") or folded
