"""Replay reproduces the live run exactly; seek, pacing, export."""

import time

import numpy as np
import pytest
from simclient import FAST, run

from bookengine import StatusChanged, TopOfBook
from bookengine.simulator import Faults, Simulator
from recorder import format as fmt
from recorder.export import collect, export
from recorder.reader import iter_records, recording_files
from recorder.replay import Replay
from recorder.session import record_session

pytestmark = pytest.mark.integration

SYMBOLS = ["BTC-USD", "BTC-PERP", "ETH-PERP"]


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    """Record 3 s with every book-level fault on; keep what the live feed published."""
    out = tmp_path_factory.mktemp("session")
    live: list = []

    def capture(conn_id, event):
        if type(event) in (TopOfBook, StatusChanged):
            live.append(event)

    async def body():
        faults = Faults(
            drop=0.01,
            duplicate=0.01,
            reorder=0.01,
            malformed=0.005,
            crossed=0.003,
            error_frame=0.005,
            stale_snapshot=0.3,
        )
        async with Simulator(symbols=SYMBOLS, rate=400, faults=faults, seed=21) as sim:
            stats = await record_session(
                SYMBOLS,
                out,
                url=sim.url,
                duration=3.0,
                digest_interval=0.4,
                checkpoint_interval=0.8,
                max_bytes=150_000,
                feed_options=FAST,
                on_event=capture,
            )
            await sim.disconnect_all()  # nothing after the session's end counts
            return stats

    stats = run(body(), timeout=30)
    return out, live, stats


def test_replay_publishes_the_identical_sequence_of_events(session):
    out, live, stats = session
    replay = Replay([out])
    replayed = [e for e in replay.events() if type(e) in (TopOfBook, StatusChanged)]
    live_tops = [e for e in live if type(e) is TopOfBook]
    assert len(live_tops) > 500 and replay.stats.gaps > 0  # faults were really on
    # one by one, equal: same seq, same prices and sizes, same arrival stamps
    assert [e for e in replayed if type(e) is TopOfBook] == live_tops
    assert [e for e in replayed if type(e) is StatusChanged and e.reason != "snapshot_timeout"] == [
        e for e in live if type(e) is StatusChanged and e.reason != "snapshot_timeout"
    ]
    assert replay.stats.digests_checked >= 5 and replay.stats.mismatches == []
    assert replay.stats.frames == stats.frames


def test_a_differing_book_is_reported_with_time_and_topic(session, tmp_path):
    out, _, _ = session
    # copy the recording with one live digest altered: replay must report that one
    import orjson

    from recorder.writer import RecordingWriter

    writer = RecordingWriter(tmp_path, rotate_s=None)
    altered = None
    for kind, ns, conn, payload in iter_records([out]):
        if kind == fmt.HEADER:
            continue
        if altered is None and kind == fmt.DIGEST:
            digest = orjson.loads(payload)
            altered = (ns, digest["topic"], digest["seq"])
            payload = orjson.dumps(dict(digest, digest="0" * 16))
        writer.add(kind, ns, conn, payload)
    writer.close()
    replay = Replay([tmp_path])
    for _ in replay.events():
        pass
    (mismatch,) = replay.stats.mismatches
    assert (mismatch.arrival_ns, mismatch.topic, mismatch.seq) == altered
    assert mismatch.live == "0" * 16 and mismatch.replay != mismatch.live


def test_seek_lands_on_the_first_event_at_or_after_the_start(session):
    out, live, _ = session
    tops = [e for e in live if type(e) is TopOfBook]
    start = tops[len(tops) // 2].arrival_ns
    expected = [e for e in tops if e.arrival_ns >= start]
    replay = Replay([out], start_ns=start)
    got = [e for e in replay.events() if type(e) is TopOfBook]
    assert got[0].arrival_ns >= start
    # from the first event on, the tail is identical to what live published then
    assert got[-len(expected) // 2 :] == expected[-len(expected) // 2 :]
    assert replay.stats.records < sum(1 for _ in iter_records([out]))  # it did not read everything


def test_symbols_filter_and_time_window(session):
    out, live, _ = session
    got = [e for e in Replay([out], symbols=["ETH-PERP"]).events() if type(e) is TopOfBook]
    assert got and {e.symbol for e in got} == {"ETH-PERP"}
    tops = [e for e in live if type(e) is TopOfBook]
    end = tops[100].arrival_ns
    window = [e for e in Replay([out], end_ns=end).events() if type(e) is TopOfBook]
    assert window == [e for e in tops if e.arrival_ns <= end]


def test_paced_replay_follows_recorded_time(session):
    out, live, _ = session
    tops = [e for e in live if type(e) is TopOfBook]
    start, end = tops[0].arrival_ns, tops[0].arrival_ns + 400_000_000  # 0.4 s recorded
    began = time.monotonic()
    got = [e for e in Replay([out], start_ns=start, end_ns=end, speed=2.0).events()]
    elapsed = time.monotonic() - began
    assert got and elapsed >= 0.15  # 0.4 s at 2x is ~0.2 s of pacing, not an instant


def test_export_top_of_book_matches_the_events(session, tmp_path):
    out, live, _ = session
    path, rows, _ = export([out], tmp_path / "top.npz")
    data = np.load(path)
    tops = [e for e in live if type(e) is TopOfBook]
    assert rows == len(tops) == len(data["arrival_ns"])
    assert data["arrival_ns"].tolist() == [e.arrival_ns for e in tops]
    assert data["symbol"].tolist() == [e.symbol for e in tops]
    assert data["bid_price"].tolist() == [e.bid_price for e in tops]
    assert data["ask_size"].tolist() == [e.ask_size for e in tops]


def test_export_depth_matches_the_books(session, tmp_path):
    out, _, _ = session
    every = Replay([out], symbols=["BTC-PERP"])
    arrays = collect(every, depth=5).as_numpy()
    # the last row (every update) is the final replayed book, level by level
    bids, asks = every.book("BTC-PERP").depth(5)
    assert [arrays[f"bid_price_{i}"][-1] for i in range(5)] == [p for p, _ in bids]
    assert [arrays[f"ask_size_{i}"][-1] for i in range(5)] == [s for _, s in asks]
    sampled = collect(Replay([out], symbols=["BTC-PERP"]), depth=5, interval_ms=100).as_numpy()
    buckets = sampled["arrival_ns"] // 100_000_000
    assert 10 < len(buckets) < len(arrays["arrival_ns"]) and len(set(buckets)) == len(buckets)
    assert not np.isnan(sampled["bid_price_0"]).any()
    pytest.importorskip("pyarrow")  # optional extra; CI installs it with the test extra
    import pyarrow.parquet as pq

    path, rows, _ = export([out], tmp_path / "depth.parquet", depth=3, symbols=["BTC-USD"])
    table = pq.read_table(path)
    assert table.num_rows == rows > 0 and "ask_size_2" in table.schema.names


def test_replay_cli(session):
    import subprocess
    import sys

    out, _, _ = session
    result = subprocess.run(
        [sys.executable, "-m", "recorder", "replay", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "0 differ" in result.stdout and "frames/s" in result.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "recorder", "replay", str(out), "--from", "yesterday"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode != 0 and "not a time" in bad.stderr
    assert len(recording_files([out])) > 1
