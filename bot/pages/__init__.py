"""Member-facing web pages (the annual recap, the referral page, the member centre under /m/)
and their shared shell.
May import bot.wechat, bot.wiring's typed keys, messages, models and the handlers' wording of
the same facts (the tier's next step, as chat says it); never the console or the API.
"""
