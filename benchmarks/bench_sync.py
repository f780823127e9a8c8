"""BookSync end to end vs the parse-only floor, a C-extension book and a naive SortedDict
engine, on the same realistic frames (issues 2 and 8).

    pytest benchmarks/bench_sync.py          # pytest-benchmark table (absolute times)
    python -m benchmarks                     # one table of ratios from one run
"""

import pytest

from benchmarks import workloads

FRAMES = workloads.realistic_frames()


@pytest.mark.parametrize(
    "loop",
    [workloads.parse_floor, workloads.booksync, workloads.c_orderbook, workloads.sorteddict_naive],
    ids=lambda f: f.__name__,
)
def test_frames(benchmark, loop):
    benchmark.extra_info["frames"] = len(FRAMES)
    benchmark.extra_info.update(workloads.frame_shape(FRAMES))
    result = benchmark.pedantic(loop, args=(FRAMES,), rounds=5, iterations=1)
    assert result > 0


def test_booksync_pure_python(benchmark):
    """The same engine without the C accelerator (BOOKENGINE_PURE=1 does the same)."""
    import bookengine.book as book_module

    with book_module.pure_python():
        assert benchmark.pedantic(workloads.booksync, args=(FRAMES,), rounds=5, iterations=1) > 0


def test_booksync_orjson_path(benchmark):
    """The C engine without the delta scanner: every frame through orjson.loads."""
    assert benchmark.pedantic(workloads.booksync, args=(FRAMES, False), rounds=5, iterations=1) > 0
