import numpy as np
import pytest

from bookengine.book import OrderBook, to_number
from bookengine.errors import LevelError

pytestmark = pytest.mark.usefixtures("book_impl")


def make(bids, asks):
    book = OrderBook("BTC-PERP")
    book.apply_snapshot(bids, asks)
    return book


def test_snapshot_asks_arrive_worst_first_best_ask_is_lowest():
    book = make([["1876.90", "44"], ["1876.89", "122"]], [["1880.19", "900"], ["1880.00", "450"]])
    assert book.best_bid == (1876.9, 44.0)
    assert book.best_ask == (1880.0, 450.0)
    assert book.asks() == [(1880.0, 450.0), (1880.19, 900.0)]
    assert book.bids() == [(1876.9, 44.0), (1876.89, 122.0)]


def test_trailing_zero_spellings_are_one_level():
    book = make([["86626.0", "1"]], [["86700.0", "1"]])
    book.apply_delta([["86626", "5"]], [])
    assert book.bid_levels == 1 and book.best_bid == (86626.0, 5.0)
    book.apply_delta([["86626.00", "0"]], [])
    assert book.bid_levels == 0 and book.best_bid is None
    assert book.size_at("bid", "86626.000") == 0.0


def test_delta_levels_in_any_order_and_size_is_the_new_total():
    book = make([["100.0", "1"]], [["101.0", "1"]])
    book.apply_delta(
        [["99.0", "3"], ["100.5", "2"], ["100.0", "7"]], [["102.0", "4"], ["100.9", "1"]]
    )
    assert book.bids() == [(100.5, 2.0), (100.0, 7.0), (99.0, 3.0)]
    assert book.asks() == [(100.9, 1.0), (101.0, 1.0), (102.0, 4.0)]


def test_deleting_an_absent_level_is_harmless():
    book = make([["100.0", "1"]], [["101.0", "1"]])
    book.apply_delta([["42.0", "0"]], [["999.0", "0"]])
    assert book.depth() == ([(100.0, 1.0)], [(101.0, 1.0)])


def test_best_level_removal_finds_the_next_best():
    book = make([["100.0", "1"], ["99.0", "2"], ["98.0", "3"]], [["101.0", "1"], ["102.0", "2"]])
    book.apply_delta([["100.0", "0"]], [["101.0", "0"]])
    assert book.best_bid == (99.0, 2.0) and book.best_ask == (102.0, 2.0)
    # best deleted then a worse level inserted in the same delta
    book.apply_delta([["99.0", "0"], ["98.5", "1"]], [])
    assert book.best_bid == (98.5, 1.0)
    # best deleted then re-inserted in the same delta
    book.apply_delta([["98.5", "0"], ["98.5", "4"]], [])
    assert book.best_bid == (98.5, 4.0)
    # side emptied
    book.apply_delta([["98.5", "0"], ["98.0", "0"]], [["102.0", "0"]])
    assert book.best_bid is None and book.best_ask is None and len(book) == 0


def test_snapshot_replaces_everything():
    book = make([["100.0", "1"], ["99.0", "1"]], [["101.0", "1"]])
    book.apply_snapshot([["50.0", "2"]], [["60.0", "3"], ["55.0", "4"]])
    assert book.depth() == ([(50.0, 2.0)], [(55.0, 4.0), (60.0, 3.0)])


def test_spread_and_mid_have_no_float_artefacts():
    book = make([["0.3", "1"]], [["0.4", "1"]])
    assert 0.4 - 0.3 != 0.1  # the artefact we avoid
    assert book.spread == 0.1 and repr(book.spread) == "0.1"
    assert book.mid == 0.35
    book = make([["86540.6", "1"]], [["86540.7", "1"]])
    assert repr(book.spread) == "0.1" and repr(book.mid) == "86540.65"


def test_depth_n_and_level_counts():
    bids = [[f"{100 - i}.5", str(i + 1)] for i in range(50)]
    asks = [[f"{200 + i}.25", str(i + 1)] for i in range(50)]
    book = make(bids, asks[::-1])
    b, a = book.depth(5)
    assert b == [(100.5 - i, float(i + 1)) for i in range(5)]
    assert a == [(200.25 + i, float(i + 1)) for i in range(5)]
    assert (book.bid_levels, book.ask_levels) == (50, 50)


def test_digest_ignores_spelling_and_update_order_but_not_content():
    a = make([["100.0", "1"], ["99.0", "2"]], [["101.0", "3"]])
    b = make([["99", "2.0"], ["100.00", "1"]], [["101.000", "3"]])
    assert a.digest() == b.digest()
    b.apply_delta([["99.0", "2.5"]], [])
    assert a.digest() != b.digest()
    # beyond the top n levels the digest does not look
    a.apply_delta([["1.0", "1"]], [])
    assert a.digest(2) == make([["100.0", "1"], ["99.0", "2"]], [["101.0", "3"]]).digest(2)


def test_crossed_detection():
    book = make([["100.0", "1"]], [["101.0", "1"]])
    assert not book.crossed
    book.apply_delta([["101.0", "1"]], [])
    assert book.crossed


@pytest.mark.parametrize(
    "bad",
    [
        "-1",
        "abc",
        "1e5",
        "nan",
        "inf",
        " 5",
        "1_000",
        "",
        "1.",
        ".5",
        "1234567890.1234567",
        None,
        ["1"],
        True,
    ],
)
def test_bad_prices_are_refused(bad):
    with pytest.raises(LevelError):
        to_number(bad)
    book = make([["100.0", "1"]], [["101.0", "1"]])
    with pytest.raises(LevelError):
        book.apply_delta([[bad, "1"]], [])
    with pytest.raises(LevelError):
        book.apply_snapshot([[bad, "1"]], [])


@pytest.mark.parametrize("bad", ["-1", "abc", "nan", "inf", "-0.5", "", None, ["1"], {}])
def test_bad_sizes_are_refused(bad):
    # Sizes go through float() (they rarely repeat, a validating cache would miss): anything
    # float() reads as a finite non-negative number is a size; everything else is refused.
    book = make([["100.0", "1"]], [["101.0", "1"]])
    with pytest.raises(LevelError):
        book.apply_delta([], [["101.0", bad]])
    with pytest.raises(LevelError):
        book.apply_snapshot([["100.0", bad]], [])


@pytest.mark.parametrize("bad", [[["100.0"]], [["100.0", "1", "2"]], ["100.0"], "abc", 5, [None]])
def test_malformed_level_lists_are_refused(bad):
    book = make([["100.0", "1"]], [["101.0", "1"]])
    with pytest.raises(LevelError):
        book.apply_delta(bad, [])


def test_numbers_are_exact_decimals():
    assert to_number("0.00000001") == 1e-08
    assert to_number("123456789012345") == 123456789012345.0
    assert repr(to_number("86626.10")) == "86626.1"
    assert to_number(5) == 5.0  # a numeric JSON value is accepted as is


def test_size_at_validates_side():
    book = make([["100.0", "1.5"]], [["101.0", "2"]])
    assert book.size_at("bid", "100") == 1.5 and book.size_at("ask", 101.0) == 2.0
    with pytest.raises(ValueError, match="side must be"):
        book.size_at("buy", "100")


def test_keys_stay_within_int64_on_both_implementations():
    """Prices ~10**18 apart in one book are refused, not silently handled differently."""
    book = OrderBook()
    book.apply_snapshot([["86626.5", "1"]], [["86627", "1"]])
    with pytest.raises(LevelError, match="do not fit"):
        book.apply_delta([["0.000000000000001", "1"]], [])  # a rescale past int64
    assert book.top == (86626.5, 1.0, 86627.0, 1.0)  # refused before any change
    wide = OrderBook()
    wide.apply_snapshot([["0.000001", "1"]], [])
    with pytest.raises(LevelError, match="does not fit"):
        wide.apply_delta([], [["999999999999999", "1"]])  # a new key past int64


def test_depth_takes_any_integer_count():
    book = OrderBook()
    book.apply_snapshot([["100.0", "1"], ["99.0", "2"]], [["101.0", "3"]])
    assert book.bids(10**30) == [(100.0, 1.0), (99.0, 2.0)]
    assert book.bids(np.int64(1)) == [(100.0, 1.0)]
    with pytest.raises(TypeError):
        book.bids(1.5)
    with pytest.raises(ValueError):
        book.asks(-1)


def test_a_book_built_in_one_mode_works_in_the_other():
    """A book keeps working when it crosses `pure_python()` either way (a dict side
    under the C functions, a C side under the Python twins): same levels, rescale too."""
    import bookengine.book as book_module

    def build():
        book = OrderBook("X")
        book.apply_snapshot([["100.5", "1"], ["100.4", "2"]], [["100.7", "3"]])
        return book

    def feed(book):
        book.apply_delta([["100.6", "4"], ["100.5", "0"]], [["100.65", "1"]])  # rescales
        return book.depth(), book.top_keys(), book.digest()

    with book_module.pure_python():
        reference = feed(build())
        built_pure = build()
    built_here = build()
    with book_module.pure_python():
        assert feed(built_here) == reference
    assert feed(built_pure) == reference
    assert reference[0] == ([(100.6, 4.0), (100.4, 2.0)], [(100.65, 1.0), (100.7, 3.0)])


def test_a_booksync_with_the_scanner_keeps_books_built_in_pure_mode():
    """A book whose snapshot was applied under pure_python() holds dicts: when a BookSync
    with the scanner meets it, the scanner declines and the general path applies the
    delta, with the same events and book as a BookSync that never left C mode."""
    from frames import delta, snapshot

    import bookengine.book as book_module
    from bookengine import BookSync

    start = snapshot(10, [["100.5", "1"], ["100.4", "2"]], [["100.7", "3"]])
    step = delta(11, [["100.6", "4"], ["100.5", "0"]], [["100.8", "1"]])  # no rescale
    results = []
    for pure_snapshot in (False, True):
        sync = BookSync()  # made in C mode: it has the scanner
        sync.subscribe(["update:BTC-PERP_0"], 0)
        if pure_snapshot:
            with book_module.pure_python():
                sync.feed(0, start)
            assert type(sync.book("BTC-PERP")._bids) is dict
        else:
            sync.feed(0, start)
        events = sync.feed(1, step)
        results.append((events, sync.book("BTC-PERP").depth(), sync.stats.bad_frames))
    assert results[0] == results[1]
    assert results[0][1] == ([(100.6, 4.0), (100.4, 2.0)], [(100.7, 3.0), (100.8, 1.0)])
    assert results[0][2] == 0


def test_a_book_pickles_and_copies_with_its_levels(book_impl):
    """A book survives pickle, copy and deepcopy (a process pool, a kept copy) unchanged,
    and the copy is independent of the original."""
    import copy
    import pickle

    book = OrderBook("X")
    book.apply_snapshot([["100.5", "1"], ["100.4", "2"]], [["100.7", "3"], ["101", "0.5"]])
    for clone in (pickle.loads(pickle.dumps(book)), copy.copy(book), copy.deepcopy(book)):
        assert clone.depth() == book.depth() and clone.top_keys() == book.top_keys()
        assert clone.digest() == book.digest()
    clone = copy.deepcopy(book)
    clone.apply_delta([["100.6", "9"]], [])
    assert book.best_bid == (100.5, 1.0) and clone.best_bid == (100.6, 9.0)
