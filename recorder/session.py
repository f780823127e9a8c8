"""A recording session: a `Feed` whose tap writes every frame and event to a `RecorderSink`.

    stats = await record_session(["BTC-USD"], "recordings/", url=sim.url, duration=10)

Frames go to the file raw, in arrival order, stamped once at receive (the Feed's stamp),
before they are even parsed. Sync status changes seen live and a periodic digest of each
synced book are written too, so a replay can prove it rebuilt the same books.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from bookengine import __version__
from bookengine.events import Event, Reason, StatusChanged, SyncStatus
from bookengine.feed import CLOSED_BY_APP, Feed
from bookengine.instruments import Instruments
from bookengine.private import is_private, stream_name
from bookengine.sync import RecoveryPolicy
from bookengine.wire import Topic, encode_checkpoint
from recorder.retention import Retention
from recorder.writer import RecorderError, RecorderSink, RecordingWriter

log = logging.getLogger(__name__)


class RecorderTap:
    """The FeedTap that records: everything the Feed sees goes to the sink, in order."""

    def __init__(self, sink: RecorderSink, on_event: Callable[[int, Event], None] | None = None):
        self.sink = sink
        self.on_event_hook = on_event
        self.gaps = 0
        self.resyncs = 0
        self.open: set[int] = set()  # connections opened and not yet closed

    def on_open(self, conn_id: int, now_ns: int, url: str) -> None:
        self.open.add(conn_id)
        self.sink.write_open(conn_id, now_ns, url)

    def on_frame(self, conn_id: int, arrival_ns: int, raw: bytes) -> None:
        self.sink.write_frame(conn_id, arrival_ns, raw)

    def on_sent(self, conn_id: int, now_ns: int, payload: str) -> None:
        self.sink.write_sent(conn_id, now_ns, payload)

    def on_call(self, conn_id: int, now_ns: int, call: str, topics: list[str]) -> None:
        self.sink.write_call(conn_id, now_ns, call, topics)

    def on_close(self, conn_id: int, now_ns: int, code: int | None, reason: str) -> None:
        self.open.discard(conn_id)
        self.sink.write_close(conn_id, now_ns, code, reason)

    def close_the_rest(self, now_ns: int) -> None:
        """After the Feed stopped: a close for every connection it did not report closed
        (Feed.close can cancel a reader before its close reaches the tap), so a file
        never shows a connection left open by a clean stop."""
        for conn_id in sorted(self.open):
            self.sink.write_close(conn_id, now_ns, None, CLOSED_BY_APP)
        self.open.clear()

    def on_event(self, conn_id: int, event: Event) -> None:
        if self.on_event_hook is not None:
            self.on_event_hook(conn_id, event)
        if type(event) is StatusChanged:
            self.gaps += event.reason == "gap"
            # books' resyncs (a private stream's reconnect is not one)
            self.resyncs += event.status == "out_of_sync" and not is_private(event.topic)
            self.sink.write_status(
                event.arrival_ns,
                event.topic,
                event.status,
                event.reason,
                conn_id=conn_id,
                detail=event.detail,
            )


@dataclass
class SessionStats:
    frames: int = 0
    bytes_in: int = 0
    records: int = 0
    compressed_bytes: int = 0
    raw_bytes: int = 0
    gaps: int = 0
    resyncs: int = 0
    lost: int = 0
    files: list[Path] = field(default_factory=list)
    current: Path | None = None
    exchange_errors: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0
    rejected: set[str] = field(default_factory=set)  # stream keys the exchange refused
    # why the session ended: "duration", "cancelled", "rejected" (every stream),
    # "startup_timeout" (no frame in time), or what SessionControl.stop was told
    stopped_by: str = ""
    disk_problem: str | None = None  # why the retention guard stopped it ("min_free")

    @property
    def ratio(self) -> float:
        return self.raw_bytes / self.compressed_bytes if self.compressed_bytes else 0.0


class SessionControl:
    """A handle on a running `record_session` for whoever runs it as a service: stop it
    (signals, disk guards), rotate its file (SIGHUP), and read its parts and each stream's
    status with the time it has held it (metrics, health)."""

    def __init__(self) -> None:
        self.feed: Feed | None = None
        self.writer: RecordingWriter | None = None
        self.sink: RecorderSink | None = None
        self.stats = SessionStats()
        self.stop_reason: str | None = None
        self.started = time.monotonic()
        # stream key -> (status, monotonic time it was entered); "connecting" before any
        self.streams: dict[str, tuple[str, float]] = {}

    def stop(self, reason: str) -> None:
        """End the session as `duration` would (final digests, finalised file)."""
        if self.stop_reason is None:
            self.stop_reason = reason

    def rotate(self) -> None:
        """Finalise the current file and start a new one."""
        if self.sink is not None:
            self.sink.rotate()

    def status_changed(self, event: StatusChanged) -> None:
        """A new status starts its clock; the same one again (a snapshot timeout of a book
        that never syncs, every 10 s) does not: health measures how long it has lasted."""
        status = str(event.status)
        held = self.streams.get(event.topic)
        if held is None or held[0] != status:
            self.streams[event.topic] = (status, time.monotonic())


async def record_session(
    topics: list[str],
    out_dir: str | Path,
    *,
    url: str = "production",
    duration: float | None = None,
    rotate_s: float | None = 3600.0,
    max_bytes: int | None = None,
    digest_interval: float = 5.0,
    checkpoint_interval: float = 60.0,
    on_status: Callable[[SessionStats], None] | None = None,
    status_interval: float = 1.0,
    feed_options: dict | None = None,
    on_event: Callable[[int, Event], None] | None = None,
    trades: bool = True,
    control: SessionControl | None = None,
    startup_timeout: float | None = None,
    stop_timeout: float = 60.0,
    retention: Retention | None = None,
    retention_interval: float = 10.0,
) -> SessionStats:
    """Record until `duration` elapses, the task is cancelled or `control.stop()` is
    called; any way the session ends with a digest of every synced book and the file is
    finalised. It also ends early, saying why in `stopped_by`, when the exchange rejected
    every stream or no frame came within `startup_timeout` seconds. Raises RecorderError
    (with the files kept) if the disk gives up, or the queued records cannot be written
    within `stop_timeout` seconds of the stop.

    `retention` (--keep, --min-free) is applied every `retention_interval` seconds; when
    it says the disk is too full, the session ends cleanly with `stopped_by` "min_free"."""
    options = dict(feed_options or {})
    # the live books' retry policy: replay needs it to report the same failing statuses
    recovery = options["recovery"] = options.get("recovery") or RecoveryPolicy()
    control = control or SessionControl()
    stats = control.stats

    def on_error(event) -> None:  # noqa: ANN001
        for error in getattr(event, "errors", ()):
            stats.exchange_errors.append(f"{error.arg or ''} {error.code}: {error.message}".strip())

    # made first (no I/O yet): the header lists which topics each connection carries
    feed = Feed(topics, url=url, on_error=on_error, trades=trades, **options)
    # the instruments of the day, so a replay years later converts units offline
    instruments = feed.instruments
    if instruments is None:
        instruments = await _fetch_instruments(url, control)
        feed.instruments = instruments  # fetched once: the feed uses the same
    if control.stop_reason is not None:  # stopped while fetching: nothing to record yet
        stats.stopped_by = control.stop_reason
        return stats
    used = sorted({Topic.parse(t).symbol for t in feed.topics if not is_private(t)})
    metadata = {
        "symbols": topics,
        "url": url,
        "library": f"bookengine {__version__}",
        "start_ns": time.time_ns(),
        "checkpoint_interval_s": checkpoint_interval,
        "recovery": dataclasses.asdict(recovery),
        # the live BookSync's timeout: a replay of the recorded calls needs the same
        "snapshot_timeout_s": options.get("snapshot_timeout", 10.0),
        "calls": True,  # the Feed's calls into BookSync are recorded (CALL records)
        # conn id -> the topics it subscribes: a replay that seeks past the subscribe
        "connections": {str(conn): list(subs) for conn, _, subs in feed.connections},
        "instruments": None if instruments is None else instruments_record(instruments, used),
    }
    keys = {stream_name(t) for t in feed.topics}

    def on_session_event(conn_id: int, event: Event) -> None:
        if type(event) is StatusChanged:
            control.status_changed(event)
            if event.reason is Reason.REJECTED and event.status is SyncStatus.UNSUBSCRIBED:
                stats.rejected.add(event.topic)
        if on_event is not None:
            on_event(conn_id, event)

    writer = RecordingWriter(out_dir, metadata, rotate_s=rotate_s, max_bytes=max_bytes)
    sink = RecorderSink(writer)
    tap = RecorderTap(sink, on_session_event)
    feed.tap = tap
    control.feed, control.writer, control.sink = feed, writer, sink

    started = control.started = time.monotonic()
    failure: RecorderError | None = None
    try:
        async with feed:
            next_digest = time.monotonic() + digest_interval
            next_checkpoint = time.monotonic()  # one as soon as the books are synced
            # cancelled (Ctrl-C) ends the session as `duration` does, final digests included
            stats.stopped_by = "cancelled"
            next_sweep = time.monotonic() + retention_interval
            files_checkpointed = 0
            with contextlib.suppress(asyncio.CancelledError):
                while True:
                    if duration is not None and time.monotonic() - started >= duration:
                        stats.stopped_by = "duration"
                        break
                    if control.stop_reason is not None:
                        stats.stopped_by = control.stop_reason
                        break
                    await asyncio.sleep(min(status_interval, 0.2))
                    if sink.error is not None:
                        failure = sink.error
                        break
                    if keys and stats.rejected >= keys:
                        stats.stopped_by = "rejected"
                        break
                    if (
                        startup_timeout is not None
                        and feed.stats().frames == 0
                        and time.monotonic() - started >= startup_timeout
                    ):
                        stats.stopped_by = "startup_timeout"
                        break
                    if retention is not None and time.monotonic() >= next_sweep:
                        next_sweep = time.monotonic() + retention_interval
                        stats.disk_problem = await asyncio.to_thread(retention.sweep)
                        if stats.disk_problem is not None:
                            log.error("stopping: %s", stats.disk_problem)
                            stats.stopped_by = "min_free"
                            break
                    if time.monotonic() >= next_digest:
                        next_digest += digest_interval
                        _write_digests(feed, sink)
                    if len(writer.files) != files_checkpointed:
                        # a file rotated: checkpoints open the new one, so a file replays
                        # on its own (a parallel export's task per file, a lost file)
                        files_checkpointed = len(writer.files)
                        next_checkpoint = time.monotonic()
                    if time.monotonic() >= next_checkpoint and _write_checkpoints(feed, sink):
                        next_checkpoint = time.monotonic() + checkpoint_interval
                    _fill(stats, feed, writer, sink, tap, started)
                    if on_status is not None:
                        on_status(stats)
            _write_digests(feed, sink)  # the books the session ends with, for replay to prove
    except asyncio.CancelledError:
        pass
    finally:
        tap.close_the_rest(time.time_ns())
        try:
            # off the event loop: meanwhile it still answers signals (a second one exits
            # at once) and metrics scrapes
            await asyncio.shield(asyncio.to_thread(sink.close, stop_timeout))
        except RecorderError as exc:
            failure = failure or exc
        except asyncio.CancelledError:  # the writer thread finishes on its own
            pass
        _fill(stats, feed, writer, sink, tap, started)
    if failure is not None:
        raise failure
    return stats


async def _fetch_instruments(url: str, control: SessionControl) -> Instruments | None:
    """The markets metadata (at most ~7 s), or None (logged) if it cannot be had. It runs
    on a daemon thread: a stop asked for meanwhile returns at once, and neither the stop
    nor the loop's shutdown waits for a fetch stuck on a silent server."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[tuple[Instruments | None, Exception | None]] = loop.create_future()

    def settle(outcome: tuple[Instruments | None, Exception | None]) -> None:
        if not done.done():
            done.set_result(outcome)

    def work() -> None:
        outcome: tuple[Instruments | None, Exception | None]
        try:
            outcome = (Instruments.fetch(url, timeout=3.0, retries=2), None)
        except Exception as exc:  # reported below, on the loop
            outcome = (None, exc)
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits any more
            loop.call_soon_threadsafe(settle, outcome)

    threading.Thread(target=work, name="bookengine-instruments", daemon=True).start()
    while not done.done():
        if control.stop_reason is not None:
            return None
        await asyncio.wait({done}, timeout=0.1)
    instruments, error = done.result()
    if error is not None:
        log.warning("recording without instrument metadata (%s): replays can only "
                    "give sizes as sent", error)  # fmt: skip
    return instruments


def _write_digests(feed: Feed, sink: RecorderSink) -> None:
    """A digest of every synced book, placed in the stream right after its last frame."""
    now = time.time_ns()
    for conn_id, _, topics in feed.connections:
        for topic in topics:
            book = feed.book(topic) if topic.startswith("update:") else None
            if book is not None:
                symbol, grouping = _split(topic)
                seq = feed.last_seq(symbol, grouping)
                sink.write_digest(now, topic, seq, book.digest(), conn_id=conn_id)


def _write_checkpoints(feed: Feed, sink: RecorderSink) -> bool:
    """Every synced book as a snapshot frame, and every trade stream's published ids, so
    a replay can start here. False if no book is synced yet."""
    now = time.time_ns()
    written = False
    for conn_id, entry in feed.trade_checkpoints():
        sink.write_checkpoint(conn_id, now, orjson.dumps(entry))
    for conn_id, _, topics in feed.connections:
        for topic in topics:
            book = feed.book(topic) if topic.startswith("update:") else None
            if book is None:
                continue
            symbol, grouping = _split(topic)
            seq = feed.last_seq(symbol, grouping)
            if seq is None:  # a synced book always has one (BookSync refuses seqNum < 0)
                continue  # never worth stopping a recording for: replay rebuilds from frames
            frame = encode_checkpoint(topic, symbol, book, seq, now)
            sink.write_checkpoint(conn_id, now, frame)
            written = True
    return written


def instruments_record(instruments: Instruments, symbols: list[str]) -> dict[str, object]:
    """The header's `instruments`: the markets rows of `symbols` exactly as fetched, with
    when and where from (a replay rebuilds `Instruments` from them, offline)."""
    rows = [i.row for i in instruments if i.symbol in symbols]
    return {"fetched_at": instruments.fetched_at, "source": instruments.source, "markets": rows}


def _split(topic: str) -> tuple[str, int | None]:
    from bookengine.wire import Topic

    parsed = Topic.parse(topic)
    return parsed.symbol, parsed.grouping


def _fill(stats, feed, writer, sink, tap, started) -> None:  # noqa: ANN001
    fs = feed.stats()
    stats.frames, stats.bytes_in = fs.frames, fs.bytes
    stats.records, stats.raw_bytes = writer.records, writer.raw_bytes
    stats.compressed_bytes = writer.compressed_bytes
    stats.gaps, stats.resyncs, stats.lost = tap.gaps, tap.resyncs, sink.lost
    stats.files, stats.current = list(writer.files), writer.current
    stats.elapsed_s = time.monotonic() - started
