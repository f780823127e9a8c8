"""The exit statuses of `btse-recorder`, one meaning each, the same for every subcommand.

Supervisors, cron and CI branch on them, so they are part of the interface: documented in
`--help` (EPILOG) and the README, and each one has a test.
"""

from __future__ import annotations

from enum import IntEnum


class Exit(IntEnum):
    OK = 0  # done; a record stopped by --duration, SIGTERM or SIGINT, files finalised
    CHECK_FAILED = 1  # verify/info found damage or holes; replay digests differ
    USAGE = 2  # bad arguments or config file: nothing was created
    NO_DATA = 3  # no recording, not a recording, an empty time window, a symbol not in it
    NOTHING_RECORDED = 4  # no frame within --startup-timeout (unreachable, refused, silent)
    REJECTED = 5  # the exchange rejected every topic
    DISK = 6  # disk full or failing, or free space under --min-free: files kept finalised
    INTERNAL = 70  # a bug: an unexpected exception (EX_SOFTWARE)
    INTERRUPTED = 130  # replay/export/info stopped by Ctrl-C before the end (128 + SIGINT)
    BROKEN_PIPE = 141  # stdout closed by its reader (`| head`): 128 + SIGPIPE, as Unix tools


MEANINGS = {
    Exit.OK: "success (record: also a stop by --duration, SIGTERM or SIGINT)",
    Exit.CHECK_FAILED: "a check failed: damaged file, recorder holes, digests that differ",
    Exit.USAGE: "bad arguments or config file (nothing was created)",
    Exit.NO_DATA: "no data: no recording found, not a recording, empty window, symbol absent",
    Exit.NOTHING_RECORDED: "nothing recorded: no frame within --startup-timeout",
    Exit.REJECTED: "the exchange rejected every topic",
    Exit.DISK: "disk full, write failed, or free space under --min-free",
    Exit.INTERNAL: "internal error (a bug: please report it with the log)",
    Exit.INTERRUPTED: "interrupted by Ctrl-C or SIGTERM before the end (output incomplete)",
    Exit.BROKEN_PIPE: "stdout closed by its reader (| head): output cut, as SIGPIPE would",
}

EPILOG = "exit status:\n" + "\n".join(
    f"  {int(code):>3}  {text}" for code, text in MEANINGS.items()
)


class CommandFailed(Exception):
    """Raised by a subcommand to end with one clear line and a documented status."""

    def __init__(self, code: Exit, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def usage(message: str) -> CommandFailed:
    return CommandFailed(Exit.USAGE, message)
