"""Logging for a service: levels from -v/-q, text or JSON lines, an optional log file that
SIGHUP reopens (the logrotate convention).

Levels: default INFO; `-q` WARNING; `-v` DEBUG for bookengine and the recorder; `-vv` also
the websockets library's frame-by-frame debug (hundreds of lines a second).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts (UTC ISO 8601), level, logger, msg, and the record's
    `fields` (passed as `extra={"fields": {...}}`) merged in, for log shippers."""

    def format(self, record: logging.LogRecord) -> str:
        seconds = int(record.created)
        ms = int((record.created - seconds) * 1000)
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{ms:03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            for key, value in fields.items():
                entry.setdefault(key, value)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def split_verbosity(argv: list[str]) -> tuple[list[str], int]:
    """Take -v/-vv/--verbose and -q/--quiet out of `argv`, wherever they stand (before a
    `--`): -> (the other arguments, verbosity: -1 quiet, 0 normal, 1+ verbose)."""
    rest: list[str] = []
    verbosity = 0
    quiet = False
    for n, arg in enumerate(argv):
        if arg == "--":
            rest.extend(argv[n:])
            break
        if arg == "--verbose" or (len(arg) > 1 and arg.startswith("-") and set(arg[1:]) == {"v"}):
            verbosity += 1 if arg == "--verbose" else len(arg) - 1
        elif arg in ("-q", "--quiet"):
            quiet = True
        else:
            rest.append(arg)
    return rest, (-1 if quiet and not verbosity else verbosity)


class Logs:
    """The process's logging: configured once, reconfigurable (format, file), reopenable."""

    def __init__(self, verbosity: int = 0) -> None:
        self.verbosity = verbosity
        self.format = "text"
        self.path: str | None = None
        self._handler: logging.Handler | None = None
        self.configure()

    def configure(self, log_format: str | None = None, path: str | None = None) -> None:
        """(Re)install the one handler: stderr, or `path` appended to."""
        if log_format is not None:
            if log_format not in FORMATS:
                raise ValueError(f"log format must be one of {', '.join(FORMATS)}")
            self.format = log_format
        if path is not None:
            self.path = path
        handler: logging.Handler
        if self.path:
            handler = logging.FileHandler(self.path, encoding="utf-8")  # OSError: the caller's
        else:
            handler = logging.StreamHandler(sys.stderr)
        formatter: logging.Formatter
        if self.format == "json":
            formatter = JsonFormatter()
        else:
            formatter = logging.Formatter(TEXT_FORMAT)
            formatter.converter = time.gmtime
        handler.setFormatter(formatter)
        root = logging.getLogger()
        if self._handler is not None:
            root.removeHandler(self._handler)
            self._handler.close()
        root.addHandler(handler)
        self._handler = handler
        root.setLevel(
            logging.WARNING
            if self.verbosity < 0
            else logging.DEBUG
            if self.verbosity
            else logging.INFO
        )
        # websockets logs every frame at DEBUG: only at -vv
        logging.getLogger("websockets").setLevel(
            logging.DEBUG if self.verbosity >= 2 else logging.WARNING
        )

    def reopen(self) -> None:
        """SIGHUP: close and reopen the log file (after logrotate moved it)."""
        if self.path:
            self.configure()

    def error(self, message: str) -> None:
        """A command's final error: one plain line on stderr, and also into the log when
        the log is JSON or a file (so a shipper or the file says why the run ended)."""
        if self.format == "json" or self.path:
            logging.getLogger("recorder").error("%s", message)
        if self.format != "json" or self.path:
            print(message, file=sys.stderr, flush=True)

    @property
    def plain_stderr(self) -> bool:
        """Progress may be drawn on stderr: a terminal, text logs, no log file."""
        return sys.stderr.isatty() and self.format == "text" and not self.path

    @property
    def quiet(self) -> bool:
        return self.verbosity < 0

    @property
    def verbose(self) -> bool:
        return self.verbosity > 0
