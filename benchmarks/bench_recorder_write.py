"""Recorder write path (issue 5), on realistic frames from the simulator's market model.

- sustained frames/s written on one core: `RecordingWriter` alone (encode + zstd + disk)
  and through `RecorderSink` (event-loop put + writer thread), best of a few rounds;
- the cost of one `RecorderSink.write_frame` call on the event loop (the hot path);
- compression ratio of the files on realistic frames (several symbols interleaved);
- the CPU share of the whole recorder at a steady 1,000 frames/s (BTSE's whole-market
  peak), measured as process CPU time / wall time while frames are handed over paced.

    python -m benchmarks.bench_recorder_write            # ~30 s
    python -m benchmarks.bench_recorder_write --quick
    pytest benchmarks/bench_recorder_write.py            # pytest-benchmark, smaller
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

from benchmarks import workloads
from recorder.writer import RecorderSink, RecordingWriter

SYMBOLS = workloads.INTERLEAVED_SYMBOLS


def market_frames(n: int, seed: int = 1) -> list[bytes]:
    """`n` frames, the symbols' deltas interleaved as on one busy connection."""
    return list(workloads.interleaved_frames(n, seed))


def _files_size(writer: RecordingWriter) -> int:
    return sum(p.stat().st_size for p in writer.files)


def write_direct(frames: list[bytes], **kw) -> dict:
    """Frames/s through RecordingWriter alone: what one core of disk work sustains."""
    with tempfile.TemporaryDirectory() as out:
        writer = RecordingWriter(out, rotate_s=None, **kw)
        now = time.time_ns()
        started, cpu = time.perf_counter(), time.process_time()
        write = writer.write_frame
        for i, raw in enumerate(frames):
            write(0, now + i, raw)
        writer.close()
        wall, cpu_s = time.perf_counter() - started, time.process_time() - cpu
        size = _files_size(writer)
    raw_bytes = sum(map(len, frames))
    return {
        "frames_per_s": len(frames) / wall,
        "cpu_us_per_frame": cpu_s / len(frames) * 1e6,
        "mb_per_s_in": raw_bytes / wall / 1e6,
        "ratio": raw_bytes / size,
    }


def write_sink(frames: list[bytes]) -> dict:
    """Frames/s through the sink: put on this thread, the writer thread drains (GIL: one
    core in all); and the producer-side cost per frame, the part the socket reader pays."""
    with tempfile.TemporaryDirectory() as out:
        writer = RecordingWriter(out, rotate_s=None)
        sink = RecorderSink(writer, max_pending=len(frames) + 10, max_pending_bytes=1 << 40)
        now = time.time_ns()
        started = time.perf_counter()
        put = sink.write_frame
        for i, raw in enumerate(frames):
            put(0, now + i, raw)
        handed = time.perf_counter() - started
        sink.close()
        wall = time.perf_counter() - started
    return {
        "frames_per_s": len(frames) / wall,
        "put_us_per_frame": handed / len(frames) * 1e6,  # includes GIL contention
        "lost": sink.lost,
    }


def put_cost(n: int = 200_000) -> float:
    """µs per write_frame with the writer thread idle (the queue is drained after)."""
    raw = market_frames(10)[5]
    with tempfile.TemporaryDirectory() as out:
        writer = RecordingWriter(out, rotate_s=None)
        sink = RecorderSink(writer, max_pending=n + 10, max_pending_bytes=1 << 40, poll_s=3600)
        put = sink.write_frame
        now = time.time_ns()
        started = time.perf_counter()
        for i in range(n):
            put(0, now + i, raw)
        elapsed = time.perf_counter() - started
        sink.close()
    return elapsed / n * 1e6


def cpu_share_at(frames: list[bytes], rate: float = 1000.0, seconds: float = 10.0) -> dict:
    """Process CPU / wall while frames arrive paced at `rate`/s (the pacing loop's own
    cost is measured alone and subtracted)."""

    def paced(handle) -> tuple[float, float]:  # noqa: ANN001
        count = int(rate * seconds)
        cpu, started = time.process_time(), time.perf_counter()
        for i in range(count):
            delay = started + i / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            handle(frames[i % len(frames)])
        return time.process_time() - cpu, time.perf_counter() - started

    idle_cpu, idle_wall = paced(lambda raw: None)
    with tempfile.TemporaryDirectory() as out:
        writer = RecordingWriter(out, rotate_s=None)
        sink = RecorderSink(writer)
        cpu, wall = paced(lambda raw: sink.write_frame(0, time.time_ns(), raw))
        close_cpu = time.process_time()
        sink.close()
        cpu += time.process_time() - close_cpu
    return {
        "cpu_share": (cpu - idle_cpu * wall / idle_wall) / wall,
        "cpu_share_with_pacing": cpu / wall,
        "rate": rate,
        "lost": sink.lost,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    n = 30_000 if args.quick else 150_000
    rounds = 1 if args.quick else 3
    frames = market_frames(n)
    mean = sum(map(len, frames)) / len(frames)
    print(f"{n:,} realistic frames ({len(SYMBOLS)} symbols), mean {mean:.0f} bytes; 1 core")
    print(f"os.cpu_count() = {os.cpu_count()}")
    best = max((write_direct(frames) for _ in range(rounds)), key=lambda r: r["frames_per_s"])
    print(
        f"RecordingWriter: {best['frames_per_s']:,.0f} frames/s "
        f"({best['mb_per_s_in']:.0f} MB/s in, {best['cpu_us_per_frame']:.2f} µs CPU/frame), "
        f"compression x{best['ratio']:.2f} (zstd 3, 1000-record blocks)"
    )
    for level in (1, 6):
        r = write_direct(frames, level=level)
        print(f"  zstd level {level}: {r['frames_per_s']:,.0f} frames/s, x{r['ratio']:.2f}")
    sink = max((write_sink(frames) for _ in range(rounds)), key=lambda r: r["frames_per_s"])
    print(
        f"RecorderSink (put + writer thread): {sink['frames_per_s']:,.0f} frames/s, "
        f"lost {sink['lost']}"
    )
    print(f"write_frame on the event loop: {min(put_cost() for _ in range(rounds)):.3f} µs/call")
    share = cpu_share_at(frames, seconds=3.0 if args.quick else 10.0)
    print(
        f"CPU share at {share['rate']:,.0f} frames/s: {100 * share['cpu_share']:.1f}% of one "
        f"core (with the pacing loop {100 * share['cpu_share_with_pacing']:.1f}%), "
        f"lost {share['lost']}"
    )


def test_write_direct(benchmark):
    frames = market_frames(20_000)
    result = benchmark.pedantic(write_direct, args=(frames,), rounds=1, iterations=1)
    benchmark.extra_info.update(result)
    assert result["ratio"] > 1


def test_write_sink(benchmark):
    frames = market_frames(20_000)
    result = benchmark.pedantic(write_sink, args=(frames,), rounds=1, iterations=1)
    benchmark.extra_info.update(result)
    assert result["lost"] == 0


if __name__ == "__main__":
    main()
