"""The official account's custom menu, built from the capabilities that really exist."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from messages import copy

# WeChat allows 3 top-level buttons of up to 5 sub-buttons each.
MAX_SUB_BUTTONS = 5


def build_menu(menu_keys: Mapping[str, str], capabilities: Iterable[str]) -> dict[str, Any]:
    """The ``menu/create`` body: each button's key from ``[chat] menu_keys``, only for
    intents some handler answers."""
    available = set(capabilities)
    key_for = {intent: key for key, intent in menu_keys.items() if intent in available}
    buttons: list[dict[str, Any]] = []
    for title, intents in copy.MENU_LAYOUT:
        subs = [
            {"type": "click", "name": copy.MENU_NAMES[name], "key": key_for[name]}
            for name in intents
            if name in key_for
        ][:MAX_SUB_BUTTONS]
        if len(subs) == 1:
            buttons.append(subs[0])  # a lone button needs no sub-menu
        elif subs:
            buttons.append({"name": title, "sub_button": subs})
    return {"button": buttons}
