"""RecorderSink: the bounded hand-off to the writer thread; loss is counted, marked, logged;
a recorder killed with SIGKILL leaves a readable file missing at most about a second."""

import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import orjson
import pytest

from recorder import format as fmt
from recorder.reader import iter_records, recording_files, scan
from recorder.writer import RecorderError, RecorderSink, RecordingWriter

T0 = 1_795_000_000_000_000_000


class GatedWriter(RecordingWriter):
    """A writer whose disk 'hangs' until the test opens the gate."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.gate = threading.Event()
        self.entered = threading.Event()

    def add(self, *record):
        self.entered.set()
        self.gate.wait(30)
        super().add(*record)


def test_close_drains_everything_in_order(tmp_path):
    sink = RecorderSink(RecordingWriter(tmp_path, rotate_s=None, block_records=64))
    for i in range(5000):
        sink.write_frame(i % 4, T0 + i, b"frame %d\n" % i)
    sink.write_status(T0 + 5000, "update:X_0", "out_of_sync", "gap")
    sink.close()
    records = list(iter_records([tmp_path]))
    frames = [r for r in records if r.kind == fmt.FRAME]
    assert [r.payload for r in frames] == [b"frame %d\n" % i for i in range(5000)]
    assert [r.conn_id for r in frames] == [i % 4 for i in range(5000)]
    assert records[-1].kind == fmt.STATUS and sink.lost == 0 and sink.pending == 0
    assert all(scan(p).finalised for p in recording_files([tmp_path]))


def test_a_stalled_writer_costs_counted_marked_and_logged_loss(tmp_path, caplog):
    writer = GatedWriter(tmp_path, rotate_s=None)
    sink = RecorderSink(writer, max_pending=100)
    with caplog.at_level(logging.WARNING, logger="recorder.writer"):
        sink.write_frame(0, T0, b"0")  # the thread takes it and hangs on the gate
        assert writer.entered.wait(10)
        for i in range(1, 301):  # 100 fit in the queue, 200 do not
            sink.write_frame(0, T0 + i, b"%d" % i)
        assert sink.lost == 200 and sink.pending == 100
        writer.gate.set()
        while sink.pending:  # the writer catches up
            time.sleep(0.01)
        sink.write_frame(0, T0 + 301, b"301")  # room again: the hole is marked first
        sink.close()
    records = [r for r in iter_records([tmp_path]) if r.kind != fmt.HEADER]
    kinds = [r.kind for r in records]
    assert kinds == [fmt.FRAME] * 101 + [fmt.LOSS, fmt.FRAME]  # the mark sits in the hole
    assert [r.payload for r in records[:101]] == [b"%d" % i for i in range(101)]
    assert orjson.loads(records[101].payload) == {
        "first_ns": T0 + 101,
        "last_ns": T0 + 300,
        "count": 200,
    }
    assert records[102].payload == b"301"
    assert any("behind" in m for m in caplog.messages)
    assert any("lost 200 records" in m for m in caplog.messages)


def test_a_hole_still_open_at_close_is_marked(tmp_path):
    writer = GatedWriter(tmp_path, rotate_s=None)
    sink = RecorderSink(writer, max_pending=10)
    sink.write_frame(0, T0, b"0")
    assert writer.entered.wait(10)
    for i in range(1, 31):
        sink.write_frame(0, T0 + i, b"x")
    writer.gate.set()
    sink.close()
    losses = [orjson.loads(r.payload) for r in iter_records([tmp_path]) if r.kind == fmt.LOSS]
    assert losses == [{"first_ns": T0 + 11, "last_ns": T0 + 30, "count": 20}]


def test_the_queue_is_bounded_in_bytes_too(tmp_path):
    writer = GatedWriter(tmp_path, rotate_s=None)
    sink = RecorderSink(writer, max_pending=10**6, max_pending_bytes=10_000)
    sink.write_frame(0, T0, b"0")
    assert writer.entered.wait(10)
    for i in range(1, 101):
        sink.write_frame(0, T0 + i, b"z" * 1000)  # 10 fit
    assert sink.pending == 10 and sink.lost == 90
    writer.gate.set()
    sink.close()
    records = list(iter_records([tmp_path]))
    assert sum(r.kind == fmt.FRAME for r in records) == 11
    assert [orjson.loads(r.payload)["count"] for r in records if r.kind == fmt.LOSS] == [90]


def test_a_failed_disk_stops_the_sink_and_close_raises(tmp_path, caplog):
    writer = RecordingWriter(tmp_path, rotate_s=None)
    calls = 0
    real_add = writer.add

    def add(*record):
        nonlocal calls
        calls += 1
        if calls == 50:
            raise RecorderError("cannot write X: disk full (or file size limit reached)")
        real_add(*record)

    writer.add = add
    sink = RecorderSink(writer)
    with caplog.at_level(logging.WARNING, logger="recorder.writer"):
        for i in range(100):
            sink.write_frame(0, T0 + i, b"%d" % i)
        deadline = time.monotonic() + 10
        while sink.error is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert sink.error is not None
        sink.write_frame(0, T0 + 100, b"after")  # never blocks, never raises: counted
        assert sink.lost >= 1
        with pytest.raises(RecorderError, match="disk full"):
            sink.close()
    assert any("disk full" in m for m in caplog.messages)


KILL_SCRIPT = """
import sys, time
from bookengine.simulator import MarketModel
from recorder.writer import RecorderSink, RecordingWriter

model = MarketModel("BTC-PERP", seed=11)
sink = RecorderSink(RecordingWriter(sys.argv[1], {"symbols": ["BTC-PERP"]}))
started = time.monotonic()
i = 0
while True:  # ~500 frames/s (blocks cut by age, not count), stamped at "receive"
    sink.write_frame(1, time.time_ns(), b"%d " % i + model.next_delta_frame())
    i += 1
    if i == 300:
        print("running", flush=True)
    time.sleep(max(0.0, started + i / 500 - time.monotonic()))
"""


def test_kill_9_mid_run_leaves_a_readable_prefix_missing_at_most_about_a_second(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(KILL_SCRIPT), str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline().strip() == "running"
        time.sleep(2.7)  # a few blocks written, one being filled
        killed_ns = time.time_ns()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        proc.kill()
        proc.stdout.close()
    (path,) = recording_files([tmp_path])
    assert path.name.endswith(fmt.SUFFIX + fmt.PARTIAL)  # never finalised
    info = scan(path)
    assert not info.finalised and info.blocks
    records = list(iter_records([tmp_path]))
    assert records[0].kind == fmt.HEADER
    frames = [r for r in records if r.kind == fmt.FRAME]
    # everything kept is exactly frames 0..n-1, byte for byte, in order
    from bookengine.simulator import MarketModel

    model = MarketModel("BTC-PERP", seed=11)
    assert [r.payload for r in frames] == [
        b"%d " % i + model.next_delta_frame() for i in range(len(frames))
    ]
    stamps = [r.arrival_ns for r in frames]
    assert stamps == sorted(stamps) and len(frames) >= 300
    # blocks are written at least once a second: only the last ~second is gone. The
    # margin above 1 s covers the writer's poll and a loaded test machine.
    assert killed_ns - stamps[-1] < 2.0e9, (killed_ns - stamps[-1]) / 1e9
