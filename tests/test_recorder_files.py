"""Recording files: exact round trip, cut files, rotation, loss records, disk errors."""

import logging
import os
import random
import shutil
import subprocess
import sys
import textwrap
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bookengine.simulator import realistic_frames
from recorder import format as fmt
from recorder.reader import iter_file, iter_records, recording_files, scan, summarize
from recorder.writer import RecorderError, RecorderSink, RecordingWriter

T0 = 1_795_000_000_000_000_000  # ns


def write(directory, payloads, **kw):
    writer = RecordingWriter(directory, {"symbols": ["BTC-PERP"]}, **kw)
    for i, payload in enumerate(payloads):
        writer.add(fmt.FRAME, T0 + i * 1_000_000, i % 3, payload)
    writer.close()
    return writer


@settings(max_examples=40, deadline=None)
@given(payloads=st.lists(st.binary(max_size=300), max_size=60))
def test_any_bytes_round_trip(tmp_path_factory, payloads):
    d = tmp_path_factory.mktemp("rt")
    write(d, payloads, block_records=7)
    records = [r for r in iter_records([d]) if r.kind == fmt.FRAME]
    assert [r.payload for r in records] == payloads
    assert [r.conn_id for r in records] == [i % 3 for i in range(len(payloads))]


def test_header_footer_and_zstd_compatibility(tmp_path):
    frames = realistic_frames(n=3000)
    write(tmp_path, frames)
    (path,) = recording_files([tmp_path])
    assert path.name.startswith("btse-") and path.name.endswith(".btrec.zst")
    summary = summarize(path)
    assert summary.finalised and summary.header["format"] == "bookengine-recording"
    assert summary.kinds == {"header": 1, "frame": 3001}
    assert summary.frames_per_topic == {"update:BTC-PERP_0": 3001}
    assert summary.ratio > 3  # realistic frames compress well
    # standard zstd tools read it: the skippable frames are ignored
    zstdcat = shutil.which("zstdcat")
    assert zstdcat, "zstdcat (Debian package zstd) is part of this machine image"
    text = subprocess.run([zstdcat, str(path)], capture_output=True, check=True).stdout
    assert text.startswith(b"H ") and text.count(b"\nF ") == 3001


def test_cut_at_any_byte_reads_a_prefix_and_never_raises(tmp_path):
    frames = realistic_frames(n=2000)
    write(tmp_path / "full", frames, block_records=100)
    (path,) = recording_files([tmp_path / "full"])
    data = path.read_bytes()
    everything = list(iter_file(path))
    for cut in random.Random(7).sample(range(len(data)), 60) + [0, 1, 7, 8, 9, len(data) - 1]:
        cut_path = tmp_path / f"cut-{cut}.btrec.zst.partial"
        cut_path.write_bytes(data[:cut])
        got = list(iter_file(cut_path))
        assert got == everything[: len(got)]  # a prefix, in order, intact
        info = scan(cut_path)
        assert info.problem and not info.finalised
        head = 8 + fmt._BLOCK.size
        complete = [b for b in scan(path).blocks if b.offset + head + b.compressed <= cut]
        assert len(got) == sum(b.records for b in complete)


def test_size_rotation_loses_nothing_and_names_sort_by_time(tmp_path):
    frames = realistic_frames(n=8000)
    writer = write(tmp_path, frames, max_bytes=50_000, rotate_s=None)
    files = recording_files([tmp_path])
    assert len(files) == len(writer.files) > 3
    assert [f.name for f in files] == sorted(f.name for f in files)
    got = [r.payload for r in iter_records([tmp_path]) if r.kind == fmt.FRAME]
    assert got == frames
    headers = [r for r in iter_records([tmp_path]) if r.kind == fmt.HEADER]
    assert len(headers) == len(files)  # every file starts with its own header


def test_time_rotation_is_aligned(tmp_path):
    writer = RecordingWriter(tmp_path, rotate_s=60)
    hour = (T0 // 3_600_000_000_000) * 3_600_000_000_000
    for second in (10, 59, 60, 61, 125):
        writer.add(fmt.FRAME, hour + second * 1_000_000_000, 0, b"x%d" % second)
    writer.close()
    per_file = [[r.payload for r in iter_file(f) if r.kind == fmt.FRAME] for f in writer.files]
    assert per_file == [[b"x10", b"x59"], [b"x60", b"x61"], [b"x125"]]


def test_seek_by_time_skips_blocks(tmp_path):
    write(tmp_path, [b"%d" % i for i in range(5000)], block_records=100)
    start = T0 + 4000 * 1_000_000
    got = [r for r in iter_records([tmp_path], start_ns=start) if r.kind == fmt.FRAME]
    assert got[0].payload == b"4000" and len(got) == 1000
    got = [r for r in iter_records([tmp_path], start_ns=start, end_ns=start + 9_000_000)]
    assert [r.payload for r in got] == [b"%d" % i for i in range(4000, 4010)]


def test_a_new_writer_never_overwrites(tmp_path):
    first = write(tmp_path, [b"a"])
    crashed = tmp_path / first.files[0].name.replace("-000.", "-001.")
    crashed = crashed.with_name(crashed.name + ".partial")
    crashed.write_bytes(b"a crashed session's file")
    second = write(tmp_path, [b"b"])  # same first timestamp: the next free name
    assert second.files[0].name.endswith("-002.btrec.zst")
    assert first.files[0].exists() and crashed.read_bytes() == b"a crashed session's file"
    crashed.unlink()
    assert [r.payload for r in iter_records([tmp_path]) if r.kind == fmt.FRAME] == [b"a", b"b"]


def test_sink_counts_and_marks_loss_when_the_writer_falls_behind(tmp_path, caplog, monkeypatch):
    writer = RecordingWriter(tmp_path)
    slow_add = writer.add

    def add(*record):
        time.sleep(0.0005)
        slow_add(*record)

    monkeypatch.setattr(writer, "add", add)
    sink = RecorderSink(writer, max_pending=100)
    with caplog.at_level(logging.WARNING, logger="recorder.writer"):
        for i in range(3000):
            sink.write_frame(0, T0 + i, b"%d" % i)
        sink.close()
    assert sink.lost > 0
    records = list(iter_records([tmp_path]))
    kept = [r for r in records if r.kind == fmt.FRAME]
    losses = [r for r in records if r.kind == fmt.LOSS]
    assert len(kept) + sink.lost == 3000
    import orjson

    assert sum(orjson.loads(r.payload)["count"] for r in losses) == sink.lost
    assert any("lost" in m for m in caplog.messages) and any("behind" in m for m in caplog.messages)


def test_unwritable_output_is_a_clear_error(tmp_path):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(RecorderError, match="not a directory|cannot create"):
        RecordingWriter(a_file)
    with pytest.raises(RecorderError, match="cannot create output directory"):
        RecordingWriter(a_file / "sub")
    with pytest.raises(RecorderError, match="cannot create|not writable"):
        RecordingWriter("/proc/bookengine-test")


def test_disk_full_stops_with_a_clear_message_and_keeps_what_was_written(tmp_path):
    # A file size limit makes writes fail like a full disk (EFBIG), even for root.
    script = textwrap.dedent(
        f"""
        import resource, signal, sys
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (60_000, 60_000))
        from bookengine.simulator import realistic_frames
        from recorder.writer import RecordingWriter, RecorderSink
        writer = RecordingWriter({str(tmp_path)!r}, rotate_s=None, block_records=50)
        sink = RecorderSink(writer, max_pending=10**6)
        for i, f in enumerate(realistic_frames(n=20000)):
            sink.write_frame(0, {T0} + i, f)
        try:
            sink.close()
        except Exception as exc:
            print(exc)
            sys.exit(3)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 3, result.stderr
    assert "disk full" in result.stdout and "everything before this point is kept" in result.stdout
    (path,) = recording_files([tmp_path])
    assert path.name.endswith(".partial") and os.path.getsize(path) <= 60_000
    frames = [r for r in iter_file(path) if r.kind == fmt.FRAME]
    assert frames and frames == sorted(frames, key=lambda r: r.arrival_ns)
