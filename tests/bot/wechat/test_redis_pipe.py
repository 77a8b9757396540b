"""The webhook's pipelined Redis connection against a real server: replies, errors, recovery."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from pydantic import ValidationError
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from bot.config import RedisConfig
from bot.redis_server import open_redis
from bot.wechat import redis_pipe
from bot.wechat.redis_pipe import LuaScript, RedisPipe
from tests.services import RedisRelay, redis_server, tcp_redis_server, tls_files


async def test_replies_come_back_in_order_under_concurrency(redis: Redis) -> None:
    pipe = RedisPipe.like(redis)
    await asyncio.gather(*(pipe.execute("SET", f"k{i}", i) for i in range(500)))
    values = await asyncio.gather(*(pipe.execute("GET", f"k{i}") for i in range(500)))
    assert values == [str(i).encode() for i in range(500)]
    await pipe.close()


async def test_error_reply_raises_and_the_connection_stays_usable(redis: Redis) -> None:
    pipe = RedisPipe.like(redis)
    await pipe.execute("SET", "text", "abc")
    with pytest.raises(ResponseError):
        await pipe.execute("INCR", "text")
    assert await pipe.execute("GET", "text") == b"abc"
    await pipe.close()


async def test_script_is_loaded_again_after_a_flush(redis: Redis) -> None:
    pipe = RedisPipe.like(redis)
    script = LuaScript("return tonumber(ARGV[1]) + 1")
    assert await pipe.run_script(script, [], [41]) == 42
    await redis.script_flush()
    assert await pipe.run_script(script, [], [1]) == 2
    await pipe.close()


async def test_reconnects_after_redis_restarts(tmp_path: Path) -> None:
    with redis_server(tmp_path) as url:
        pipe = RedisPipe.like(Redis.from_url(url))
        assert await pipe.execute("PING") == b"PONG"
    with pytest.raises(RedisError):
        await pipe.execute("PING")
    with redis_server(tmp_path):  # the same socket, as after a restart
        assert await pipe.execute("PING") == b"PONG"
        await pipe.close()


async def test_unreachable_redis_fails_fast() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    pipe = RedisPipe({"host": "127.0.0.1", "port": port})
    with pytest.raises(RedisConnectionError):
        await pipe.execute("PING")


async def test_stuck_server_fails_waiting_commands(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(redis_pipe, "COMMAND_TIMEOUT", 0.3)
    # A server that accepts the connection and never answers.
    silent = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    pipe = RedisPipe({"host": "127.0.0.1", "port": port})
    started = asyncio.get_running_loop().time()
    with pytest.raises(RedisError):
        await pipe.execute("PING")
    assert asyncio.get_running_loop().time() - started < 2
    await pipe.close()
    silent.close()


async def test_a_burst_on_a_new_connection_is_served_together(redis: Redis) -> None:
    # The first burst after a start or a reconnect: every request waits for the one connection.
    # They must all be released at once, not one per event-loop pass: with 2 ms of other work
    # a pass, one per pass would keep the 256th caller waiting over half a second.
    done = asyncio.Event()

    async def busy_elsewhere() -> None:
        while not done.is_set():
            time.sleep(0.002)  # noqa: ASYNC251 - a loop busy with other requests
            await asyncio.sleep(0)

    other = asyncio.create_task(busy_elsewhere())
    pipe = RedisPipe.like(redis)
    await redis.set("burst", "x")
    started = time.perf_counter()
    replies = await asyncio.gather(*(pipe.execute("GET", "burst") for _ in range(256)))
    elapsed = time.perf_counter() - started
    done.set()
    await other
    assert replies == [b"x"] * 256
    assert elapsed < 0.3
    await pipe.close()


async def test_auth_and_select_reach_redis_before_anything_else(redis: Redis) -> None:
    kwargs = dict(redis.connection_pool.connection_kwargs)
    kwargs["db"] = 3
    pipe = RedisPipe(kwargs)
    await asyncio.gather(*(pipe.execute("SET", f"db3:{i}", i) for i in range(50)))
    assert await redis.exists("db3:0") == 0  # nothing landed in database 0
    assert await pipe.execute("DBSIZE") == 50
    await pipe.execute("FLUSHDB")
    await pipe.close()


async def test_tls_redis_with_a_private_ca(tmp_path: Path) -> None:
    # rediss:// used to be spoken in plaintext to the TLS port: every member got "busy".
    files = tls_files(tmp_path)
    with tcp_redis_server(tls=files) as port:
        config = RedisConfig(url=f"rediss://127.0.0.1:{port}/0", tls_ca_file=str(files.ca))
        async with open_redis(config) as client:
            pipe = RedisPipe.like(client)
            assert await pipe.execute("SET", "over-tls", "yes") == b"OK"
            assert await client.get("over-tls") == b"yes"
            await pipe.close()


async def test_tls_redis_refuses_a_certificate_of_another_ca(tmp_path: Path) -> None:
    files = tls_files(tmp_path)
    (tmp_path / "other").mkdir()
    stranger = tls_files(tmp_path / "other")
    with tcp_redis_server(tls=files) as port:
        client = Redis.from_url(f"rediss://127.0.0.1:{port}/0", ssl_ca_certs=str(stranger.ca))
        pipe = RedisPipe.like(client)
        with pytest.raises(RedisConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
            await pipe.execute("PING")
        await client.aclose()


async def test_password_alone_is_sent_as_auth_with_one_argument() -> None:
    # Servers before Redis 6 know only AUTH <password>; AUTH default <password> fails there.
    with redis_server(extra=["--requirepass", "s3cret"]) as url:
        async with RedisRelay(url) as relay:
            pipe = RedisPipe.like(Redis.from_url(f"redis://:s3cret@127.0.0.1:{relay.port}/0"))
            assert await pipe.execute("ACL", "WHOAMI") == b"default"
            await pipe.close()
    assert relay.commands[0] == [b"AUTH", b"s3cret"]


async def test_user_and_password_authenticate_as_that_user() -> None:
    alice = ["--user", "alice", "on", ">wonderland", "~*", "&*", "+@all"]
    with tcp_redis_server("--requirepass", "not-alices", *alice) as port:
        pipe = RedisPipe.like(Redis.from_url(f"redis://alice:wonderland@127.0.0.1:{port}/2"))
        assert await pipe.execute("ACL", "WHOAMI") == b"alice"
        await pipe.close()
        wrong = RedisPipe.like(Redis.from_url(f"redis://alice:guess@127.0.0.1:{port}/2"))
        with pytest.raises(RedisConnectionError, match="WRONGPASS"):
            await wrong.execute("PING")
        # The failed connection is not kept: the next command tries again, and fails again.
        with pytest.raises(RedisConnectionError, match="WRONGPASS"):
            await wrong.execute("PING")


def test_tls_ca_file_needs_a_rediss_url_and_a_file(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("not checked here")
    with pytest.raises(ValidationError, match="needs a rediss:// url"):
        RedisConfig(url="redis://127.0.0.1:6379/0", tls_ca_file=str(ca))
    with pytest.raises(ValidationError, match="is not a file"):
        RedisConfig(url="rediss://127.0.0.1:6380/0", tls_ca_file=str(tmp_path / "missing.pem"))
    assert RedisConfig(url="rediss://127.0.0.1:6380/0", tls_ca_file=str(ca)).tls_ca_file


@asynccontextmanager
async def _relayed(redis_url: str) -> AsyncIterator[tuple[RedisRelay, RedisPipe]]:
    """A pipe connected through a relay that can hold Redis's replies back (``relay.delay``)."""
    async with RedisRelay(redis_url) as relay:
        pipe = RedisPipe.like(Redis.from_url(relay.url))
        try:
            deadline = asyncio.get_running_loop().time() + 5
            assert await pipe.execute("PING", deadline=deadline) == b"PONG"
            yield relay, pipe
        finally:
            await pipe.close()


async def test_a_deadline_ends_the_wait_and_later_replies_keep_their_order(
    redis: Redis, redis_url: str
) -> None:
    await redis.set("a", "1")
    await redis.set("b", "2")
    async with _relayed(redis_url) as (relay, pipe):
        loop = asyncio.get_running_loop()
        relay.delay = 0.5
        late = asyncio.ensure_future(pipe.execute("GET", "a", deadline=loop.time() + 0.1))
        on_time = asyncio.ensure_future(pipe.execute("GET", "b"))
        with pytest.raises(RedisTimeoutError):
            await late
        assert not on_time.done()  # the deadline was only that command's
        assert await on_time == b"2"
        relay.delay = 0.0
        assert await pipe.execute("GET", "a", deadline=loop.time() + 5) == b"1"


async def test_each_deadline_ends_its_own_wait_whatever_the_order_sent(
    redis: Redis, redis_url: str
) -> None:
    await redis.set("a", "1")
    async with _relayed(redis_url) as (relay, pipe):
        loop = asyncio.get_running_loop()
        relay.delay = 1.5
        later = asyncio.ensure_future(pipe.execute("GET", "a", deadline=loop.time() + 1.0))
        sooner = asyncio.ensure_future(pipe.execute("GET", "a", deadline=loop.time() + 0.2))
        patient = asyncio.ensure_future(pipe.execute("GET", "a", deadline=loop.time() + 10))
        with pytest.raises(RedisTimeoutError):
            await sooner
        assert not later.done()  # sent first, with a deadline of its own still ahead
        with pytest.raises(RedisTimeoutError):
            await later
        assert not patient.done()
        assert await patient == b"1"


async def test_a_deadline_bounds_connecting_too() -> None:
    # A server that accepts connections and never answers, so AUTH hangs.
    silent = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    pipe = RedisPipe({"host": "127.0.0.1", "port": port, "password": "x"})
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(RedisTimeoutError):
        await pipe.execute("PING", deadline=started + 0.2)
    assert loop.time() - started < 1
    await pipe.close()
    silent.close()


async def test_posted_commands_keep_their_order_and_land_before_close(redis: Redis) -> None:
    pipe = RedisPipe.like(redis)
    assert await pipe.execute("PING") == b"PONG"
    posted = [pipe.post("RPUSH", "order", i) for i in range(200)]
    # A command sent after the posts is behind them on the connection.
    assert await pipe.execute("LLEN", "order") == 200
    assert [future.result() for future in posted] == list(range(1, 201))
    last = pipe.post("SET", "last", "written")
    await pipe.close()  # waits for what was posted, not only for what was awaited
    assert last.done()
    assert last.exception() is None
    assert await redis.get("last") == b"written"


async def test_a_post_before_any_connection_connects_first(redis: Redis) -> None:
    pipe = RedisPipe.like(redis)
    assert await pipe.post("SET", "first", "1") == b"OK"
    assert await redis.get("first") == b"1"
    await pipe.close()


async def test_a_posted_command_with_nothing_after_it_still_lands_soon(redis: Redis) -> None:
    pipe = RedisPipe.like(redis)
    assert await pipe.execute("PING") == b"PONG"
    started = time.monotonic()
    assert await pipe.post("SET", "alone", "1") == b"OK"
    assert time.monotonic() - started < redis_pipe.LINGER + 0.5
    assert await redis.get("alone") == b"1"
    await pipe.close()


async def test_close_waits_for_a_posted_command_whatever_was_sent_after_it(redis: Redis) -> None:
    pipe = RedisPipe.like(redis)
    assert await pipe.execute("PING") == b"PONG"
    posted = pipe.post("SET", "kept", "1")
    # Sent after it, and given up on at once: its caller no longer waits for its reply.
    with pytest.raises(RedisTimeoutError):
        await pipe.execute("GET", "kept", deadline=asyncio.get_running_loop().time())
    await pipe.close()
    assert posted.done()
    assert posted.exception() is None
    assert await redis.get("kept") == b"1"


async def test_a_stall_shorter_than_the_callers_deadline_is_waited_out(redis: Redis) -> None:
    """A Redis that stops answering for 2.5 s (a busy machine) is slow, not stuck: commands
    whose deadline lies beyond the stall get their replies (the watchdog dropped the connection
    at 2 s, failing every command on it, deadline or not)."""
    pipe = RedisPipe.like(redis)
    await redis.set("stalled", "x")
    await pipe.execute("PING")  # connected before the pause
    loop = asyncio.get_running_loop()
    await redis.execute_command("CLIENT", "PAUSE", 2500, "ALL")
    deadline = loop.time() + 4.5
    replies = await asyncio.gather(
        *(pipe.execute("GET", "stalled", deadline=deadline) for _ in range(25))
    )
    assert replies == [b"x"] * 25
    await pipe.close()
