"""Template honesty (issue 18): as shipped no template is configured, so a service notice to a
member silent for 48 hours is skipped (no_channel). The console says so, lists for each purpose
the template to apply for and the fields the code fills, and counts this month's skips; the
table is the code's own (each purpose's pushes carry exactly its fields) and the README's."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from pydantic import ValidationError
from sqlalchemy import select

from bot import wiring
from bot.push import notifications
from bot.push.settings import DeliveryConfig
from bot.push.templates import BY_PURPOSE, TEMPLATE_PURPOSES
from messages import benefit_copy, console_copy, coupon_copy
from models.base import utcnow
from models.benefit_settings import Gift
from models.coupons import Coupon
from models.rules import ProgrammeRules
from models.tiers import Stats
from scheduler import benefit_jobs, scheduled_pushes
from scheduler.coupon_reminders import plan_coupon_reminders
from tests.bot.api.test_api import call, follower
from tests.bot.console.test_console import add_staff, login
from tests.bot.push.test_delivery import TEMPLATE, eventually, finished
from tests.wechat_standin import WeChatStandIn

ROOT = Path(__file__).resolve().parents[3]
MEMBER = "o_tpl_member01"
RULES = ProgrammeRules()


def _event(**payload: Any) -> Any:
    return SimpleNamespace(payload=payload)


NOW = datetime(2026, 5, 1, tzinfo=UTC)


def _rule_push(build: Any, key: str) -> dict[str, Any]:
    """The payload a benefit rule's job plans for ``key`` (a tier), with a coupon and points."""
    purpose, _, payload = build(key, Gift(coupon="cash_10", points=100))
    assert purpose in BY_PURPOSE
    return payload


# Each purpose's payload as its producer builds it.
BUILT: dict[str, dict[str, Any]] = {
    "tier_upgraded": notifications._tier_upgraded(_event(to="silver"), RULES, RULES.benefits),
    "referral_rewarded": notifications._referral_rewarded(
        _event(points=200), RULES, RULES.benefits
    ),
    "referral_star": notifications._referral_star(
        _event(quarter="2026Q1", referrals=5, points=500), RULES, RULES.benefits
    ),
    "points_expiring": scheduled_pushes._reminder(
        RULES, 7, 1, datetime(2026, 5, 1, tzinfo=UTC), 100
    ).payload,
    "birthday": _rule_push(benefit_jobs.birthday_push(RULES, NOW), "silver"),
    "order_credited": notifications._order_credited(
        _event(order="SO-1", points=120, balance=320), RULES, RULES.benefits
    ),
    "benefit_granted": notifications._benefit_granted(
        _event(rule="repeat_order", points=100), RULES, RULES.benefits
    ),
    # The set-based rules' pushes, as their jobs build them.
    "monthly_tier": _rule_push(benefit_jobs.monthly_push(RULES, NOW), "silver"),
    "anniversary": _rule_push(
        benefit_jobs.simple_push(RULES, NOW, benefit_jobs.ANNIVERSARY, benefit_copy.ANNIVERSARY), ""
    ),
    "behaviour_points": _rule_push(
        benefit_jobs.simple_push(RULES, NOW, benefit_jobs.BEHAVIOUR, benefit_copy.PROFILE_DONE), ""
    ),
    "tier_keeping": scheduled_pushes._keep_payload(
        RULES.tier("silver"), Stats(orders=2, spend_fen=1000), date(2026, 5, 1)
    ),
    "coupon_expiring": coupon_copy.expiring([("满300减50", "ABC")], date(2026, 5, 1)),
    "service_reply": {"fields": console_copy.template_fields("您好")},
}


def test_each_purpose_fills_exactly_the_fields_the_table_lists() -> None:
    assert set(BUILT) == set(BY_PURPOSE)
    for entry in TEMPLATE_PURPOSES:
        assert set(BUILT[entry.purpose]["fields"]) == set(entry.fields), entry.purpose
        assert entry.purpose in console_copy.PURPOSE_NAMES


def test_the_readme_lists_each_purpose_its_template_and_fields() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for entry in TEMPLATE_PURPOSES:
        line = next(
            (row for row in readme.splitlines() if row.startswith(f"| `{entry.purpose}`")), None
        )
        assert line is not None, entry.purpose
        assert entry.library_title in line
        assert all(f"`{field}`" in line for field in entry.fields), entry.purpose


def test_a_template_mapping_a_field_the_push_lacks_is_refused() -> None:
    bad = {"template_id": "T", "fields": {"keyword1": "coupons", "keyword2": "amount"}}
    with pytest.raises(ValidationError, match="no field amount"):
        DeliveryConfig(templates={"coupon_expiring": bad})
    good = {"template_id": "T", "fields": {"keyword1": "coupons", "keyword2": "day"}}
    assert DeliveryConfig(templates={"coupon_expiring": good}).templates["coupon_expiring"]


async def _coupon_reminder(client: TestClient) -> None:
    """A 30-day coupon of the member's issued 28 days ago: its reminder planned."""
    issue = {"openid": MEMBER, "kind": "cash_10", "reason": "测试", "idempotency_key": "tpl-0001"}
    status, coupon = await call(client, "POST", "/coupons", issue)
    assert status == 201
    app = client.app
    ago = timedelta(days=28)
    async with app[wiring.SESSIONS].begin() as session:
        stored = await session.scalar(select(Coupon).where(Coupon.code == coupon["code"]))
        assert stored is not None
        stored.issued_at -= ago
        stored.valid_from -= ago
        stored.valid_until -= ago
    planned = await plan_coupon_reminders(
        app[wiring.SESSIONS], app[wiring.OUTBOX], app[wiring.CONFIG].programme, utcnow()
    )
    assert planned == 1


async def _page(client: TestClient, path: str) -> str:
    response = await client.get(path)
    assert response.status == 200
    return await response.text()


def _row(page: str, purpose: str) -> str:
    found = re.search(rf'<tr data-purpose="{purpose}">(.*?)</tr>', page, re.S)
    assert found, purpose
    return found[1]


async def test_without_a_template_the_notice_is_skipped_and_the_console_says_so(
    client: TestClient, standin: WeChatStandIn
) -> None:
    await follower(client, MEMBER)
    await client.app[wiring.REDIS].delete(f"cs:window:{MEMBER}")  # silent for 48 hours
    await _coupon_reminder(client)
    (row,) = await eventually(lambda: finished(client))
    assert (row.purpose, row.status, row.reason) == ("coupon_expiring", "skipped", "no_channel")
    assert standin.sent() == standin.sent(TEMPLATE) == []

    await add_staff(client, "marketer_tpl", "marketer")
    assert await login(client, "marketer_tpl") == 303
    page = await _page(client, "/console/templates")
    assert "尚未配置任何模板消息" in page
    assert re.search(r'id="skipped-total">1<', page)
    coupon_row = _row(page, "coupon_expiring")
    assert "优惠券到期提醒" in coupon_row
    assert "未配置" in coupon_row
    assert re.search(r'class="skipped">1<', coupon_row)
    assert re.search(r'class="skipped">0<', _row(page, "birthday"))
    for entry in TEMPLATE_PURPOSES:
        assert entry.library_title in _row(page, entry.purpose)
    dashboard = await _page(client, "/console/dashboard")
    assert "本月因未配置模板而跳过的通知：1 条" in dashboard
    assert re.search(r'class="skipped">1<', _row(dashboard, "coupon_expiring"))


async def test_a_configured_template_carries_the_reminder(
    app_factory: Callable[..., Any], standin: WeChatStandIn
) -> None:
    fields = {"first": "title", "keyword1": "coupons", "keyword2": "day", "remark": "note"}
    templates = {"coupon_expiring": {"template_id": "TPL_COUPON", "fields": fields}}
    client = await app_factory(delivery={"templates": templates})
    await follower(client, MEMBER)
    await client.app[wiring.REDIS].delete(f"cs:window:{MEMBER}")
    await _coupon_reminder(client)
    (row,) = await eventually(lambda: finished(client))
    assert (row.status, row.channel) == ("sent", "template")
    (sent,) = standin.sent(TEMPLATE)
    assert sent["template_id"] == "TPL_COUPON"
    assert sent["data"]["keyword1"] == {"value": "无门槛10元券"}
    assert sent["data"]["first"] == {"value": coupon_copy.TITLE}

    await add_staff(client, "admin_tpl", "admin")
    assert await login(client, "admin_tpl") == 303
    page = await _page(client, "/console/templates")
    assert "尚未配置任何模板消息" not in page
    coupon_row = _row(page, "coupon_expiring")
    assert "已配置" in coupon_row
    assert "TPL_COUPON" in coupon_row
    assert "未配置" in _row(page, "birthday")
