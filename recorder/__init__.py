"""Capture BTSE sessions losslessly, replay them through the engine, export book series.

    from recorder import Replay, export_series
    for event in Replay(["recordings/"], symbols=["BTC-PERP"]).events(): ...
    export_series(["recordings/"], "top.parquet")

Why a package of its own beside `bookengine` (one distribution installs both): bookengine
is the small library a strategy imports (books, sync, the live Feed); recorder is what
works on files (the format, the writer, readers, replay, export and the
`btse-recorder` CLI). Replay drives the very same `bookengine.BookSync`; nothing here is
needed to trade live. The names below are loaded on first use, so the CLI and
`import recorder` stay light (numpy is imported only by export).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_HOMES = {
    "Replay": "recorder.replay",
    "ReplayStats": "recorder.replay",
    "DigestMismatch": "recorder.replay",
    "export_series": "recorder.export",  # the function `recorder.export.export`
    "collect": "recorder.export",
    "RecordingReader": "recorder.reader",
    "iter_records": "recorder.reader",
    "recording_files": "recorder.reader",
    "RecordingWriter": "recorder.writer",
    "RecorderSink": "recorder.writer",
    "record_session": "recorder.session",
    "SessionStats": "recorder.session",
}

__all__ = [
    "DigestMismatch",
    "RecorderSink",
    "RecordingReader",
    "RecordingWriter",
    "Replay",
    "ReplayStats",
    "SessionStats",
    "collect",
    "export_series",
    "iter_records",
    "record_session",
    "recording_files",
]

if TYPE_CHECKING:
    from recorder.export import collect
    from recorder.export import export as export_series
    from recorder.reader import RecordingReader, iter_records, recording_files
    from recorder.replay import DigestMismatch, Replay, ReplayStats
    from recorder.session import SessionStats, record_session
    from recorder.writer import RecorderSink, RecordingWriter


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'recorder' has no attribute {name!r}")
    # `export` is also the name of its module (recorder.export), which Python binds on
    # the package once imported: the function is offered as `export_series`
    return getattr(importlib.import_module(home), "export" if name == "export_series" else name)
