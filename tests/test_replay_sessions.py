"""Several recording sessions in one directory replay as separate sessions, each with its
own books; a clean stop records the close of every connection."""

import asyncio
import shutil
from collections import Counter

import orjson
import pytest
from simclient import FAST, run

from bookengine import TopOfBook
from bookengine.feed import CLOSED_BY_APP
from bookengine.simulator import Simulator
from recorder import format as fmt
from recorder.reader import iter_records, recording_files
from recorder.replay import Replay
from recorder.session import record_session

pytestmark = pytest.mark.integration

SYMBOLS = ["BTC-USD", "BTC-PERP"]  # a spot and a futures symbol: connections 0 and 1


async def record_once(out, delay=0.0):
    """One `btse-recorder record --sim` run: its own simulator, conn ids from 0; files
    rotate every 0.5 s so that two overlapping runs interleave their files by name."""
    await asyncio.sleep(delay)
    async with Simulator(symbols=SYMBOLS, rate=300) as sim:
        await record_session(
            SYMBOLS, out, url=sim.url, duration=1.5, rotate_s=0.5, feed_options=FAST
        )


def merged(tmp_path_factory, first, second):
    both = tmp_path_factory.mktemp("both")
    for path in recording_files([first, second]):
        assert not (both / path.name).exists()
        shutil.copy(path, both / path.name)
    return both


@pytest.fixture(scope="module")
def one_after_the_other(tmp_path_factory):
    first, second = tmp_path_factory.mktemp("first"), tmp_path_factory.mktemp("second")
    run(record_once(first))
    run(record_once(second))
    return first, second, merged(tmp_path_factory, first, second)


@pytest.fixture(scope="module")
def at_the_same_time(tmp_path_factory):
    first, second = tmp_path_factory.mktemp("first"), tmp_path_factory.mktemp("second")

    async def both():
        await asyncio.gather(record_once(first), record_once(second, delay=0.7))

    run(both())
    return first, second, merged(tmp_path_factory, first, second)


def top_events(paths):
    replay = Replay(paths)
    tops = [e for e in replay.events() if type(e) is TopOfBook]
    return tops, replay


@pytest.mark.parametrize("recorded", ["one_after_the_other", "at_the_same_time"])
def test_sessions_in_one_directory_replay_as_if_each_were_alone(recorded, request):
    first, second, both = request.getfixturevalue(recorded)
    alone_first, _ = top_events([first])
    alone_second, _ = top_events([second])
    assert alone_first and alone_second
    together, replay = top_events([both])
    assert len(together) == len(alone_first) + len(alone_second)
    assert Counter(together) == Counter(alone_first + alone_second)
    assert replay.stats.gaps == replay.stats.resyncs == 0
    assert replay.stats.mismatches == [] and replay.stats.digests_checked > 0
    if recorded == "one_after_the_other":
        assert together == alone_first + alone_second


def test_the_files_of_overlapping_sessions_interleave(at_the_same_time):
    """What makes the test above hard: reading by name alternates between the sessions."""
    first, _, both = at_the_same_time
    names = {p.name for p in recording_files([first])}
    owners = [p.name in names for p in recording_files([both])]
    changes = sum(a != b for a, b in zip(owners, owners[1:], strict=False))
    assert changes >= 3


def test_a_cancelled_session_ends_with_a_digest_of_every_synced_book(tmp_path):
    """Ctrl-C (a cancelled task) ends a recording like its `duration` does: the final
    digests let a replay prove it rebuilt the very books the live feed ended with."""
    tops: set[str] = set()

    async def body():
        async with Simulator(symbols=SYMBOLS, rate=300) as sim:
            recording = asyncio.create_task(
                record_session(
                    SYMBOLS,
                    tmp_path,
                    url=sim.url,
                    digest_interval=3600,  # no periodic digest: only the final ones
                    feed_options=FAST,
                    on_event=lambda conn, e: tops.add(e.symbol) if type(e) is TopOfBook else None,
                )
            )
            while tops != set(SYMBOLS):
                await asyncio.sleep(0.01)
            recording.cancel()
            return await recording

    stats = run(body())
    assert stats.frames > 0
    replay = Replay([tmp_path])
    list(replay.events())
    assert replay.stats.digests_checked == len(SYMBOLS) and replay.stats.mismatches == []


def test_a_clean_stop_records_the_close_of_every_connection(one_after_the_other):
    first, second, _ = one_after_the_other
    for out in (first, second):
        records = list(iter_records([out]))
        opened = sorted(r.conn_id for r in records if r.kind == fmt.OPEN)
        closes = {r.conn_id: orjson.loads(r.payload) for r in records if r.kind == fmt.CLOSE}
        # books (spot, futures) and trades (spot, futures): four connections
        assert opened == [0, 1, 2, 3] and sorted(closes) == [0, 1, 2, 3]
        assert all(c["reason"] == CLOSED_BY_APP for c in closes.values())
