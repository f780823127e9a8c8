"""`StreamFollower`: one published stream's entries in, the publisher's events out (pure).

It runs a `BookSync` of its own on the very inputs the publisher's had (frames, calls),
so its book equals the publisher's at every seq. What it adds is the fan-out's own rules:

- **Join**: a follower starts at the first entry of a publisher run (`n == 1`, the
  subscribe) or at a checkpoint (the publisher's book as a snapshot frame); entries
  before either are skipped, never applied to a book it does not have. An L1 stream
  (`snapshotL1:`) joins at any quote: each one is whole.
- **Holes**: a skipped `n` or a new epoch means entries are missing. The book is
  dropped (`out_of_sync`, reason `stream_hole`) and the follower joins again; nothing is
  applied across the hole.
- **Checks**: every checkpoint met while synced is compared with the book (seq and
  digest), counted in `stats`; a mismatch (a bug somewhere, never expected) drops the
  book for the checkpoint's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from bookengine.book import OrderBook
from bookengine.events import Event, Reason, StatusChanged, SyncStatus
from bookengine.fanout.entries import CALL, CHECKPOINT, FRAME, STOP, Entry
from bookengine.sync import BookSync, RecoveryPolicy
from bookengine.wire import Topic


@dataclass
class FollowerStats:
    entries: int = 0
    frames: int = 0
    skipped: int = 0  # entries before a join point: nothing to apply them to
    holes: int = 0
    joins: int = 0  # starts: at a publisher run's first entry or from a checkpoint
    checkpoints_adopted: int = 0
    digests_checked: int = 0
    digest_mismatches: int = 0
    bad_entries: int = 0


class StreamFollower:
    """Follows one stream (`update:BTC-PERP_0`, `snapshotL1:ETH-USD`, any spelling)."""

    def __init__(self, topic: str, *, book_updates: bool = False) -> None:
        parsed = Topic.parse(topic)
        self.topic = parsed.wire
        self.key = parsed.key
        self.symbol = parsed.symbol
        self.grouping = parsed.grouping
        self.is_l1 = parsed.kind == "snapshotL1"
        self.book_updates = book_updates
        self.stats = FollowerStats()
        self.epoch: bytes | None = None
        self.n = 0  # the last entry read
        self.joined = False
        self.last_ns = 0  # the publisher's time of the last record read (staleness)
        self._settings: dict[str, Any] = {}
        self.sync = self._new_sync()

    # --- queries ----------------------------------------------------------------------

    @property
    def status(self) -> SyncStatus | None:
        return self.sync.status(self.key, None) if self.joined else None

    def book(self) -> OrderBook | None:
        return self.sync.book(self.key, None)

    def last_seq(self) -> int | None:
        return self.sync.last_seq(self.key, None)

    # --- input ------------------------------------------------------------------------

    def apply(self, entry: Entry) -> list[Event]:
        """The next entry read from the stream: the events it causes. A record that makes
        no sense (a call that is not JSON...) is a hole, never an exception."""
        try:
            return self._apply(entry)
        except (ValueError, TypeError, KeyError, AttributeError, orjson.JSONDecodeError) as exc:
            return self.bad_entry(entry.ns, f"{type(exc).__name__}: {exc}")

    def lost(self, now_ns: int, reason: Reason, detail: str) -> list[Event]:
        """The stream cannot be trusted any more (Redis lost, the publisher silent): drop
        the book and join again."""
        events: list[Event] = []
        if self.joined:
            self._leave(now_ns, reason, detail, events)
        self.epoch = None
        return events

    def _apply(self, entry: Entry) -> list[Event]:
        self.stats.entries += 1
        self.last_ns = entry.ns
        events: list[Event] = []
        if entry.epoch != self.epoch or entry.n != self.n + 1:
            if self.epoch is not None or self.joined:
                self._hole(entry, events)
            self.epoch = entry.epoch
        self.n = entry.n
        if not self.joined:
            if entry.n == 1:
                self._join()  # the publisher's run starts here: every input follows
            elif entry.kind == CHECKPOINT:
                self._join()
                return self._adopt(entry, events)
            elif self.is_l1 and entry.kind == FRAME:
                self._join()
                self.sync.subscribe([self.topic], entry.ns)  # silent: the quote says it
            else:
                self.stats.skipped += 1
                return events
        kind = entry.kind
        if kind == FRAME:
            self.stats.frames += 1
            events.extend(self.sync.feed(entry.ns, entry.payload))
        elif kind == CALL:
            events.extend(self._call(entry))
        elif kind == CHECKPOINT:
            self._check(entry, events)
        elif kind == STOP:
            why = entry.payload.decode(errors="replace")
            self._leave(entry.ns, Reason.PUBLISHER_STOPPED, why, events)
        self.sync.take_actions()  # resubscribing is the publisher's job
        return events

    def bad_entry(self, now_ns: int, detail: str) -> list[Event]:
        """An entry that could not be decoded: whatever it was is missing."""
        self.stats.bad_entries += 1
        events: list[Event] = []
        if self.joined:
            self.stats.holes += 1
            self._leave(now_ns, Reason.STREAM_HOLE, f"unreadable entry: {detail}", events)
        self.epoch = None
        return events

    # --- the rules --------------------------------------------------------------------

    def _hole(self, entry: Entry, events: list[Event]) -> None:
        if entry.epoch != self.epoch:
            detail = "a new publisher run" if self.epoch is not None else "joined mid-stream"
        else:
            detail = f"entries {self.n + 1}..{entry.n - 1} are missing"
        if self.joined:
            self.stats.holes += 1
            self._leave(entry.ns, Reason.STREAM_HOLE, detail, events)
        elif self.epoch is not None and entry.epoch == self.epoch:
            self.stats.holes += 1

    def _join(self) -> None:
        self.joined = True
        self.stats.joins += 1

    def _leave(self, now_ns: int, reason: Reason, detail: str, events: list[Event]) -> None:
        """Drop the book; wait for the next join point."""
        status = self.sync.status(self.key, None)
        if status is not None and status not in (SyncStatus.OUT_OF_SYNC, SyncStatus.UNSUBSCRIBED):
            events.append(
                StatusChanged(
                    now_ns, self.symbol, self.grouping, SyncStatus.OUT_OF_SYNC, reason, detail,
                    self.key,
                )
            )  # fmt: skip
        self.joined = False
        self.sync = self._new_sync()

    def _new_sync(self) -> BookSync:
        settings = self._settings
        recovery = settings.get("recovery")
        return BookSync(
            book_updates=self.book_updates,
            snapshot_timeout_s=float(settings.get("snapshot_timeout_s", 10.0)),
            recovery=RecoveryPolicy(**recovery) if isinstance(recovery, dict) else None,
        )

    def _adopt(self, entry: Entry, events: list[Event]) -> list[Event]:
        """Take the publisher's book from a checkpoint (a snapshot frame of the stream)."""
        self.stats.checkpoints_adopted += 1
        sync = self.sync
        if sync.status(self.key, None) is None:
            sync.subscribe([self.topic], entry.ns)  # silent: the snapshot's event says it
        events.extend(sync.feed(entry.ns, entry.payload))
        sync.take_actions()
        return events

    def _check(self, entry: Entry, events: list[Event]) -> None:
        book = self.book()
        if book is None:
            self._adopt(entry, events)
            return
        self.stats.digests_checked += 1
        if entry.seq == self.last_seq() and entry.digest == book.digest():
            return
        self.stats.digest_mismatches += 1
        detail = f"checkpoint seq {entry.seq} digest {entry.digest} differs from the book"
        self._leave(entry.ns, Reason.STREAM_HOLE, detail, events)
        self._join()
        self._adopt(entry, events)

    def _call(self, entry: Entry) -> list[Event]:
        call = orjson.loads(entry.payload)
        name = call.get("call")
        topics = call.get("topics") or []
        sync = self.sync
        if name == "subscribe":
            mine = [t for t in topics if _key(t) == self.key]
            settings = {k: call[k] for k in ("snapshot_timeout_s", "recovery") if k in call}
            if mine and settings and settings != self._settings:
                self._settings = settings  # the publisher's core: the same statuses
                self.sync = sync = self._new_sync()  # a subscribe starts afresh anyway
            return sync.subscribe(mine, entry.ns) if mine else []
        if name == "unsubscribe":
            mine = [t for t in topics if _key(t) == self.key]
            return sync.unsubscribe(mine, entry.ns) if mine else []
        if name == "connection_lost":
            return sync.connection_lost(entry.ns)
        if name == "check_timeouts":
            return sync.check_timeouts(entry.ns)
        return []


def _key(topic: str) -> str | None:
    try:
        return Topic.parse(topic).key
    except ValueError:
        return None
