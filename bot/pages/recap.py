"""``GET /recap/{token}``: a member's annual recap as one small, self-contained HTML page.

No login: the token in the link (192 random bits, models/recap.py) is the credential, so the
page says nothing to anyone without it. An unknown or malformed token gets the same 404 page
whatever the reason; the lookup goes through the token's unique index.

The page (bot/pages/shell.py's shell) draws the monthly chart here as inline SVG. Every value is
escaped. Member names are not shown: a link can be forwarded.
"""

from __future__ import annotations

import re
from datetime import datetime
from html import escape

from aiohttp import web

from bot import wiring
from bot.pages.shell import document, html_response
from messages import recap_copy as copy
from models.recap import MemberRecap, recap_by_token
from models.rules import ProgrammeRules

# What secrets.token_urlsafe makes; anything else is not looked up at all.
TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]{20,64}")


def _figure(label: str, value: str) -> str:
    return (
        f'<div><div class="label">{escape(label)}</div>'
        f'<div class="value">{escape(value)}</div></div>'
    )


def monthly_chart(year: int, monthly_fen: list[int]) -> str:
    """Twelve bars of monthly spend as inline SVG (values in yuan above non-empty months)."""
    width, height, top, bottom = 360, 200, 20, 24
    slot = width / 12
    bar = slot * 0.6
    highest = max(monthly_fen, default=0)
    label = escape(copy.CHART_LABEL.format(year=year))
    axis = height - bottom
    parts = [
        (
            f'<svg viewBox="0 0 {width} {height}" role="img" aria-label="{label}" '
            f'xmlns="http://www.w3.org/2000/svg"><title>{label}</title>'
        ),
        f'<line x1="0" y1="{axis}" x2="{width}" y2="{axis}" stroke="#d2d2d7" stroke-width="1"/>',
    ]
    for index, fen in enumerate(monthly_fen):
        x = index * slot + (slot - bar) / 2
        centre = index * slot + slot / 2
        if fen > 0 and highest > 0:
            bar_height = max(2.0, (height - top - bottom) * fen / highest)
            y = height - bottom - bar_height
            parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{bar_height:.1f}" '
                'rx="2" fill="#c9a227"/>'
            )
            parts.append(
                f'<text x="{centre:.1f}" y="{y - 4:.1f}" font-size="8" text-anchor="middle" '
                f'fill="#1d1d1f">{escape(copy.compact_yuan(fen))}</text>'
            )
        parts.append(
            f'<text x="{centre:.1f}" y="{height - 8}" font-size="10" text-anchor="middle" '
            f'fill="#6e6e73">{escape(copy.MONTH.format(month=index + 1))}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def render_recap(recap: MemberRecap, rules: ProgrammeRules) -> str:
    """The recap page's HTML (a pure function of the recap and the programme's tier names)."""
    year = recap.year
    figures = "".join(
        [
            _figure(copy.ORDERS_LABEL, copy.ORDERS_VALUE.format(orders=recap.orders)),
            _figure(copy.SPEND_LABEL, copy.SPEND_VALUE.format(yuan=copy.yuan(recap.spend_fen))),
            _figure(copy.POINTS_EARNED_LABEL, copy.POINTS_VALUE.format(points=recap.points_earned)),
            _figure(copy.POINTS_USED_LABEL, copy.POINTS_VALUE.format(points=recap.points_used)),
        ]
    )
    rank = escape(copy.rank_line(recap.spend_top_percent))

    def name(code: str | None) -> str:
        return rules.tier(code or "").name

    start, end = name(recap.tier_start), name(recap.tier_end)
    summary = (
        copy.TIER_KEPT.format(tier=start)
        if recap.tier_start == recap.tier_end
        else copy.TIER_MOVED.format(start=start, end=end)
    )
    steps = "".join(
        "<li>"
        + escape(
            copy.TIER_STEP.format(
                day=datetime.fromisoformat(step["at"]).astimezone(rules.zone),
                old=name(step["from"]),
                new=name(step["to"]),
            )
        )
        + "</li>"
        for step in recap.tier_journey or []
    )
    monthly = recap.monthly_spend_fen or [0] * 12
    chart = (
        monthly_chart(year, monthly)
        if any(monthly)
        else f'<p class="intro">{escape(copy.CHART_EMPTY)}</p>'
    )
    body = (
        f"<h1>{escape(copy.HEADING.format(year=year))}</h1>"
        f'<p class="intro">{escape(copy.INTRO)}</p>'
        f'<section class="card"><div class="grid">{figures}</div>'
        f'<p class="rank">{rank}</p></section>'
        f'<section class="card"><h2>{escape(copy.TIER_HEADING)}</h2>'
        f"<p>{escape(summary)}</p>{f'<ul>{steps}</ul>' if steps else ''}</section>"
        f'<section class="card"><h2>{escape(copy.CHART_HEADING)}</h2>{chart}</section>'
        f'<p class="foot">{escape(copy.FOOTER)}</p>'
    )
    return document(copy.PAGE_TITLE.format(year=year), body)


def render_not_found() -> str:
    """The one page for every token that finds no recap."""
    body = (
        f'<h1>{escape(copy.NOT_FOUND_TITLE)}</h1><p class="intro">{escape(copy.NOT_FOUND_TEXT)}</p>'
    )
    return document(copy.NOT_FOUND_TITLE, body)


async def recap_page(request: web.Request) -> web.Response:
    """The recap behind the link's token, or the same 404 page for any token that has none."""
    token = request.match_info["token"]
    recap = None
    if TOKEN_SHAPE.fullmatch(token):
        async with request.config_dict[wiring.SESSIONS]() as session:
            recap = await recap_by_token(session, token)
    if recap is None:
        return html_response(render_not_found(), 404)
    return html_response(render_recap(recap, request.config_dict[wiring.CONFIG].programme), 200)


routes = [web.get("/recap/{token}", recap_page)]
