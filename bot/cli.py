"""The command line: serve, migrate, demo, chat."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Sequence

from bot.config import Config, ConfigError, load_config


def _serve(config: Config, args: argparse.Namespace) -> int:
    import uvloop
    from aiohttp import web

    from bot.app import create_app
    from bot.logs import setup_logging
    from bot.migrate import current_revision, head_revision

    if args.port is not None and not 1 <= args.port <= 65535:
        print(f"config error: --port {args.port} is not a port number (1-65535)", file=sys.stderr)
        return 2
    setup_logging(config.logging.level)
    if asyncio.run(current_revision(config.database.url)) != head_revision():
        print("database schema is not current: run `python -m bot migrate` first", file=sys.stderr)
        return 2
    host = args.host or config.server.host
    port = args.port or config.server.port
    web.run_app(
        create_app(config),
        host=host,
        port=port,
        access_log=None,
        loop=uvloop.new_event_loop(),
        print=lambda _: print(f"serving on http://{host}:{port} (config {config.source})"),
    )
    return 0


def _migrate(config: Config, args: argparse.Namespace) -> int:
    from bot.migrate import upgrade

    upgrade(config.database.url)
    print("database schema is current")
    return 0


def _demo(config: Config, args: argparse.Namespace) -> int:
    from bot.database import create_engine, create_sessionmaker
    from bot.demo import DEMO_OPENIDS, load_demo

    async def run() -> int:
        engine = create_engine(config.database.url)
        try:
            return await load_demo(create_sessionmaker(engine), if_empty=args.if_empty)
        finally:
            await engine.dispose()

    loaded = asyncio.run(run())
    print(f"demo data: {loaded} members loaded" if loaded else "demo data: database not empty")
    if loaded:
        print(f"  chat as one: python -m bot chat --openid {DEMO_OPENIDS[0]}")
    return 0


def _chat(config: Config, args: argparse.Namespace) -> int:
    from bot.chat import chat

    asyncio.run(chat(config, args.openid, args.url))
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bot", description="Loyalty-programme WeChat official account."
    )
    parser.add_argument(
        "--config", help="TOML config file (default: $BOT_CONFIG, config.toml, config.example.toml)"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(
        name: str, run: Callable[[Config, argparse.Namespace], int], help_text: str
    ) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(run=run)
        return sub

    serve = add("serve", _serve, "serve the webhook, API and console")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    add("migrate", _migrate, "apply database migrations")
    demo = add("demo", _demo, "load demo members")
    demo.add_argument("--if-empty", action="store_true", help="only into an empty database")
    chat = add("chat", _chat, "chat with the running service as a member, in the terminal")
    chat.add_argument("--openid", help="the member to be (default: a new one)")
    chat.add_argument("--url", help="webhook URL (default: the configured server's /wechat)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; configuration problems exit 2 with a single line on stderr."""
    args = _parser().parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    return args.run(config, args)
