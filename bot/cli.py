"""The command line: serve, migrate, demo, import, ledger, jobs, report, menu, staff, member,
chat."""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from bot.config import Config, ConfigError, load_config
from models.staff import ROLES

if TYPE_CHECKING:
    from aiohttp import web

# Allocations between young-generation collections (CPython's default: 700).
GC_YOUNG_THRESHOLD = 100_000


def _schema_is_current(config: Config) -> bool:
    """True when the database is migrated; otherwise says what to run."""
    from bot.migrate import current_revision, head_revision

    if asyncio.run(current_revision(config.database.url)) == head_revision():
        return True
    print("database schema is not current: run `python -m bot migrate` first", file=sys.stderr)
    return False


def _serve(config: Config, args: argparse.Namespace) -> int:
    import uvloop
    from aiohttp import web

    from bot.app import ROLES, SCHEDULER, WEB, WORKER, create_app
    from bot.logs import setup_logging

    if args.port is not None and not 1 <= args.port <= 65535:
        print(f"config error: --port {args.port} is not a port number (1-65535)", file=sys.stderr)
        return 2
    roles = ROLES if args.role == "all" else (args.role,)
    if roles == (SCHEDULER,) and not config.scheduler.enabled:
        print("config error: --role scheduler with [scheduler] enabled = false", file=sys.stderr)
        return 2
    if WORKER in roles:
        consumers = args.consumers or config.delivery.workers or (1 if WEB not in roles else 0)
        config = config.model_copy(
            update={"delivery": config.delivery.model_copy(update={"workers": consumers})}
        )
    setup_logging(config.logging.level)
    if not _schema_is_current(config):
        return 2
    host = args.host or config.server.host
    # The webhook's own listener (``[server] webhook_port``) binds the same host.
    config = config.model_copy(update={"server": config.server.model_copy(update={"host": host})})
    app = create_app(config, roles=roles)
    _settle_garbage_collector()
    if WEB not in roles:
        # Several workers or schedulers run on one host: each listens (for /healthz and
        # /metrics) only where it is told to, never on the web role's port.
        uvloop.run(_run_headless(app, args.role, host, args.port))
        return 0
    port = args.port or config.server.port
    web.run_app(
        app,
        host=host,
        port=port,
        access_log=None,
        # Several web processes may share the port; the kernel spreads connections over them.
        reuse_port=True,
        loop=uvloop.new_event_loop(),
        print=lambda _: print(
            f"serving on http://{host}:{port}{_webhook_port(config)} as {args.role}"
            f" (config {config.source})",
            flush=True,
        ),
    )
    return 0


def _webhook_port(config: Config) -> str:
    port = config.server.webhook_port
    return "" if port is None else f" (/wechat also on port {port})"


async def _run_headless(app: web.Application, role: str, host: str, port: int | None) -> None:
    """Run a worker's or scheduler's app until SIGTERM or SIGINT, serving health checks only
    on ``port`` when one is given."""
    import signal

    from aiohttp import web

    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        where = ""
        if port is not None:
            await web.TCPSite(runner, host, port).start()
            where = f"; health on http://{host}:{port}/healthz"
        print(f"running as {role}{where}; stop with SIGTERM", flush=True)
        await stop.wait()
    finally:
        await runner.cleanup()


def _settle_garbage_collector() -> None:
    """Move what start-up allocated out of the collector's sight and collect the young
    generation less often: under load, full collections walking every module's objects were
    the webhook's longest pauses (max latency 108-126 ms -> 53 ms in bench/webhook.py)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, 50, 1000)


def _migrate(config: Config, args: argparse.Namespace) -> int:
    from bot.migrate import upgrade

    upgrade(config.database.url)
    print("database schema is current")
    return 0


def _demo(config: Config, args: argparse.Namespace) -> int:
    import time

    from bot.demo import DEMO_OPENIDS, DemoRefused, load_demo
    from bot.store import open_store

    if args.members < 0:
        print("demo: --members cannot be negative", file=sys.stderr)
        return 2
    if not _schema_is_current(config):
        return 2

    async def run() -> int:
        async with open_store(config) as sessions:
            return await load_demo(
                sessions, config.programme, if_empty=args.if_empty, members=args.members
            )

    started = time.perf_counter()
    try:
        loaded = asyncio.run(run())
    except DemoRefused as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 2
    if not loaded:
        print("demo data: database not empty")
        return 0
    print(f"demo data: {loaded:,} members loaded ({time.perf_counter() - started:.1f} s)")
    print(f"  chat as one: python -m bot chat --openid {DEMO_OPENIDS[0]}")
    return 0


def _import(config: Config, args: argparse.Namespace) -> int:
    from bot.importer import ImportFileError, ImportSummary, import_members, import_orders
    from bot.store import open_store

    if not _schema_is_current(config):
        return 2
    source = Path(args.file)
    report = Path(args.report) if args.report else None

    async def run() -> ImportSummary:
        # The bar is for a person watching; in a log it would only be noise.
        progress = sys.stderr.isatty()
        async with open_store(config) as sessions:
            if args.kind == "members":
                return await import_members(sessions, source, report, progress=progress)
            return await import_orders(
                sessions, config.programme, source, report, progress=progress
            )

    try:
        summary = asyncio.run(run())
    except ImportFileError as exc:
        print(f"import error: {exc}", file=sys.stderr)
        return 2
    print(summary.line())
    return 1 if summary.rejected else 0


def _ledger_verify(config: Config, args: argparse.Namespace) -> int:
    from bot.database import create_engine, create_sessionmaker
    from models.ledger import verify_ledger

    async def run() -> int:
        engine = create_engine(config.database.url)
        found = 0
        try:
            async with create_sessionmaker(engine)() as session:
                async for mismatch in verify_ledger(session):
                    found += 1
                    if found <= args.show:
                        print(
                            f"member {mismatch.member_id}: balance {mismatch.balance}, "
                            f"ledger {mismatch.ledger_sum}, lots {mismatch.lots_remaining}"
                        )
        finally:
            await engine.dispose()
        return found

    found = asyncio.run(run())
    print(
        f"ledger verify: {found} member(s) whose balance, ledger and lots disagree"
        if found
        else "ledger verify: every balance matches its ledger and lots"
    )
    return 1 if found else 0


def _jobs(config: Config, args: argparse.Namespace) -> int:
    import time
    from datetime import UTC, date, datetime
    from datetime import time as dt_time

    from bot.database import create_engine
    from bot.push.outbox import Outbox
    from bot.redis_server import open_redis
    from bot.store import open_store
    from scheduler.jobs import JOBS, DryRun, JobContext, dry_run

    if args.action == "list":
        for job in JOBS.values():
            print(f"{job.name:20} {job.description}")
        return 0
    job = JOBS.get(args.name or "")
    if job is None:
        print(f"unknown job {args.name!r}; `python -m bot jobs list` names them", file=sys.stderr)
        return 2

    now = datetime.now(UTC)
    if args.date:
        try:
            day = date.fromisoformat(args.date)
        except ValueError:
            print(f"--date {args.date!r} is not a date (YYYY-MM-DD)", file=sys.stderr)
            return 2
        # Noon of that day in the programme's zone: clear of midnight on either side.
        now = datetime.combine(day, dt_time(12), config.programme.zone).astimezone(UTC)

    async def run() -> str:
        async with (
            open_store(config) as sessions,
            open_redis(config.redis) as redis,
        ):
            context = JobContext(sessions, config.programme, Outbox(redis), now)
            return await job.run(context)

    async def rehearse() -> DryRun:
        engine = create_engine(config.database.url)
        try:
            return await dry_run(job, engine, config.programme, now)
        finally:
            await engine.dispose()

    started = time.perf_counter()
    if args.dry_run:
        rehearsal = asyncio.run(rehearse())
        print(f"{job.name} (dry run, nothing kept or sent): {rehearsal.outcome}")
        print(f"  audience: {rehearsal.planned} push(es)")
        for openid, text in rehearsal.sample:
            print(f"  {openid}: {text}")
        return 0
    outcome = asyncio.run(run())
    print(f"{job.name}: {outcome} ({time.perf_counter() - started:.1f} s)")
    return 0


def _report(config: Config, args: argparse.Namespace) -> int:
    import tempfile
    import time
    from datetime import UTC, datetime

    from dateutil.relativedelta import relativedelta

    from bot.report import BadMonth, parse_month, write_report
    from bot.store import open_store
    from models.figures import programme_figures

    rules = config.programme
    now = datetime.now(UTC)
    today = now.astimezone(rules.zone).date()
    try:
        month = (
            parse_month(args.month, today)
            if args.month
            else today.replace(day=1) - relativedelta(months=1)
        )
    except BadMonth as exc:
        print(f"report error: --month {exc}", file=sys.stderr)
        return 2
    folder = Path(args.out or rules.reports_folder)
    try:
        # Find an unwritable folder now, not after the figures have been computed.
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        print(f"report error: cannot write to {folder}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    if not _schema_is_current(config):
        return 2

    async def run() -> tuple[Path, Path]:
        async with open_store(config) as sessions, sessions() as session:
            report = await programme_figures(session, rules, month, now, refresh=args.recompute)
        return write_report(report, rules, folder, now)

    started = time.perf_counter()
    try:
        html, csv = asyncio.run(run())
    except OSError as exc:
        print(f"report error: cannot write to {folder}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    print(f"report {month:%Y-%m}: {html} and {csv} ({time.perf_counter() - started:.1f} s)")
    return 0


def _menu_push(config: Config, args: argparse.Namespace) -> int:
    import json

    import aiohttp

    from bot.pages.session import CENTRE_PATH
    from bot.redis_server import open_redis
    from bot.wechat.client import WeChatAPIError, WeChatClient
    from bot.wechat.menu import build_menu
    from handlers import build_router

    centre = f"{config.server.public_url.rstrip('/')}{CENTRE_PATH}"
    menu = build_menu(config.chat.menu_keys, build_router().intents(), centre)
    if args.dry_run:
        print(json.dumps(menu, ensure_ascii=False, indent=2))
        return 0

    async def run() -> None:
        async with (
            open_redis(config.redis) as redis,
            aiohttp.ClientSession() as http,
        ):
            client = WeChatClient.from_config(config.wechat, http=http, redis=redis)
            await client.create_menu(menu)

    try:
        asyncio.run(run())
    except WeChatAPIError as exc:
        print(f"menu push failed: errcode={exc.errcode} {exc.errmsg}", file=sys.stderr)
        return 1
    print(f"menu pushed: {len(menu['button'])} buttons")
    return 0


def _staff(config: Config, args: argparse.Namespace) -> int:
    import getpass

    from bot.console.auth import Sessions, hash_password
    from bot.redis_server import open_redis
    from bot.store import open_store
    from models.base import utcnow
    from models.staff import find_staff
    from models.staff_accounts import StaffRefused, add_account, check_username, set_disabled

    if args.action == "add":
        try:
            check_username(args.username)
        except StaffRefused as exc:
            print(exc, file=sys.stderr)
            return 2
        if args.password_stdin:
            password = sys.stdin.readline().rstrip("\n")
        else:
            password = getpass.getpass(f"password for {args.username}: ")
            if getpass.getpass("again: ") != password:
                print("the passwords differ", file=sys.stderr)
                return 2
        try:
            hashed = hash_password(password)
        except ValueError as exc:
            print(exc, file=sys.stderr)
            return 2

    async def run() -> int:
        now = utcnow()
        try:
            async with open_store(config) as sessions, sessions.begin() as session:
                if args.action == "add":
                    await add_account(session, args.username, hashed, args.role, now, None)
                    print(f"staff {args.username} added as {args.role}")
                    return 0
                existing = await find_staff(session, args.username)
                if existing is None:
                    print(f"no staff {args.username}", file=sys.stderr)
                    return 2
                await set_disabled(session, existing.id, True, now, None)
                staff_id = existing.id
        except StaffRefused as exc:
            print(exc, file=sys.stderr)
            return 2
        async with open_redis(config.redis) as redis:
            await Sessions(redis, config.console, secure=False).end_all_of(staff_id)
        print(f"staff {args.username} disabled (signed out everywhere)")
        return 0

    return asyncio.run(run())


def _member(config: Config, args: argparse.Namespace) -> int:
    import json

    from bot.redis_server import open_redis
    from bot.store import open_store
    from bot.wechat.gate import MEMBER_ID_KEY, WINDOW_KEY
    from bot.wechat.handoff import HANDOFF_KEY
    from bot.wechat.questions import QUESTION_KEY
    from models.base import utcnow
    from models.members import find_member
    from models.personal_data import erase_member, export_member
    from models.staff import audit

    if args.action == "erase" and not args.yes:
        print("erasing cannot be undone: add --yes to erase this member", file=sys.stderr)
        return 2

    async def run() -> int:
        now = utcnow()
        async with open_store(config) as sessions, sessions.begin() as session:
            member = await find_member(session, args.openid)
            if member is None:
                print("no member with this openid", file=sys.stderr)
                return 2
            target = f"member:{member.id}"
            if args.action == "export":
                data = await export_member(session, member)
                await audit(session, None, "member_export", now, target=target)
                print(json.dumps(data, ensure_ascii=False, indent=2))
                return 0
            changed = await erase_member(session, member, now)
            await audit(session, None, "member_erase", now, target=target, **changed)
        async with open_redis(config.redis) as redis:
            # What Redis holds under the openid: the cached id, an open question, a hand-over,
            # the customer-service window.
            keys = (MEMBER_ID_KEY, QUESTION_KEY, HANDOFF_KEY, WINDOW_KEY)
            await redis.delete(*(key.format(openid=args.openid) for key in keys))
        print(f"member {member.id} erased: " + ", ".join(f"{k} {v}" for k, v in changed.items()))
        return 0

    return asyncio.run(run())


def _chat(config: Config, args: argparse.Namespace) -> int:
    from bot.wechat.chat import chat

    url = args.url or f"http://{config.server.host}:{config.server.port}/wechat"
    asyncio.run(chat(config.wechat, args.openid, url))
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

    serve = add(
        "serve", _serve, "run the service: the webhook, API and console, workers, scheduler"
    )
    serve.add_argument(
        "--role",
        choices=["all", "web", "worker", "scheduler"],
        default="all",
        help="what this process does (default all; see deploy/README.md to scale out)",
    )
    serve.add_argument("--host")
    serve.add_argument(
        "--port", type=int, help="web: the port (default [server] port); others: health only"
    )
    serve.add_argument(
        "--consumers",
        type=int,
        help="delivery consumers in this process (default [delivery] workers)",
    )
    add("migrate", _migrate, "apply database migrations")
    demo = add("demo", _demo, "load a demo brand into an empty database")
    demo.add_argument(
        "--if-empty", action="store_true", help="a database with members: do nothing, exit 0"
    )
    demo.add_argument(
        "--members",
        type=int,
        default=3000,
        help="members besides the ten to chat as (default 3000; more for benchmarks)",
    )
    importer = add("import", _import, "import members or orders from a CSV file")
    importer.add_argument("kind", choices=["members", "orders"])
    importer.add_argument("file", help="the CSV file, with a header row")
    importer.add_argument("--report", help="where to list rejected rows (default: FILE.report.csv)")
    ledger = add("ledger", _ledger_verify, "check every balance against its ledger and lots")
    ledger.add_argument("action", choices=["verify"])
    ledger.add_argument("--show", type=int, default=20, help="mismatches to print (default 20)")
    jobs = add("jobs", _jobs, "list the programme's jobs, or run one now")
    jobs.add_argument("action", choices=["list", "run"])
    jobs.add_argument("name", nargs="?", help="the job to run (see `jobs list`)")
    jobs.add_argument("--date", help="run as on this local date (YYYY-MM-DD), at noon")
    jobs.add_argument(
        "--dry-run", action="store_true", help="print the audience and a sample; keep nothing"
    )
    report = add("report", _report, "write a month's 《效果跟踪表》 as HTML and CSV")
    report.add_argument("kind", choices=["monthly"])
    report.add_argument("--month", help="YYYY-MM, a month that has ended (default: last month)")
    report.add_argument("--out", help="the folder (default: [programme] reports_folder)")
    report.add_argument(
        "--recompute",
        action="store_true",
        help="compute every month again instead of reading the stored figures",
    )
    menu = add("menu", _menu_push, "create the official account's custom menu through the API")
    menu.add_argument("action", choices=["push"])
    menu.add_argument("--dry-run", action="store_true", help="print the menu, send nothing")
    staff = add("staff", _staff, "add console staff, or disable an account")
    staff.add_argument("action", choices=["add", "disable"])
    staff.add_argument("username")
    staff.add_argument("--role", choices=ROLES, default="agent")
    staff.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    member = add("member", _member, "a member's personal data: export it all, or erase it (PIPL)")
    member.add_argument("action", choices=["export", "erase"])
    member.add_argument("openid")
    member.add_argument("--yes", action="store_true", help="with erase: yes, erase for good")
    chat = add("chat", _chat, "chat with the running service as a member, in the terminal")
    chat.add_argument("--openid", help="the member to be (default: a new one)")
    chat.add_argument("--url", help="webhook URL (default: the configured server's /wechat)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; configuration problems exit 2 with a single line on stderr, and so do
    a data directory or database the command cannot write (read-only, full, missing)."""
    from sqlalchemy.exc import OperationalError

    args = _parser().parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    try:
        return args.run(config, args)
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"storage error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 2
    except OperationalError as exc:
        print(f"database error: {exc.orig}", file=sys.stderr)
        return 2
