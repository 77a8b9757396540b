"""What members read about their coupons' coming expiry (a service notice: their own asset).

The template message for the purpose ``coupon_expiring`` (WeChat's 优惠券到期提醒) fills its
keys from ``fields``: title, coupons, count, day, note.
"""

from __future__ import annotations

from datetime import date
from typing import Any

EXPIRING_ONE = (
    "⏰ 您的优惠券【{coupon}】（券码 {code}）即将到期，有效期至 {day:%Y年%m月%d日}，"
    "记得使用哦！回复“我的券”查看。"
)
EXPIRING_MANY = (
    "⏰ 您有 {count} 张优惠券即将到期，有效期至 {day:%Y年%m月%d日}：{coupons}。"
    "回复“我的券”查看券码。"
)
TITLE = "您的优惠券即将到期"
NOTE = "到店或在商城出示券码即可使用，回复“我的券”查看全部优惠券。"


def expiring(coupons: list[tuple[str, str]], last_day: date) -> dict[str, Any]:
    """The reminder of ``coupons`` ((name, code) each) whose last valid day is ``last_day``:
    one message however many there are."""
    names = "、".join(name for name, _ in coupons)
    if len(coupons) == 1:
        name, code = coupons[0]
        text = EXPIRING_ONE.format(coupon=name, code=code, day=last_day)
    else:
        text = EXPIRING_MANY.format(count=len(coupons), day=last_day, coupons=names)
    return {
        "text": text,
        "fields": {
            "title": TITLE,
            "coupons": names,
            "count": str(len(coupons)),
            "day": f"{last_day:%Y-%m-%d}",
            "note": NOTE,
        },
    }
