"""Conversation capabilities, one module each, and the router that composes them."""

from __future__ import annotations

from handlers import fallback, follow, help
from handlers.router import Router


def build_router() -> Router:
    """The root router: capabilities in priority order, the fallback last."""
    root = Router("root")
    root.include(follow.router, help.router, fallback.router)
    return root
