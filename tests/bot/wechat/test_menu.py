"""The custom menu: only buttons for what the bot does, accepted by WeChat's stand-in."""

from __future__ import annotations

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
    assert keys == ["MENU_POINTS", "MENU_TIER", "MENU_BENEFITS", "MENU_COUPONS", "MENU_REWARDS"]
