"""`btse-recorder export` (not built yet)."""

import argparse

HELP = "(not built yet)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    print("btse-recorder export: not built yet")
    return 2
