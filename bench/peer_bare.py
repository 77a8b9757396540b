"""Peer for bench/peers.py: the ceiling, an aiohttp handler that only checks the signature.

    python bench/peer_bare.py --port 8082 --token benchtoken

One process on uvloop, as ours runs: sha1 of the sorted token, timestamp and nonce against the
``signature`` query parameter, the body read, and a fixed text reply. No parsing, no Redis, no
database: what is left of ours' time per request once those are gone.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac

import uvloop
from aiohttp import web

REPLY = (
    "<xml><ToUserName><![CDATA[o_bench]]></ToUserName>"
    "<FromUserName><![CDATA[gh_0123456789ab]]></FromUserName>"
    "<CreateTime>0</CreateTime><MsgType><![CDATA[text]]></MsgType>"
    "<Content><![CDATA[您的积分：0]]></Content></xml>"
)


def make_app(token: str) -> web.Application:
    async def wechat(request: web.Request) -> web.Response:
        query = request.query
        timestamp, nonce = query.get("timestamp", ""), query.get("nonce", "")
        expected = hashlib.sha1("".join(sorted((token, timestamp, nonce))).encode()).hexdigest()
        if not hmac.compare_digest(expected, query.get("signature", "")):
            return web.Response(status=403, text="bad signature")
        await request.read()
        return web.Response(text=REPLY, content_type="text/xml")

    app = web.Application()
    app.router.add_post("/wechat", wechat)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--token", required=True)
    args = parser.parse_args()
    web.run_app(
        make_app(args.token),
        host=args.host,
        port=args.port,
        access_log=None,
        loop=uvloop.new_event_loop(),
        print=None,
    )


if __name__ == "__main__":
    main()
