"""OrderBook alone: apply, depth(n) and digest on a full 50x50 book (issue 8: depth queries
must stay within a few microseconds for n <= 50)."""

import orjson
import pytest

from benchmarks import workloads
from bookengine import OrderBook

FRAMES = workloads.realistic_frames()
DATA = [orjson.loads(f)["data"] for f in FRAMES[:5000]]


def full_book() -> OrderBook:
    book = OrderBook("BTC-PERP")
    book.apply_snapshot(DATA[0]["bids"], DATA[0]["asks"])
    for data in DATA[1:]:
        book.apply_delta(data["bids"], data["asks"])
    return book


def test_apply_preparsed(benchmark):
    def run():
        book = OrderBook("BTC-PERP")
        book.apply_snapshot(DATA[0]["bids"], DATA[0]["asks"])
        for data in DATA[1:]:
            book.apply_delta(data["bids"], data["asks"])
        return book

    assert len(benchmark(run)) > 0


@pytest.mark.parametrize("n", [1, 10, 50])
def test_depth(benchmark, n):
    book = full_book()
    bids, asks = benchmark(book.depth, n)
    assert len(bids) == min(n, book.bid_levels)


@pytest.mark.parametrize("n", [10, 50])
def test_digest(benchmark, n):
    book = full_book()
    assert len(benchmark(book.digest, n)) == 16
