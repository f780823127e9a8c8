"""The live path against a frame source in another process (benchmarks/frame_source.py):
the Feed beside a bare websockets receive loop reading the very same bytes, and the same
two with the picows client (the [picows] extra) when it is installed.

- throughput: frames/s, the source writing as fast as the client reads;
- latency: send (source process) -> callback, p50/p99, paced at 5,000 frames/s; the bare
  loop's "callback" is the return of `recv()`. Both over the frames that change the top of
  the book (those are the ones a Feed calls `on_top` for).

    python -m benchmarks.bench_live
"""

from __future__ import annotations

import asyncio
import time

import orjson

from benchmarks.frame_source import FrameSource
from benchmarks.workloads import realistic_frames

SUBSCRIBE = '{"op":"subscribe","args":["update:BTC-PERP_0"]}'


def _run(coro):  # noqa: ANN001, ANN202
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def _seq0(frames) -> int:  # noqa: ANN001
    return orjson.loads(frames[0])["data"]["seqNum"]


def _top_changes(frames) -> set[int]:  # noqa: ANN001
    """Indexes of the frames a Feed reports a top-of-book change for."""
    from bookengine import BookSync, TopOfBook

    sync = BookSync()
    sync.subscribe(["update:BTC-PERP_0"], 0)
    return {
        i for i, raw in enumerate(frames) if any(type(e) is TopOfBook for e in sync.feed(0, raw))
    }


async def _bare(url: str, n: int, stamps: list[int] | None = None) -> float:
    from websockets.asyncio.client import connect

    async with connect(url + "/ws/oss/futures", compression=None, ping_interval=None,
                       max_size=2**24) as ws:  # fmt: skip
        await ws.send(SUBSCRIBE)
        recv = ws.recv
        first = await recv(decode=False)
        started = time.perf_counter()
        if stamps is not None:
            stamps.append(time.time_ns())
        for _ in range(n - 1):
            await recv(decode=False)
            if stamps is not None:
                stamps.append(time.time_ns())
        del first
        return (n - 1) / (time.perf_counter() - started)


async def _bare_picows(url: str, n: int, stamps: list[int] | None = None) -> float:
    """The bare loop on picows: a listener whose per-frame callback takes the bytes."""
    import picows

    loop = asyncio.get_running_loop()
    done: asyncio.Future[float] = loop.create_future()
    count, started = 0, 0.0

    class Listener(picows.WSListener):  # type: ignore[misc]
        def on_ws_connected(self, transport: picows.WSTransport) -> None:
            transport.send(picows.WSMsgType.TEXT, SUBSCRIBE.encode())

        def on_ws_frame(self, transport: picows.WSTransport, frame: picows.WSFrame) -> None:
            nonlocal count, started
            frame.get_payload_as_bytes()
            if stamps is not None:
                stamps.append(time.time_ns())
            count += 1
            if count == 1:
                started = time.perf_counter()
            elif count == n and not done.done():
                done.set_result((n - 1) / (time.perf_counter() - started))

    transport, _ = await picows.ws_connect(Listener, url + "/ws/oss/futures",
                                           max_frame_size=2**24)  # fmt: skip
    try:
        return await done
    finally:
        transport.disconnect()


def has_picows() -> bool:
    try:
        import picows  # noqa: F401
    except ImportError:
        return False
    return True


async def _feed(url: str, n: int, frames, stamps: dict[int, int] | None = None,  # noqa: ANN001
                **options) -> float:  # fmt: skip
    """Frames/s a Feed takes in (polling `stats()` each millisecond: it is cheap), and the
    callback time of each top-of-book change by frame index."""
    from bookengine import Feed

    seq0 = _seq0(frames)

    def on_top(top) -> None:  # noqa: ANN001
        if stamps is not None:
            stamps[top.seq - seq0] = time.time_ns()

    async with Feed(["BTC-PERP"], url=url, on_top=on_top, **options) as feed:
        while feed.stats().frames == 0:
            await asyncio.sleep(0.0005)
        started, first = time.perf_counter(), feed.stats().frames
        while feed.stats().frames < n:
            await asyncio.sleep(0.001)
        elapsed = time.perf_counter() - started
        await asyncio.sleep(0.05)  # the last callbacks
        return (n - first) / elapsed


def _top_changes_cache(frames) -> set[int]:  # noqa: ANN001
    key = id(frames)
    if key not in _CACHE:
        _CACHE[key] = _top_changes(frames)
    return _CACHE[key]


_CACHE: dict[int, set[int]] = {}


# name -> (bare client, or Feed options)
RUNS: dict[str, dict[str, str]] = {
    "bare": {"bare": "websockets"},
    "feed": {"delivery": "queued", "client": "websockets"},
    "inline": {"delivery": "inline", "client": "websockets"},
    "bare_picows": {"bare": "picows"},
    "feed_picows": {"delivery": "queued", "client": "picows"},
    "inline_picows": {"delivery": "inline", "client": "picows"},
}


def _names() -> list[str]:
    return [name for name in RUNS if has_picows() or "picows" not in name]


def _one(name: str, url: str, frames, stamps=None) -> float:  # noqa: ANN001
    """One run of `name` against the source at `url`: frames/s; fills `stamps` (a list of
    receive times for a bare loop, frame index -> callback time for a Feed)."""
    options = dict(RUNS[name])
    bare = options.pop("bare", None)
    if bare == "picows":
        return _run(_bare_picows(url, len(frames), stamps))
    if bare is not None:
        return _run(_bare(url, len(frames), stamps))
    return _run(_feed(url, len(frames), frames, stamps, **options))


def throughput(n: int = 100_000) -> dict[str, float]:
    """Best of two interleaved runs each: the bare loops and the Feed's variants."""
    frames = realistic_frames(n=n - 1)
    out: dict[str, float] = {}
    for name in _names() * 2:  # interleaved: noise hits all alike
        with FrameSource(frames) as source:
            rate = _one(name, source.url, frames)
        out[name] = max(out.get(name, 0.0), rate)
    return out


def latency(rate: float = 5000.0, seconds: float = 4.0) -> dict[str, float]:
    frames = realistic_frames(n=int(rate * seconds))
    tops = _top_changes_cache(frames)
    out: dict[str, float] = {}
    for name in _names():
        with FrameSource(frames, rate=rate) as source:
            if "bare" in RUNS[name]:
                stamps: list[int] = []
                _one(name, source.url, frames, stamps)
                received = dict(enumerate(stamps))
            else:
                received = {}
                _one(name, source.url, frames, received)
            sent = source.send_ns()
        warm = len(frames) // 10  # the first tenth: connection set-up, JIT-less warm-up
        lat = sorted(received[i] - sent[i] for i in tops if i >= warm and i in received)
        out[f"{name}_p50_us"] = lat[len(lat) // 2] / 1e3
        out[f"{name}_p99_us"] = lat[int(len(lat) * 0.99)] / 1e3
        out[f"{name}_n"] = len(lat)
    return out


if __name__ == "__main__":
    t = throughput()
    print(f"throughput: bare {t['bare']:,.0f} frames/s, Feed {t['feed']:,.0f} frames/s "
          f"= {t['feed'] / t['bare']:.2f}x")  # fmt: skip
    lat = latency()
    print(f"latency at 5k/s: bare p50 {lat['bare_p50_us']:.0f} us p99 {lat['bare_p99_us']:.0f} us;"
          f" Feed p50 {lat['feed_p50_us']:.0f} us p99 {lat['feed_p99_us']:.0f} us "
          f"(p99 {lat['feed_p99_us'] / lat['bare_p99_us']:.2f}x)")  # fmt: skip
