"""Outbound message payloads in the shapes WeChat's APIs expect."""

from __future__ import annotations

from typing import Any

from messages.replies import ImageReply, NewsReply, Reply, TextReply


def custom_message(openid: str, reply: Reply) -> dict[str, Any] | None:
    """The customer-service message body for ``reply``; None when it cannot go that way."""
    match reply:
        case TextReply(text=text):
            return {"touser": openid, "msgtype": "text", "text": {"content": text}}
        case ImageReply(media_id=media_id):
            return {"touser": openid, "msgtype": "image", "image": {"media_id": media_id}}
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
