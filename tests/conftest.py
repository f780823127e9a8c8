import os

import pytest

import bookengine.book as book_module


@pytest.fixture(params=["c", "python"])
def book_impl(request):
    """Run a test against the C accelerator (the delta scanner and the level loop) and
    against the pure-Python fallback (orjson and `_apply_levels_py`)."""
    if request.param == "python":
        with book_module.pure_python():
            yield request.param
        return
    if not book_module.ACCELERATED:
        if os.environ.get("CI"):
            pytest.fail("the C accelerator was not built in CI (setup.py, a compiler?)")
        pytest.skip("bookengine._fastbook is not built on this machine (optional)")
    yield request.param


@pytest.fixture(autouse=True)
def strict_core(monkeypatch):
    """A bug inside BookSync.feed (an illegal status transition, an exception of ours)
    fails the test instead of becoming a BadFrame, as it would in production."""
    import bookengine.sync

    monkeypatch.setattr(bookengine.sync, "STRICT", True)


def need_extra(module: str, extra: str):  # noqa: ANN201
    """Import an optional extra's module for a test: skipped on a machine without the
    extra, but a failure in CI, which installs every extra with [test]."""
    if os.environ.get("CI"):
        import importlib

        try:
            return importlib.import_module(module)
        except ImportError:
            pytest.fail(f"CI installs [{extra}] with [test], but {module} is missing")
    return pytest.importorskip(module)
