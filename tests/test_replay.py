"""Replay reproduces the live run exactly; seek, pacing, export."""

import asyncio
import time

import numpy as np
import orjson
import pytest
from conftest import need_extra
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
SEC = 1_000_000_000


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    """Record 2 s (of arrival time) with every book-level fault on, then with faults off
    until every book is synced past the last frame sent with faults, then 1.5 s more (a
    checkpoint round of every book: checkpoints are 0.8 s apart), and stop (a cancel, as
    Ctrl-C). So the recording always ends with every book synced: a fault near the end
    used to leave a book resyncing, with no final book to compare (a flake). Keeps what
    the live feed published."""
    out = tmp_path_factory.mktemp("session")
    live: list = []

    def capture(conn_id, event):
        if type(event) in (TopOfBook, StatusChanged):
            live.append(event)

    def synced_after(seqs: dict[str, int]) -> bool:
        """Every topic's latest event is a top-of-book past its seqNum in `seqs`."""
        latest = {e.topic: e for e in live}
        return all(
            type(latest.get(topic)) is TopOfBook and latest[topic].seq > seq
            for topic, seq in seqs.items()
        )

    async def until(condition):
        while not condition():
            await asyncio.sleep(0.02)

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
            recording = asyncio.create_task(
                record_session(
                    SYMBOLS,
                    out,
                    url=sim.url,
                    digest_interval=0.4,
                    checkpoint_interval=0.8,
                    max_bytes=150_000,
                    feed_options=FAST,
                    on_event=capture,
                )
            )
            await until(lambda: live and live[-1].arrival_ns - live[0].arrival_ns > 2 * SEC)
            sim.set_faults(Faults())
            faulty = sim.stats()["topics"]  # the last seqNum each topic sent with faults
            await until(lambda: synced_after(faulty))
            clean = live[-1].arrival_ns
            await until(lambda: live[-1].arrival_ns - clean > 1.5 * SEC)
            recording.cancel()
            stats = await recording
            await sim.disconnect_all()  # nothing after the session's end counts
            return stats

    try:
        stats = run(body(), timeout=90)
    except TimeoutError:  # say where it hung: the latest event of each book
        pytest.fail(f"the session never settled: {({e.topic: e for e in live})}")
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
    # at least the final digest of every book (the session ends with all synced)
    assert replay.stats.digests_checked >= len(SYMBOLS) and replay.stats.mismatches == []
    assert replay.stats.frames == stats.frames
    # the resubscribes BookSync asked for are a live feed's to-do: replay keeps none
    assert replay.stats.resyncs > 0 and not any(replay.sync(c).pending_actions for c in (0, 1))


def test_a_differing_book_is_reported_with_time_and_topic(session, tmp_path):
    out, _, _ = session
    # copy the recording with one live digest altered: replay must report that one
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
    rounds: dict[int, set[str]] = {}  # checkpoint rounds: ns -> the streams checkpointed
    for r in iter_records([out]):
        if r.kind == fmt.CHECKPOINT:
            rounds.setdefault(r.arrival_ns, set()).add(orjson.loads(r.payload)["topic"])
    # start at a round that checkpointed every book (the session ends with one), past the
    # 1.2 s a seek reads back (1.5 checkpoint intervals): then every replayed book starts
    # from the live one, and what follows is identical
    start = min(
        ns
        for ns, topics in rounds.items()
        if len({t for t in topics if t.startswith("update:")}) == len(SYMBOLS)
        and ns > live[0].arrival_ns + 1.3 * SEC
    )
    replay = Replay([out], start_ns=start)
    got = [e for e in replay.events() if type(e) is TopOfBook]
    assert got[0].arrival_ns >= start
    assert [e for e in got if e.arrival_ns > start] == [e for e in tops if e.arrival_ns > start]
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
    # paced: the replay sleeps until each event is due, so it cannot take less than the
    # events' recorded span at 2x (unpaced it takes a few ms)
    span = (got[-1].arrival_ns - got[0].arrival_ns) / 1e9
    assert span > 0.1 and elapsed >= span / 2.0


def test_export_top_of_book_matches_the_events(session, tmp_path):
    out, live, _ = session
    path, rows, _ = export([out], tmp_path / "top.npz")
    data = np.load(path)
    tops = [e for e in live if type(e) is TopOfBook]
    synced = data["synced"]
    assert rows == len(data["arrival_ns"]) == len(tops) + (~synced).sum()
    assert data["arrival_ns"][synced].tolist() == [e.arrival_ns for e in tops]
    assert data["symbol"][synced].tolist() == [e.symbol for e in tops]
    assert data["bid_price"][synced].tolist() == [e.bid_price for e in tops]
    assert data["ask_size"][synced].tolist() == [e.ask_size for e in tops]
    # every time a book left sync live is a marker row: holes are visible in the data
    holes = [
        e for e in live
        if type(e) is StatusChanged and e.topic.startswith("update:")
        and e.status in ("out_of_sync", "failing", "unsubscribed")
    ]  # fmt: skip
    assert holes, "the session's faults make gaps"
    assert data["arrival_ns"][~synced].tolist() == [e.arrival_ns for e in holes]
    assert data["symbol"][~synced].tolist() == [e.symbol for e in holes]
    assert np.isnan(data["bid_price"][~synced]).all() and (data["seq"][~synced] == -1).all()


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
    # one row per 100 ms that had an update: the first update of each
    rows_of = sampled["synced"]
    every_synced = arrays["arrival_ns"][arrays["synced"]]
    # each 100 ms with an update has a row: its first update, plus the first after a hole
    assert set(buckets[rows_of].tolist()) == set((every_synced // 100_000_000).tolist())
    assert set(sampled["arrival_ns"][rows_of].tolist()) <= set(every_synced.tolist())
    holes_in = {}
    for bucket in buckets[~rows_of].tolist():
        holes_in[bucket] = holes_in.get(bucket, 0) + 1
    for bucket in set(buckets[rows_of].tolist()):
        assert (buckets[rows_of] == bucket).sum() <= 1 + holes_in.get(bucket, 0)
    assert 10 < len(buckets) < len(arrays["arrival_ns"])
    assert not np.isnan(sampled["bid_price_0"][rows_of]).any()
    assert np.isnan(sampled["bid_price_0"][~rows_of]).all()
    need_extra("pyarrow", "parquet")
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
