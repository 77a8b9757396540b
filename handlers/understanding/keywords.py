"""The exact step of understanding: the brand's ``[chat] keywords`` and menu keys.

A message whose whole (normalised) text is a configured keyword means that keyword's intent,
before anything else is tried: the keywords are the brand's override.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from handlers.understanding.normalise import normalise


class IntentMatcher:
    """Looks up keywords and menu keys in tables built once from the configuration."""

    def __init__(self, keywords: Mapping[str, Sequence[str]], menu_keys: Mapping[str, str]) -> None:
        self.keywords = {name: list(words) for name, words in keywords.items()}
        self._by_word = {
            normalise(word).text: name for name, words in keywords.items() for word in words
        }
        self._by_menu_key = dict(menu_keys)

    def for_text(self, text: str) -> str | None:
        """The intent a message's text asks for, if it is one of the keywords."""
        return self._by_word.get(normalise(text).text) if text else None

    def for_menu_key(self, key: str) -> str | None:
        """The intent a menu CLICK key stands for."""
        return self._by_menu_key.get(key)

    def first_keyword(self, name: str) -> str:
        """The keyword shown to members for an intent."""
        words = self.keywords.get(name) or [name]
        return words[0]
