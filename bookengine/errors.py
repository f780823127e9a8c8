"""One exception hierarchy for the whole project.

A bad *frame* never raises out of `BookSync.feed` (it becomes a `BadFrame` event); these
exceptions are for bad *arguments* and for code that decodes frames on its own.
"""

from __future__ import annotations


class BookEngineError(Exception):
    """Base class of every error this project raises on purpose."""


class TopicError(BookEngineError, ValueError):
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
