"""One exception hierarchy for the whole project (bookengine and recorder):

    BookEngineError                 every error this project raises on purpose
    ├── ArgumentError (ValueError)  a bad argument: the message says what to pass instead
    │   └── TopicError              a topic or symbol that is not valid BTSE syntax
    ├── FrameError (ValueError)     a frame that cannot be understood (decoding on your own)
    │   └── LevelError              a price or size that is not a valid decimal
    ├── ExchangeError               an error the exchange reported (codes in PROTOCOL.md)
    ├── IllegalTransition           a sync status change the state table forbids: a bug
    ├── MissingExtra (ImportError)  an optional extra is not installed: says which
    └── RecordingError              recordings
        ├── RecorderError           writing failed (disk full, no directory...); data kept
        ├── CorruptBlock (ValueError)  a complete block that does not decode: damage
        └── NoRecordings (FileNotFoundError)  no recording files where they were looked for

A bad *frame* never raises out of `BookSync.feed` (it becomes a `BadFrame` event); these
exceptions are for bad arguments, for code that decodes frames on its own, and for files.
The ValueError / FileNotFoundError bases keep `except ValueError` callers working.
"""

from __future__ import annotations


class BookEngineError(Exception):
    """Base class of every error this project raises on purpose."""


class ArgumentError(BookEngineError, ValueError):
    """A bad argument to a public function or class; the message says what to do."""


class TopicError(ArgumentError):
    """A topic or symbol string that is not valid BTSE OSS syntax."""


class FrameError(BookEngineError, ValueError):
    """A frame that cannot be understood; `reason` says why in one line."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class LevelError(FrameError):
    """A price or size that is not a finite, non-negative decimal we can key exactly."""


class IllegalTransition(BookEngineError):
    """A sync status change the state table does not allow: a bug in bookengine."""


class ExchangeError(BookEngineError):
    """An error the exchange reported in an error frame (codes in PROTOCOL.md)."""

    def __init__(self, code: int | None, message: str, arg: str | None = None) -> None:
        super().__init__(f"BTSE error {code}: {message}" + (f" ({arg})" if arg else ""))
        self.code = code
        self.message = message
        self.arg = arg


class MissingExtra(BookEngineError, ImportError):
    """A capability needs an optional extra that is not installed; the message says
    which (`pip install 'bookengine[parquet]'`)."""


class RecordingError(BookEngineError):
    """Base class of the errors about recording files."""


class RecorderError(RecordingError):
    """Writing a recording failed (disk full, a path that is not a directory...); what was
    written before is kept and readable."""


class CorruptBlock(RecordingError, ValueError):
    """A complete block that does not decode: the file is damaged (not merely cut)."""


class NoRecordings(RecordingError, FileNotFoundError):
    """No recording files where they were looked for."""
