"""Honest copy: every member-facing string that mentions a coupon, gift, multiplier or benefit
names what gives it, and nothing is promised while the rule that gives it is paused."""

from __future__ import annotations

import importlib
import pkgutil
import re
from collections.abc import Iterator
from typing import Any

import pytest

import messages
from messages import benefit_copy
from models.benefits.engine import rule_codes, with_settings
from models.benefits.perks import boost_perks, tier_perks, upgrade_perk
from models.rules import ProgrammeRules

RULES = ProgrammeRules()
# A coupon, a gift, a multiplier or a benefit (发送/推送/传送 are not 送).
PROMISE = re.compile(r"券|礼|倍|赠|(?<![发推传])送|福利|专属客服|优先购|奖励|好礼")
# Staff read these, not members.
STAFF_MODULES = {"console_copy"}


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(key)
            yield from _strings(item)
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            yield from _strings(item)


def member_strings() -> Iterator[tuple[str, str]]:
    """(module.NAME, text) of every member-facing string constant in messages/."""
    for found in pkgutil.iter_modules(messages.__path__):
        if found.name in STAFF_MODULES:
            continue
        module = importlib.import_module(f"messages.{found.name}")
        for name, value in vars(module).items():
            if name.startswith("_") or name.isupper() is False or name in ("PROMISES",):
                continue
            if name in ("NOT_PROMISES", "SETTINGS"):
                continue
            for text in _strings(value):
                yield f"{found.name}.{name}", text


def test_every_promise_names_what_issues_it() -> None:
    promising = {where for where, text in member_strings() if PROMISE.search(text)}
    unexplained = promising - set(benefit_copy.PROMISES) - set(benefit_copy.NOT_PROMISES)
    assert not unexplained, f"promises with no issuing rule or setting: {sorted(unexplained)}"
    # And every declared issuer exists.
    codes = set(rule_codes(RULES.benefits))
    for where, issuers in benefit_copy.PROMISES.items():
        for issuer in (issuers,) if isinstance(issuers, str) else issuers:
            if issuer == "boost:*":
                assert any(code.startswith("boost:") for code in codes), where
            else:
                assert issuer in codes or issuer in benefit_copy.SETTINGS, (where, issuer)


def test_no_promise_of_what_nothing_gives() -> None:
    """The strings the issue named as empty promises are gone from every member string."""
    for where, text in member_strings():
        for gone in (
            "新春会员专享好礼",
            "积分多倍送",
            "新品优先购",
            "本月回店消费即享",
        ):
            assert gone not in text, where


def test_the_priority_lane_is_promised_only_to_the_tiers_served_first() -> None:
    """专属客服 is customer service's priority lane ([console] priority_tiers): a tier hears of
    it only while the queue serves it first."""

    def promised(code: str, lanes: tuple[str, ...]) -> bool:
        perks = tier_perks(RULES, RULES.benefits, code, lanes)
        return any("专属客服" in benefit_copy.perk_text(perk) for perk in perks)

    assert promised("diamond", ("diamond",))
    assert not promised("gold", ("diamond",))
    assert not promised("diamond", ())


@pytest.mark.parametrize("code", rule_codes(RULES.benefits))
def test_a_paused_rule_is_promised_nowhere(code: str) -> None:
    """With rule ``code`` paused, no tier's perks, upgrade gift or boost lists it, and no
    holiday greeting offers its multiplier."""
    paused = with_settings(RULES, RULES.benefits, code, {"enabled": False})
    perks = boost_perks(paused)
    for tier in RULES.tiers:
        perks += tier_perks(RULES, paused, tier.code)
        perks += [p for p in [upgrade_perk(RULES, paused, tier.code)] if p]
    assert code not in {perk.source for perk in perks}
    for perk in perks:
        assert benefit_copy.perk_text(perk)  # every perk has its words
    if code.startswith("boost:"):
        boost = RULES.benefits.boosts[code.removeprefix("boost:")]
        day = boost.dates[0].replace("*", "01")
        month, dom = (int(part) for part in day.split("-"))
        greeting = benefit_copy.holiday_greeting("国庆节", paused, month, dom)
        others = [b for b in paused.boosts.values() if b.enabled and b.applies(month, dom)]
        assert boost.name not in greeting
        if not others:
            assert "倍" not in greeting


def test_national_day_greeting_offers_double_points_only_while_the_boost_is_on() -> None:
    on = benefit_copy.holiday_greeting("国庆节", RULES.benefits, 10, 1)
    assert "国庆双倍积分：消费享2倍积分" in on
    off = with_settings(RULES, RULES.benefits, "boost:national_day", {"enabled": False})
    assert "倍" not in benefit_copy.holiday_greeting("国庆节", off, 10, 1)
    # 春节 promises nothing: no rule gives a 新春 gift.
    assert not PROMISE.search(benefit_copy.holiday_greeting("春节", RULES.benefits, 2, 17))


def test_tier_perks_come_from_the_rules() -> None:
    words = [benefit_copy.perk_text(p) for p in tier_perks(RULES, RULES.benefits, "silver")]
    assert words == [
        "全场9.5折",
        "1.2倍积分",
        "每月一张【会员9.5折券】",
        "生日月2倍积分",
        "生日礼：一张【生日礼券】",
    ]
    basic = [benefit_copy.perk_text(p) for p in tier_perks(RULES, RULES.benefits, "basic")]
    assert basic == ["消费积分（每消费1元得1积分）", "生日月2倍积分"]
    diamond = [benefit_copy.perk_text(p) for p in tier_perks(RULES, RULES.benefits, "diamond")]
    assert "生日定制礼" in diamond  # [programme.birthday_gifts] ships it to 钻石会员
