"""The simulator's WebSocket server: BTSE's OSS endpoints on loopback, faults on demand.

    async with Simulator(symbols=["BTC-USD", "BTC-PERP"], rate=200) as sim:
        ...connect to sim.spot_url / sim.futures_url...

One ticker task advances every subscribed topic's market model at `rate` deltas/s and
fans each frame (encoded once) out to the subscribers. Each connection has a writer task
fed by a queue: a consumer too slow to keep `max_queue` frames drained gets error 1007
and a 1007 close, as BTSE does when its outbound buffer fills.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
import time
from collections import deque
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import TypedDict

import orjson
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from bookengine import naming
from bookengine.auth import RedactAuthFilter
from bookengine.errors import ArgumentError, TopicError
from bookengine.instruments import MARKETS_PATH
from bookengine.simulator.faults import Faults, Injected
from bookengine.simulator.market import HISTORY, MarketModel
from bookengine.simulator.private import TEST_API_KEY, TEST_SECRET, PrivateDesk
from bookengine.wire import (
    FUTURES_PATH,
    MAX_TOPICS_PER_CONNECTION,
    PATHS,
    SPOT_PATH,
    TRADE_TOPIC_KINDS,
)

log = logging.getLogger(__name__)

DEFAULT_SYMBOLS = ("BTC-USD", "ETH-USD", "BTC-PERP", "ETH-PERP")
# What the CLI's `--sim` and `simulate` list unless told otherwise: BTSE-like markets of
# every kind (spot in USD and USDT, perpetuals, dated futures, K_ markets quoted per 1000).
# Any other symbol gets BTSE's error 1000, so a typo fails as it would in production.
CATALOGUE = (
    "BTC-USD", "ETH-USD", "SOL-USD", "XRP-USD", "BTC-USDT", "ETH-USDT", "K_PEIPEI-USDT",
    "BTC-PERP", "ETH-PERP", "SOL-PERP", "XRP-PERP", "K_PEIPEI-PERP",
    "BTC-261225", "BTC-270326",
)  # fmt: skip
_TICK_S = 0.002
_MAX_PER_TICK = 500
_STALE_BACK = 3  # a stale snapshot is this many seqNums old
POISON_SEQ = 2**62  # the seqNum of a `seq_poison` delta
_LOG = logging.getLogger("websockets.server.simulator")
_LOG.addFilter(RedactAuthFilter())
_SERVED = {path: kind for kind, path in PATHS.items()}  # path -> (stream, market)
_SERVED["/ws/otc"] = ("otc", "spot")  # OTC quotes: private, authenticated
_RECENT_TRADES = 50  # the batch sent after a trade subscribe, newest first


def _error(code: int, message: str, arg: str | None = None) -> bytes:
    item: dict[str, object] = {"error": {"code": code, "message": message}}
    if arg is not None:
        item = {"arg": arg, **item}
    return orjson.dumps({"severity": "ERROR", "errors": [item]})


# a reorder slot: (topic key (symbol, grouping), bare, or "trades" for a trade stream)
_Hold = tuple[tuple[str, int], bool | str]


class SimulatorStats(TypedDict):
    """`Simulator.stats()`."""

    connections: int  # open now
    connections_total: int
    frames_sent: int
    topics: dict[str, int]  # `update:SYM_G` -> the last seqNum published
    injected: dict[str, int]  # fault kind -> how many were injected


@dataclass
class _Topic:
    """One served chain: a model and who listens (conn -> the spelling they used)."""

    key: tuple[str, int]
    model: MarketModel
    # (conn id, bare) -> the spelling used; `update:SYM` (bare) is a topic of its own
    # beside `update:SYM_0`, while folded spellings of one topic are one subscription
    subscribers: dict[tuple[int, bool], str] = field(default_factory=dict)
    carry: float = 0.0  # fractional deltas due
    ahead: deque[bytes] = field(default_factory=deque)  # pre-generated delta frames
    sent_seq: int = 0  # last seqNum published
    # snapshotL1 listeners of this grouping's book: conn id -> the topic as subscribed
    l1: dict[int, str] = field(default_factory=dict)
    silent_until: float = 0.0  # a per-topic stall: the market pauses, nothing is lost
    # public trades (grouping 0 only): conn id -> the topic echoed in its trade frames
    trade_subs: dict[int, str] = field(default_factory=dict)
    recent: deque[dict[str, object]] = field(default_factory=lambda: deque(maxlen=_RECENT_TRADES))
    tape: list[dict[str, object]] = field(default_factory=list)  # every trade printed


@dataclass
class _Conn:
    id: int
    ws: ServerConnection
    market: str  # "spot" | "futures"
    stream: str = "oss"  # "oss" (books, L1) | "main" (trades)
    queue: deque[bytes] = field(default_factory=deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    topics: set[str] = field(default_factory=set)  # subscribed topic strings, as spelled
    # (symbol, grouping) with snapshotL1 subscribed
    l1: set[tuple[str, int]] = field(default_factory=set)
    # reorder: (topic key, bare) -> held frame
    held: dict[_Hold, bytes] = field(default_factory=dict)
    stalled_until: float = 0.0
    last_rx: float = field(default_factory=time.monotonic)
    closing: bool = False


class Simulator:
    """A local BTSE OSS server, so tests and demos never depend on reaching BTSE.

    `symbols` it lists (futures on /ws/oss/futures, spot on /ws/oss/spot); `rate` deltas/s
    per subscribed topic; `seed` makes the markets and the fault draws reproducible;
    `faults` applies to every topic (see `set_faults` for one topic); `record_sent` keeps
    every frame sent in `sent[conn_id]`; `idle_timeout` closes silent unsubscribed
    connections; `max_queue` frames of lag earn a 1007; `history` deltas per topic are
    kept for `book_at`; `preload` deltas per topic are generated ahead (benchmarks);
    `compression="deflate"` negotiates permessage-deflate when a client offers it, as BTSE.
    Use as `async with Simulator(...) as sim`, or `await sim.start()` / `await sim.stop()`.
    See docs/SIMULATOR.md for the protocol it speaks and the faults.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        symbols: list[str] | tuple[str, ...] = DEFAULT_SYMBOLS,
        rate: float = 200.0,
        seed: int = 1,
        faults: Faults | None = None,
        record_sent: bool = False,
        idle_timeout: float = 60.0,
        max_queue: int = 50_000,
        preload: int = 0,
        history: int = HISTORY,
        compression: str | None = None,
        trade_tape: bool = False,
        api_keys: dict[str, str] | None = None,
        otc_markup_bps: float = 5.0,
    ) -> None:
        if rate < 0:
            raise ArgumentError("rate must be >= 0 deltas/s per topic")
        if not symbols:
            raise ArgumentError("symbols: list at least one, e.g. ['BTC-USD', 'BTC-PERP']")
        self.host = host
        self.port = port
        self.symbols = [naming.canonical(s) for s in symbols]
        self.rate = rate
        self.seed = seed
        self.faults = faults or Faults()
        self.record_sent = record_sent
        self.idle_timeout = idle_timeout
        self.max_queue = max_queue
        self.preload = preload
        self.history = history
        self.compression = compression
        self.trade_tape = trade_tape
        self.sent: dict[int, list[bytes]] = {}
        self.injected: list[Injected] = []
        self._topic_faults: dict[str, Faults] = {}
        self._rnd = random.Random(seed)
        self._topics: dict[tuple[str, int], _Topic] = {}
        self._conns: dict[int, _Conn] = {}
        self._next_conn = 0
        self._server: Server | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._refuse_until = 0.0
        self._refuse_how = "503"
        # a test may serve broken metadata: these bytes answer the markets API instead
        self.markets_override: bytes | None = None
        self._frames_sent = 0
        self._trade_id = 1_000_000  # tradeIds: one increasing count for every market
        self._connections_total = 0
        # the private side: OTC quotes and own-order notifications behind real HMAC
        # checks; the test key unless others are given
        keys = {TEST_API_KEY: TEST_SECRET} if api_keys is None else api_keys
        spot = [s for s in self.symbols if naming.market(s) == "spot"] or ["BTC-USD"]
        self.private = PrivateDesk(
            keys, lambda symbol: self._topic(naming.canonical(symbol), 0).model,
            markup_bps=otc_markup_bps, notification_symbol=spot[0], seed=seed,
            spot_symbols=tuple(spot),
        )  # fmt: skip

    # --- lifecycle --------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    @property
    def spot_url(self) -> str:
        return self.url + SPOT_PATH

    @property
    def futures_url(self) -> str:
        return self.url + FUTURES_PATH

    async def start(self) -> None:
        """Listen (again: after stop(), on the same port) and start the market."""
        self._server = await serve(
            self._handle,
            self.host,
            self.port,
            # BTSE negotiates permessage-deflate when the client offers it ("deflate" does
            # the same); off by default: it costs both sides ~3x CPU per frame
            compression=self.compression,
            process_request=self._process_request,
            ping_interval=None,
            max_size=1 << 20,
            max_queue=None,
            logger=_LOG,  # its frame log (at -vv) never shows an auth request
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._ticker = asyncio.create_task(self._tick_loop())

    async def stop(self) -> None:
        """Close every connection (abruptly) and stop listening; the books keep their state."""
        if self._ticker:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
        for conn in list(self._conns.values()):
            conn.ws.transport.abort()
        if self._server:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- controls for tests ---------------------------------------------------------------

    def set_faults(self, faults: Faults, topic: str | None = None) -> None:
        """Change faults for everything, or for one topic (`update:BTC-PERP_0`)."""
        if topic is None:
            self.faults = faults
            self._topic_faults.clear()
        else:
            self._topic_faults[topic] = faults

    async def disconnect_all(self, code: int | None = None) -> None:
        """Drop every connection: None = TCP abort without close frame, else close(code)."""
        for conn in list(self._conns.values()):
            await self._drop(conn, code, "disconnect_all")

    def refuse_connections(self, seconds: float, how: str = "503") -> None:
        """For a while, answer new handshakes with HTTP 503 (`how="503"`), a 301 redirect
        to an https:// URL no websocket client can follow (`"redirect"`), or accept them
        and close at once (`"accept_close"`, close code 1011)."""
        if how not in ("503", "redirect", "accept_close"):
            raise ArgumentError(f"how must be '503', 'redirect' or 'accept_close', got {how!r}")
        self._refuse_until = time.monotonic() + seconds
        self._refuse_how = how

    def restart_sequence(self, symbol: str, grouping: int = 0) -> int:
        """Restart a topic's sequence chain (new, lower seqNums from the next delta on, as
        an exchange restart would); returns the new chain's seqNum."""
        topic = self._topic(naming.canonical(symbol), grouping)
        self._restart(topic)
        return topic.sent_seq

    def book_at(
        self, symbol: str, grouping: int, seq: int
    ) -> tuple[dict[str, str], dict[str, str]]:
        """The true book right after `seq`: price string -> size string per side.
        KeyError if the topic was never served or `seq` left the kept history."""
        symbol = naming.canonical(symbol)
        topic = self._topics.get((symbol, grouping))
        if topic is None:
            raise KeyError(f"update:{symbol}_{grouping} was never served")
        return topic.model.book_text_at(seq)

    def model(self, symbol: str, grouping: int = 0) -> MarketModel:
        """The market model behind `update:SYMBOL_G` (created now if nobody asked yet)."""
        return self._topic(symbol, grouping).model

    def stats(self) -> SimulatorStats:
        """Counters: open and total connections, frames sent, each topic's last seqNum
        published, and faults injected by kind."""
        kinds: dict[str, int] = {}
        for item in self.injected:
            kinds[item.kind] = kinds.get(item.kind, 0) + 1
        return {
            "connections": len(self._conns),
            "connections_total": self._connections_total,
            "frames_sent": self._frames_sent,
            "topics": {f"update:{s}_{g}": t.sent_seq for (s, g), t in self._topics.items()},
            "injected": kinds,
        }

    # --- connections ----------------------------------------------------------------------

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        if time.monotonic() < self._refuse_until and self._refuse_how != "accept_close":
            self._inject("refused", None, None, None)
            if self._refuse_how == "redirect":
                response = connection.respond(HTTPStatus.MOVED_PERMANENTLY, "moved\n")
                response.headers["Location"] = f"https://{self.host}:{self.port}{request.path}"
                return response
            return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "refusing connections\n")
        if request.path.split("?", 1)[0] == MARKETS_PATH:  # the markets API, plain HTTP
            response = connection.respond(HTTPStatus.OK, self.markets_reply().decode())
            response.headers["Content-Type"] = "application/json"
            return response
        if request.path not in _SERVED:
            return connection.respond(HTTPStatus.NOT_FOUND, f"serving {', '.join(_SERVED)}\n")
        return None

    def markets_reply(self) -> bytes:
        """BTSE's `GET /public-api/market/v1/markets` for the listed symbols, consistent
        with what is streamed (tick = the price grid, contract sizes on futures)."""
        if self.markets_override is not None:
            return self.markets_override
        rows = [MarketModel(symbol, seed=self.seed).market_row() for symbol in self.symbols]
        return orjson.dumps({"data": {"symbols": rows}, "code": 1, "msg": "Success"})

    async def _handle(self, ws: ServerConnection) -> None:
        if time.monotonic() < self._refuse_until and self._refuse_how == "accept_close":
            self._inject("accept_close", None, None, None)
            await ws.close(1011, "simulator: accept then close")
            return
        self._next_conn += 1
        self._connections_total += 1
        request = ws.request
        if request is None:  # websockets runs the handler only after the handshake: never
            raise RuntimeError("simulator: a connection without its handshake request")
        stream, market = _SERVED[request.path]
        conn = _Conn(self._next_conn, ws, market, stream)
        self._conns[conn.id] = conn
        if stream in ("main", "otc"):
            self.private.open(conn.id, request.path)
        if self.record_sent:
            self.sent[conn.id] = []
        writer = asyncio.create_task(self._writer(conn))
        monitor = asyncio.create_task(self._monitor(conn))
        try:
            async for message in ws:
                conn.last_rx = time.monotonic()
                self._on_request(conn, message)
        except ConnectionClosed:
            pass
        finally:
            self._conns.pop(conn.id, None)
            self.private.close(conn.id)
            for topic in self._topics.values():
                topic.subscribers.pop((conn.id, False), None)
                topic.subscribers.pop((conn.id, True), None)
                topic.l1.pop(conn.id, None)
                topic.trade_subs.pop(conn.id, None)
            writer.cancel()
            monitor.cancel()

    async def _writer(self, conn: _Conn) -> None:
        try:
            while True:
                await conn.wake.wait()
                conn.wake.clear()
                while conn.queue and time.monotonic() >= conn.stalled_until:
                    await self._send_now(conn, conn.queue.popleft())
                if conn.queue:  # stalled: look again soon
                    await asyncio.sleep(_TICK_S * 5)
                    conn.wake.set()
        except ConnectionClosed:
            pass

    async def _send_now(self, conn: _Conn, frame: bytes) -> None:
        await conn.ws.send(frame, text=True)
        self._frames_sent += 1
        if self.record_sent:
            self.sent[conn.id].append(frame)

    async def _monitor(self, conn: _Conn) -> None:
        """Idle close, and once a second the per-connection faults."""
        check = min(1.0, max(self.idle_timeout / 4, 0.05))
        elapsed = 0.0
        while True:
            await asyncio.sleep(check)
            now = time.monotonic()
            if not conn.topics and not conn.l1 and now - conn.last_rx > self.idle_timeout:
                self._inject("idle_close", conn.id, None, None)
                conn.ws.transport.abort()  # BTSE: 1006, no close frame
                return
            elapsed += check
            if elapsed < 1.0:
                continue
            elapsed = 0.0
            rnd = self._rnd
            if rnd.random() < self.faults.stall:
                conn.stalled_until = now + self.faults.stall_s
                self._inject("stall", conn.id, None, None)
            # a topic's own faults reach the connections subscribed to it
            for topic, faults in [(None, self.faults), *self._conn_topic_faults(conn)]:
                if rnd.random() < faults.disconnect:
                    await self._drop(conn, None, "disconnect", topic)
                    return
                if rnd.random() < faults.close_1007:
                    await self._drop(conn, 1007, "close_1007", topic)
                    return

    def _conn_topic_faults(self, conn: _Conn) -> list[tuple[str, Faults]]:
        if not self._topic_faults:
            return []
        out = []
        for spelled in conn.topics:
            name = spelled
            resolved = self._resolve(conn, spelled)
            if not isinstance(resolved, bytes) and resolved[2] is not None:
                name = f"update:{resolved[1]}_{resolved[2]}"
            faults = self._topic_faults.get(spelled) or self._topic_faults.get(name)
            if faults is not None:
                out.append((spelled, faults))
        return out

    async def _drop(
        self, conn: _Conn, code: int | None, kind: str, topic: str | None = None
    ) -> None:
        self._inject(kind, conn.id, topic, None)
        conn.closing = True
        if code is None:
            conn.ws.transport.abort()
            return
        with contextlib.suppress(ConnectionClosed):
            if code == 1007:  # as BTSE: the error frame, then the close
                await self._send_now(conn, _error(1007, "Outbound buffer is full"))
            await conn.ws.close(code, "simulator")

    def _send_to(self, conn_id: int, frame: bytes) -> None:
        conn = self._conns.get(conn_id)
        if conn is not None:
            self._send(conn, frame)

    def _send(self, conn: _Conn, frame: bytes) -> None:
        if conn.closing:
            return
        conn.queue.append(frame)
        conn.wake.set()
        if len(conn.queue) > self.max_queue:
            # BTSE closes a consumer that lets its outbound buffer fill up.
            conn.closing = True
            conn.queue.clear()
            asyncio.get_running_loop().create_task(self._drop(conn, 1007, "slow_consumer"))

    def _inject(self, kind: str, conn_id: int | None, topic: str | None, seq: int | None) -> None:
        self.injected.append(Injected(kind, conn_id, topic, seq, time.time_ns()))

    # --- requests -----------------------------------------------------------------------

    def _on_request(self, conn: _Conn, message: str | bytes) -> None:
        if message == "ping":
            self._send(conn, b"pong")
            return
        try:
            request = orjson.loads(message)
        except orjson.JSONDecodeError:
            self._send(conn, _error(1002, "Invalid request"))
            return
        if not isinstance(request, dict):
            self._send(conn, _error(1002, "Invalid request"))
            return
        if self.private.on_request(conn.id, request, lambda frame: self._send(conn, frame)):
            return
        op = request.get("op")
        if op not in ("subscribe", "unsubscribe"):
            self._send(conn, _error(1001, "Operation provided is currently not supported"))
            return
        args = request.get("args")
        if not isinstance(args, list) or not args:
            return  # BTSE sends no reply at all
        if op == "subscribe":
            self._subscribe(conn, [a for a in args if isinstance(a, str)])
        else:
            self._unsubscribe(conn, [a for a in args if isinstance(a, str)])

    def _resolve(self, conn: _Conn, arg: str) -> tuple[str, str, int | None] | bytes:
        """(kind, canonical symbol, grouping) for a topic, or the error frame to send."""
        kind, _, rest = arg.partition(":")
        if kind in TRADE_TOPIC_KINDS and kind != "trades":
            kind = "trades"
        elif kind not in ("update", "snapshotL1"):
            kind = ""
        if not kind or not rest:
            return _error(1005, "Topic provided does not exist.", arg)
        if (kind == "trades") != (conn.stream == "main"):
            return b""  # book topics on a main socket: silently left out of the ack
        grouping: int | None = None
        symbol = rest
        head, us, tail = rest.rpartition("_")
        if us and tail.isdigit():
            symbol, grouping = head, int(tail)
        symbol = self._fold(symbol)
        if symbol not in self.symbols or naming.market(symbol) != conn.market:
            return _error(1000, "Market pair provided is currently not supported.", arg)
        return kind, symbol, grouping

    def _fold(self, symbol: str) -> str:
        """BTSE folds alternative spellings of a listed market (`BTC-PERP-USDT` and the
        legacy `BTCPFC` are `BTC-PERP`); it is case-sensitive, so `btc-usd` is unknown."""
        try:
            name = naming.canonical(symbol)
        except TopicError:
            return symbol
        return name if symbol == symbol.upper() and name in self.symbols else symbol

    def _subscribe(self, conn: _Conn, args: list[str]) -> None:
        acked: list[str] = []
        after_ack: list[bytes] = []
        for arg in args:
            resolved = self._resolve(conn, arg)
            if isinstance(resolved, bytes):
                if resolved:
                    self._send(conn, resolved)
                continue
            if (
                arg not in conn.topics
                and len(conn.topics) + len(conn.l1) >= MAX_TOPICS_PER_CONNECTION
            ):
                self._send(
                    conn, _error(1002, f"Too many topics (max {MAX_TOPICS_PER_CONNECTION})", arg)
                )
                continue
            kind, symbol, grouping = resolved
            acked.append(arg)
            if kind == "trades":
                conn.topics.add(arg)
                topic = self._topic(symbol, 0)
                topic.trade_subs[conn.id] = _trade_echo(arg, conn.market)
                if topic.recent:  # the recent trades, newest first, as the first frame
                    batch = {"topic": topic.trade_subs[conn.id], "data": list(topic.recent)}
                    after_ack.append(orjson.dumps(batch))
                continue
            if kind == "snapshotL1":
                g = grouping or 0
                if g > 8:
                    continue  # acknowledged, then silent forever (as BTSE)
                conn.l1.add((symbol, g))
                topic = self._topic(symbol, g)  # L1 follows that grouping's book
                topic.l1[conn.id] = arg
                after_ack.append(topic.model.l1_frame(arg))  # the current best bid/ask first
                continue
            conn.topics.add(arg)
            if grouping is not None and grouping > 8:
                continue  # acknowledged, then silent forever (as BTSE)
            topic = self._topic(symbol, 0 if grouping is None else grouping)
            bare = grouping is None
            topic.subscribers[(conn.id, bare)] = arg
            conn.held.pop((topic.key, bare), None)  # a held-back delta is older than this
            snapshot = self._snapshot_for(conn, topic, arg)
            if self._rnd.random() < 0.5:  # the first snapshot may arrive before the ack
                self._send(conn, snapshot)
            else:
                after_ack.append(snapshot)
        if acked:
            order = acked[:]
            self._rnd.shuffle(order)  # channel order may differ from the request
            self._send(conn, orjson.dumps({"event": "subscribe", "channel": order}))
        for snapshot in after_ack:
            self._send(conn, snapshot)

    def _snapshot_for(self, conn: _Conn, topic: _Topic, arg: str) -> bytes:
        faults = self._topic_faults.get(f"update:{topic.key[0]}_{topic.key[1]}", self.faults)
        model = topic.model
        if faults.bad_snapshot and self._rnd.random() < faults.bad_snapshot:
            self._inject("bad_snapshot", conn.id, arg, topic.sent_seq)
            frame = model.snapshot_frame_at(topic.sent_seq, topic=arg)
            return frame.replace(b'"bids":[["', b'"bids":[["-', 1)  # a negative price
        if faults.stale_snapshot and self._rnd.random() < faults.stale_snapshot:
            seq = max(model.oldest_seq, topic.sent_seq - _STALE_BACK)
            if seq < topic.sent_seq:  # a brand-new topic has no past to be stale with
                self._inject("stale_snapshot", conn.id, arg, seq)
                return model.snapshot_frame_at(seq, topic=arg)
        if topic.ahead:  # pre-generated frames pending: snapshot what was published
            return model.snapshot_frame_at(topic.sent_seq, topic=arg)
        return model.snapshot_frame(topic=arg)

    def _unsubscribe(self, conn: _Conn, args: list[str]) -> None:
        done: list[str] = []
        for arg in args:
            resolved = self._resolve(conn, arg)
            if isinstance(resolved, bytes):
                if resolved:
                    self._send(conn, resolved)
                continue
            kind, symbol, grouping = resolved
            if kind == "trades":
                conn.topics.discard(arg)
                trade_topic = self._topics.get((symbol, 0))
                if trade_topic is not None:
                    trade_topic.trade_subs.pop(conn.id, None)
                done.append(arg)
                continue
            if kind == "snapshotL1":
                conn.l1.discard((symbol, grouping or 0))
                l1_topic = self._topics.get((symbol, grouping or 0))
                if l1_topic is not None:
                    l1_topic.l1.pop(conn.id, None)
                done.append(arg)
                continue
            key = (symbol, 0 if grouping is None else grouping)
            # unsubscribing either spelling stops both
            for spelled in [t for t in conn.topics if self._same(conn, t, key, grouping)]:
                conn.topics.discard(spelled)
            topic = self._topics.get(key)
            if topic is not None:
                topic.subscribers.pop((conn.id, grouping is None), None)
            conn.held.pop((key, grouping is None), None)
            done.append(arg)
        if done:
            self._send(conn, orjson.dumps({"event": "unsubscribe", "channel": done}))

    def _same(self, conn: _Conn, spelled: str, key: tuple[str, int], grouping: int | None) -> bool:
        resolved = self._resolve(conn, spelled)
        if isinstance(resolved, bytes):
            return False
        _, symbol, g = resolved
        return symbol == key[0] and g == grouping

    def _topic(self, symbol: str, grouping: int) -> _Topic:
        key = (symbol, grouping)
        topic = self._topics.get(key)
        if topic is None:
            # the preloaded deltas must stay in the history: snapshots are cut from it
            history = max(self.history, self.preload + 2_000) if self.preload else self.history
            model = MarketModel(symbol, seed=self.seed, grouping=grouping, history=history)
            model.clock_step = (0, 0)  # the ticker stamps the wall clock
            model.timestamp = time.time_ns() // 1_000_000
            topic = self._topics[key] = _Topic(key, model, sent_seq=model.seq)
            for _ in range(self.preload):
                topic.ahead.append(model.next_delta_frame())
        return topic

    # --- the market -----------------------------------------------------------------------

    async def _tick_loop(self) -> None:
        last = time.monotonic()
        next_second = last + 1.0
        while True:
            await asyncio.sleep(_TICK_S)
            now = time.monotonic()
            elapsed, last = now - last, now
            per_second = now >= next_second
            if per_second:
                next_second = now + 1.0
            now_ms = time.time_ns() // 1_000_000
            try:
                self.private.tick(now, self._send_to)
            except Exception:  # a bug on the private side must not stop the market
                log.exception("simulator: the private desk failed; its quotes skip a tick")
            for topic in list(self._topics.values()):
                if not topic.subscribers and not topic.l1 and not topic.trade_subs:
                    continue
                if per_second:
                    self._maybe_stall_topic(topic, now)
                if now < topic.silent_until:
                    continue
                topic.model.timestamp = now_ms  # exchange time: the wall clock when served
                topic.carry += elapsed * self.rate
                due = int(topic.carry)
                topic.carry -= due
                # At most _MAX_PER_TICK per topic and tick: generating more would starve
                # the writers (one delta costs ~30 us); a higher rate is capped, not queued.
                for _ in range(min(due, _MAX_PER_TICK)):
                    self._publish(topic)

    def _maybe_stall_topic(self, topic: _Topic, now: float) -> None:
        """A per-topic `stall` fault: the topic goes quiet (a quiet book), nothing is lost."""
        name = f"update:{topic.key[0]}_{topic.key[1]}"
        faults = self._topic_faults.get(name)
        if faults is not None and faults.stall and self._rnd.random() < faults.stall:
            topic.silent_until = now + faults.stall_s
            topic.carry = 0.0
            self._inject("stall", None, name, topic.sent_seq)

    def _publish(self, topic: _Topic) -> None:
        name = f"update:{topic.key[0]}_{topic.key[1]}"
        faults = self._topic_faults.get(name, self.faults)
        model = topic.model
        top_before = None
        if topic.ahead:
            frame = topic.ahead.popleft()
            seq = topic.sent_seq + 1
        elif faults.crossed and self._rnd.random() < faults.crossed:
            frame = model.crossed_delta_frame()
            seq = model.seq
            self._inject("crossed", None, name, seq)
        elif faults.seq_restart and self._rnd.random() < faults.seq_restart:
            self._restart(topic)
            return
        elif faults.seq_poison and self._rnd.random() < faults.seq_poison:
            # a hostile delta far ahead of the chain; the true book does not change
            self._inject("seq_poison", None, name, POISON_SEQ)
            frame = model._frame("delta", [], [], POISON_SEQ, POISON_SEQ - 1, model.topic)
            for (conn_id, _bare), _spelled in list(topic.subscribers.items()):
                conn = self._conns.get(conn_id)
                if conn is not None:
                    self._send(conn, frame)
            return
        else:
            top_before = (max(model.bids), min(model.asks)) if topic.l1 else None
            frame = model.next_delta_frame()
            seq = model.seq
            if model.last_trades and topic.key[1] == 0:
                self._print_trades(topic, faults)  # the trades print before the delta
        topic.sent_seq = seq
        for (conn_id, bare), spelled in list(topic.subscribers.items()):
            conn = self._conns.get(conn_id)
            if conn is None:
                continue
            out = frame
            name_sent = name
            if bare:  # `update:SYM` carries the _0 chain under its own name
                name_sent = f"update:{topic.key[0]}"
                out = frame.replace(
                    f'"topic":"{name}"'.encode(), f'"topic":"{name_sent}"'.encode(), 1
                )
            hold = (topic.key, bare)
            faults_here = self._topic_faults.get(spelled, faults)
            self._deliver(conn, hold, name_sent, seq, out, faults_here)
        if topic.l1 and top_before and (max(model.bids), min(model.asks)) != top_before:
            # snapshotL1: when the best bid/ask changed, after the delta, as subscribed
            frames: dict[str, bytes] = {}
            for conn_id, spelled in topic.l1.items():
                conn = self._conns.get(conn_id)
                if conn is not None:
                    if spelled not in frames:
                        frames[spelled] = model.l1_frame(spelled)
                    self._send(conn, frames[spelled])

    def _print_trades(self, topic: _Topic, faults: Faults) -> None:
        """The liquidity the step took at the touch, as public trades (numeric price and
        size, as BTSE sends them), to every trade subscriber; kept for the batch."""
        model = topic.model
        trades = []
        for price, units, side in model.last_trades:
            self._trade_id += 1
            size_text = model.size(units)
            trade: dict[str, object] = {
                "price": float(price),
                "size": int(size_text) if model.futures else float(size_text),
                "side": side,
                "symbol": model.symbol,
                "tradeId": self._trade_id,
                "timestamp": model.timestamp,
            }
            trades.append(trade)
            topic.recent.appendleft(trade)  # newest first, as the batch lists them
            if self.trade_tape:
                topic.tape.append(trade)
        frames: dict[str, bytes] = {}
        for conn_id, echo in list(topic.trade_subs.items()):
            conn = self._conns.get(conn_id)
            if conn is None:
                continue
            if echo not in frames:
                frames[echo] = orjson.dumps({"topic": echo, "data": trades})
            # a trade stream's own faults (by the spelling subscribed), else the book's;
            # without drop and reorder: BTSE's trade frames carry no sequence to tell by
            mine = self._topic_faults.get(echo) or self._topic_faults.get(
                f"trades:{model.symbol}", faults
            )
            mine = dataclasses.replace(mine, drop=0.0, reorder=0.0)
            self._deliver(conn, (topic.key, "trades"), echo, self._trade_id, frames[echo], mine)

    def trades(self, symbol: str) -> list[dict[str, object]]:
        """Every trade printed for `symbol` (any spelling), oldest first: the truth.
        Kept only with `Simulator(trade_tape=True)` (tests): a long run would fill memory."""
        topic = self._topics.get((naming.canonical(symbol), 0))
        return [] if topic is None else list(topic.tape)

    def _restart(self, topic: _Topic) -> None:
        """A `seq_restart`: the chain starts again lower; subscribers see a gap, and the
        snapshot they resubscribe for carries the new, lower seqNum."""
        topic.ahead.clear()
        topic.model.restart_chain()
        topic.sent_seq = topic.model.seq
        self._inject("seq_restart", None, f"update:{topic.key[0]}_{topic.key[1]}", topic.sent_seq)

    def _deliver(
        self, conn: _Conn, hold: _Hold, name: str, seq: int, frame: bytes, faults: Faults
    ) -> None:
        rnd = self._rnd
        if faults.malformed and rnd.random() < faults.malformed:
            self._inject("malformed", conn.id, name, seq)
            self._send(conn, frame[: len(frame) // 2])
        if faults.oversized and rnd.random() < faults.oversized:
            self._inject("oversized", conn.id, name, seq)
            padding = "x" * faults.oversized_bytes
            self._send(conn, orjson.dumps({"topic": name, "padding": padding}))
        if faults.error_frame and rnd.random() < faults.error_frame:
            self._inject("error_frame", conn.id, name, seq)
            self._send(conn, _error(1002, "Invalid request"))
        if faults.drop and rnd.random() < faults.drop:
            self._inject("drop", conn.id, name, seq)
            return
        held = conn.held.pop(hold, None)
        if faults.reorder and held is None and rnd.random() < faults.reorder:
            self._inject("reorder", conn.id, name, seq)
            conn.held[hold] = frame
            return
        self._send(conn, frame)
        if held is not None:
            self._send(conn, held)
        if faults.duplicate and rnd.random() < faults.duplicate:
            self._inject("duplicate", conn.id, name, seq)
            self._send(conn, frame)


def _trade_echo(arg: str, market: str) -> str:
    """The topic BTSE puts on trade frames: as subscribed, except that legacy futures
    `tradeHistoryApi:SYM` comes back bare (`tradeHistoryApi`, PROTOCOL.md)."""
    kind = arg.partition(":")[0]
    return "tradeHistoryApi" if market == "futures" and kind == "tradeHistoryApi" else arg
