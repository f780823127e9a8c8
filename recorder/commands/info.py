"""`btse-recorder info` (not built yet)."""

import argparse

HELP = "(not built yet)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    print("btse-recorder info: not built yet")
    return 2
