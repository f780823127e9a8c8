"""The public API is listed once (`__all__`) and the package root exports exactly it."""

import types

import bookengine


def test_the_root_exports_exactly_all():
    public = {
        name
        for name, value in vars(bookengine).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public == set(bookengine.__all__) - {"naming"}
    assert len(set(bookengine.__all__)) == len(bookengine.__all__)  # each listed once
    for name in bookengine.__all__:
        assert getattr(bookengine, name) is not None


def test_a_newcomer_guesses_right():
    from bookengine import BookSync, Feed, OrderBook, TopOfBook  # noqa: F401
    from bookengine.feed import Feed as FeedFromModule

    assert Feed is FeedFromModule


def test_the_readme_imports_only_from_the_package_root():
    import re
    from pathlib import Path

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    imports = re.findall(r"^from ((?:bookengine|recorder)[\w.]*) import", readme, flags=re.M)
    # the root, and the namespaces of two parts a strategy may never load: the simulator
    # and the fan-out (the [fanout] extra)
    allowed = {"bookengine", "bookengine.simulator", "bookengine.fanout", "recorder"}
    assert imports and set(imports) <= allowed


def test_one_exception_tree():
    from bookengine import errors
    from recorder.reader import CorruptBlock, NoRecordings
    from recorder.writer import RecorderError

    for cls in (CorruptBlock, NoRecordings, RecorderError):
        assert issubclass(cls, bookengine.BookEngineError)
    classes = [v for v in vars(errors).values() if isinstance(v, type) and issubclass(v, Exception)]
    assert all(issubclass(c, bookengine.BookEngineError) for c in classes)
    # each is documented in the tree at the top of the module
    for cls in classes:
        assert cls.__name__ in errors.__doc__


def test_library_code_never_raises_system_exit():
    import re
    from pathlib import Path

    root = Path(__file__).parent.parent
    for path in [*root.glob("bookengine/**/*.py"), *root.glob("recorder/*.py")]:
        assert not re.search(r"raise SystemExit", path.read_text()), path


def test_replay_and_export_import_from_one_place():
    import recorder
    from recorder.export import export
    from recorder.replay import Replay

    assert recorder.Replay is Replay and recorder.export_series is export
    for name in recorder.__all__:
        assert getattr(recorder, name) is not None
