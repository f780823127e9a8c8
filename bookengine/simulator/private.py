"""The simulator's authenticated side: `authKeyExpires` checked with real HMAC-SHA384
against configured test keys, OTC quotes on `/ws/otc` derived from the spot book, and
synthetic own-order notifications (`notificationApiV4`) on `/ws/spot`.

What BTSE does not document, the simulator decides (docs/SIMULATOR.md says so): a good
auth gets no reply; a bad one gets an error frame naming `authKeyExpires`; quotes to an
unauthenticated OTC session come without quote ids (as BTSE's docs describe); a private
subscribe before a good auth gets an error frame naming the topic.
"""

from __future__ import annotations

import hmac
import itertools
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from bookengine.auth import AUTH_OP, sign
from bookengine.private import NOTIFICATION_TOPICS, OTC_PATH, fill_cost
from bookengine.simulator.market import MarketModel

TEST_API_KEY = "bookengine-simulator-test-key"
TEST_SECRET = "bookengine-simulator-test-secret-not-for-production"
NONCE_WINDOW_MS = 60_000  # a nonce further than this from the simulator's clock is refused


def error_frame(code: int, message: str, arg: str | None = None) -> bytes:
    item: dict[str, object] = {"error": {"code": code, "message": message}}
    if arg is not None:
        item = {"arg": arg, **item}
    return orjson.dumps({"severity": "ERROR", "errors": [item]})


@dataclass
class _Session:
    path: str
    key: str | None = None  # the API key of a good auth
    quotes: dict[str, dict[str, Any]] = field(default_factory=dict)  # clOrderId -> request
    notifications: str | None = None  # the topic subscribed
    next_quote: float = 0.0
    next_note: float = 0.0
    order: dict[str, Any] | None = None  # the synthetic order in progress


class PrivateDesk:
    """One per Simulator; the server hands it every request and every tick."""

    def __init__(
        self,
        api_keys: dict[str, str],
        model: Callable[[str], MarketModel],
        *,
        markup_bps: float = 5.0,
        quote_interval: float = 0.2,
        notification_interval: float = 0.3,
        notification_symbol: str = "BTC-USD",
        seed: int = 1,
        spot_symbols: tuple[str, ...] = ("BTC-USD",),
    ) -> None:
        self._spot = frozenset(spot_symbols)
        self.api_keys = dict(api_keys)
        self._model = model
        self.markup = markup_bps / 1e4
        self.quote_interval = quote_interval
        self.notification_interval = notification_interval
        self.notification_symbol = notification_symbol
        self._rnd = random.Random(f"private/{seed}")
        self._sessions: dict[int, _Session] = {}
        self._nonces: dict[str, set[int]] = {}  # per key, the nonces accepted (replays)
        self.auths: list[tuple[str, int, bool]] = []  # (key, nonce, accepted): for tests
        self._order_ids = itertools.count(1)

    # --- requests ----------------------------------------------------------------------

    def open(self, conn_id: int, path: str) -> None:
        self._sessions[conn_id] = _Session(path)

    def close(self, conn_id: int) -> None:
        self._sessions.pop(conn_id, None)

    def on_request(
        self, conn_id: int, request: dict[str, Any], send: Callable[[bytes], None]
    ) -> bool:
        """Handle a private request; False if it is none of ours (the server's then)."""
        session = self._sessions.get(conn_id)
        if session is None:
            return False
        op = request.get("op")
        if op == AUTH_OP:
            self._auth(session, request.get("args"), send)
            return True
        if session.path == OTC_PATH:
            if op == "quote":
                self._quote_request(session, request, send)
            elif op == "unsubscribe-quote":
                session.quotes.pop(str(request.get("clOrderId")), None)
            elif op == "unsubscribe-quote-all":
                session.quotes.clear()
            elif op == "subscribe":  # BTSE: the spot/futures form is acked, then nothing
                send(orjson.dumps({"event": "subscribe", "channel": []}))
            else:
                send(error_frame(1001, "Operation provided is currently not supported"))
            return True
        args = request.get("args")
        if op == "subscribe" and isinstance(args, list):
            private = [a for a in args if a in NOTIFICATION_TOPICS]
            if not private:
                return False
            for topic in private:
                if session.key is None:
                    send(error_frame(1002, "Authentication required", topic))
                    continue
                session.notifications = topic
                send(orjson.dumps({"event": "subscribe", "channel": [topic]}))
            rest = [a for a in args if a not in NOTIFICATION_TOPICS]
            if rest:  # public topics in the same request: the server's
                request["args"] = rest
                return False
            return True
        return False

    def _auth(self, session: _Session, args: Any, send: Callable[[bytes], None]) -> None:
        ok, why = False, "malformed args: [api key, nonce, signature]"
        key = nonce = None
        well_formed = isinstance(args, list) and len(args) == 3
        if well_formed and all(isinstance(a, str | int) for a in args):
            key, nonce_text, signature = (str(a) for a in args)
            try:
                nonce = int(nonce_text)
            except ValueError:
                why = "the nonce must be the time in ms"
            else:
                secret = self.api_keys.get(key)
                now_ms = time.time_ns() // 1_000_000
                if secret is None:
                    why = "unknown API key"
                elif not hmac.compare_digest(
                    sign(secret, session.path, nonce).encode(), signature.encode()
                ):
                    why = "signature does not match"
                elif abs(now_ms - nonce) > NONCE_WINDOW_MS:
                    why = "nonce too far from the server time"
                elif nonce in self._nonces.setdefault(key, set()):
                    why = "nonce already used"  # a replayed request
                else:
                    ok = True
                    used = self._nonces[key]
                    if len(used) > 10_000:
                        used.clear()  # older ones are out of the window anyway
                    used.add(nonce)
                    session.key = key
        self.auths.append((str(key), nonce if nonce is not None else -1, ok))
        if not ok:
            send(error_frame(1002, f"Authentication failed: {why}", AUTH_OP))

    def _quote_request(
        self, session: _Session, request: dict[str, Any], send: Callable[[bytes], None]
    ) -> None:
        why = _invalid_quote(request, self._spot)
        if why is not None:  # answered, never stored: one bad request must not stop quotes
            send(error_frame(1002, f"Invalid request: {why}", "quote"))
            return
        client_id = str(request.get("clOrderId") or f"anon-{len(session.quotes)}")
        session.quotes[client_id] = request
        session.next_quote = 0.0  # the first quote at the next tick

    # --- the market -------------------------------------------------------------------

    def tick(self, now: float, send: Callable[[int, bytes], None]) -> None:
        for conn_id, session in self._sessions.items():
            if session.quotes and now >= session.next_quote:
                session.next_quote = now + self.quote_interval
                for client_id, request in session.quotes.items():
                    send(conn_id, self._quote(session, client_id, request))
            if session.notifications and session.key and now >= session.next_note:
                session.next_note = now + self.notification_interval
                send(conn_id, self._notification(session))

    def _quote(self, session: _Session, client_id: str, request: dict[str, Any]) -> bytes:
        symbol, side = request["symbol"], request.get("side")
        amount = request["quantity"]
        quantity = float(amount.get("quantity", 0))
        in_base = str(amount.get("currency", "")).upper() == symbol.split("-")[0]
        model = self._model(symbol)
        asks = sorted(model.asks.items())
        bids = sorted(model.bids.items(), reverse=True)
        frame: dict[str, Any] = {"topic": "quote", "buyQuoteId": None, "sellQuoteId": None,
                                 "clOrderId": request.get("clOrderId")}  # fmt: skip
        reasons = []
        for name, levels, sign_ in (("buy", asks, 1), ("sell", bids, -1)):
            wanted = side in (None, name)
            book = ((float(model.price(t)), float(model.size(u))) for t, u in levels)
            filled = fill_cost(book, quantity, in_base) if wanted else None
            if wanted and filled is None:
                reasons.append(f"not enough {name} liquidity for {quantity}")
            unit = base = None
            if filled is not None:
                base, cost = filled
                unit = round(cost / base * (1 + sign_ * self.markup), 8)
            authenticated = session.key is not None
            frame[f"{name}QuoteId"] = str(uuid.UUID(int=self._rnd.getrandbits(128))) if (
                unit is not None and authenticated) else None  # fmt: skip
            frame[f"{name}Quantity"] = None if base is None else round(base, 8)
            frame[f"{name}UnitPrice"] = unit
            frame[f"{name}TotalAmount"] = (
                None if unit is None or base is None else round(unit * base, 8)
            )
        frame["status"] = "error" if reasons else None
        frame["reason"] = "; ".join(reasons) or None
        return orjson.dumps(frame)

    def _notification(self, session: _Session) -> bytes:
        """The next step of a synthetic order: inserted, then one or two fills or a
        cancel, then the next order."""
        model = self._model(self.notification_symbol)
        rnd = self._rnd
        order = session.order
        now_ms = time.time_ns() // 1_000_000
        if order is None or order["status"] in (4, 6):
            side = rnd.choice(("BUY", "SELL"))
            best = max(model.bids) if side == "BUY" else min(model.asks)
            ticks = best - rnd.randint(0, 5) if side == "BUY" else best + rnd.randint(0, 5)
            size = round(rnd.choice((0.01, 0.05, 0.1, 0.25, 0.5)), 8)
            order = session.order = {
                "symbol": self.notification_symbol,
                "orderID": f"sim-{next(self._order_ids):08d}",
                "clOrderID": f"strategy-{rnd.randrange(1 << 20):05x}",
                "side": side,
                "orderType": 76,
                "txType": 0,
                "price": float(model.price(ticks)),
                "triggerPrice": 0.0,
                "status": 2,
                "maker": True,
                "postOnly": False,
                "originalOrderBaseSize": size,
                "currentOrderBaseSize": size,
                "filledBaseSize": 0.0,
                "totalFilledBaseSize": 0.0,
                "remainingBaseSize": size,
                "avgFilledPrice": 0.0,
            }
        else:
            remaining = order["remainingBaseSize"]
            if rnd.random() < 0.15:
                order.update(status=6, filledBaseSize=0.0)
            else:
                fill = remaining if rnd.random() < 0.5 else round(remaining / 2, 8)
                total = round(order["totalFilledBaseSize"] + fill, 8)
                left = round(order["originalOrderBaseSize"] - total, 8)
                order.update(
                    status=4 if left <= 0 else 5, filledBaseSize=fill, totalFilledBaseSize=total,
                    remainingBaseSize=max(left, 0.0), currentOrderBaseSize=max(left, 0.0),
                    avgFilledPrice=order["price"],
                )  # fmt: skip
        data = {**order, "timestamp": now_ms}
        return orjson.dumps({"topic": session.notifications, "data": data})


def _invalid_quote(request: dict[str, Any], spot: frozenset[str]) -> str | None:
    """Why an OTC `quote` request cannot be served, or None."""
    symbol, side, amount = request.get("symbol"), request.get("side"), request.get("quantity")
    if not isinstance(symbol, str) or symbol not in spot:
        return f"symbol must be a listed spot market, got {symbol!r}"
    if side not in (None, "buy", "sell"):
        return f"side must be buy or sell, got {side!r}"
    if not isinstance(amount, dict):
        return "quantity must be {quantity, currency}"
    quantity, currency = amount.get("quantity"), amount.get("currency")
    if isinstance(quantity, bool) or not isinstance(quantity, int | float):
        return f"quantity must be a number, got {quantity!r}"
    if not 0 < quantity < float("inf"):
        return f"quantity must be > 0 and finite, got {quantity!r}"
    if not isinstance(currency, str) or currency.upper() not in symbol.split("-"):
        return f"currency must be {symbol}'s base or quote currency, got {currency!r}"
    return None
