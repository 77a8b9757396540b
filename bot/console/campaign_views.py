"""The marketers' console pages: campaigns (audience builder with a live count, draft, approval,
test send, pause/resume/cancel, figures) and the programme dashboard. Marketers and admins
only; the rules are scheduler/campaigns.py's, shared with the JSON API."""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta
from typing import Any

import aiohttp_jinja2
from aiohttp import web
from markupsafe import Markup
from pydantic import ValidationError
from sqlalchemy import select

from bot import wiring
from bot.console.auth import STAFF, requires, template_context
from bot.console.charts import bars
from bot.console.template_views import template_status
from bot.report import BadMonth, figure_views, parse_month
from bot.validation import first_error
from bot.wechat.client import WeChatAPIError
from messages import console_copy as copy
from models.audience import MAX_MONTHS, Audience, preview
from models.base import utcnow
from models.campaign_rewards import MAX_POINTS, reward_stats
from models.campaigns import Campaign, CampaignRefused, campaign_stats, lifts
from models.coupons import UnknownCouponKind, coupon_stats
from models.dashboard import members_by, pushes_by_purpose, referral_funnel
from models.figures import programme_figures
from models.staff import audit
from scheduler.campaigns import ACTIONS, CampaignSpec, actions_for, new_campaign, transition

routes = web.RouteTableDef()
MARKETING = ("marketer", "admin")
SEGMENTS = ("core", "important", "potential", "at_risk", "dormant", "other")


def _config(request: web.Request) -> Any:
    return request.config_dict[wiring.CONFIG]


def audience_from_form(form: Any) -> Audience:
    """The audience builder's fields as an audience (ValueError naming what is wrong)."""
    conditions: list[dict[str, Any]] = []

    def listed(name: str) -> list[str]:
        return [v for v in form.getall(name, []) if isinstance(v, str) and v]

    if tiers := listed("tier"):
        conditions.append({"field": "tier", "op": "in", "value": tiers})
    if segments := listed("segment"):
        conditions.append({"field": "segment", "op": "in", "value": segments})
    tags = [t.strip() for t in str(form.get("tags", "")).replace("，", ",").split(",") if t.strip()]
    if tags:
        conditions.append({"field": "tag", "op": "has_any", "value": tags})
    if months := listed("birthday_month"):
        conditions.append(
            {"field": "birthday_month", "op": "in", "value": [int(m) for m in months]}
        )
    for name, field, op in (
        ("points_min", "points", "gte"),
        ("points_max", "points", "lte"),
        ("bought_after", "last_purchase", "after"),
        ("bought_before", "last_purchase", "before"),
        ("followed_after", "subscribed_since", "after"),
        ("followed_before", "subscribed_since", "before"),
    ):
        raw = str(form.get(name, "")).strip()
        if raw:
            value: Any = int(raw) if field == "points" else date.fromisoformat(raw)
            conditions.append({"field": field, "op": op, "value": value})
    conditions += _purchase_conditions(form)
    if not conditions:
        return Audience()
    match = "any" if form.get("match") == "any" else "all"
    return Audience.model_validate({"root": {match: conditions}})


def _names(raw: Any) -> list[str]:
    """Comma-separated names (either comma), trimmed."""
    return [n.strip() for n in str(raw or "").replace("，", ",").split(",") if n.strip()]


def _whole(raw: str, what: str) -> int:
    """A whole number of at least 0 typed in the form (ValueError in the console's words)."""
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 12:
        raise ValueError(copy.NOT_A_WHOLE_NUMBER.format(what=what))
    return int(raw)


def _purchase_conditions(form: Any) -> list[dict[str, Any]]:
    """What members bought in the last N months (one window for every purchase field)."""
    raw_months = str(form.get("bought_months", "6")).strip() or "6"
    if not (raw_months.isdigit() and 1 <= int(raw_months) <= MAX_MONTHS):
        raise ValueError(copy.BAD_PURCHASE_MONTHS.format(most=MAX_MONTHS))
    months = int(raw_months)
    conditions: list[dict[str, Any]] = []
    for name, field in (
        ("bought_category", "bought_category"),
        ("bought_channel", "bought_channel"),
    ):
        if names := _names(form.get(name)):
            conditions.append({"field": field, "op": "in", "value": names, "months": months})
    for name, field, op, scale, what in (
        ("orders_min", "order_count", "gte", 1, "订单数"),
        ("orders_max", "order_count", "lte", 1, "订单数"),
        ("spend_min", "spend", "gte", 100, "消费金额"),  # yuan in the form, fen in the audience
        ("spend_max", "spend", "lte", 100, "消费金额"),
    ):
        if raw := str(form.get(name, "")).strip():
            value = _whole(raw, what) * scale
            conditions.append({"field": field, "op": op, "value": value, "months": months})
    return conditions


WEEKDAYS = ("周一", "周二", "周三", "周四", "周五", "周六", "周日")
# Months all have a 28th: a later day would skip February (and a 31st, half the year).
LAST_PICKABLE_DAY = 28


def cron_from_picker(form: Any) -> str:
    """The recurrence picker (every day / week on a weekday / month on a day, at a time) as a
    crontab; ``advanced`` takes the crontab field as typed. ValueError in the console's words
    for a bad pick."""
    repeat = str(form.get("repeat", "weekly"))
    if repeat == "advanced":
        return str(form.get("cron", "")).strip()
    if repeat not in ("daily", "weekly", "monthly"):
        raise ValueError(copy.BAD_REPEAT)
    at = re.fullmatch(r"([01]?\d|2[0-3]):([0-5]\d)", str(form.get("repeat_time", "")).strip())
    if at is None:
        raise ValueError(copy.BAD_REPEAT_TIME)
    hour, minute = int(at[1]), int(at[2])
    if repeat == "daily":
        return f"{minute} {hour} * * *"
    if repeat == "weekly":
        weekday = str(form.get("repeat_weekday", ""))
        if weekday not in {str(d) for d in range(1, 8)}:
            raise ValueError(copy.BAD_REPEAT_WEEKDAY)
        return f"{minute} {hour} * * {weekday}"
    day = str(form.get("repeat_day", ""))
    if day not in {str(d) for d in range(1, LAST_PICKABLE_DAY + 1)}:
        raise ValueError(copy.BAD_REPEAT_DAY.format(last=LAST_PICKABLE_DAY))
    return f"{minute} {hour} {day} * *"


def describe_cron(cron: str | None) -> str:
    """A crontab the picker writes, in words (每周一 10:00); any other as itself."""
    fields = (cron or "").split()
    if len(fields) != 5 or not (fields[0].isdigit() and fields[1].isdigit()):
        return f"crontab {cron}"
    minute, hour, day, month, weekday = fields
    at = f"{int(hour):02d}:{int(minute):02d}"
    if month != "*":
        return f"crontab {cron}"
    if day == "*" and weekday == "*":
        return f"每天 {at}"
    if day == "*" and weekday.isdigit() and 0 <= int(weekday) <= 7:
        return f"每{WEEKDAYS[(int(weekday) - 1) % 7]} {at}"
    if weekday == "*" and day.isdigit():
        return f"每月{int(day)}日 {at}"
    return f"crontab {cron}"


def spec_from_form(form: Any, zone: Any) -> CampaignSpec:
    """The new-campaign form as a campaign definition."""
    variants = [{"name": "A", "text": str(form.get("text_a", "")).strip(), "share": 100}]
    text_b = str(form.get("text_b", "")).strip()
    if text_b:
        share_a = int(str(form.get("share_a", "50")) or 50)
        variants = [
            {"name": "A", "text": variants[0]["text"], "share": share_a},
            {"name": "B", "text": text_b, "share": 100 - share_a},
        ]
    reward: dict[str, Any] | None = None
    match str(form.get("reward", "none")):
        case "coupon":
            if not (kind := str(form.get("reward_coupon", "")).strip()):
                raise ValueError(copy.UNKNOWN_COUPON_KIND)
            reward = {"coupon": kind}
        case "points":
            raw = str(form.get("reward_points", "")).strip()
            if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_POINTS:
                raise ValueError(copy.BAD_REWARD_POINTS.format(most=MAX_POINTS))
            reward = {"points": int(raw)}
    schedule = str(form.get("schedule", "now"))
    run_at = None
    if schedule == "at" and form.get("run_at"):
        run_at = datetime.fromisoformat(str(form["run_at"])).replace(tzinfo=zone)
    return CampaignSpec.model_validate(
        {
            "name": str(form.get("name", "")).strip(),
            "audience": audience_from_form(form),
            "variants": variants,
            "holdout_percent": int(str(form.get("holdout_percent", "0")) or 0),
            "schedule": schedule,
            "run_at": run_at,
            "cron": (cron_from_picker(form) or None) if schedule == "cron" else None,
            "conversion_days": int(str(form.get("conversion_days", "7")) or 7),
            "reward": reward,
        }
    )


def describe_audience(audience: dict[str, Any], rules: Any) -> str:
    """The audience as the console shows it, in Chinese: tiers and segments by their names,
    never their codes."""
    root = audience.get("root")
    if not root:
        return "全部关注会员"

    def names(values: list[Any], field: str) -> str:
        if field == "tier":
            return "、".join(rules.tier(v).name for v in values)
        if field == "segment":
            return "、".join(copy.SEGMENT_NAMES.get(v, "未知分群") for v in values)
        if field == "birthday_month":
            return "、".join(f"{v}月" for v in values)
        return "、".join(str(v) for v in values)

    def condition(c: dict[str, Any]) -> str:
        field, op, value = c["field"], c["op"], c.get("value")
        window = f"近{c.get('months')}个月"
        more = op in ("gte", "after")
        match field:
            case "tier" | "segment" | "tag" | "birthday_month":
                label = {"tier": "会员等级", "segment": "会员分群", "tag": "标签"}.get(
                    field, "生日月份"
                )
                return f"{label}：{names(value, field)}"
            case "points":
                return f"积分{'不低于' if more else '不高于'} {value}"
            case "last_purchase":
                return f"最近消费在 {value} {'之后' if more else '之前'}"
            case "subscribed_since":
                return f"关注时间在 {value} {'之后' if more else '之前'}"
            case "bought_category":
                return f"{window}买过{names(value, field)}"
            case "bought_channel":
                return f"{window}在 {names(value, field)} 渠道购买"
            case "order_count":
                return f"{window}订单数{'不少于' if more else '不多于'} {value}"
            case "spend":
                return f"{window}消费{'不低于' if more else '不高于'} ¥{int(value) / 100:.2f}"
        return field

    def node(n: dict[str, Any]) -> str:
        if "field" in n:
            return condition(n)
        parts = [node(child) for child in (n.get("all") or n.get("any") or [])]
        joined = ("；且 " if n.get("all") is not None else "；或 ").join(parts)
        return f"（{joined}）" if len(parts) > 1 else joined

    return node(root)


def _problem(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        field, message = first_error(exc)
        return f"{field}: {message}" if field else message
    return str(exc)


@routes.get("/campaigns")
@requires(*MARKETING)
async def campaigns_page(request: web.Request) -> web.StreamResponse:
    """Every campaign, newest first."""
    async with request.config_dict[wiring.SESSIONS]() as db:
        rows = (await db.scalars(select(Campaign).order_by(Campaign.id.desc()).limit(200))).all()
    return aiohttp_jinja2.render_template(
        "campaigns.html",
        request,
        template_context(
            request,
            campaigns=rows,
            repeats={c.id: describe_cron(c.cron) for c in rows if c.schedule == "cron"},
            zone=_config(request).programme.zone,
        ),
    )


@routes.get("/campaigns/new")
@requires(*MARKETING)
async def new_campaign_page(request: web.Request) -> web.StreamResponse:
    """The audience builder and the campaign form."""
    return _form_page(request, None, {})


def _form_page(request: web.Request, error: str | None, values: Any) -> web.StreamResponse:
    rules = _config(request).programme
    return aiohttp_jinja2.render_template(
        "campaign_new.html",
        request,
        template_context(
            request,
            error=error,
            values=values,
            tiers=rules.tiers,
            segments=SEGMENTS,
            segment_names=copy.SEGMENT_NAMES,
            coupons=rules.coupons,
            max_points=MAX_POINTS,
            weekdays=WEEKDAYS,
            last_day=LAST_PICKABLE_DAY,
        ),
        status=422 if error else 200,
    )


@routes.post("/api/audience-preview")
@requires(*MARKETING)
async def audience_preview(request: web.Request) -> web.Response:
    """The live count, the count with mass allowance left, and a sample."""
    form = await request.post()
    try:
        audience = audience_from_form(form)
    except (ValueError, ValidationError) as exc:
        return web.json_response({"error": _problem(exc)}, status=422)
    config = _config(request)
    zone = config.programme.zone
    month_start = datetime.combine(utcnow().astimezone(zone).date().replace(day=1), time.min, zone)
    async with request.config_dict[wiring.SESSIONS]() as db:
        shown = await preview(db, audience, zone, month_start, config.delivery.mass_per_month)
    rules = config.programme
    return web.json_response(
        {
            "count": shown.count,
            "with_mass_allowance": shown.with_mass_allowance,
            "sample": [
                {
                    "name": m["name"] or f"#{m['id']}",
                    "tier": rules.tier(m["tier"]).name,
                    "points": m["points"],
                }
                for m in shown.sample
            ],
        }
    )


@routes.post("/campaigns")
@requires(*MARKETING)
async def create_campaign(request: web.Request) -> web.StreamResponse:
    """Save the form as a draft."""
    form = await request.post()
    staff = request[STAFF]
    now = utcnow()
    rules = _config(request).programme
    try:
        spec = spec_from_form(form, rules.zone)
        campaign = new_campaign(spec, staff.username, now, rules)
    except UnknownCouponKind:
        return _form_page(request, copy.UNKNOWN_COUPON_KIND, form)
    except (ValueError, ValidationError) as exc:
        return _form_page(request, _problem(exc), form)
    async with request.config_dict[wiring.SESSIONS].begin() as db:
        db.add(campaign)
        await db.flush()
        await audit(db, staff.staff_id, "campaign_draft", now, target=str(campaign.id))
        campaign_id = campaign.id
    raise web.HTTPSeeOther(f"/console/campaigns/{campaign_id}")


@routes.get("/campaigns/{id:\\d+}")
@requires(*MARKETING)
async def campaign_page(request: web.Request) -> web.StreamResponse:
    """A campaign: its definition, what may be done with it now, and its figures."""
    campaign_id = int(request.match_info["id"])
    async with request.config_dict[wiring.SESSIONS]() as db:
        campaign = await db.get(Campaign, campaign_id)
        if campaign is None:
            raise web.HTTPNotFound(text="no such campaign")
        stats = await campaign_stats(db, campaign)
        given = await reward_stats(db, campaign_id)
    staff = request[STAFF]
    approval = _config(request).console.campaign_approval
    return aiohttp_jinja2.render_template(
        "campaign.html",
        request,
        template_context(
            request,
            campaign=campaign,
            stats=stats,
            given=given,
            audience=describe_audience(campaign.audience, _config(request).programme),
            repeat=describe_cron(campaign.cron),
            lifts=lifts(stats),
            actions=actions_for(campaign, staff.username, staff.role, approval),
            message=request.query.get("message"),
            zone=_config(request).programme.zone,
            skip_reasons=copy.SKIP_REASONS,
        ),
    )


@routes.post("/campaigns/{id:\\d+}/action")
@requires(*MARKETING)
async def campaign_action(request: web.Request) -> web.StreamResponse:
    """Submit, approve, pause, resume or cancel."""
    campaign_id = int(request.match_info["id"])
    action = str((await request.post()).get("action", ""))
    if action not in ACTIONS:
        raise web.HTTPBadRequest(text="unknown action")
    staff = request[STAFF]
    config = _config(request)
    now = utcnow()
    async with request.config_dict[wiring.SESSIONS].begin() as db:
        try:
            await transition(
                db,
                campaign_id,
                action,
                staff.username,
                staff.role,
                config.console.campaign_approval,
                config.programme.zone,
                now,
            )
        except LookupError:
            raise web.HTTPNotFound(text="no such campaign") from None
        except CampaignRefused as exc:
            raise web.HTTPConflict(text=str(exc)) from None
        await audit(db, staff.staff_id, f"campaign_{action}", now, target=str(campaign_id))
    raise web.HTTPSeeOther(f"/console/campaigns/{campaign_id}")


@routes.post("/campaigns/{id:\\d+}/test")
@requires(*MARKETING)
async def test_send(request: web.Request) -> web.StreamResponse:
    """Each variant to chosen staff openids first (WeChat's mass preview)."""
    campaign_id = int(request.match_info["id"])
    raw = str((await request.post()).get("openids", ""))
    openids = [o.strip() for o in raw.replace(",", "\n").splitlines() if o.strip()]
    if not 1 <= len(openids) <= 10 or any(len(o) > 64 for o in openids):
        raise web.HTTPBadRequest(text="give 1 to 10 openids")
    async with request.config_dict[wiring.SESSIONS]() as db:
        campaign = await db.get(Campaign, campaign_id)
        if campaign is None:
            raise web.HTTPNotFound(text="no such campaign")
        variants = list(campaign.variants)
    wechat = request.config_dict[wiring.WECHAT]
    sent = 0
    try:
        for openid in openids:
            for variant in variants:
                await wechat.send_mass_preview(openid, variant["text"])
                sent += 1
    except WeChatAPIError as exc:
        raise web.HTTPBadGateway(
            text=f"WeChat refused the preview (errcode {exc.errcode})"
        ) from None
    staff = request[STAFF]
    async with request.config_dict[wiring.SESSIONS].begin() as db:
        await audit(db, staff.staff_id, "campaign_test", utcnow(), target=str(campaign_id))
    raise web.HTTPSeeOther(f"/console/campaigns/{campaign_id}?message=test_sent_{sent}")


@routes.get("/dashboard")
@requires(*MARKETING)
async def dashboard(request: web.Request) -> web.StreamResponse:
    """The programme's figures for a month (``?month=YYYY-MM``, this month by default):
    target, actual and deviation with a 12-month trend each, then who the members are.

    The figures of months that have ended are read from where they are stored, and the month
    still running is reused for 5 minutes (models/figures.py, ``LIVE_SECONDS``), so a view
    costs reads except the first after those 5 minutes."""
    config = _config(request)
    rules = config.programme
    zone = rules.zone
    now = utcnow()
    today = now.astimezone(zone).date()
    error = None
    try:
        month = parse_month(
            request.query.get("month") or f"{today:%Y-%m}", today, allow_current=True
        )
    except BadMonth:
        error = copy.BAD_MONTH.format(month=request.query.get("month", ""))
        month = today.replace(day=1)
    async with request.config_dict[wiring.SESSIONS]() as db:
        report = await programme_figures(db, rules, month, now)
        tiers = await members_by(db, "tier")
        segments = await members_by(db, "segment")
        coupons = await coupon_stats(db)
        funnel = await referral_funnel(db)
        pushes = await pushes_by_purpose(db, now - timedelta(days=30))
    names = {t.code: t.name for t in rules.tiers}
    charts = {
        "tiers": bars("会员等级分布", [(names.get(k, k), v) for k, v in tiers.items()]),
        "segments": bars(
            "会员分群", [(copy.SEGMENT_NAMES.get(k, k), v) for k, v in segments.items()]
        ),
        "funnel": bars(
            "推荐漏斗",
            [
                ("生成邀请", funnel["links"]),
                ("好友关注", funnel["follows"]),
                ("首单", funnel["first_orders"]),
                ("已奖励", funnel["rewarded"]),
            ],
        ),
        "pushes": bars(
            "近30天推送（已发送）",
            [(copy.PURPOSE_NAMES.get(k, k), v["sent"]) for k, v in pushes.items()],
        ),
    }
    coupon_rows = [
        (rules.coupon_kind(kind).name if rules.coupon_kind(kind) else kind, figures)
        for kind, figures in coupons.items()
    ]
    return aiohttp_jinja2.render_template(
        "dashboard.html",
        request,
        template_context(
            request,
            # Markup: charts.py builds the SVG and escapes every label itself.
            charts={k: Markup(v) for k, v in charts.items()},
            month=month,
            this_month=today.replace(day=1),
            error=error,
            figures=figure_views(report, rules),
            coupons=coupon_rows,
            pushes=[(copy.PURPOSE_NAMES.get(k, k), v) for k, v in pushes.items()],
            templates=await template_status(request),
        ),
        status=400 if error else 200,
    )
