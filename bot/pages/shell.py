"""The shell of the service's member-facing pages (the annual recap, the referral page, the
member centre).

Built for WeChat's in-app browser on a phone: a viewport meta, one column, inline CSS. Nothing
from another host, and no JavaScript but a page's own inline script allowed by a per-response
nonce (the member code's refresh): the Content-Security-Policy forbids the rest, and no
Referer leaks a link's secret. Callers escape every value they put in ``body``.
"""

from __future__ import annotations

from collections.abc import Iterable
from html import escape

from aiohttp import web

HEADERS = {
    # A member's own page: never in a shared cache, never kept.
    "Cache-Control": "private, no-store",
    "X-Robots-Tag": "noindex",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
}

STYLE = """
body{margin:0;background:#f5f5f7;color:#1d1d1f;font:16px/1.6 -apple-system,"PingFang SC",
"Hiragino Sans GB","Microsoft YaHei",sans-serif}
main{max-width:480px;margin:0 auto;padding:20px 16px 32px}
h1{font-size:22px;margin:8px 0 4px}
h2{font-size:17px;margin:0 0 8px}
.intro,.foot{color:#6e6e73;font-size:14px}
.card{background:#fff;border-radius:12px;padding:16px;margin:12px 0}
.grid{display:grid;grid-template-columns:1fr 1fr;gap:12px}
.label{color:#6e6e73;font-size:13px}
.value{font-size:22px;font-weight:600}
.rank{font-weight:600;color:#b8860b}
ul{margin:8px 0 0;padding-left:20px}
svg{width:100%;height:auto;display:block}
.qr{max-width:240px;margin:0 auto}
"""


def document(title: str, body: str, style: str = "", script: str = "", nonce: str = "") -> str:
    """A whole page around ``body`` (already escaped HTML); ``style`` adds CSS, ``script`` an
    inline script allowed by ``nonce`` (see ``html_response``)."""
    tail = f'<script nonce="{nonce}">{script}</script>' if script else ""
    return (
        '<!DOCTYPE html><html lang="zh-CN"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        '<meta name="robots" content="noindex">'
        f"<title>{escape(title)}</title><style>{STYLE}{style}</style></head>"
        f"<body><main>{body}</main>{tail}</body></html>"
    )


def html_response(
    text: str,
    status: int,
    *,
    nonce: str = "",
    forms: bool = False,
    images: Iterable[str] = (),
) -> web.Response:
    """The page with the headers above; ``nonce`` allows that inline script (and fetches from
    this host), ``forms`` lets forms post to this host, ``images`` names the origins its images
    come from (a catalogue item's image, on the brand's own host)."""
    headers = dict(HEADERS)
    origins = " ".join(sorted(set(images)))
    if origins:
        headers["Content-Security-Policy"] += f"; img-src {origins}"
    if nonce:
        headers["Content-Security-Policy"] += f"; script-src 'nonce-{nonce}'; connect-src 'self'"
    if forms:
        headers["Content-Security-Policy"] += "; form-action 'self'"
    return web.Response(
        text=text, status=status, content_type="text/html", charset="utf-8", headers=headers
    )
