"""A plain websockets client for simulator tests (deliberately not the project's Feed)."""

from __future__ import annotations

import asyncio

import orjson
from websockets.asyncio.client import ClientConnection, connect

from bookengine.sync import RecoveryPolicy

# Feed options that keep tests short: quick keepalive, timeouts, reconnects and recoveries
# (the tests' fault rates are far denser than BTSE's: a gap every ~30 deltas).
FAST = dict(
    ping_interval=0.5,
    snapshot_timeout=1.0,
    silence_timeout=3.0,
    backoff=(0.05, 0.3),
    recovery=RecoveryPolicy(first_delay_s=0.05, max_delay_s=0.5),
)


def run(coro, timeout: float = 20.0):
    """Run one async test body, bounded in time."""

    async def bounded():
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


async def open_client(url: str, **kw) -> ClientConnection:
    kw.setdefault("max_size", 16 * 2**20)
    kw.setdefault("close_timeout", 0.5)  # tests stop reading mid-stream: do not wait 10 s
    return await connect(url, compression=None, proxy=None, ping_interval=None, **kw)


async def frames(ws: ClientConnection, count: int, timeout: float = 5.0) -> list[bytes]:
    out = []
    for _ in range(count):
        out.append(await asyncio.wait_for(ws.recv(decode=False), timeout))
    return out


def parse(raw: bytes) -> dict | str:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw.decode("utf-8", "replace")


async def until(ws: ClientConnection, predicate, limit: int = 5000, timeout: float = 5.0):
    """Read frames until one satisfies predicate(parsed); return (it, frames read before)."""
    seen = []
    for _ in range(limit):
        raw = await asyncio.wait_for(ws.recv(decode=False), timeout)
        msg = parse(raw)
        if predicate(msg):
            return msg, seen
        seen.append(msg)
    raise AssertionError(f"no matching frame in {limit} frames")


def subscribe(*topics: str) -> str:
    return orjson.dumps({"op": "subscribe", "args": list(topics)}).decode()


def unsubscribe(*topics: str) -> str:
    return orjson.dumps({"op": "unsubscribe", "args": list(topics)}).decode()
