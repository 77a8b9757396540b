"""WeChat's protocol and API: the webhook, its XML and inbound gate, the Redis pipe and state the
gate reads, the API client with WeChat's own limits (customer-service window, rate limits), the
menu and the terminal chat. May import handlers, messages, models and the process's leaf
utilities (bot.tasks, bot.metrics, bot.logs, bot.request_log); never bot.push, scheduler, the
API, the console, the pages or the app factory.
"""
