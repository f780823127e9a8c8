"""A seeded market model per topic: the true book at every seqNum, and its frames.

Pure: no I/O, no clock. The server drives one model per (symbol, grouping) and sends its
frames; tests and benchmarks use it directly. The shape follows what PROTOCOL.md saw on
the live socket: a 50-level window per side (levels leaving it are sent as size "0"),
activity concentrated near the top, heavy deletions, levels in no particular order,
snapshot asks worst-first, prices printed with the tick's decimals (at least one).
"""

from __future__ import annotations

import random
from collections import deque

import orjson

from bookengine.wire import is_futures

WINDOW = 50  # levels per side the server keeps and publishes
HISTORY = 200_000  # deltas kept to answer book_at(); older seqNums are folded into a base

# base coin -> (mid price, price decimals) for a realistic tick; others get (25.0, 3)
_MARKETS = {"BTC": (86_540.0, 1), "ETH": (2_766.0, 2), "SOL": (141.0, 3), "SNDK": (1_877.0, 2)}


def price_text(ticks: int, decimals: int) -> str:
    """Integer ticks -> the socket's spelling: always at least one decimal ("86626.0")."""
    shown = max(decimals, 1)
    text = str(ticks * 10 ** (shown - decimals)).rjust(shown + 1, "0")
    return f"{text[:-shown]}.{text[-shown:]}"


class MarketModel:
    """One topic's book and sequence chain (`grouping` 0 = full precision, 1..8 coarser).

    Futures sizes are integer contracts; spot sizes are base coin with 4 decimals.
    """

    def __init__(self, symbol: str, seed: int = 1, grouping: int = 0, seq: int | None = None):
        self.symbol = symbol
        self.grouping = grouping
        self.topic = f"update:{symbol}_{grouping}"
        self.futures = is_futures(symbol)
        base = symbol.split("-")[0]
        mid_price, decimals = _MARKETS.get(base, (25.0, 3))
        # A coarser grouping: ticks 10**grouping times wider, fewer decimals shown.
        self.decimals = max(decimals - grouping, 0)
        self._tick_mult = 10 ** max(grouping - decimals, 0)
        self.size_decimals = 0 if self.futures else 4
        self._rnd = random.Random(f"{symbol}/{grouping}/{seed}")
        self.mid = int(mid_price * 10**self.decimals) // self._tick_mult  # in ticks
        self.seq = seq if seq is not None else self._rnd.randrange(1_000_000, 90_000_000)
        self.timestamp = 1_790_133_628_076
        self.clock_step = (1, 60)  # ms between deltas; the server stamps wall time instead
        self.bids: dict[int, int] = {}  # ticks -> size units
        self.asks: dict[int, int] = {}
        for i in range(WINDOW):
            self.bids[self.mid - 1 - i] = self._size()
            self.asks[self.mid + 1 + i] = self._size()
        self._base = (self.seq, dict(self.bids), dict(self.asks))
        self._history: deque[tuple[int, dict[int, int], dict[int, int]]] = deque()

    # --- formatting -------------------------------------------------------------------

    def _size(self) -> int:
        """Sizes: mostly small, a heavy tail (units: contracts, or 1e-4 coin)."""
        scale = 1 if self.futures else 10_000
        return max(1, int(self._rnd.paretovariate(1.2) * scale * self._rnd.choice((1, 5, 20))))

    def price(self, ticks: int) -> str:
        return price_text(ticks * self._tick_mult, self.decimals)

    def size(self, units: int) -> str:
        if units == 0:
            return "0"
        if not self.size_decimals:
            return str(units)
        whole, frac = divmod(units, 10**self.size_decimals)
        frac_text = str(frac).rjust(self.size_decimals, "0").rstrip("0")
        return f"{whole}.{frac_text}" if frac_text else str(whole)

    def _levels(self, changes: dict[int, int]) -> list[list[str]]:
        items = list(changes.items())
        self._rnd.shuffle(items)  # deltas carry levels in no particular order
        return [[self.price(p), self.size(s)] for p, s in items]

    def _frame(self, typ: str, bids: list, asks: list, seq: int, prev: int, topic: str) -> bytes:
        data = {
            "bids": bids,
            "asks": asks,
            "seqNum": seq,
            "prevSeqNum": prev,
            "type": typ,
            "symbol": self.symbol,
            "timestamp": self.timestamp,
        }
        return orjson.dumps({"topic": topic, "data": data})

    # --- frames -------------------------------------------------------------------------

    def snapshot_frame(self, topic: str | None = None) -> bytes:
        """The full book now: bids best-first, asks worst-first (best ask last)."""
        bids = [[self.price(p), self.size(self.bids[p])] for p in sorted(self.bids, reverse=True)]
        asks = [[self.price(p), self.size(self.asks[p])] for p in sorted(self.asks, reverse=True)]
        return self._frame("snapshot", bids, asks, self.seq, self.seq - 1, topic or self.topic)

    def stale_snapshot_frame(self, back: int = 5, topic: str | None = None) -> bytes:
        """A snapshot of the book `back` seqNums ago, carrying that older seqNum."""
        seq = max(self._base[0], self.seq - back)
        bids, asks = self.book_at(seq)
        b = [[self.price(p), self.size(bids[p])] for p in sorted(bids, reverse=True)]
        a = [[self.price(p), self.size(asks[p])] for p in sorted(asks, reverse=True)]
        return self._frame("snapshot", b, a, seq, seq - 1, topic or self.topic)

    def next_delta_frame(self) -> bytes:
        """Advance the book one step and return the delta that describes it."""
        bid_changes, ask_changes = self._step()
        self.seq += 1
        if self.clock_step[1]:
            self.timestamp += self._rnd.randint(*self.clock_step)
        self._remember(bid_changes, ask_changes)
        return self._frame(
            "delta",
            self._levels(bid_changes),
            self._levels(ask_changes),
            self.seq,
            self.seq - 1,
            self.topic,
        )

    def crossed_delta_frame(self) -> bytes:
        """Fault: a delta (next seqNum) after which the book it describes is crossed. The
        true book does not change: a client that resyncs gets a sane snapshot."""
        self.seq += 1
        self._remember({}, {})
        best_ask = min(self.asks)
        bids = [[self.price(best_ask), self.size(self._size())]]
        return self._frame("delta", bids, [], self.seq, self.seq - 1, self.topic)

    def l1_frame(self) -> bytes:
        bid, ask = max(self.bids), min(self.asks)
        data = {
            "bids": [[self.price(bid), self.size(self.bids[bid])]],
            "asks": [[self.price(ask), self.size(self.asks[ask])]],
            "type": "snapshotL1",
            "symbol": self.symbol,
            "timestamp": self.timestamp,
        }
        return orjson.dumps({"topic": f"snapshotL1:{self.symbol}", "data": data})

    # --- the truth ----------------------------------------------------------------------

    def true_book(self) -> tuple[dict[str, str], dict[str, str]]:
        """The book now: price string -> size string, per side."""
        return self._as_text(self.bids, self.asks)

    def book_at(self, seq: int) -> tuple[dict[int, int], dict[int, int]]:
        """The book right after `seq` (ticks -> units). KeyError once it left the history."""
        base_seq, bids, asks = self._base
        if not base_seq <= seq <= self.seq:
            raise KeyError(
                f"{self.topic}: seqNum {seq} is outside the kept history "
                f"[{base_seq}, {self.seq}] (at most {HISTORY} deltas are kept)"
            )
        bids, asks = dict(bids), dict(asks)
        for s, bid_changes, ask_changes in self._history:
            if s > seq:
                break
            _apply(bids, bid_changes)
            _apply(asks, ask_changes)
        return bids, asks

    def book_text_at(self, seq: int) -> tuple[dict[str, str], dict[str, str]]:
        return self._as_text(*self.book_at(seq))

    def _as_text(self, bids: dict[int, int], asks: dict[int, int]) -> tuple[dict, dict]:
        return (
            {self.price(p): self.size(s) for p, s in bids.items()},
            {self.price(p): self.size(s) for p, s in asks.items()},
        )

    def _remember(self, bid_changes: dict[int, int], ask_changes: dict[int, int]) -> None:
        self._history.append((self.seq, bid_changes, ask_changes))
        if len(self._history) > HISTORY:
            seq, b, a = self._history.popleft()
            _, bids, asks = self._base
            _apply(bids, b)
            _apply(asks, a)
            self._base = (seq, bids, asks)

    # --- the random walk ------------------------------------------------------------------

    def _step(self) -> tuple[dict[int, int], dict[int, int]]:
        rnd = self._rnd
        bid_changes: dict[int, int] = {}
        ask_changes: dict[int, int] = {}
        move = rnd.choice((-2, -1, -1, 0, 0, 0, 0, 1, 1, 2))
        self.mid += move
        # the mid moved through some levels: they are gone
        for p in [p for p in self.bids if p >= self.mid]:
            del self.bids[p]
            bid_changes[p] = 0
        for p in [p for p in self.asks if p <= self.mid]:
            del self.asks[p]
            ask_changes[p] = 0
        for side, changes, sign in ((self.bids, bid_changes, -1), (self.asks, ask_changes, 1)):
            for _ in range(rnd.randint(8, 20)):
                # activity concentrated near the top: geometric distance from the mid
                price = self.mid + sign * (1 + int(rnd.expovariate(0.12)))
                if price in side and rnd.random() < 0.6:
                    del side[price]
                    changes[price] = 0
                else:
                    side[price] = changes[price] = self._size()
            # keep the book deep: refill from behind the window edge
            while len(side) < WINDOW:
                edge = (min(side) if sign < 0 else max(side)) if side else self.mid
                price = edge + sign * rnd.randint(1, 3)
                side[price] = changes[price] = self._size()
            # the 50-level window: what leaves it is published as size 0
            if len(side) > WINDOW:
                ordered = sorted(side, reverse=sign < 0)
                for price in ordered[WINDOW:]:
                    del side[price]
                    changes[price] = 0
        return bid_changes, ask_changes


def _apply(side: dict[int, int], changes: dict[int, int]) -> None:
    for price, units in changes.items():
        if units:
            side[price] = units
        else:
            side.pop(price, None)


def realistic_frames(symbol: str = "BTC-PERP", n: int = 10_000, seed: int = 1) -> list[bytes]:
    """A snapshot then `n` deltas of one topic: the benchmarks' and tests' standard load."""
    model = MarketModel(symbol, seed=seed)
    frames = [model.snapshot_frame()]
    frames.extend(model.next_delta_frame() for _ in range(n))
    return frames
