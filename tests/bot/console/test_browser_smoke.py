"""Smoke tests of the browser setup: a real Chromium drives a small aiohttp app."""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer
from playwright.async_api import Page, expect

WAIT_MS = 5_000
STATUS = {"message": "欢迎光临", "members": 3}
STATUS_HITS = web.AppKey("status_hits", list[int])

FORM_PAGE = """<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8"><title>表单</title>
<link rel="icon" href="data:,"></head>
<body>
<form method="post" action="/echo">
  <label for="greeting">问候</label>
  <input id="greeting" name="greeting">
  <button id="send" type="submit">发送</button>
</form>
<p id="status">加载中…</p>
<script>
fetch("/api/status")
  .then((response) => response.json())
  .then((data) => {
    const status = document.getElementById("status");
    status.textContent = data.message + "（" + data.members + " 位会员）";
    status.dataset.loaded = "yes";
  });
</script>
</body></html>
"""


async def form_page(request: web.Request) -> web.Response:
    return web.Response(text=FORM_PAGE, content_type="text/html")


async def echo(request: web.Request) -> web.Response:
    form = await request.post()
    value = html.escape(str(form.get("greeting", "")))
    body = (
        '<!doctype html><meta charset="utf-8"><title>回显</title><link rel="icon" href="data:,">'
        f'<p id="echo">{value}</p>'
    )
    return web.Response(text=body, content_type="text/html")


async def status(request: web.Request) -> web.Response:
    request.app[STATUS_HITS].append(1)
    return web.json_response(STATUS)


def make_app() -> web.Application:
    app = web.Application()
    app[STATUS_HITS] = []
    app.router.add_get("/", form_page)
    app.router.add_post("/echo", echo)
    app.router.add_get("/api/status", status)
    return app


async def open_form(page: Page, aiohttp_server: Callable[..., Any]) -> tuple[TestServer, list[str]]:
    """Serve the app and open its form page; also return the page's script errors."""
    server: TestServer = await aiohttp_server(make_app())
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    await page.goto(str(server.make_url("/")))
    return server, errors


async def test_form_post_echoes_chinese_text_escaped(
    page: Page, aiohttp_server: Callable[..., Any]
) -> None:
    _, errors = await open_form(page, aiohttp_server)
    typed = "你好 <b>世界</b> & 再见"
    await page.fill("#greeting", typed)
    async with page.expect_navigation():
        await page.click("#send")

    assert page.url.endswith("/echo")
    echo = page.locator("#echo")
    await expect(echo).to_have_text(typed, timeout=WAIT_MS)
    # Escaped, not markup: no <b> element was made from the typed text.
    assert await page.locator("#echo b").count() == 0
    assert await page.evaluate("navigator.language") == "zh-CN"
    assert errors == []


async def test_inline_script_writes_fetched_json(
    page: Page, aiohttp_server: Callable[..., Any]
) -> None:
    server, errors = await open_form(page, aiohttp_server)

    await page.wait_for_selector("#status[data-loaded='yes']", timeout=WAIT_MS)
    await expect(page.locator("#status")).to_have_text("欢迎光临（3 位会员）", timeout=WAIT_MS)
    assert server.app[STATUS_HITS] == [1]
    assert errors == []
