"""A client that follows PROTOCOL.md's rules rebuilds the simulator's true book exactly,
under faults, and notices every fault the simulator says it injected.

The client is deliberately plain (websockets + Decimal dicts), not the project's Feed.
"""

import asyncio
from decimal import Decimal

import orjson
import pytest
from simclient import open_client, run, subscribe, unsubscribe

from bookengine.simulator import Faults, Simulator

pytestmark = pytest.mark.integration

SYMBOL = "BTC-PERP"
T = f"update:{SYMBOL}_0"


def as_decimals(side: dict[str, str]) -> dict[Decimal, Decimal]:
    return {Decimal(p): Decimal(s) for p, s in side.items()}


class RuleClient:
    """PROTOCOL.md "Keeping a local book", one topic: gap or crossed -> resync."""

    def __init__(self, ws, topic: str):
        self.ws, self.topic = ws, topic
        self.bids: dict[Decimal, Decimal] = {}
        self.asks: dict[Decimal, Decimal] = {}
        self.last: int | None = None  # None: not synced (waiting for a snapshot)
        self.lost_from: int | None = None  # last good seqNum when the book went invalid
        self.unseen: list[tuple[int, int]] = []  # seqNum ranges the book never applied
        self.crossed: list[int] = []  # seqNums after which the book was crossed
        self.applied = 0
        self.bad = 0

    async def resync(self, lost_from: int) -> None:
        self.last, self.lost_from = None, lost_from
        await self.ws.send(unsubscribe(self.topic))
        await self.ws.send(subscribe(self.topic))

    async def on_frame(self, raw: bytes) -> int | None:
        """Apply one frame; the seqNum it left the book valid at, else None."""
        try:
            msg = orjson.loads(raw)
        except orjson.JSONDecodeError:
            self.bad += 1  # counted, never fatal
            return None
        data = msg.get("data") if isinstance(msg, dict) else None
        if not data or data.get("symbol") != SYMBOL or "seqNum" not in data:
            return None  # acks, errors, oversized junk
        if data["type"] == "snapshot":
            if self.lost_from is not None:
                self.unseen.append((self.lost_from + 1, data["seqNum"]))
                self.lost_from = None
            self.bids = {Decimal(p): Decimal(s) for p, s in data["bids"]}
            self.asks = {Decimal(p): Decimal(s) for p, s in data["asks"]}
            self.last = data["seqNum"]
        elif self.last is None:
            return None  # not synced: wait for the snapshot
        elif data["prevSeqNum"] != self.last:
            await self.resync(self.last)  # a gap, or a repeated or late delta
            return None
        else:
            for levels, side in ((data["bids"], self.bids), (data["asks"], self.asks)):
                for p, s in levels:
                    if Decimal(s):
                        side[Decimal(p)] = Decimal(s)
                    else:
                        side.pop(Decimal(p), None)
            self.last = data["seqNum"]
            self.applied += 1
        if self.bids and self.asks and max(self.bids) >= min(self.asks):
            self.crossed.append(self.last)
            await self.resync(self.last - 1)  # the crossed delta itself is suspect
            return None
        return self.last

    def covers(self, seq: int) -> bool:
        return any(lo <= seq <= hi for lo, hi in self.unseen)


def test_rule_following_client_rebuilds_the_true_book_under_faults():
    faults = Faults(
        drop=0.02,
        duplicate=0.01,
        reorder=0.01,
        crossed=0.005,
        stale_snapshot=0.3,
        malformed=0.01,
        error_frame=0.01,
    )

    async def body():
        async with Simulator(symbols=[SYMBOL], rate=600, seed=5, faults=faults) as sim:
            ws = await open_client(sim.futures_url)
            client = RuleClient(ws, T)
            await ws.send(subscribe(T))
            checked = 0
            faulty, clean = 1500, 300
            for n in range(faulty + clean):
                if n == faulty:
                    sim.set_faults(Faults())  # let the client resync, then compare again
                raw = await asyncio.wait_for(ws.recv(decode=False), 5)
                seq = await client.on_frame(raw)
                if seq is not None and (n % 7 == 0 or n >= faulty):
                    bids, asks = sim.book_at(SYMBOL, 0, seq)
                    assert client.bids == as_decimals(bids), f"bids differ at {seq}"
                    assert client.asks == as_decimals(asks), f"asks differ at {seq}"
                    checked += 1
            await ws.close()
            assert client.last is not None and checked > 100
            mine = [i for i in sim.injected if i.conn_id in (1, None)]
            kinds = {i.kind for i in mine}
            assert {"drop", "duplicate", "reorder", "crossed", "stale_snapshot"} <= kinds
            # every dropped delta fell in a range the client knew it had not applied
            dropped = [i.seq for i in mine if i.kind == "drop" and i.seq <= client.last]
            assert dropped and all(client.covers(s) for s in dropped)
            # every crossed delta the client applied, it saw as crossed
            crossed = {i.seq for i in mine if i.kind == "crossed"}
            assert set(client.crossed) <= crossed
            assert client.bad == sum(1 for i in mine if i.kind == "malformed")

    run(body(), timeout=40)


def test_book_at_reports_evicted_history_clearly():
    async def body():
        async with Simulator(symbols=[SYMBOL], rate=2000, history=1000) as sim:
            ws = await open_client(sim.futures_url)
            await ws.send(subscribe(T))
            first = None
            while True:
                msg = orjson.loads(await asyncio.wait_for(ws.recv(decode=False), 5))
                seq = msg.get("data", {}).get("seqNum") if isinstance(msg, dict) else None
                if seq is None:
                    continue
                first = first or seq
                if seq - first > 2100:
                    break
            await ws.close()
            with pytest.raises(KeyError, match="outside the kept history"):
                sim.book_at(SYMBOL, 0, first)
            assert sim.book_at(SYMBOL, 0, seq)[0]
            with pytest.raises(KeyError, match="never served"):
                sim.book_at("ETH-PERP", 0, seq)

    run(body())
