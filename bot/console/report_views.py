"""Reports for marketers and admins: the monthly 《效果跟踪表》 for download (HTML or CSV: the
same files ``python -m bot report monthly`` writes, bot/report.py), and the birthday lists
with the fulfilment of physical gifts (models/birthdays.py)."""

from __future__ import annotations

import csv
import io
from datetime import date
from typing import Any

import aiohttp_jinja2
from aiohttp import web

from bot import wiring
from bot.console.auth import STAFF, requires, template_context
from bot.report import BadMonth, parse_month, render_csv, render_html, report_names
from messages import console_copy as copy
from models.base import utcnow
from models.birthdays import (
    SHIPPED,
    NoGiftDue,
    birthdays_between,
    mark_gift_shipped,
    next_days,
    next_month,
)
from models.figures import programme_figures
from models.staff import audit

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


# Who sees members' phone numbers in full on the birthday lists (to ship a gift); for
# everyone else they are masked.
PHONE_ROLES = ("admin",)
RANGES = ("week", "month")


def mask_phone(phone: str | None) -> str:
    """138****5678: the first three and last four digits, whatever the number's shape."""
    if not phone:
        return ""
    return f"{phone[:3]}****{phone[-4:]}" if len(phone) >= 8 else "****"


async def _birthday_list(request: web.Request) -> tuple[str, date, date, list[dict[str, Any]]]:
    """The list asked for (``?range=week``: today and the 6 days after; ``month``: next
    month), as rows for the page and the CSV."""
    rules = request.config_dict[wiring.CONFIG].programme
    today = utcnow().astimezone(rules.zone).date()
    span = request.query.get("range", "week")
    if span not in RANGES:
        raise web.HTTPBadRequest(text="range must be week or month")
    first, last = next_month(today) if span == "month" else next_days(today)
    async with request.config_dict[wiring.SESSIONS]() as db:
        found = await birthdays_between(db, rules, first, last)
    full_phone = request[STAFF].role in PHONE_ROLES
    multiplier = f"{rules.points.birthday_multiplier.normalize():f}"
    rows = []
    for row in found:
        gifts = [f"{multiplier}倍积分（生日月）"]
        if row.coupon and (coupon := rules.coupon_kind(row.coupon)) is not None:
            gifts.append(coupon.name)
        if row.physical_gift:
            gifts.append(rules.birthday_gifts.name)
        rows.append(
            {
                "member_id": row.member_id,
                "day": row.day,
                "name": row.name or f"#{row.member_id}",
                "tier": rules.tier(row.tier).name,
                "segment": copy.SEGMENT_NAMES.get(row.segment or "none", row.segment),
                "phone": (row.phone or "") if full_phone else mask_phone(row.phone),
                "gifts": "、".join(gifts),
                "physical": row.physical_gift,
                "shipped": row.gift_status == SHIPPED,
                "tracking": row.tracking_number or "",
                "subscribed": row.subscribed,
            }
        )
    return span, first, last, rows


@routes.get("/birthdays")
@requires(*MARKETING)
async def birthdays_page(request: web.Request) -> web.StreamResponse:
    """The next 7 days' birthdays (every day) or next month's (drawn by the 25th), with what
    each member receives and, for physical gifts, shipping and tracking."""
    span, first, last, rows = await _birthday_list(request)
    return aiohttp_jinja2.render_template(
        "birthdays.html",
        request,
        template_context(
            request,
            span=span,
            first=first,
            last=last,
            rows=rows,
            message=request.query.get("message"),
        ),
    )


@routes.get("/birthdays.csv")
@requires(*MARKETING)
async def birthdays_csv(request: web.Request) -> web.StreamResponse:
    """The same list as CSV (the 《生日礼遇发放记录表》: name, contact, gift, tracking)."""
    _, first, last, rows = await _birthday_list(request)
    out = io.StringIO()
    out.write("\ufeff")  # Excel reads UTF-8 with a BOM
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["生日", "姓名", "等级", "分群", "联系电话", "礼遇", "实物礼品", "物流单号"])
    for row in rows:
        writer.writerow(
            [
                f"{row['day']:%Y-%m-%d}",
                row["name"],
                row["tier"],
                row["segment"],
                row["phone"],
                row["gifts"],
                ("已寄出" if row["shipped"] else "待寄出") if row["physical"] else "",
                row["tracking"],
            ]
        )
    name = f"birthdays-{first:%Y%m%d}-{last:%Y%m%d}.csv"
    return web.Response(
        text=out.getvalue(),
        content_type="text/csv",
        charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@routes.post("/birthdays/{id:\\d+}/gift")
@requires(*MARKETING)
async def mark_shipped(request: web.Request) -> web.StreamResponse:
    """Mark a member's physical birthday gift shipped, with the tracking number."""
    member_id = int(request.match_info["id"])
    form = await request.post()
    span = str(form.get("range", "week"))
    span = span if span in RANGES else "week"
    try:
        year = int(str(form.get("year", "")))
    except ValueError:
        raise web.HTTPBadRequest(text="year must be a number") from None
    rules = request.config_dict[wiring.CONFIG].programme
    staff = request[STAFF]
    now = utcnow()
    async with request.config_dict[wiring.SESSIONS].begin() as db:
        try:
            await mark_gift_shipped(
                db,
                rules,
                member_id,
                year,
                str(form.get("tracking_number", "")),
                staff.username,
                now,
            )
        except ValueError:
            raise web.HTTPSeeOther(
                f"/console/birthdays?range={span}&message=tracking_invalid"
            ) from None
        except NoGiftDue:
            raise web.HTTPConflict(text="no physical birthday gift is due to this member") from None
        await audit(db, staff.staff_id, "birthday_gift_shipped", now, target=f"member:{member_id}")
    raise web.HTTPSeeOther(f"/console/birthdays?range={span}&message=shipped")
