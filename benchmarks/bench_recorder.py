"""Recorder write path (issue 5) and zstd vs gzip (issue 7), on realistic frames.

- sustained frames/s through RecorderSink -> writer thread -> zstd -> disk, one core;
- compression ratio of the files on realistic frames;
- CPU share of the recorder at 1,000 frames/s (BTSE's whole-market peak);
- zstd level 3 vs gzip level 6 on the same newline-delimited frames: ratio and MB/s.

    python benchmarks/bench_recorder.py
"""

from __future__ import annotations

import gzip
import tempfile
import time

import zstandard

from benchmarks.workloads import realistic_frames
from recorder.writer import RecorderSink, RecordingWriter


def write_rate(n: int = 100_000) -> dict:
    frames = realistic_frames(n=n)
    with tempfile.TemporaryDirectory() as out:
        writer = RecordingWriter(out, rotate_s=None)
        sink = RecorderSink(writer, max_pending=len(frames) + 10)
        started = time.perf_counter()
        cpu = time.process_time()
        now = time.time_ns()
        for i, raw in enumerate(frames):
            sink.write_frame(0, now + i, raw)
        sink.close()
        elapsed = time.perf_counter() - started
        cpu_s = time.process_time() - cpu
        size = sum(p.stat().st_size for p in writer.files)
    raw_bytes = sum(map(len, frames))
    return {
        "frames_per_s": len(frames) / elapsed,
        "cpu_us_per_frame": cpu_s / len(frames) * 1e6,
        "ratio": raw_bytes / size,
        "lost": sink.lost,
    }


def cpu_share_at(rate: float = 1000.0, seconds: float = 5.0) -> dict:
    """Frames handed to the sink at `rate`/s, as the feed would: process CPU / wall time."""
    frames = realistic_frames(n=int(rate * seconds) + 10)
    with tempfile.TemporaryDirectory() as out:
        sink = RecorderSink(RecordingWriter(out, rotate_s=None))
        cpu = time.process_time()
        started = time.perf_counter()
        for i, raw in enumerate(frames[: int(rate * seconds)]):
            due = started + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            sink.write_frame(0, time.time_ns(), raw)
        sink.close()
        wall = time.perf_counter() - started
        cpu_s = time.process_time() - cpu
    return {"cpu_share": cpu_s / wall, "wall_s": wall}


def zstd_vs_gzip(n: int = 50_000) -> dict:
    data = b"\n".join(realistic_frames(n=n)) + b"\n"
    out = {}
    for name, compress in (
        ("zstd-3", zstandard.ZstdCompressor(level=3).compress),
        ("gzip-6", lambda d: gzip.compress(d, compresslevel=6)),
    ):
        started = time.perf_counter()
        packed = compress(data)
        seconds = time.perf_counter() - started
        out[name] = {"ratio": len(data) / len(packed), "mb_per_s": len(data) / seconds / 1e6}
    return out


def test_write_rate(benchmark):
    result = benchmark.pedantic(write_rate, args=(30_000,), rounds=1, iterations=1)
    benchmark.extra_info.update(result)
    assert result["lost"] == 0


def test_zstd_vs_gzip(benchmark):
    result = benchmark.pedantic(zstd_vs_gzip, args=(20_000,), rounds=1, iterations=1)
    benchmark.extra_info.update({f"{k}_{m}": v for k, d in result.items() for m, v in d.items()})
    assert result["zstd-3"]["ratio"] > 1


if __name__ == "__main__":
    print("write:", write_rate())
    print("cpu at 1000 frames/s:", cpu_share_at())
    print("zstd vs gzip:", zstd_vs_gzip())
