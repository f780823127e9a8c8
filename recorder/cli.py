"""`btse-recorder`: one entry point, one module per subcommand (recorder/commands/)."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# name -> module in recorder.commands; each module has HELP, add_arguments(parser), run(args).
COMMANDS = (
    "demo",
    "simulate",
    "watch",
    "record",
    "info",
    "verify",
    "replay",
    "export",
    "instruments",
)


def build_parser() -> argparse.ArgumentParser:
    from bookengine import __version__

    parser = argparse.ArgumentParser(
        prog="btse-recorder",
        description="Record, watch, replay and export BTSE order book streams.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"recorder.commands.{name}")
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not args.verbose:
        logging.getLogger("websockets").setLevel(logging.WARNING)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    from bookengine.errors import BookEngineError

    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BookEngineError as exc:  # library errors as one line naming the command
        print(f"{args.command}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
