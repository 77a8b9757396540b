"""Conversation capabilities, one module each, and the router that composes them.
May import models and messages only: no HTTP, XML, Redis clients or bot/."""

from __future__ import annotations

from handlers import (
    binding,
    birthday,
    consent,
    coupons,
    fallback,
    faq,
    follow,
    handoff,
    help,
    points,
    rating,
    recap,
    receipts,
    referral,
    rewards,
    smalltalk,
    tier,
)
from handlers.router import Router


def build_router() -> Router:
    """The root router: capabilities in priority order, the fallback last."""
    root = Router("root")
    root.include(
        receipts.router,
        follow.router,
        handoff.router,
        rating.router,
        help.router,
        points.router,
        tier.router,
        coupons.router,
        rewards.router,
        recap.router,
        referral.router,
        binding.router,
        birthday.router,
        consent.router,
        faq.router,
        smalltalk.router,
        fallback.router,
    )
    return root
