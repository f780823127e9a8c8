"""Replay makes the calls the live Feed made into BookSync (CALL records): the same
inputs, so the same events, timeouts and reconnects included."""

import asyncio

import pytest
from simclient import FAST, run

from bookengine import L1Quote, Reason, RecoveryPolicy, StatusChanged, TopOfBook
from bookengine.simulator import Faults, Simulator
from recorder import format as fmt
from recorder.reader import iter_records
from recorder.replay import Replay
from recorder.session import record_session

pytestmark = pytest.mark.integration

KEPT = (TopOfBook, StatusChanged, L1Quote)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """4 s with disconnects, drops, bad snapshots, a never-served book and an L1 stream;
    returns (directory, the live events, the faults injected)."""
    tmp_path = tmp_path_factory.mktemp("calls")
    live: list = []

    def capture(conn_id, event):
        if type(event) in KEPT:
            live.append(event)

    async def body():
        topics = ["BTC-USD", "BTC-PERP", "update:BTC-PERP_9", "snapshotL1:BTC-USD"]
        options = {
            **FAST,
            "snapshot_timeout": 0.3,
            "recovery": RecoveryPolicy(first_delay_s=0.05, max_delay_s=0.4, report_after=3),
        }
        async with Simulator(symbols=["BTC-USD", "BTC-PERP"], rate=200) as sim:

            async def script():  # scripted, not drawn: every run has each fault
                sim.set_faults(Faults(drop=0.01))
                await asyncio.sleep(1.2)
                sim.set_faults(Faults(drop=0.01, bad_snapshot=1.0))  # resyncs get bad ones
                await sim.disconnect_all()
                await asyncio.sleep(0.6)
                sim.set_faults(Faults(drop=0.01))
                await asyncio.sleep(0.8)
                await sim.disconnect_all()

            task = asyncio.create_task(script())
            await record_session(
                topics, tmp_path, url=sim.url, duration=4.0, feed_options=options,
                on_event=capture, checkpoint_interval=1.0,
            )  # fmt: skip
            await task
            return sim.stats()["injected"]

    injected = run(body(), timeout=30)
    return tmp_path, live, injected


def test_a_recording_with_timeouts_and_reconnects_replays_to_identical_events(recorded):
    tmp_path, live, injected = recorded
    reasons = {e.reason for e in live if type(e) is StatusChanged}
    # the run really had timeouts (the never-served _9), lost connections and bad frames
    assert Reason.SNAPSHOT_TIMEOUT in reasons and Reason.CONNECTION_LOST in reasons
    # 2 rounds x 4 sockets (books and trades, spot and futures)
    assert injected.get("disconnect_all") == 2 * 4 and Reason.BAD_FRAME in reasons
    calls = [r for r in iter_records([tmp_path]) if r.kind == fmt.CALL]
    names = {r.payload.split(b'"')[3] for r in calls}
    assert names == {b"subscribe", b"connection_lost", b"check_timeouts"}
    replayed = [e for e in Replay([tmp_path]).events() if type(e) in KEPT]
    assert replayed == live  # one by one, status changes from timeouts included


def test_files_without_calls_still_replay_by_inference(tmp_path):
    """A session recorded before CALL records existed (no `calls` in its header)."""
    from bookengine.simulator.market import MarketModel
    from recorder.writer import RecordingWriter

    model = MarketModel("BTC-PERP", seed=2)
    topic = "update:BTC-PERP_0"
    with RecordingWriter(tmp_path, {"symbols": [topic]}, rotate_s=None) as writer:
        writer.write_open(0, 1, "ws://sim/ws/oss/futures")
        writer.write_sent(0, 2, '{"op":"subscribe","args":["update:BTC-PERP_0"]}')
        writer.write_frame(0, 3, model.snapshot_frame())
        for i in range(50):
            writer.write_frame(0, 4 + i, model.next_delta_frame())
    replay = Replay([tmp_path])
    events = list(replay.events())
    assert events[0].status == "waiting_for_snapshot" and events[1].status == "synced"
    assert replay.book("BTC-PERP") is not None and replay.stats.frames == 51


def test_a_seek_follows_every_stream_even_those_without_a_checkpoint(recorded):
    tmp_path, live, _ = recorded
    quotes = [e for e in live if type(e) is L1Quote]
    start = quotes[len(quotes) // 2].arrival_ns
    replayed = [e for e in Replay([tmp_path], start_ns=start).events() if type(e) is L1Quote]
    expected = [q for q in quotes if q.arrival_ns >= start]
    assert expected and replayed == expected  # the L1 stream has no checkpoints


def test_checkpoints_spell_numbers_as_btse_does():
    from bookengine.book import price_parts, size_value
    from recorder.format import plain_decimal as _plain

    for number, text in [(5e-05, "0.00005"), (1e16, "10000000000000000.0"), (86626.5, "86626.5")]:
        assert _plain(number) == text
        assert size_value(text) == number and price_parts(text)
