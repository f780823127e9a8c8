"""The benchmarks' frame source (another process, hand-written WebSocket framing) hands a
real websockets client the exact frames, in order; paced, it says when each one left."""

from __future__ import annotations

import asyncio
import time

from websockets.asyncio.client import connect

from benchmarks.frame_source import FrameSource, text_frame
from bookengine.simulator import realistic_frames
from tests.simclient import run


async def _read(url: str, n: int) -> list[bytes]:
    async with connect(url + "/ws/oss/futures", compression=None, ping_interval=None) as ws:
        await ws.send('{"op":"subscribe","args":["update:BTC-PERP_0"]}')
        await ws.send("ping")  # read and dropped by the source
        return [await ws.recv(decode=False) for _ in range(n)]


def test_frames_arrive_whole_and_in_order():
    frames = realistic_frames(n=3000) + [b"x" * 70_000]  # a 64-bit length too
    with FrameSource(frames) as source:
        got = run(_read(source.url, len(frames)))
    assert got == frames


def test_paced_frames_leave_at_the_rate_and_their_times_are_kept():
    frames = realistic_frames(n=999)
    with FrameSource(frames, rate=2000.0) as source:
        started = time.time_ns()
        got = run(_read(source.url, len(frames)))
        sent = source.send_ns()
    assert got == frames and len(sent) == len(frames)
    assert sent == sorted(sent) and sent[0] >= started - 5_000_000_000
    # frame i never leaves before i / rate: 1,000 frames at 2,000/s take half a second
    assert (sent[-1] - sent[0]) / 1e9 >= 0.49


def test_text_frame_lengths():
    assert text_frame(b"ab") == b"\x81\x02ab"
    assert text_frame(b"a" * 200)[:4] == b"\x81\x7e\x00\xc8"
    assert text_frame(b"a" * 70_000)[:2] == b"\x81\x7f" and len(text_frame(b"a" * 70_000)) == 70_010


def test_the_source_process_goes_away():
    source = FrameSource([b"{}"])
    with source:
        assert source.url.startswith("ws://127.0.0.1:")
    asyncio.run(asyncio.sleep(0))
    assert not source._proc.is_alive()
