"""Peer for bench/peers.py: the 积分 reply as a minimal WeRoBot bot would give it.

    PEER_TOKEN=benchtoken [PEER_AES_KEY=… PEER_APPID=wx…] PEER_DB=/tmp/.../bot.db \\
        PEER_REDIS_SOCKET=/tmp/.../redis.sock \\
        gunicorn -w 2 -k gthread --threads 2 -b 127.0.0.1:8081 --chdir bench peer_werobot:app

WeRoBot checks the signature and parses the XML; the handler dedupes the message by MsgId in
Redis (SET NX EX, the TTL ours uses), reads the member's ``points_balance`` from the SQLite file
our server migrated and seeded (read-only, one connection per worker process) and replies
"您的积分：N". bench/peers.py starts it under gunicorn with its own throwaway redis-server.
"""

from __future__ import annotations

import os
import sqlite3
import textwrap
import threading

import redis
from werobot import WeRoBot
from werobot.messages.messages import TextMessage
from werobot.replies import TextReply

DEDUPE_TTL_SECONDS = 300


class _TextReply(TextReply):
    # WeRoBot's template starts with a newline and indentation, which WeChat accepts but the
    # load loop of bench/webhook.py counts as an error (it wants the body to start with <xml>).
    TEMPLATE = textwrap.dedent(TextReply.TEMPLATE).strip()


# gunicorn imports this module in each worker after the fork (no --preload), so every worker
# process gets its own Redis pool and SQLite connection.
_redis = redis.Redis(unix_socket_path=os.environ["PEER_REDIS_SOCKET"])
_db = sqlite3.connect(f"file:{os.environ['PEER_DB']}?mode=ro", uri=True, check_same_thread=False)
# The worker's threads share the connection; one query at a time on it.
_db_lock = threading.Lock()

# Safe mode (AES) when PEER_AES_KEY is given, as WeRoBot's own encryption.
robot = WeRoBot(
    token=os.environ["PEER_TOKEN"],
    encoding_aes_key=os.environ.get("PEER_AES_KEY") or None,
    app_id=os.environ.get("PEER_APPID") or None,
    SESSION_STORAGE=False,
)


@robot.filter("积分")
def points(message: TextMessage) -> _TextReply | None:
    if not _redis.set(f"dedupe:msg:{message.message_id}", b"1", nx=True, ex=DEDUPE_TTL_SECONDS):
        return None
    with _db_lock:
        row = _db.execute(
            "SELECT points_balance FROM members WHERE openid = ?", (message.source,)
        ).fetchone()
    return _TextReply(message=message, content=f"您的积分：{row[0] if row else 0}")


app = robot.wsgi
