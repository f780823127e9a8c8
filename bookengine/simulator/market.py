"""A seeded market model per topic: the true book at every seqNum, and its frames.

Pure: no I/O, no clock. The server drives one model per (symbol, grouping) and sends its
frames; tests and benchmarks use it directly. The shape follows what PROTOCOL.md saw on
the live socket: a 50-level window per side (levels leaving it are sent as size "0"),
activity concentrated near the top, heavy deletions, levels in no particular order,
snapshot asks worst-first, prices printed with the tick's decimals (at least one).

Prices and sizes are integers inside (ticks of this grouping, size units) so the book is
exact; they become strings only in frames and in `true_book()`.
"""

from __future__ import annotations

import random
from array import array
from collections import deque
from decimal import Decimal
from itertools import chain
from typing import TypeAlias

import orjson

from bookengine import naming
from bookengine.errors import ArgumentError
from bookengine.wire import is_futures

WINDOW = 50  # levels per side the server keeps and publishes
HISTORY = 100_000  # default deltas kept to answer book_at() (~0.5 KB each)
_CHUNK = 1_000  # a full-book checkpoint every _CHUNK deltas: book_at() applies < _CHUNK
# one delta of the history: (bid changes, ask changes), each a flat price, units, ... array;
# quoted: `array` is subscriptable at run time only from Python 3.12
_Delta: TypeAlias = "tuple[array[int], array[int]]"
# a history chunk: (checkpoint seq, bids, asks, the deltas after it)
_Chunk: TypeAlias = tuple[int, dict[int, int], dict[int, int], list[_Delta]]

# Grouping g buckets prices GROUPING_TICKS[g] full-precision ticks wide (BTSE publishes no
# table; a 1-2-5 ladder keeps every grouping a plausible book at the symbol's price).
GROUPING_TICKS = (1, 2, 5, 10, 20, 50, 100, 200, 500)

# base coin -> (mid price, price decimals, contracts per coin for futures)
_MARKETS = {
    "BTC": (86_540.0, 1, 1_000),
    "ETH": (2_766.0, 2, 100),
    "SOL": (141.0, 3, 10),
    "SNDK": (1_877.0, 2, 10),
}
_OTHER = (25.0, 3, 10)
_MOVES = (-2, -1, -1, 0, 0, 0, 0, 1, 1, 2)  # mid steps in full-precision ticks
_TABLE_BITS = 12
_DRIFT_BAND = 0.03  # the mid is pulled back once it strays 3% from its start


def price_text(ticks: int, decimals: int) -> str:
    """Integer ticks -> the socket's spelling: always at least one decimal ("86626.0")."""
    shown = max(decimals, 1)
    text = str(ticks * 10 ** (shown - decimals)).rjust(shown + 1, "0")
    return f"{text[:-shown]}.{text[-shown:]}"


class MarketModel:
    """One topic's book and sequence chain (`grouping` 0 = full precision, 1..8 coarser).

    Futures sizes are integer contracts; spot sizes are base coin with 4 decimals. The
    model keeps the last `history` deltas so `book_at(seq)` can answer for any recent seq.
    """

    def __init__(
        self,
        symbol: str,
        seed: int = 1,
        grouping: int = 0,
        seq: int | None = None,
        history: int = HISTORY,
    ) -> None:
        if not 0 <= grouping < len(GROUPING_TICKS):
            raise ArgumentError(f"grouping must be 0..{len(GROUPING_TICKS) - 1}, got {grouping}")
        self.symbol = symbol
        self.grouping = grouping
        self.topic = f"update:{symbol}_{grouping}"
        self.futures = is_futures(symbol)
        mid_price, decimals, contracts = _MARKETS.get(symbol.split("-")[0], _OTHER)
        self.contracts_per_coin = contracts
        self.decimals = decimals
        self.size_decimals = 0 if self.futures else 4
        self._width = GROUPING_TICKS[grouping]  # full-precision ticks per price step
        # size units per "one typical lot": contracts, or 1e-4 coin; coarser buckets hold more
        self._lot = (contracts // 10 if self.futures else 1_000) * self._width
        rnd = self._rnd = random.Random(f"{symbol}/{grouping}/{seed}")
        # Seeded lookup tables: one getrandbits() per draw instead of a float transform
        # (generation speed is the simulator's live frame rate).
        self._sizes = [
            max(1, int(rnd.paretovariate(1.3) * self._lot * rnd.choice((0.2, 1, 1, 4))))
            for _ in range(1 << _TABLE_BITS)
        ]
        # distance from the top: geometric, so activity concentrates near the top
        self._depths = [int(rnd.expovariate(0.11)) for _ in range(1 << _TABLE_BITS)]
        self._fine_mid = round(mid_price * 10**decimals)  # full-precision ticks
        self._fine_home = self._fine_mid
        self.mid = self._fine_mid // self._width  # in this grouping's ticks
        self.seq = seq if seq is not None else self._rnd.randrange(1_000_000, 90_000_000)
        self.timestamp = 1_790_133_628_076
        self.clock_step = (1, 60)  # ms between deltas; the server stamps wall time instead
        self.bids: dict[int, int] = {}  # ticks -> size units
        self.asks: dict[int, int] = {}
        for i in range(min(WINDOW, self.mid)):
            self.bids[self.mid - i] = self._size()
        for i in range(WINDOW):
            self.asks[self.mid + 1 + i] = self._size()
        self._prices: dict[int, str] = {}
        self.last_trades: list[tuple[str, int, str]] = []  # of the last next_delta_frame()
        # every size the model draws comes from the table: format each once
        self._size_texts = {units: self.size(units) for units in (0, *self._sizes)}
        self.history = max(history, _CHUNK)
        # chunks of (checkpoint seq, bids, asks, deltas after it as (bids, asks) int arrays)
        self._chunks: deque[_Chunk] = deque()
        self._new_chunk()

    # --- formatting -------------------------------------------------------------------

    def _size(self) -> int:
        """Sizes: mostly small, a heavy tail (units: contracts, or 1e-4 coin)."""
        return self._sizes[self._rnd.getrandbits(_TABLE_BITS)]

    def price(self, ticks: int) -> str:
        text = self._prices.get(ticks)
        if text is None:
            if len(self._prices) > 100_000:
                self._prices.clear()
            text = self._prices[ticks] = price_text(ticks * self._width, self.decimals)
        return text

    def size(self, units: int) -> str:
        if units == 0:
            return "0"
        if not self.size_decimals:
            return str(units)
        whole, frac = divmod(units, 10**self.size_decimals)
        frac_text = str(frac).rjust(self.size_decimals, "0").rstrip("0")
        return f"{whole}.{frac_text}" if frac_text else str(whole)

    def _levels(self, changes: dict[int, int]) -> list[list[str]]:
        # deltas carry levels in no particular order: activity is at random prices
        # already; a random rotation mixes in the mid's and the window's changes cheaply
        items = list(changes.items())
        if len(items) > 1:
            k = self._rnd.randrange(len(items))
            items = items[k:] + items[:k]
        prices, sizes, price, size = self._prices, self._size_texts, self.price, self.size
        return [
            [prices[p] if p in prices else price(p), sizes[s] if s in sizes else size(s)]
            for p, s in items
        ]

    def _frame(
        self,
        typ: str,
        bids: list[list[str]],
        asks: list[list[str]],
        seq: int,
        prev: int,
        topic: str,
    ) -> bytes:
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

    def _snapshot(
        self, bids: dict[int, int], asks: dict[int, int], seq: int, topic: str | None
    ) -> bytes:
        price, size = self.price, self.size
        b = [[price(p), size(bids[p])] for p in sorted(bids, reverse=True)]
        a = [[price(p), size(asks[p])] for p in sorted(asks, reverse=True)]
        return self._frame("snapshot", b, a, seq, seq - 1, topic or self.topic)

    # --- frames -------------------------------------------------------------------------

    def snapshot_frame(self, topic: str | None = None) -> bytes:
        """The full book now: bids best-first, asks worst-first (best ask last)."""
        return self._snapshot(self.bids, self.asks, self.seq, topic)

    def snapshot_frame_at(self, seq: int, topic: str | None = None) -> bytes:
        """The snapshot of the book right after `seq` (KeyError if out of the history)."""
        return self._snapshot(*self.book_at(seq), seq, topic)

    def stale_snapshot_frame(self, back: int = 5, topic: str | None = None) -> bytes:
        """A snapshot of the book `back` seqNums ago, carrying that older seqNum (or of the
        oldest kept seqNum, which may be the current one on a brand-new topic)."""
        return self.snapshot_frame_at(max(self.oldest_seq, self.seq - back), topic)

    def next_delta_frame(self) -> bytes:
        """Advance the book one step and return the delta that describes it. The trades
        that took liquidity at the touch in that step are in `last_trades`."""
        bids, asks = self.bids, self.asks
        best_bid = max(bids) if bids else 0  # 0: no level (prices are > 0)
        best_ask = min(asks) if asks else 0
        touch = (best_bid, bids.get(best_bid, 0), best_ask, asks.get(best_ask, 0))
        bid_changes, ask_changes = self._step()
        self.last_trades = self._trades_at_touch(touch)
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
        """Fault: a delta (next seqNum) after which the book it describes is crossed (a bid
        at the best ask). The true book does not change, so `book_at` of this seqNum and
        the next snapshot are sane: a client that resyncs recovers."""
        self.seq += 1
        self._remember({}, {})
        bids = [[self.price(min(self.asks)), self.size(self._size())]]
        return self._frame("delta", bids, [], self.seq, self.seq - 1, self.topic)

    def _trades_at_touch(self, touch: tuple[int, int, int, int]) -> list[tuple[str, int, str]]:
        """(price text, size units, taker side) for liquidity the step took at the old
        touch: a bid level shrinking is a SELL printing there, an ask level a BUY."""
        best_bid, bid_units, best_ask, ask_units = touch
        trades = []
        if best_bid and bid_units > self.bids.get(best_bid, 0):
            trades.append((self.price(best_bid), bid_units - self.bids.get(best_bid, 0), "SELL"))
        if best_ask and ask_units > self.asks.get(best_ask, 0):
            trades.append((self.price(best_ask), ask_units - self.asks.get(best_ask, 0), "BUY"))
        return trades

    def market_row(self) -> dict[str, object]:
        """This market as BTSE's markets API describes it (consistent with what it
        streams: the price grid, the size units, the contract size)."""
        names = naming.names(self.symbol)
        base, _, quote = self.symbol.partition("-")
        if self.futures:
            kind = "FuturesTimeBased" if not self.symbol.endswith("-PERP") else "FuturesPerpetual"
            quote = "USDT"
        else:
            kind = "Spot"
        size_step = "1" if not self.size_decimals else f"0.{'0' * (self.size_decimals - 1)}1"
        tick = f"0.{'0' * (self.decimals - 1)}1" if self.decimals else "1"
        return {
            "symbol": names.markets_api,
            "type": kind,
            "tradeCurrency": self.symbol,
            "baseCurrency": base,
            "quoteCurrency": quote,
            "active": True,
            "minPriceIncrement": tick,
            "pricePrecision": self.decimals,
            "minSizeIncrement": size_step,
            "sizePrecision": self.size_decimals,
            "contractSize": (
                format(Decimal(1) / Decimal(self.contracts_per_coin), "f") if self.futures else "1"
            ),
        }

    def restart_chain(self, seq: int | None = None) -> None:
        """Fault: the exchange restarts this topic's sequence with a new, lower chain. The
        history is forgotten: `book_at` answers from the restart on."""
        self.seq = seq if seq is not None else self._rnd.randrange(1_000, 900_000)
        self._chunks.clear()
        self._new_chunk()

    def l1_frame(self, topic: str | None = None) -> bytes:
        """`snapshotL1:SYM`: best bid and ask now, no sequence numbers."""
        bid, ask = max(self.bids), min(self.asks)
        data = {
            "bids": [[self.price(bid), self.size(self.bids[bid])]],
            "asks": [[self.price(ask), self.size(self.asks[ask])]],
            "type": "snapshotL1",
            "symbol": self.symbol,
            "timestamp": self.timestamp,
        }
        return orjson.dumps({"topic": topic or f"snapshotL1:{self.symbol}", "data": data})

    # --- the truth ----------------------------------------------------------------------

    def true_book(self) -> tuple[dict[str, str], dict[str, str]]:
        """The book now: price string -> size string, per side."""
        return self._as_text(self.bids, self.asks)

    @property
    def oldest_seq(self) -> int:
        """The oldest seqNum `book_at` can still answer for."""
        return self._chunks[0][0]

    def book_at(self, seq: int) -> tuple[dict[int, int], dict[int, int]]:
        """The book right after `seq` (ticks -> units). KeyError once it left the history."""
        if not self.oldest_seq <= seq <= self.seq:
            raise KeyError(
                f"{self.topic}: seqNum {seq} is outside the kept history "
                f"[{self.oldest_seq}, {self.seq}] (at least the last {self.history} are kept)"
            )
        chunk = next(c for c in reversed(self._chunks) if c[0] <= seq)
        base, bids, asks, deltas = chunk
        bids, asks = dict(bids), dict(asks)
        for bid_changes, ask_changes in deltas[: seq - base]:
            _apply(bids, bid_changes)
            _apply(asks, ask_changes)
        return bids, asks

    def book_text_at(self, seq: int) -> tuple[dict[str, str], dict[str, str]]:
        """`book_at` with the socket's strings: price string -> size string, per side."""
        return self._as_text(*self.book_at(seq))

    def _as_text(
        self, bids: dict[int, int], asks: dict[int, int]
    ) -> tuple[dict[str, str], dict[str, str]]:
        return (
            {self.price(p): self.size(s) for p, s in bids.items()},
            {self.price(p): self.size(s) for p, s in asks.items()},
        )

    def _new_chunk(self) -> None:
        self._chunks.append((self.seq, dict(self.bids), dict(self.asks), []))
        if len(self._chunks) > self.history // _CHUNK + 1:
            self._chunks.popleft()

    def _remember(self, bid_changes: dict[int, int], ask_changes: dict[int, int]) -> None:
        # flat int arrays: ~10x smaller than the dicts, and history is most of the memory
        deltas = self._chunks[-1][3]
        deltas.append(
            (
                array("q", chain.from_iterable(bid_changes.items())),
                array("q", chain.from_iterable(ask_changes.items())),
            )
        )
        if len(deltas) >= _CHUNK:
            self._new_chunk()

    # --- the random walk ------------------------------------------------------------------

    def _step(self) -> tuple[dict[int, int], dict[int, int]]:
        rnd = self._rnd
        bids, asks = self.bids, self.asks
        bid_changes: dict[int, int] = {}
        ask_changes: dict[int, int] = {}
        move = rnd.choice(_MOVES)
        stray = self._fine_mid - self._fine_home
        if abs(stray) > _DRIFT_BAND * self._fine_home and rnd.random() < 0.3:
            move = -1 if stray > 0 else 1  # a weak pull home: prices stay plausible forever
        self._fine_mid += move
        mid = self.mid = self._fine_mid // self._width
        # the mid moved through some levels: they are gone (bids <= mid < asks)
        if bids and max(bids) > mid:
            for p in [p for p in bids if p > mid]:
                del bids[p]
                bid_changes[p] = 0
        if asks and min(asks) <= mid:
            for p in [p for p in asks if p <= mid]:
                del asks[p]
                ask_changes[p] = 0
        size, depths, bits = self._size, self._depths, self._rnd.getrandbits
        sides = ((bids, bid_changes, mid, -1), (asks, ask_changes, mid + 1, 1))
        for side, changes, top, sign in sides:
            for _ in range(9 + bits(4)):
                price = top + sign * depths[bits(_TABLE_BITS)]
                if price <= 0:
                    continue
                if price in side and bits(4) < 11:  # a touched level: ~70% it is deleted
                    del side[price]
                    changes[price] = 0
                else:
                    side[price] = changes[price] = size()
            # keep the book deep: refill from behind the window edge
            while len(side) < WINDOW:
                edge = (min(side) if sign < 0 else max(side)) if side else top - sign
                price = edge + sign * (1 + bits(1) + bits(1))
                if price <= 0:
                    break  # a cheap coin's coarse bids: a thin book, never a price <= 0
                side[price] = changes[price] = size()
            # the 50-level window: what leaves it is published as size 0
            while len(side) > WINDOW:
                price = min(side) if sign < 0 else max(side)
                del side[price]
                changes[price] = 0
        return bid_changes, ask_changes


def _apply(side: dict[int, int], changes: array[int]) -> None:
    for i in range(0, len(changes), 2):
        price, units = changes[i], changes[i + 1]
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
