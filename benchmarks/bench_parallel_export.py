"""Parallel export (issue 22): frames/s of `export_dataset` with 1 and 2 Dask worker
processes on the same files, in one run, and the per-file cost the docs' estimate uses.

    python -m benchmarks.bench_parallel_export
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from benchmarks.workloads import realistic_frames
from recorder import format as fmt
from recorder.writer import RecordingWriter


def make_files(directory: str | Path, n: int, files: int) -> int:
    """One realistic topic over `files` seconds of arrival time, rotated every second:
    `files` files (one session)."""
    frames = realistic_frames(n=n)
    writer = RecordingWriter(directory, {"symbols": ["BTC-PERP"]}, rotate_s=1.0)
    start = time.time_ns() // 1_000_000_000 * 1_000_000_000
    step = files * 1_000_000_000 // (len(frames) + 1)
    writer.add(fmt.OPEN, start, 0, b"ws://127.0.0.1/ws/oss/futures")
    writer.add(fmt.SENT, start, 0, b'{"op":"subscribe","args":["update:BTC-PERP_0"]}')
    for i, raw in enumerate(frames):
        writer.add(fmt.FRAME, start + (i + 1) * step, 0, raw)
    writer.close()
    return len(frames)


def measure(n: int = 60_000, files: int = 8) -> dict:
    from recorder.parallel_export import export_dataset

    out: dict = {}
    with tempfile.TemporaryDirectory() as d:
        frames = make_files(d, n, files)
        for workers in (1, 2):
            with tempfile.TemporaryDirectory() as target:
                started = time.perf_counter()
                rows = export_dataset([d], Path(target) / "ds", depth=10, interval_ms=100,
                                      workers=workers)  # fmt: skip
                wall = time.perf_counter() - started
            out[f"workers_{workers}"] = frames / wall
            out[f"task_s_{workers}"] = sum(r["seconds"] for r in rows)
        out["files"] = len(rows)
        out["frames"] = frames
    out["scaling"] = out["workers_2"] / out["workers_1"]
    out["per_file_s"] = out["task_s_1"] / out["files"]
    return out


if __name__ == "__main__":
    print(measure())
