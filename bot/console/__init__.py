"""The customer-service console at /console/: server-rendered pages (aiohttp-jinja2), a little
JavaScript, live updates by server-sent events; nothing loaded from another host.
May import bot.wiring, bot.wechat, bot.push, scheduler, messages and models; never the API or the
pages."""
