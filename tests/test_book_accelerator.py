"""The C accelerator and the pure-Python loop are one specification: same books, same
best prices, same refusals, on random and awkward input."""

from math import inf

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import bookengine.book as bm

pytestmark = pytest.mark.skipif(not bm.ACCELERATED, reason="C accelerator not built")

if bm.ACCELERATED:
    from bookengine._fastbook import NeedsDecimals as CNeeds
    from bookengine._fastbook import Side
    from bookengine._fastbook import apply_levels as c_apply


def c_side(is_bid: bool, levels: dict):
    side = Side(is_bid)
    for key, size in levels.items():
        side[key] = size
    return side


def run(apply, needs, side, levels, best, is_bid, decimals):
    try:
        return ("ok", apply(side, levels, best, is_bid, decimals, bm.price_parts), side)
    except needs as exc:
        return ("needs", exc.args[0], None)
    except (ValueError, TypeError) as exc:
        return ("error", type(exc).__name__ if not isinstance(exc, bm.LevelError) else "", None)


prices = st.one_of(
    st.decimals(min_value=0, max_value=10**7, places=4, allow_nan=False).map(str),
    st.integers(0, 10**6).map(str),
    st.sampled_from(
        [
            "86626",
            "86626.0",
            "86626.00",
            "0.00000001",
            "007.50",
            "100.00",
            "1234567890123456",
            "12345678901234.5",
            "-1",
            "1e5",
            "abc",
            "",
            "1.",
            ".5",
        ]
    ),
)
sizes = st.one_of(
    st.sampled_from(["0", "0", "0.0", "1", "60672", "0.125", "-1", "nan", "abc", ""]),
    st.decimals(min_value=0, max_value=10**6, places=3, allow_nan=False).map(str),
)


@settings(max_examples=400, deadline=None)
@given(
    start=st.dictionaries(st.integers(1, 10**6), st.sampled_from([1.0, 2.5]), max_size=8),
    levels=st.lists(st.tuples(prices, sizes).map(list), max_size=12),
    is_bid=st.booleans(),
    decimals=st.integers(0, 6),
)
def test_c_and_python_agree(start, levels, is_bid, decimals):
    best0 = (max(start) if is_bid else min(start)) if start else (-inf if is_bid else inf)
    c = run(c_apply, CNeeds, c_side(is_bid, start), levels, best0, is_bid, decimals)
    py = run(bm._apply_levels_py, bm.NeedsDecimals, dict(start), levels, best0, is_bid, decimals)
    if c[0] == "ok":
        c = (c[0], c[1], dict(c[2].items()))
    if c[0] == "error" or py[0] == "error":
        # The C side validates sizes strictly ("1e5" is refused there, read by float() here);
        # a refusal by C must never be an acceptance of something float() cannot read.
        assert c[0] == "error" or py[0] != "ok" or c[0] == "needs"
        return
    assert c[0] == py[0]
    assert c[1] == py[1]
    assert c[2] == py[2]


def test_known_values():
    side = Side(True)
    best = c_apply(side, [["86540.6", "5"], ["86540.5", "0.25"]], -inf, True, 1, bm.price_parts)
    assert best == 865406 and side.items() == [(865406, 5.0), (865405, 0.25)]
    with pytest.raises(CNeeds) as info:
        c_apply(Side(True), [["0.001", "1"]], -inf, True, 1, bm.price_parts)
    assert info.value.args == (3,)
    with pytest.raises(ValueError, match="size"):
        c_apply(Side(True), [["1.0", "1e5"]], -inf, True, 1, bm.price_parts)
    with pytest.raises(bm.LevelError, match="significant digits"):
        c_apply(Side(True), [["1234567890123456", "1"]], -inf, True, 0, bm.price_parts)
    with pytest.raises(TypeError, match="Side"):
        c_apply({}, [["1", "1"]], -inf, True, 0, bm.price_parts)
    with pytest.raises(ValueError, match="is_bid"):
        c_apply(Side(False), [["1", "1"]], inf, True, 0, bm.price_parts)


@settings(max_examples=400, deadline=None)
@given(
    side=st.dictionaries(
        st.one_of(st.integers(0, 10**7), st.integers(2**52, 2**54), st.integers(2**62, 2**63 - 1)),
        st.sampled_from([1.0, 2.5, 0.001]),
        max_size=70,
    ),
    descending=st.booleans(),
    n=st.integers(-1, 80),
    decimals=st.integers(0, 22),
)
def test_c_and_python_depth_agree(side, descending, n, decimals):
    """Same levels, same order, bit-identical prices (exact division or Python's)."""
    from bookengine._fastbook import levels as c_levels

    scale = 10**decimals
    want = bm._side_levels_py(side, descending, n, scale)
    got = c_levels(c_side(descending, side), descending, n, scale)
    assert got == want
    assert [p.hex() for p, _ in got] == [p.hex() for p, _ in want]


def test_depth_division_is_pythons_for_any_scale():
    from bookengine._fastbook import levels as c_levels

    side = {1: 1.0, 3: 2.0, 2**53 + 1: 1.0}
    for scale in (2**53 + 1, 10**15, 10**16, 10**18, 10**19, 3):
        want = bm._side_levels_py(side, False, -1, scale)
        got = c_levels(c_side(False, side), False, -1, scale)
        assert [p.hex() for p, _ in got] == [p.hex() for p, _ in want]


def test_depth_comes_best_first_only():
    from bookengine._fastbook import levels as c_levels

    with pytest.raises(ValueError, match="best first"):
        c_levels(Side(False), True, -1, 1)
    with pytest.raises(TypeError, match="Side"):
        c_levels({1: 1.0}, True, -1, 1)


# --- the C Side against a dict -----------------------------------------------------------

keys = st.one_of(st.integers(0, 60), st.integers(0, 2**63 - 1))
operations = st.lists(
    st.one_of(
        st.tuples(st.just("set"), keys, st.sampled_from([1.0, 0.5, 1e-8, 1e300])),
        st.tuples(st.just("del"), keys),
        st.tuples(st.just("pop"), keys),
        st.tuples(st.just("get"), st.one_of(keys, st.just(-inf), st.just(inf), st.just(3.0))),
    ),
    max_size=200,
)


@settings(max_examples=300, deadline=None)
@given(is_bid=st.booleans(), ops=operations)
def test_side_is_a_dict_in_best_first_order(is_bid, ops):
    """Every mapping operation agrees with a dict; iteration goes best first; the best is
    the dict's max (bids) or min (asks)."""
    side, model = Side(is_bid), {}
    for op in ops:
        if op[0] == "set":
            side[op[1]] = op[2]
            model[op[1]] = op[2]
        elif op[0] == "del":
            if op[1] in model:
                del side[op[1]]
                del model[op[1]]
            else:
                with pytest.raises(KeyError):
                    del side[op[1]]
        elif op[0] == "pop":
            assert side.pop(op[1], None) == model.pop(op[1], None)
        else:
            assert side.get(op[1]) == model.get(op[1])
            assert (op[1] in side) == (op[1] in model)
        assert len(side) == len(model)
    ordered = sorted(model, reverse=is_bid)
    assert list(side) == ordered == side.keys()
    assert side.items() == [(k, model[k]) for k in ordered]
    assert dict(side.items()) == model


def test_side_refuses_what_no_book_holds():
    side = Side(True)
    with pytest.raises(OverflowError):
        side[2**63] = 1.0
    with pytest.raises(ValueError, match="size"):
        side[1] = 0.0
    with pytest.raises(ValueError, match="size"):
        side[1] = float("nan")
    with pytest.raises(TypeError):
        side["1"] = 1.0
    with pytest.raises(KeyError):
        side[2**70]
    assert side.get(2**70, "absent") == "absent" and side.get("1") is None
    assert len(side) == 0 and repr(side) == "<Side bids, 0 levels>"


def test_side_listing_survives_a_gc_pass_that_changes_the_side():
    """keys() and items() allocate; an allocation may run a GC pass, and a gc callback (or
    a __del__) may change the side meanwhile. The listing is then a snapshot, never a
    crash (run in a child process: a crash there is a failed assertion here)."""
    import subprocess
    import sys

    script = """
import gc
from bookengine._fastbook import Side
side = Side(True)
for key in range(100):
    side[key] = 1.0
flip = [0]
def change(phase, info):
    if phase == "start":
        flip[0] += 1
        if flip[0] % 2:
            for key in range(1000, 1200):
                side[key] = 2.0
        else:
            for key in range(1000, 1200):
                del side[key]
gc.callbacks.append(change)
gc.set_threshold(1)
for _ in range(20):
    items, keys = side.items(), side.keys()
    assert all(type(k) is int for k in keys) and all(len(p) == 2 for p in items)
    assert keys == sorted(keys, reverse=True) and len(keys) in (100, 300)
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


def test_python_code_run_inside_a_c_call_cannot_pull_objects_from_under_it():
    """apply_levels calls price_parts (Python) and __setstate__ calls a key's __index__:
    either may change the list the C loop reads. The loop holds what it reads (run in a
    child process: a crash there is a failed assertion here)."""
    import os
    import subprocess
    import sys

    script = """
from bookengine._fastbook import Side, apply_levels
side = Side(True)
level = ["1e2", "".join(["12", "3.5"])]  # a price only price_parts reads; a fresh size str
def parts(text):
    level.clear()  # drops the size string's only other reference
    return (1, 2)
assert apply_levels(side, [level], float("-inf"), True, 2, parts) == 10000
assert side.items() == [(10000, 123.5)]
state = []
class Key:
    def __index__(self):
        state.clear()  # frees the pair, and with it the size object
        return 5
state.append((Key(), float("1.5") * 3))
restored = Side(True)
restored.__setstate__(state)
assert restored.items() == [(5, 4.5)]
print("ok")
"""
    env = {**os.environ, "PYTHONMALLOC": "debug"}  # freed memory is poisoned: reads fail
    done = subprocess.run(
        [sys.executable, "-X", "dev", "-c", script], capture_output=True, text=True, env=env
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


@settings(max_examples=400, deadline=None)
@given(
    bid=st.one_of(st.integers(0, 10**7), st.integers(2**52, 2**54), st.integers(2**62, 2**63 - 1)),
    ask=st.one_of(st.integers(0, 10**7), st.integers(2**52, 2**54), st.integers(2**62, 2**63 - 1)),
    bid_size=st.one_of(st.none(), st.sampled_from([1.0, 0.125, 60672.0])),
    ask_size=st.one_of(st.none(), st.sampled_from([2.5, 1e-8])),
    decimals=st.integers(0, 22),
    timestamp=st.one_of(st.none(), st.integers(0, 2**62)),
)
def test_c_top_event_is_its_python_twin(bid, ask, bid_size, ask_size, decimals, timestamp):
    """The scanner's path builds TopOfBook in C: same fields, bit-identical prices (an
    empty side has key -inf/inf and no price)."""
    from bookengine import TopOfBook
    from bookengine._fastbook import top_event
    from bookengine.sync import _top_event_py

    top = (bid if bid_size is not None else -inf, bid_size,
           ask if ask_size is not None else inf, ask_size)  # fmt: skip
    args = (TopOfBook, 123456789, timestamp, "BTC-PERP", 0, 42, top, 10**decimals)
    got, want = top_event(*args), _top_event_py(*args)
    assert type(got) is TopOfBook and got == want and hash(got) == hash(want)
    assert {got: 1}[want] == 1 and got._asdict() == want._asdict()
    assert [None if p is None else p.hex() for p in (got.bid_price, got.ask_price)] == [
        None if p is None else p.hex() for p in (want.bid_price, want.ask_price)
    ]


def test_top_event_refuses_what_it_cannot_build():
    """Only a NamedTuple of nine fields: a struct sequence (time.struct_time) is a tuple
    subclass of another layout, whose deallocator would read past the object."""
    import time

    from bookengine import TopOfBook
    from bookengine._fastbook import top_event

    for cls in (dict, tuple, time.struct_time):
        with pytest.raises(TypeError, match="NamedTuple class of 9 fields"):
            top_event(cls, 1, None, "X", 0, 1, (1, 1.0, 2, 1.0), 10)
    with pytest.raises(TypeError):
        top_event(TopOfBook, 1, None, "X", 0, 1, (1, 1.0, 2), 10)
    with pytest.raises(TypeError):
        top_event(TopOfBook, 1, None, "X", 0, 1, (1, 1.0, 2, 1.0))
    assert top_event(TopOfBook, 1, None, "X", 0, 1, (1, 1.0, 2, 1.0), 10).ask_price == 0.2
