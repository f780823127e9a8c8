"""Recording live from the simulator: byte-for-byte, crash-safe, errors surfaced."""

import os
import signal
import subprocess
import sys
import time

import orjson
import pytest
from simclient import FAST, run

from bookengine.simulator import Faults, Simulator
from recorder import format as fmt
from recorder.reader import iter_records, recording_files, scan
from recorder.session import record_session

pytestmark = pytest.mark.integration


def test_every_frame_sent_is_recorded_byte_for_byte_in_order(tmp_path):
    async def body():
        faults = Faults(drop=0.01, malformed=0.005, error_frame=0.005)
        async with Simulator(
            symbols=["BTC-USD", "BTC-PERP", "ETH-PERP"], rate=300, faults=faults, record_sent=True
        ) as sim:
            stats = await record_session(
                ["BTC-USD", "BTC-PERP", "ETH-PERP"],
                tmp_path,
                url=sim.url,
                duration=2.5,
                max_bytes=100_000,
                digest_interval=0.5,
                feed_options=FAST,
            )
            return sim, stats

    sim, stats = run(body())
    records = list(iter_records([tmp_path]))
    assert len(recording_files([tmp_path])) > 1  # rotated: boundaries lose nothing
    frames: dict[int, list[bytes]] = {}
    for r in records:
        if r.kind == fmt.FRAME:
            frames.setdefault(r.conn_id, []).append(r.payload)
    # the simulator numbers connections from 1 in connect order; compare as sets of streams
    assert sorted(map(tuple, frames.values())) == sorted(map(tuple, sim.sent.values()))
    assert sum(map(len, frames.values())) == stats.frames > 500
    stamps = [r.arrival_ns for r in records if r.kind == fmt.FRAME]
    assert stamps == sorted(stamps)  # arrival order, stamped at receive
    kinds = {fmt.KINDS[r.kind] for r in records}
    assert {"header", "open", "sent", "frame", "digest", "close", "status"} <= kinds
    sent = [orjson.loads(r.payload) for r in records if r.kind == fmt.SENT and r.payload != b"ping"]
    assert any(s["op"] == "subscribe" for s in sent)
    assert all(scan(f).finalised for f in recording_files([tmp_path]))


def test_unknown_symbols_surface_the_exchange_error(tmp_path):
    async def body():
        async with Simulator(symbols=["BTC-PERP"], rate=100) as sim:
            return await record_session(
                ["NOPE-PERP", "BTC-PERP"], tmp_path, url=sim.url, duration=1.0, feed_options=FAST
            )

    stats = run(body())
    assert any("update:NOPE-PERP_0" in e and "1000" in e for e in stats.exchange_errors)
    assert stats.frames > 10  # the valid symbol is recorded all the same


def test_kill_9_leaves_a_readable_file_missing_at_most_about_a_second(tmp_path):
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "recorder",
            "record",
            "BTC-PERP",
            "ETH-PERP",
            "--sim",
            "--sim-rate",
            "300",
            "-o",
            str(tmp_path),
            "--quiet",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not list(tmp_path.glob("*.partial")):
            time.sleep(0.1)
        time.sleep(3.0)
        killed_ns = time.time_ns()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        proc.kill()
    (path,) = recording_files([tmp_path])
    assert path.name.endswith(".partial")  # never finalised: it was killed
    info = scan(path)
    assert not info.finalised
    records = list(iter_records([tmp_path]))
    frames = [r for r in records if r.kind == fmt.FRAME]
    assert records[0].kind == fmt.HEADER and len(frames) > 300
    assert [r.arrival_ns for r in records] == sorted(r.arrival_ns for r in records)
    assert killed_ns - frames[-1].arrival_ns < 1.5e9  # blocks flush at least once a second
    result = subprocess.run(
        [sys.executable, "-m", "recorder", "verify", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1 and "not finalised" in result.stdout


def test_record_cli_with_info_and_verify(tmp_path):
    cli = [sys.executable, "-m", "recorder"]
    result = subprocess.run(
        cli
        + [
            "record",
            "BTC-USD",
            "BTC-PERP",
            "--sim",
            "-o",
            str(tmp_path),
            "--duration",
            "2s",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "recorded" in result.stdout and ".btrec.zst" in result.stdout
    info = subprocess.run(cli + ["info", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert (
        info.returncode == 0 and "finalised" in info.stdout and "update:BTC-PERP_0" in info.stdout
    )
    verify = subprocess.run(
        cli + ["verify", str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert verify.returncode == 0 and "1 of 1 file(s) intact" in verify.stdout
    bad = subprocess.run(
        cli + ["record", "BTC-USD", "--sim", "-o", "/proc/nope"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "record: cannot create" in bad.stderr
    bad = subprocess.run(
        cli + ["record", "BTC-USD", "-o", str(tmp_path), "--max-bytes", "12"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "at least 4096" in bad.stderr
