"""RecordingWriter: record kinds, header, blocks, rotation, crash-safe names, disk errors."""

import os
import subprocess
import sys
import textwrap
import time

import orjson
import pytest

from bookengine import __version__
from bookengine.simulator import MarketModel
from recorder import format as fmt
from recorder.reader import iter_file, iter_records, recording_files, scan
from recorder.writer import RecorderError, RecordingWriter

SEC = 1_000_000_000
HOUR = 3600 * SEC
T0 = 1_795_000_000 * SEC - 1_795_000_000 * SEC % HOUR + 17  # just past a whole hour


def frames_of(path_or_dir):
    return [r for r in iter_records(path_or_dir) if r.kind == fmt.FRAME]


def test_every_record_kind_through_its_method(tmp_path):
    with RecordingWriter(tmp_path, {"symbols": ["BTC-PERP"], "url": "ws://x"}) as w:
        w.write_open(2, T0, "ws://x/ws/oss/futures")
        w.write_sent(2, T0 + 1, '{"op":"subscribe","args":["update:BTC-PERP_0"]}')
        w.write_frame(2, T0 + 2, b'{"event":"subscribe"}')
        w.write_status(T0 + 3, "update:BTC-PERP_0", "out_of_sync", "gap")
        w.write_status(T0 + 4, "update:BTC-PERP_0", "synced", None, conn_id=2, detail="seq 9")
        w.write_status(
            T0 + 5, "update:BTC-PERP_0", "synced", "snapshot", conn_id=2, detail="seq 10"
        )
        w.write_digest(T0 + 6, "update:BTC-PERP_0", 10, "d1")
        w.write_digest(T0 + 7, "update:BTC-PERP_0", 11, "d2", conn_id=2)
        w.write_checkpoint(2, T0 + 8, b'{"topic":"update:BTC-PERP_0"}')
        w.write_loss(T0 + 1, T0 + 8, 5)
        w.write_close(2, T0 + 9, 1006, "gone")
    records = list(iter_records([tmp_path]))
    assert [r.kind_name for r in records] == [
        "header", "open", "sent", "frame", "status", "status", "status",
        "digest", "digest", "checkpoint", "loss", "close",
    ]  # fmt: skip
    assert [r.arrival_ns for r in records[1:]] == [T0 + i for i in range(9)] + [T0 + 8, T0 + 9]
    assert [r.conn_id for r in records] == [-1, 2, 2, 2, -1, 2, 2, -1, 2, 2, -1, 2]
    payload = [orjson.loads(r.payload) for r in records if r.kind in (fmt.STATUS, fmt.DIGEST)]
    assert payload == [
        {"topic": "update:BTC-PERP_0", "status": "out_of_sync", "reason": "gap", "detail": ""},
        {"topic": "update:BTC-PERP_0", "status": "synced", "reason": None, "detail": "seq 9"},
        {
            "topic": "update:BTC-PERP_0",
            "status": "synced",
            "reason": "snapshot",
            "detail": "seq 10",
        },
        {"topic": "update:BTC-PERP_0", "seq": 10, "digest": "d1"},
        {"topic": "update:BTC-PERP_0", "seq": 11, "digest": "d2"},
    ]
    assert orjson.loads(records[10].payload) == {"first_ns": T0 + 1, "last_ns": T0 + 8, "count": 5}
    assert orjson.loads(records[11].payload) == {"code": 1006, "reason": "gone"}
    assert records[1].payload == b"ws://x/ws/oss/futures"


def test_header_carries_session_metadata_and_the_writer_facts_win(tmp_path):
    meta = {"symbols": ["BTC-USD"], "url": "wss://x", "format": "forged", "version": 99}
    with RecordingWriter(tmp_path, meta, rotate_s=60) as w:
        w.write_frame(0, T0, b"x")
        w.write_frame(0, T0 + 60 * SEC, b"y")  # second file
    first, second = (orjson.loads(next(iter_file(p)).payload) for p in w.files)
    assert first["format"] == fmt.FORMAT_NAME and first["version"] == fmt.FORMAT_VERSION
    assert first["symbols"] == ["BTC-USD"] and first["url"] == "wss://x"
    assert first["library"] == f"bookengine {__version__}" and first["host"]
    assert first["start_ns"] == second["start_ns"] == first["created_ns"] == T0
    assert second["created_ns"] == T0 + 60 * SEC
    assert (first["file_index"], second["file_index"]) == (0, 1)
    assert second["previous"] == w.files[0].name and first["previous"] is None
    # one session id for every file of a writer, a new one for the next writer
    with RecordingWriter(tmp_path / "next", {**meta, "session": "forged"}) as again:
        again.write_frame(0, T0, b"z")
    (third,) = (orjson.loads(next(iter_file(p)).payload) for p in again.files)
    assert first["session"] == second["session"] == w.session and len(w.session) == 32
    assert third["session"] == again.session != w.session


def test_aligned_time_rotation_loses_nothing_at_the_boundaries(tmp_path):
    """Records every 0.25 s across 12 one-second boundaries, some exactly on them."""
    stamps = [T0 - 17 + i * SEC // 4 for i in range(48)]
    stamps += [T0 - 17 + 12 * SEC - 1]  # 1 ns before a boundary
    stamps.sort()
    with RecordingWriter(tmp_path, rotate_s=1) as w:
        for i, ns in enumerate(stamps):
            w.write_frame(0, ns, b"%d" % i)
    assert len(w.files) == 12 and all(p.name.endswith(fmt.SUFFIX) for p in w.files)
    assert [p.name for p in w.files] == sorted(p.name for p in w.files)
    got = frames_of([tmp_path])
    assert [r.payload for r in got] == [b"%d" % i for i in range(len(stamps))]
    for n, path in enumerate(w.files):  # each file holds exactly its aligned second
        ns = [r.arrival_ns for r in iter_file(path) if r.kind == fmt.FRAME]
        lo = T0 - 17 + n * SEC
        assert ns and lo <= min(ns) and max(ns) < lo + SEC
        assert scan(path).footer["finalised_by"] == ("close" if n == 11 else "time")


def test_tick_finalises_when_the_clock_passes_the_boundary(tmp_path):
    w = RecordingWriter(tmp_path, rotate_s=3600)
    w.write_frame(0, T0, b"a")
    w.tick(T0 + HOUR - 17 - 1)  # not yet
    assert w.current is not None and not w.files
    w.tick(T0 + 10 * HOUR)  # far later than the next period: the stamps' era, not ours
    assert w.current is not None
    w.tick(T0 + HOUR - 17)  # exactly on the hour
    assert w.current is None and len(w.files) == 1 and scan(w.files[0]).finalised
    w.write_frame(0, T0 + HOUR, b"b")  # the next record opens the next file
    w.close()
    assert [len(frames_of(p)) for p in w.files] == [1, 1]


def test_size_rotation_keeps_files_near_max_bytes(tmp_path):
    model = MarketModel("BTC-PERP", seed=3)
    frames = [model.next_delta_frame() for _ in range(6000)]
    with RecordingWriter(tmp_path, rotate_s=None, max_bytes=150_000) as w:
        for i, raw in enumerate(frames):
            w.write_frame(1, T0 + i, raw)
    sizes = [p.stat().st_size for p in w.files]
    assert len(sizes) > 4
    assert all(s <= 150_000 * 1.1 for s in sizes)  # one block's misjudgement at most
    assert all(s >= 150_000 * 0.5 for s in sizes[:-1])
    assert [r.payload for r in frames_of([tmp_path])] == frames


def test_blocks_are_cut_by_count_bytes_and_age(tmp_path):
    w = RecordingWriter(tmp_path / "count", block_records=10, rotate_s=None)
    for i in range(35):
        w.write_frame(0, T0 + i, b"x")
    w.close()
    assert [b.records for b in scan(w.files[0]).blocks] == [10, 10, 10, 6]  # header + 35

    w = RecordingWriter(tmp_path / "bytes", block_bytes=1000, rotate_s=None)
    for i in range(10):
        w.write_frame(0, T0 + i, b"y" * 400)
    w.close()
    assert all(b.raw <= 1000 + 450 for b in scan(w.files[0]).blocks)
    assert len(scan(w.files[0]).blocks) >= 4

    w = RecordingWriter(tmp_path / "age", flush_s=0.05, rotate_s=None)
    w.write_frame(0, T0, b"first")
    assert scan(w.current).blocks == []  # still buffered
    time.sleep(0.06)
    w.tick()
    assert [r.payload for r in iter_file(w.current)][1:] == [b"first"]  # readable while open
    w.close()


def test_a_writer_never_overwrites_or_clobbers(tmp_path):
    w = RecordingWriter(tmp_path)
    w.write_frame(0, T0, b"new")
    partial = w.current
    assert partial.name.endswith("-000.btrec.zst.partial")
    # someone (a crashed twin) takes the final name meanwhile: finalise must not replace it
    final = partial.with_name(partial.name.removesuffix(".partial"))
    final.write_bytes(b"precious")
    with pytest.raises(RecorderError, match="already exists"):
        w.close()
    assert final.read_bytes() == b"precious" and partial.exists()

    crashed = tmp_path / "x"
    crashed.mkdir()
    w2 = RecordingWriter(crashed)
    w2.write_frame(0, T0, b"a")
    left = w2.current  # never closed: a crash
    w3 = RecordingWriter(crashed)
    w3.write_frame(0, T0, b"b")  # same instant, same stem
    w3.close()
    assert left.exists() and w3.files[0].name.endswith("-001.btrec.zst")


def test_names_sort_by_time_even_if_the_clock_steps_back(tmp_path):
    with RecordingWriter(tmp_path, rotate_s=1) as w:
        w.write_frame(0, T0 + 5 * SEC, b"a")
        w.write_frame(0, T0 + 6 * SEC, b"b")  # rotates
        w.write_frame(0, T0 + 2 * SEC, b"c")  # stamped earlier: rotates, named no earlier
    files = recording_files([tmp_path])
    assert [r.payload for r in frames_of(files)] == [b"a", b"b", b"c"]


def test_unwritable_outputs_fail_at_once_with_the_reason(tmp_path):
    a_file = tmp_path / "plain-file"
    a_file.write_text("x")
    with pytest.raises(RecorderError, match="exists and is not a directory|not a directory"):
        RecordingWriter(a_file)
    with pytest.raises(RecorderError, match="cannot create output directory .*sub"):
        RecordingWriter(a_file / "sub")  # a directory under a regular file: ENOTDIR
    with pytest.raises(RecorderError, match="cannot create output directory"):
        RecordingWriter("/proc/bookengine-test/out")  # procfs refuses, even root
    with pytest.raises(ValueError, match="max_bytes"):
        RecordingWriter(tmp_path, max_bytes=10)
    with pytest.raises(ValueError, match="rotate_s"):
        RecordingWriter(tmp_path, rotate_s=0)


def test_a_directory_that_refuses_writes_fails_at_once(tmp_path):
    """Root passes `os.access` and chmod checks; the probe file makes the failure real.
    sysfs refuses new files to root too (EACCES); as a normal user, chmod 0o500 does."""
    if os.geteuid() != 0:
        target = tmp_path / "ro"
        target.mkdir()
        target.chmod(0o500)
    elif os.path.isdir("/sys/kernel"):
        target = "/sys/kernel"
    else:
        pytest.skip("no directory that refuses root here")
    with pytest.raises(RecorderError, match="is not writable"):
        RecordingWriter(target)
    assert not [p for p in os.listdir(target) if p.startswith(".btrec-probe")]


def test_disk_full_stops_with_a_clear_message_and_keeps_what_was_written(tmp_path):
    # RLIMIT_FSIZE makes write() fail with EFBIG like a full disk, even for root.
    script = textwrap.dedent(
        f"""
        import resource, signal, sys
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (50_000, 50_000))
        from bookengine.simulator import MarketModel
        from recorder.writer import RecordingWriter, RecorderError
        model = MarketModel("ETH-PERP", seed=5)
        w = RecordingWriter({str(tmp_path)!r}, rotate_s=None, block_records=40)
        try:
            for i in range(20_000):
                w.write_frame(1, {T0} + i, model.next_delta_frame())
        except RecorderError as exc:
            w.close()  # a no-op after a disk failure: the .partial stays as written
            try:
                w.write_frame(1, 0, b"more")
            except RecorderError as again:
                assert str(again) == str(exc)
            print(i, exc)
            sys.exit(3)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 3, result.stderr
    failed_at, message = result.stdout.split(" ", 1)
    assert "disk full" in message and "everything before this point is kept" in message
    (path,) = recording_files([tmp_path])
    assert path.name.endswith(".partial") and path.stat().st_size <= 50_000
    info = scan(path)
    assert info.problem and not info.finalised  # the block that did not fit is cut
    model = MarketModel("ETH-PERP", seed=5)
    expected = [model.next_delta_frame() for _ in range(int(failed_at))]
    got = [r.payload for r in frames_of(path)]
    assert len(got) == sum(b.frames for b in info.blocks) > 40
    assert got == expected[: len(got)]  # every complete block, intact and in order
