"""Member-facing web pages (the annual recap, the referral page) and their shared shell.
May import bot.wechat, bot.wiring's typed keys, messages and models; never the console or API.
"""
