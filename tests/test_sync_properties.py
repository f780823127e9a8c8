"""Property tests: BookSync vs a tiny reference model, on random streams with faults.

The "server" below keeps the true book at every seqNum and emits snapshot/delta frames;
faults (drop, duplicate, reorder, crossing delta, stale snapshot, respelled prices) are
drawn by hypothesis. The reference client is the PROTOCOL.md rule table written as
plainly as possible, with Decimal keys and a dict per side.
"""

from decimal import Decimal

import pytest
from frames import delta, snapshot
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bookengine import BookSync, StatusChanged, SyncStatus, TopOfBook

FAILED = (SyncStatus.OUT_OF_SYNC, SyncStatus.FAILING)

pytestmark = pytest.mark.usefixtures("book_impl")

T = "update:BTC-PERP_0"


def spell(tick: int, zeros: int) -> str:
    """Price tick -> a decimal string with 0..2 extra trailing zeros (one level, many spellings)."""
    text = str(Decimal(tick) / 10)
    return text + "0" * zeros if "." in text else text + ("." + "0" * zeros if zeros else "")


class Server:
    def __init__(self):
        self.seq = 100
        self.bids = {990: 1, 980: 2}  # tick -> size
        self.asks = {1010: 1, 1020: 2}
        self.history = {self.seq: (dict(self.bids), dict(self.asks))}

    def snapshot_frame(self, zeros: int, seq: int | None = None) -> bytes:
        seq = self.seq if seq is None else seq
        bids, asks = self.history[seq]
        return snapshot(
            seq,
            [[spell(p, zeros), str(s)] for p, s in sorted(bids.items(), reverse=True)],
            [[spell(p, zeros), str(s)] for p, s in sorted(asks.items(), reverse=True)],
        )

    def delta_frame(self, changes: list, zeros: int) -> bytes:
        bids, asks = [], []
        for side_is_bid, tick, size in changes:
            side = self.bids if side_is_bid else self.asks
            if size:
                side[tick] = size
            else:
                side.pop(tick, None)
            (bids if side_is_bid else asks).append([spell(tick, zeros), str(size)])
        self.seq += 1
        self.history[self.seq] = (dict(self.bids), dict(self.asks))
        return delta(self.seq, bids, asks)


class RefClient:
    """PROTOCOL.md's table, literally."""

    def __init__(self):
        self.synced = False
        self.last = -1
        self.bids: dict[Decimal, Decimal] = {}
        self.asks: dict[Decimal, Decimal] = {}

    def frame(self, typ, seq, prev, bids, asks) -> bool:
        """Apply one frame; True if the book went out of sync on it."""
        if typ == "snapshot":
            # only an unsolicited older snapshot is stale; while out of sync, a snapshot
            # answers our resubscribe and is taken whatever its seqNum
            if self.synced and seq < self.last:
                self.synced = False
                return True
            self.bids = {Decimal(p): Decimal(s) for p, s in bids if Decimal(s)}
            self.asks = {Decimal(p): Decimal(s) for p, s in asks if Decimal(s)}
            self.last = seq
        else:
            if not self.synced:
                return False
            if prev != self.last:
                self.synced = False
                return True
            for levels, side in ((bids, self.bids), (asks, self.asks)):
                for p, s in levels:
                    if Decimal(s):
                        side[Decimal(p)] = Decimal(s)
                    else:
                        side.pop(Decimal(p), None)
            self.last = seq
        if self.bids and self.asks and max(self.bids) >= min(self.asks):
            self.synced = False
            return True
        self.synced = True
        return False

    def top(self):
        b = max(self.bids) if self.bids else None
        a = min(self.asks) if self.asks else None
        return (b, self.bids.get(b), a, self.asks.get(a))


# A valid server book never crosses by itself: bids below tick 1000, asks above it.
level = st.builds(
    lambda is_bid, offset, size: (is_bid, 999 - offset if is_bid else 1001 + offset, size),
    st.booleans(),
    st.integers(0, 99),
    st.sampled_from([0, 0, 0, 1, 2, 5, 7]),
)
op = st.one_of(
    st.tuples(st.just("delta"), st.lists(level, min_size=0, max_size=8)),
    st.tuples(st.just("drop"), st.lists(level, min_size=1, max_size=4)),
    st.tuples(st.just("duplicate"), st.just(None)),
    st.tuples(st.just("reorder"), st.lists(level, min_size=1, max_size=4)),
    st.tuples(st.just("cross"), st.just(None)),
    st.tuples(st.just("stale"), st.just(None)),
    st.tuples(st.just("resnapshot"), st.just(None)),
)


def parsed(raw):
    import orjson

    d = orjson.loads(raw)["data"]
    return d["type"], d["seqNum"], d["prevSeqNum"], d["bids"], d["asks"]


def as_decimal(book_side: dict) -> dict:
    return {Decimal(repr(p)): Decimal(repr(s)) for p, s in book_side.items()}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(op, min_size=1, max_size=60), zeros=st.integers(0, 2))
def test_booksync_matches_reference_under_faults(ops, zeros):
    server, ref, sync = Server(), RefClient(), BookSync()
    sync.subscribe([T], 0)
    clock = 0
    fed = 0
    last_sent = None

    def deliver(raw):
        nonlocal clock, fed, last_sent
        clock += 1
        fed += 1
        last_sent = raw
        events = sync.feed(clock, raw)
        went_out = ref.frame(*parsed(raw))
        statuses = [e for e in events if isinstance(e, StatusChanged)]
        tops = [e for e in events if isinstance(e, TopOfBook)]
        resubs = sync.take_actions()
        if went_out and not resubs:
            # the recovery budget delayed it: it falls due later, never lost
            assert T in sync._retries
            clock += 200 * 10**9
            sync.check_timeouts(clock)
            resubs = sync.take_actions()
        # every gap/cross/stale the reference sees, BookSync reports with one resubscribe
        assert len(resubs) == went_out, (events, ref.last)
        if went_out:
            assert not tops and sync.status("BTC-PERP") in FAILED
            if statuses:
                assert statuses[0].status in FAILED
            else:  # already reported failing: no news
                assert sync.status(T) is SyncStatus.FAILING
        # same status, same book
        assert (sync.status("BTC-PERP") is SyncStatus.SYNCED) == ref.synced
        book = sync.book("BTC-PERP")
        if ref.synced:
            bids, asks = book.as_dict()
            assert as_decimal(bids) == ref.bids and as_decimal(asks) == ref.asks
            # and the reference equals the server's truth at that seqNum
            tb, ta = server.history[ref.last]
            assert ref.bids == {Decimal(spell(p, 0)): Decimal(s) for p, s in tb.items()}
            assert ref.asks == {Decimal(spell(p, 0)): Decimal(s) for p, s in ta.items()}
        else:
            assert book is None
        # a top-of-book event only from a synced book, and it is that book's top
        for top in tops:
            assert ref.synced
            b, bs, a, as_ = ref.top()
            assert (top.bid_price, top.bid_size, top.ask_price, top.ask_size) == (
                None if b is None else float(b),
                None if bs is None else float(bs),
                None if a is None else float(a),
                None if as_ is None else float(as_),
            )
        if resubs:  # the I/O layer would resubscribe: the server answers with a snapshot
            deliver(server.snapshot_frame(zeros))

    deliver(server.snapshot_frame(zeros))
    for kind, arg in ops:
        if kind == "delta":
            deliver(server.delta_frame(arg, zeros))
        elif kind == "drop":
            server.delta_frame(arg, zeros)  # sent into the void: a gap
        elif kind == "duplicate" and last_sent is not None:
            deliver(last_sent)
        elif kind == "reorder":
            first = server.delta_frame(arg, zeros)
            second = server.delta_frame(arg[::-1], zeros)
            deliver(second)
            deliver(first)
        elif kind == "cross" and server.asks:
            best_ask = min(server.asks)
            # a bid at/above the best ask: the server's own book is crossed at this seq
            crossing = server.delta_frame([(True, best_ask, 3)], zeros)
            server.bids.pop(best_ask, None)  # repaired: the next snapshot is sane
            server.history[server.seq] = (dict(server.bids), dict(server.asks))
            deliver(crossing)
        elif kind == "stale" and server.seq > 100:
            deliver(server.snapshot_frame(zeros, seq=server.seq - 1))
        elif kind == "resnapshot":
            deliver(server.snapshot_frame(zeros))
    # counters add up: every frame counted once, every out-of-sync as exactly one resync
    assert sync.stats.frames == fed
    stats = sync.stats.topics[T]
    assert stats.resyncs == stats.gaps + stats.crossed + stats.stale_snapshots
