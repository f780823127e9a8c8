"""`btse-recorder`: one entry point, one module per subcommand (recorder/commands/).

Every subcommand ends with a documented exit status (recorder/exitcodes.py), errors are
one line naming the command (a traceback only for a bug, and only with -v), and -v/-q
work in any position.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys

from recorder.exitcodes import EPILOG, CommandFailed, Exit
from recorder.logs import Logs, split_verbosity

# name -> module in recorder.commands; each module has HELP, add_arguments(parser), run(args).
COMMANDS = (
    "demo",
    "simulate",
    "watch",
    "record",
    "publish",
    "info",
    "verify",
    "replay",
    "export",
    "book",
    "plot",
    "instruments",
)
log = logging.getLogger("recorder")


def _add_verbosity(parser: argparse.ArgumentParser) -> None:
    # listed for --help; main() takes them out of argv wherever they stand
    parser.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS,
                        help="more logging: -v debug, -vv also every websocket frame")  # fmt: skip
    parser.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                        help="warnings and errors only, no progress")  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    from bookengine import __version__

    parser = argparse.ArgumentParser(
        prog="btse-recorder",
        description="Record, watch, replay and export BTSE order book streams.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _add_verbosity(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"recorder.commands.{name}")
        p = sub.add_parser(
            name,
            help=module.HELP,
            description=module.HELP,
            epilog="\n\n".join(filter(None, [getattr(module, "FORMATS_HELP", None), EPILOG])),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(p)
        _add_verbosity(p)
        p.set_defaults(_run=module.run)
    return parser


def _error_status(exc: BaseException) -> Exit:
    """The exit status of a library error that reached the top."""
    from bookengine.errors import ArgumentError, CorruptBlock, MissingExtra, NoRecordings
    from bookengine.instruments import InstrumentsUnavailable
    from recorder.writer import RecorderError

    if isinstance(exc, ArgumentError | MissingExtra):
        return Exit.USAGE
    if isinstance(exc, NoRecordings):
        return Exit.NO_DATA
    if isinstance(exc, CorruptBlock):
        return Exit.CHECK_FAILED
    if isinstance(exc, RecorderError):
        return Exit.DISK
    if isinstance(exc, InstrumentsUnavailable):
        return Exit.NOTHING_RECORDED
    return Exit.INTERNAL


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # the offline commands stop on SIGTERM as on Ctrl-C


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    rest, verbosity = split_verbosity(argv)
    logs = Logs(verbosity)
    parser = build_parser()
    args = parser.parse_args(rest)  # exits 2 (Exit.USAGE) with argparse's message
    args.verbosity, args.quiet, args.logs = verbosity, verbosity < 0, logs
    if not getattr(args, "_run", None):
        parser.print_help()
        return Exit.USAGE
    from bookengine.errors import BookEngineError

    signal.signal(signal.SIGTERM, _terminate)  # live commands install their own on the loop
    try:
        return int(args._run(args) or 0)
    except CommandFailed as exc:
        logs.error(f"{args.command}: {exc.message}")
        return exc.code
    except KeyboardInterrupt:
        logs.error(f"{args.command}: interrupted")
        return Exit.INTERRUPTED
    except BrokenPipeError:
        # the reader of stdout went away (`| head`): stop quietly, with the status a Unix
        # tool killed by SIGPIPE has (a pipeline with pipefail sees it; never a false 0)
        silence_stdout()
        return Exit.BROKEN_PIPE
    except BookEngineError as exc:  # library errors as one line naming the command
        logs.error(f"{args.command}: {exc}")
        return _error_status(exc)
    except Exception as exc:
        if verbosity > 0:
            log.exception("%s: internal error", args.command)
        logs.error(f"{args.command}: internal error: {exc!r} (a bug: run with -v for the "
                   "traceback and please report it)")  # fmt: skip
        return Exit.INTERNAL


def silence_stdout() -> None:
    """After a broken pipe: nothing more may reach stdout (not even the flush at exit)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


if __name__ == "__main__":
    sys.exit(main())
