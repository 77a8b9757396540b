"""Turning a member's words or menu click into an intent, per the ``[chat]`` settings."""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping, Sequence

_TRAILING = " \t\r\n。.!！~～、，,"


def normalize(text: str) -> str:
    """Fold full-width forms and case, trim space and trailing punctuation."""
    folded = unicodedata.normalize("NFKC", text).strip().casefold()
    # "积分？" asks for 积分, but a lone "?" is itself a keyword.
    return folded.rstrip(_TRAILING).rstrip("?") or folded


class IntentMatcher:
    """Looks up keywords and menu keys in tables built once from the configuration."""

    def __init__(self, keywords: Mapping[str, Sequence[str]], menu_keys: Mapping[str, str]) -> None:
        self.keywords = {name: list(words) for name, words in keywords.items()}
        self._by_word = {
            normalize(word): name for name, words in keywords.items() for word in words
        }
        self._by_menu_key = dict(menu_keys)

    def for_text(self, text: str) -> str | None:
        """The intent a message's text asks for, if it is one of the keywords."""
        return self._by_word.get(normalize(text)) if text else None

    def for_menu_key(self, key: str) -> str | None:
        """The intent a menu CLICK key stands for."""
        return self._by_menu_key.get(key)

    def first_keyword(self, name: str) -> str:
        """The keyword shown to members for an intent."""
        words = self.keywords.get(name) or [name]
        return words[0]
