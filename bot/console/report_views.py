"""The monthly 《效果跟踪表》 for download (HTML or CSV), for marketers and admins: the same
files ``python -m bot report monthly`` writes (bot/report.py)."""

from __future__ import annotations

from aiohttp import web

from bot import wiring
from bot.console.auth import requires
from bot.report import BadMonth, parse_month, render_csv, render_html, report_names
from messages import console_copy as copy
from models.base import utcnow
from models.figures import programme_figures

routes = web.RouteTableDef()
MARKETING = ("marketer", "admin")


@routes.get("/reports/monthly")
@requires(*MARKETING)
async def monthly_report(request: web.Request) -> web.StreamResponse:
    """``?month=YYYY-MM&format=html|csv``: a month that has ended, as a download."""
    rules = request.config_dict[wiring.CONFIG].programme
    now = utcnow()
    kind = request.query.get("format", "html")
    if kind not in ("html", "csv"):
        raise web.HTTPBadRequest(text="format must be html or csv")
    asked = request.query.get("month", "")
    try:
        month = parse_month(asked, now.astimezone(rules.zone).date())
    except BadMonth as exc:
        refusal = copy.MONTH_NOT_ENDED if exc.ended else copy.BAD_MONTH
        raise web.HTTPBadRequest(text=refusal.format(month=asked)) from None
    async with request.config_dict[wiring.SESSIONS]() as db:
        report = await programme_figures(db, rules, month, now)
    html_name, csv_name = report_names(month)
    if kind == "csv":
        body, name, content_type = render_csv(report), csv_name, "text/csv"
    else:
        body, name, content_type = render_html(report, rules, now), html_name, "text/html"
    return web.Response(
        text=body,
        content_type=content_type,
        charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )
