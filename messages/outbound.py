"""Outbound message payloads in the shapes WeChat's APIs expect."""

from __future__ import annotations

from typing import Any

from messages.replies import ImageReply, NewsReply, Reply, TextReply


def custom_message(openid: str, reply: Reply) -> dict[str, Any] | None:
    """The customer-service message body for ``reply``; None when it cannot go that way."""
    match reply:
        case TextReply(text=text):
            return text_message(openid, text)
        case ImageReply(media_id=media_id):
            return image_message(openid, media_id)
        case NewsReply(article=a):
            return {
                "touser": openid,
                "msgtype": "news",
                "news": {
                    "articles": [
                        {
                            "title": a.title,
                            "description": a.description,
                            "url": a.url,
                            "picurl": a.image_url,
                        }
                    ]
                },
            }
    return None


def text_message(openid: str, text: str) -> dict[str, Any]:
    """A customer-service text message."""
    return {"touser": openid, "msgtype": "text", "text": {"content": text}}


def image_message(openid: str, media_id: str) -> dict[str, Any]:
    """A customer-service image message (the image uploaded as media first)."""
    return {"touser": openid, "msgtype": "image", "image": {"media_id": media_id}}


def template_message(
    openid: str, template_id: str, keys: dict[str, str], values: dict[str, str], url: str = ""
) -> dict[str, Any]:
    """A template message: each template key filled from the named field of ``values``
    (KeyError when the push lacks one)."""
    body: dict[str, Any] = {
        "touser": openid,
        "template_id": template_id,
        "data": {key: {"value": values[field]} for key, field in keys.items()},
    }
    if url:
        body["url"] = url
    return body
