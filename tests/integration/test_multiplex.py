"""The page view's multiplexed Redis client (storage/multiplex.py) on a real
redis-server: concurrent callers share one connection and still get their own replies
in their own order, errors reach the right caller, a cancelled caller harms nobody,
NOSCRIPT and broken or frozen connections are survived."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
import redis.asyncio as aioredis

from segserver.errors import StorageError, StorageTimeout
from segserver.storage.embedded import EmbeddedRedis
from segserver.storage.multiplex import Multiplexer, NodeOptions

# echo the caller's tag and its sequence number; append the tag to a list per caller,
# so Redis records the order the commands ran in
ECHO = """
redis.call('RPUSH', KEYS[1], ARGV[2])
if ARGV[1] == 'fail' then return redis.error_reply('asked to fail ' .. ARGV[2]) end
return {ARGV[1], ARGV[2]}
"""
ECHO_SHA = hashlib.sha1(ECHO.encode()).hexdigest()


@pytest_asyncio.fixture
async def mux(redis_server: EmbeddedRedis) -> AsyncIterator[Multiplexer]:
    path = redis_server.url.removeprefix("unix://")
    sends: list[int] = []
    m = Multiplexer(lambda _: path, NodeOptions(timeout=1.0), on_send=lambda: sends.append(1))
    m.sends = sends  # type: ignore[attr-defined]
    yield m
    m.close()


async def echo(m: Multiplexer, key: str, tag: str, n: int) -> list[bytes]:
    reply: list[bytes] = await m.evalsha(ECHO_SHA, ECHO, [key], [tag, n])
    return reply


async def test_concurrent_callers_get_their_own_replies_in_order(
    mux: Multiplexer, raw_redis: aioredis.Redis
) -> None:
    prefix = f"mx:{os.getpid()}:order"
    await echo(mux, f"{prefix}:load", "load", 0)  # the script is in the cache from here on
    mux.sends.clear()  # type: ignore[attr-defined]

    async def caller(c: int) -> list[list[bytes]]:
        # each caller sends its commands one after another, interleaved with the others
        return [await echo(mux, f"{prefix}:{c}", f"c{c}", i) for i in range(20)]

    results = await asyncio.gather(*(caller(c) for c in range(64)))
    for c, replies in enumerate(results):
        assert replies == [[f"c{c}".encode(), str(i).encode()] for i in range(20)]
        ran = await raw_redis.lrange(f"{prefix}:{c}", 0, -1)
        assert ran == [str(i).encode() for i in range(20)]
    assert len(mux.sends) == 64 * 20  # type: ignore[attr-defined]
    assert len(mux.nodes) == 1  # one shared connection


async def test_pipelined_burst_keeps_per_caller_order(mux: Multiplexer) -> None:
    """Many commands issued in the same loop turn leave in one write; each future still
    resolves to its own command's reply."""
    key = f"mx:{os.getpid()}:burst"
    futures = [asyncio.ensure_future(echo(mux, key, "b", i)) for i in range(500)]
    replies = await asyncio.gather(*futures)
    assert replies == [[b"b", str(i).encode()] for i in range(500)]


async def test_an_error_reply_fails_only_its_caller(mux: Multiplexer) -> None:
    import hiredis

    key = f"mx:{os.getpid()}:err"
    calls = [echo(mux, key, "fail" if i % 3 == 0 else "ok", i) for i in range(30)]
    results = await asyncio.gather(*calls, return_exceptions=True)
    for i, r in enumerate(results):
        if i % 3 == 0:
            assert isinstance(r, hiredis.ReplyError) and f"asked to fail {i}" in str(r)
        else:
            assert r == [b"ok", str(i).encode()]


async def test_a_cancelled_caller_leaves_the_others_untouched(mux: Multiplexer) -> None:
    key = f"mx:{os.getpid()}:cancel"
    tasks = [asyncio.ensure_future(echo(mux, key, f"t{i}", i)) for i in range(50)]
    for t in tasks[::5]:
        t.cancel()
    done = await asyncio.gather(*tasks, return_exceptions=True)
    for i, r in enumerate(done):
        if i % 5 == 0:
            assert isinstance(r, asyncio.CancelledError)
        else:
            assert r == [f"t{i}".encode(), str(i).encode()]
    assert await echo(mux, key, "after", 1) == [b"after", b"1"]


async def test_noscript_after_a_flush_runs_the_source(
    mux: Multiplexer, raw_redis: aioredis.Redis
) -> None:
    key = f"mx:{os.getpid()}:flush"
    assert await echo(mux, key, "a", 1) == [b"a", b"1"]
    await raw_redis.script_flush()
    assert await echo(mux, key, "b", 2) == [b"b", b"2"]
    assert (await raw_redis.script_exists(ECHO_SHA)) == [True]


async def test_a_killed_connection_fails_in_flight_calls_then_reconnects(
    tmp_path: Path,
) -> None:
    server = EmbeddedRedis(tmp_path, appendonly=False)  # its own: no other client on it
    url = server.start()
    m = Multiplexer(lambda _: url.removeprefix("unix://"), NodeOptions(timeout=5.0))
    raw = aioredis.Redis.from_url(url)
    try:
        assert await echo(m, "kill", "a", 1) == [b"a", b"1"]
        own = await raw.client_id()
        [conn] = [c for c in await raw.client_list() if int(c["id"]) != own]
        # writes paused: the next calls stay in flight while the server drops the connection
        await raw.client_pause(2000, all=False)
        try:
            in_flight = [asyncio.ensure_future(echo(m, "kill", "q", i)) for i in range(5)]
            for _ in range(3):  # loop turns: the calls are written (not a timing wait)
                await asyncio.sleep(0)
            await raw.client_kill_filter(_id=conn["id"])
            results = await asyncio.gather(*in_flight, return_exceptions=True)
        finally:
            await raw.client_unpause()
        assert all(isinstance(r, StorageError) for r in results), results
        assert await echo(m, "kill", "b", 3) == [b"b", b"3"]
        assert await raw.lrange("kill", 0, -1) == [b"1", b"3"]  # the failed calls never ran
    finally:
        m.close()
        await raw.aclose()
        server.stop()


async def test_a_frozen_server_times_out_then_recovers(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path, appendonly=False)
    path = server.start().removeprefix("unix://")
    m = Multiplexer(lambda _: path, NodeOptions(timeout=0.5))
    try:
        assert await echo(m, "k", "a", 1) == [b"a", b"1"]
        assert server.process is not None
        os.kill(server.process.pid, signal.SIGSTOP)
        try:
            with pytest.raises(StorageTimeout):
                await echo(m, "k", "b", 2)
        finally:
            os.kill(server.process.pid, signal.SIGCONT)
        assert await echo(m, "k", "c", 3) == [b"c", b"3"]
        server.stop()
        with pytest.raises(StorageError):
            await echo(m, "k", "d", 4)
    finally:
        m.close()
        server.stop()


async def test_an_unreachable_node_is_reported_so_the_slot_map_is_renewed() -> None:
    """A node that refuses connections fails the call with StorageError and calls
    `on_unreachable` (a cluster renews its slot map then: storage.client)."""
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mux = Multiplexer(lambda _: ("127.0.0.1", port), NodeOptions(timeout=1.0))
    reported: list[int] = []
    mux.on_unreachable = lambda: reported.append(1)
    for _ in range(2):
        with pytest.raises(StorageError, match="connecting to Redis"):
            await mux.evalsha("0" * 40, "return 1", ["k"], [])
    assert reported == [1, 1]
    mux.close()
