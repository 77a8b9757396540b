"""``python -m bot chat``: talk to the running service as a member, through the real webhook."""

from __future__ import annotations

import asyncio
import secrets

import aiohttp

from bot.wechat.settings import WeChatConfig
from bot.wechat.webhook_client import WebhookClient

HELP = """Type a message and press Enter. Commands:
  /follow          follow the account (subscribe event)
  /unfollow        unfollow it
  /click KEY       press a menu button (CLICK event with KEY)
  /scan SCENE      scan a parametric QR code (SCAN event)
  /quit            leave"""


def _describe(reply: dict[str, str] | None) -> str:
    if reply is None:
        return "(no reply)"
    kind = reply.get("MsgType")
    if kind == "text":
        return reply.get("Content", "")
    if kind == "news":
        item = reply.get("Articles", {}).get("item", {})
        return f"[article] {item.get('Title')} — {item.get('Url')}"
    if kind == "transfer_customer_service":
        return "[handed over to WeChat customer service]"
    return f"[{kind}] {reply}"


def _xml_for(line: str, client: WebhookClient, openid: str) -> str | None:
    command, _, arg = line.partition(" ")
    match command:
        case "/follow":
            return client.event(openid, "subscribe")
        case "/unfollow":
            return client.event(openid, "unsubscribe")
        case "/click":
            return client.event(openid, "CLICK", arg.strip())
        case "/scan":
            return client.event(openid, "SCAN", arg.strip())
    return None if line.startswith("/") else client.text(openid, line)


async def chat(wechat: WeChatConfig, openid: str | None, url: str) -> None:
    """Read lines from the terminal, send each as the member to the webhook at ``url``, print
    what the bot answers."""
    openid = openid or f"o_chat_{secrets.token_hex(6)}"
    client = WebhookClient(
        wechat.token.get_secret_value(), wechat.appid, wechat.encoding_aes_key.get_secret_value()
    )
    mode = "safe (AES)" if client.crypto else "plaintext"
    print(f"Chatting with {url} as {openid}, {mode} mode.\n{HELP}")
    async with aiohttp.ClientSession() as http:
        while True:
            try:
                line = (await asyncio.to_thread(input, "you> ")).strip()
            except (EOFError, KeyboardInterrupt):
                print()
                return
            if line in ("/quit", "/exit"):
                return
            xml = _xml_for(line, client, openid) if line else None
            if xml is None:
                if line:
                    print(HELP)
                continue
            request = client.sign(xml, openid=openid)
            try:
                async with http.post(url, params=request.params, data=request.body) as response:
                    body = await response.text()
                    if response.status != 200:
                        print(f"bot> [HTTP {response.status}] {body}")
                        continue
            except aiohttp.ClientError as exc:
                print(f"bot> [cannot reach {url}: {type(exc).__name__}; is `make run` running?]")
                continue
            print("bot> " + _describe(client.read_reply(body, request)).replace("\n", "\n     "))
