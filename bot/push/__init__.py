"""The delivery pipeline: the outbox and its stream consumer (channel choice inside), marketing
rules, template receipts, event notifications and shop events. May import bot.wechat (the client
and WeChat's limits), messages, models and the process's leaf utilities; never scheduler, the
API, the console, the pages or the app factory.
"""
