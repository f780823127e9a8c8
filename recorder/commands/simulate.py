"""`btse-recorder simulate` (not built yet)."""

import argparse

HELP = "(not built yet)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    print("btse-recorder simulate: not built yet")
    return 2
