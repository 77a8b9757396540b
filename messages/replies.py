"""Replies a handler returns. Plain values: the webhook renders them, the outbox sends them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TextReply:
    text: str


@dataclass(frozen=True, slots=True)
class Article:
    title: str
    description: str
    url: str
    image_url: str = ""


@dataclass(frozen=True, slots=True)
class NewsReply:
    """One article: WeChat allows a single article when replying to a member's message."""

    article: Article


@dataclass(frozen=True, slots=True)
class ImageReply:
    media_id: str


@dataclass(frozen=True, slots=True)
class TransferToCustomerService:
    """Hand the conversation to WeChat's own customer-service system."""

    kf_account: str | None = None


Reply = TextReply | NewsReply | ImageReply | TransferToCustomerService
