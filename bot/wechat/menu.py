"""The official account's custom menu, built from the capabilities that really exist."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from messages import centre_copy, copy

# WeChat allows 3 top-level buttons of up to 5 sub-buttons each, and VIEW URLs of 1024 bytes.
MAX_SUB_BUTTONS = 5
MAX_VIEW_URL_BYTES = 1024
# The group the member centre's VIEW button opens (first in it, so it survives the limit).
CENTRE_GROUP = 0


def build_menu(
    menu_keys: Mapping[str, str], capabilities: Iterable[str], centre_url: str | None = None
) -> dict[str, Any]:
    """The ``menu/create`` body: each button's key from ``[chat] menu_keys``, only for
    intents some handler answers; with ``centre_url``, the member centre's VIEW button first
    in the first group."""
    if centre_url is not None and len(centre_url.encode()) > MAX_VIEW_URL_BYTES:
        raise ValueError(f"the member centre's URL exceeds {MAX_VIEW_URL_BYTES} bytes")
    available = set(capabilities)
    key_for = {intent: key for key, intent in menu_keys.items() if intent in available}
    buttons: list[dict[str, Any]] = []
    for index, (title, intents) in enumerate(copy.MENU_LAYOUT):
        subs = [
            {"type": "click", "name": copy.MENU_NAMES[name], "key": key_for[name]}
            for name in intents
            if name in key_for
        ]
        if index == CENTRE_GROUP and centre_url is not None:
            subs.insert(0, {"type": "view", "name": centre_copy.MENU_CENTRE, "url": centre_url})
        subs = subs[:MAX_SUB_BUTTONS]
        if len(subs) == 1:
            buttons.append(subs[0])  # a lone button needs no sub-menu
        elif subs:
            buttons.append({"name": title, "sub_button": subs})
    return {"button": buttons}
