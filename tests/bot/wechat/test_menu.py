"""The custom menu: only buttons for what the bot does, accepted by WeChat's stand-in."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient

from bot import wiring
from bot.wechat.menu import build_menu
from handlers.settings import ChatConfig
from tests.wechat_standin import WeChatStandIn


def test_menu_has_buttons_only_for_existing_capabilities() -> None:
    menu = build_menu(ChatConfig().menu_keys, ["help", "points", "tier"])
    assert menu == {
        "button": [
            {
                "name": "会员中心",
                "sub_button": [
                    {"type": "click", "name": "积分查询", "key": "MENU_POINTS"},
                    {"type": "click", "name": "会员等级", "key": "MENU_TIER"},
                ],
            },
            {"type": "click", "name": "使用帮助", "key": "MENU_HELP"},
        ]
    }


async def test_menu_push_reaches_wechat(client: TestClient, standin: WeChatStandIn) -> None:
    app = client.app
    menu = build_menu(app[wiring.CONFIG].chat.menu_keys, app[wiring.SERVICES].capabilities)
    await app[wiring.WECHAT].create_menu(menu)
    pushed = standin.sent("/cgi-bin/menu/create")
    assert pushed == [menu]
    keys = [sub["key"] for sub in pushed[0]["button"][0]["sub_button"]]
    assert keys == ["MENU_POINTS", "MENU_REWARDS", "MENU_COUPONS", "MENU_TIER"]


def test_the_member_centre_opens_first_within_wechats_limits() -> None:
    capabilities = ["help", "points", "tier", "benefits", "coupons", "redeem", "human"]
    menu = build_menu(ChatConfig().menu_keys, capabilities, "https://club.example.com/m/")
    group = menu["button"][0]["sub_button"]
    assert group[0] == {
        "type": "view",
        "name": "我的会员中心",
        "url": "https://club.example.com/m/",
    }
    assert len(group) == 5  # WeChat's limit: the centre first, then four CLICK buttons
    assert [sub["name"] for sub in group[1:]] == ["积分查询", "积分兑换", "我的券", "会员等级"]
    with pytest.raises(ValueError, match="1024 bytes"):
        build_menu(ChatConfig().menu_keys, capabilities, "https://x.example/" + "m" * 1024)


async def test_the_menu_with_the_centre_is_accepted(
    client: TestClient, standin: WeChatStandIn
) -> None:
    app = client.app
    centre = f"{app[wiring.CONFIG].server.public_url}/m/"
    menu = build_menu(app[wiring.CONFIG].chat.menu_keys, app[wiring.SERVICES].capabilities, centre)
    await app[wiring.WECHAT].create_menu(menu)
    assert standin.sent("/cgi-bin/menu/create") == [menu]
