"""The JSON API for shop systems under /api/v1 (bearer token, OpenAPI document).
May import bot.wiring, bot.wechat, bot.push, scheduler, handlers, messages and models; never the
console or the pages."""
