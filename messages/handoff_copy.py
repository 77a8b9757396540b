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
    "人工客服的服务时间是每天{start}-{end}。您的消息我们已经记下，客服上班后会第一时间回复您。"
)
ALREADY = "您已在人工客服队列中，请稍候，客服会尽快回复您。"
NOT_UNDERSTOOD = "抱歉，我还是没能理解您的问题，已为您转接人工客服。"
ENDED = "本次人工服务已结束，感谢您的耐心。如需帮助，随时回复“人工”。"
# Words with which a member hands themselves back to the bot.
END_WORDS = ("结束", "返回")
