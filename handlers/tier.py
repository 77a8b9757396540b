"""等级 / 会员 and 权益: the member's tier, exactly what reaches the next (「怎么升级」「离钻石
还差多少」「会不会降级」 get the same answer), and the benefits of theirs or a named tier."""

from __future__ import annotations

from collections.abc import Collection

from handlers.inbound import Inbound
from handlers.router import Router, intent
from messages import benefit_copy, copy
from messages.replies import TextReply
from models.base import utcnow
from models.benefit_settings import BenefitsConfig
from models.benefits.engine import active_benefits
from models.benefits.perks import boost_perks, tier_perks, upgrade_perk
from models.members import NEW_MEMBER_TIER
from models.rules import ProgrammeRules, TierRule
from models.tiers import Progress, Stats, progress, tier_standing

router = Router("tier")


def next_step(step: Progress) -> str:
    """ "再消费 2 次或 ¥800 即可升级为金卡会员", or the top-tier thanks."""
    nxt = step.next_tier
    if nxt is None:
        return copy.TIER_TOP
    if step.spend_needed_fen is not None:
        return copy.TIER_NEXT_BOTH.format(
            orders=step.orders_needed, yuan=copy.fen_to_yuan(step.spend_needed_fen), next=nxt.name
        )
    if nxt.top_spend_percent is not None:
        return copy.TIER_NEXT_TOP.format(
            orders=step.orders_needed, percent=nxt.top_spend_percent, next=nxt.name
        )
    return copy.TIER_NEXT_ORDERS.format(orders=step.orders_needed, next=nxt.name)


def _benefits(
    rules: ProgrammeRules, config: BenefitsConfig, tier: TierRule, lanes: Collection[str]
) -> list[str]:
    """The tier's perks as the active rules and settings give them."""
    lines = [copy.BENEFITS_TITLE.format(name=tier.name)]
    lines += [
        copy.BENEFITS_LINE.format(benefit=benefit_copy.perk_text(perk))
        for perk in tier_perks(rules, config, tier.code, lanes)
    ]
    if upgrade := upgrade_perk(rules, config, tier.code):
        lines.append(copy.BENEFITS_LINE.format(benefit=benefit_copy.perk_text(upgrade)))
    return lines


@router.on(intent("tier"))
async def show_tier(msg: Inbound) -> TextReply:
    """Answer 等级 / 会员: tier, discount, and what takes the member to the next tier."""
    rules = msg.svc.rules
    if msg.member_id is None:
        raise RuntimeError("tier asked without a member")
    if msg.nothing_on_record:
        standing: tuple[str, Stats] | None = (NEW_MEMBER_TIER, Stats(0, 0))
    else:
        async with msg.reading() as connection:
            standing = await tier_standing(connection, rules, msg.member_id, utcnow())
    if standing is None:
        raise RuntimeError("tier asked for a member who does not exist")
    tier, stats = standing
    step = progress(rules, tier, stats)
    lines = [
        copy.TIER_CURRENT.format(name=step.current.name, discount=step.current.discount),
        next_step(step)
        + (copy.TIER_WINDOW.format(months=rules.tier_window_months) if step.next_tier else ""),
    ]
    return TextReply("\n".join(lines))


@router.on(intent("benefits"))
async def show_benefits(msg: Inbound) -> TextReply:
    """Answer 权益: the benefits of the tier the member names (「钻石会员有什么权益」), else of
    their own tier and what the next one adds."""
    rules = msg.svc.rules
    named = msg.slot("tier")
    member = await msg.load_member()
    config = await active_benefits(msg.db, rules)
    lanes = msg.svc.priority.tiers
    if named is not None and named != member.tier:
        return TextReply("\n".join(_benefits(rules, config, rules.tier(named), lanes)))
    current = rules.tier(member.tier)
    lines = _benefits(rules, config, current, lanes)
    if boosts := boost_perks(config):
        everyone = "、".join(benefit_copy.perk_text(perk) for perk in boosts)
        lines.append(benefit_copy.PERKS_ALL + everyone)
    index = rules.tiers.index(current)
    if index + 1 < len(rules.tiers):
        nxt = rules.tiers[index + 1]
        perks = "、".join(
            benefit_copy.perk_text(p) for p in tier_perks(rules, config, nxt.code, lanes)
        )
        lines.append(copy.BENEFITS_NEXT.format(next=nxt.name, benefits=perks))
    return TextReply("\n".join(lines))
