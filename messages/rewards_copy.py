"""积分兑换 in words: the catalogue as a member reads it, the confirmation, what a redemption
gave, and every refusal (models/rewards.py gives the facts and the codes)."""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

from messages.copy import fen_to_yuan
from models.rewards import Offer, Redeemed, Refusal, Reward

TITLE = "🎁 积分兑换（您当前可用积分：{balance:,} 分）"
LINE = "{number}. {name}：{price}"
LINE_SHORT = "{number}. {name}：{price}（还差 {shortfall:,} 分）"
HOW_TO_PICK = "回复“兑换+编号”（如“兑换 1”）即可兑换。"
NONE_AFFORDABLE = "您的积分暂时还不够兑换以上礼品，继续消费即可累积积分。"
EMPTY = (
    "您当前可用积分 {balance:,} 分。目前暂无可兑换的礼品，上新后回复“积分兑换”即可查看。"
    "结账时也可告诉店员使用积分，由门店为您抵扣。"
)
# Beyond this many items the list says how many more there are (a WeChat reply is short).
MORE = "……还有 {count} 件，点菜单【会员中心】→【我的会员中心】→【积分兑换】查看全部。"

KIND_WHAT = {
    "coupon": "优惠券一张，兑换后即刻放入“我的券”",
    "gift": "实物礼品",
    "service": "服务",
    "experience": "活动名额",
}
DELIVERY_WHAT = {"pickup": "到店凭提货码领取", "ship": "由门店为您寄出"}

PICK_WHICH = "请回复“兑换+编号”，编号见“积分兑换”列表。"
PICK_UNKNOWN = "没有编号为 {number} 的礼品。回复“积分兑换”查看可兑换的礼品。"
CONFIRM = "您将使用 {price} 兑换【{name}】（{what}）。\n回复“确认”完成兑换，回复“取消”放弃。"
CANCELLED = "已取消本次兑换，积分未扣除。"
NOTHING_PENDING = "没有待确认的兑换。回复“积分兑换”查看可兑换的礼品。"

DONE_COUPON = (
    "✅ 兑换成功！已扣除 {points:,} 积分，剩余 {balance:,} 分。\n"
    "【{name}】已放入“我的券”（券码 {code}），有效期至 {day:%Y-%m-%d}。"
)
DONE_PICKUP = (
    "✅ 兑换成功！已扣除 {points:,} 积分，剩余 {balance:,} 分。\n【{name}】提货码：{code}。{how}"
)
HOW_PICKUP = "请到门店出示提货码领取。"
HOW_SHIP = "门店将为您寄出，发货后可凭提货码向客服查询物流。"
HOW_SERVICE = "使用时请向店员出示提货码。"
CASH_DUE = "另需在领取时支付 ¥{yuan}。"
ALREADY_DONE = "这笔兑换已完成，不会重复扣分。"

REFUSALS = {
    "unknown": "这件礼品已下架。回复“积分兑换”查看可兑换的礼品。",
    "retired": "这件礼品已下架。回复“积分兑换”查看可兑换的礼品。",
    "ended": "这件礼品的兑换已结束。",
    "not_in_tier": "这件礼品仅限指定等级会员兑换，回复“等级”查看您的等级。",
    "sold_out": "很抱歉，这件礼品已兑完。",
    "limit_reached": "这件礼品您已达到兑换次数上限。",
    "price_changed": "这件礼品的兑换积分刚刚调整，请回复“积分兑换”查看最新价格后再兑换。",
    "not_enough_points": "积分不足：兑换这件礼品还差 {shortfall:,} 分。",
}
NOT_OPEN_YET = "这件礼品将于 {day:%Y年%m月%d日 %H:%M} 开放兑换。"
LIMIT_PERIODS = {"month": "每月", "year": "每年", "ever": ""}


def price(reward: Reward) -> str:
    """「1,200 积分」 or 「800 积分 + ¥19.9」."""
    points = f"{reward.points_price:,} 积分"
    if reward.cash_fen:
        return f"{points} + ¥{fen_to_yuan(reward.cash_fen)}"
    return points


def what(reward: Reward) -> str:
    """What the member receives, in words."""
    if reward.kind == "gift" and reward.delivery:
        return f"实物礼品，{DELIVERY_WHAT[reward.delivery]}"
    return KIND_WHAT.get(reward.kind, reward.kind)


def listing(balance: int, offers: list[Offer], shown: int) -> str:
    """The numbered catalogue, cheapest first, with what the member is short of."""
    if not offers:
        return EMPTY.format(balance=balance)
    lines = [TITLE.format(balance=balance)]
    for number, offer in enumerate(offers[:shown], start=1):
        template = LINE_SHORT if offer.shortfall else LINE
        lines.append(
            template.format(
                number=number,
                name=offer.reward.name,
                price=price(offer.reward),
                shortfall=offer.shortfall,
            )
        )
    if len(offers) > shown:
        lines.append(MORE.format(count=len(offers) - shown))
    lines.append(HOW_TO_PICK if any(o.shortfall == 0 for o in offers) else NONE_AFFORDABLE)
    return "\n".join(lines)


def confirm(reward: Reward) -> str:
    """The question before points are spent."""
    text = CONFIRM.format(price=price(reward), name=reward.name, what=what(reward))
    if reward.cash_fen:
        text += "\n" + CASH_DUE.format(yuan=fen_to_yuan(reward.cash_fen))
    return text


def refusal(refused: Refusal, zone: ZoneInfo) -> str:
    """Why the member cannot redeem, plainly."""
    if refused.reason == "not_open_yet" and refused.opens_at is not None:
        return NOT_OPEN_YET.format(day=refused.opens_at.astimezone(zone))
    return REFUSALS[refused.reason].format(shortfall=refused.shortfall)


def redeemed(done: Redeemed, zone: ZoneInfo) -> str:
    """What the redemption gave: the coupon in 我的券, or the pickup code and how to collect."""
    reward = done.reward
    if done.coupon_code:
        # A coupon ends at the start of a local day: the last day to use it is the one before.
        last = done.coupon_valid_until - timedelta(seconds=1) if done.coupon_valid_until else None
        text = DONE_COUPON.format(
            points=done.points,
            balance=done.balance_after,
            name=reward.name,
            code=done.coupon_code,
            day=last.astimezone(zone) if last else None,
        )
    else:
        if reward.kind == "gift":
            how = HOW_SHIP if reward.delivery == "ship" else HOW_PICKUP
        else:
            how = HOW_SERVICE
        if done.cash_fen:
            how += CASH_DUE.format(yuan=fen_to_yuan(done.cash_fen))
        text = DONE_PICKUP.format(
            points=done.points,
            balance=done.balance_after,
            name=reward.name,
            code=done.pickup_code,
            how=how,
        )
    return f"{ALREADY_DONE}\n{text}" if done.replayed else text
