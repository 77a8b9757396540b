"""What members are told about reaching a person (人工客服), in Simplified Chinese."""

from __future__ import annotations

QUEUED = (
    "已为您转接人工客服，您前面还有{ahead}位用户在等待，请稍候。\n"
    "您可以直接发送文字、图片或语音描述问题。"
)
QUEUED_FIRST = (
    "已为您转接人工客服，客服马上就来，请稍候。\n您可以直接发送文字、图片或语音描述问题。"
)
OUT_OF_HOURS = (
    "人工客服的服务时间是每天{start}-{end}，现在不在服务时间。"
    "客服将于{when}上线，按排队顺序回复您{ahead}。"
    "您已在排队，不会被转回机器人；现在也可以先发送文字、图片或语音描述问题，我们都会记下。"
)
OUT_OF_HOURS_AHEAD = "（您前面还有{ahead}位）"
# When the service day starts next: {at} is its start time.
OPENS_TODAY = "今天{at}"
OPENS_TOMORROW = "明天{at}"
ALREADY = "您已在人工客服队列中，请稍候，客服会尽快回复您。"
ALREADY_AHEAD = "您已在人工客服队列中，前面还有{ahead}位用户在等待，请稍候。"
NOT_UNDERSTOOD = "抱歉，我还是没能理解您的问题，已为您转接人工客服。"
ENDED = "本次人工服务已结束，感谢您的耐心。如需帮助，随时回复“人工”。"
# Words with which a member hands themselves back to the bot.
END_WORDS = ("结束", "返回")
