"""Replay frames/s vs its floor (issue 6): decompress + split records + orjson.loads of the
same frames, in the same run.

    python benchmarks/bench_replay.py
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import orjson
import zstandard

from benchmarks.workloads import realistic_frames
from recorder import format as fmt
from recorder.reader import recording_files, scan
from recorder.replay import Replay
from recorder.writer import RecordingWriter


def make_recording(directory: str | Path, n: int) -> int:
    """A recorded session of one realistic topic (as the recorder writes it)."""
    writer = RecordingWriter(directory, {"symbols": ["BTC-PERP"]}, rotate_s=None)
    now = time.time_ns()
    frames = realistic_frames(n=n)
    writer.add(fmt.OPEN, now, 0, b"ws://127.0.0.1/ws/oss/futures")
    writer.add(fmt.SENT, now, 0, b'{"op":"subscribe","args":["update:BTC-PERP_0"]}')
    for i, raw in enumerate(frames):
        writer.add(fmt.FRAME, now + i * 1000, 0, raw)
    writer.close()
    return len(frames)


def floor(directory: str | Path) -> int:
    """Decompress every block, split its records, orjson.loads every frame."""
    loads = orjson.loads
    decompress = zstandard.ZstdDecompressor().decompress
    count = 0
    for path in recording_files([directory]):
        with open(path, "rb") as f:
            for block in scan(path).blocks:
                f.seek(block.offset + 8 + fmt._BLOCK.size)
                raw = decompress(f.read(block.compressed))
                for record in fmt.decode_records(raw):
                    if record.kind == fmt.FRAME:
                        loads(record.payload)
                        count += 1
    return count


def replay(directory: str | Path) -> int:
    r = Replay([directory])
    for _ in r.events():
        pass
    assert r.stats.gaps == 0
    return r.stats.frames


def measure(n: int = 50_000, repeat: int = 3) -> dict:
    from benchmarks.workloads import compare

    with tempfile.TemporaryDirectory() as d:
        frames = make_recording(d, n)
        rates = compare({"floor": lambda: floor(d), "replay": lambda: replay(d)}, frames, repeat)
    return {**rates, "ratio": rates["replay"] / rates["floor"]}


def test_replay_vs_floor(benchmark):
    result = benchmark.pedantic(measure, args=(20_000, 2), rounds=1, iterations=1)
    benchmark.extra_info.update(result)
    assert result["ratio"] > 0


if __name__ == "__main__":
    print(measure())
