import os

import pytest

import bookengine.book as book_module


@pytest.fixture(params=["c", "python"])
def book_impl(request, monkeypatch):
    """Run a test against the C accelerator and against the pure-Python fallback."""
    if request.param == "python":
        monkeypatch.setattr(book_module, "_apply_levels", book_module._apply_levels_py)
        monkeypatch.setattr(book_module, "NeedsDecimals", book_module._NeedsDecimalsPy)
    elif not book_module.ACCELERATED:
        if os.environ.get("CI"):
            pytest.fail("the C accelerator was not built in CI (setup.py, a compiler?)")
        pytest.skip("bookengine._fastbook is not built on this machine (optional)")
    return request.param
