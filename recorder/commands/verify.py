"""`btse-recorder verify`: check that recordings are intact."""

from __future__ import annotations

import argparse

HELP = "check recordings: every block decodes, counts and times agree, files are finalised"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", help="recording files or directories")


def verify_file(path) -> list[str]:  # noqa: ANN001
    """Problems found in one file (an empty list: intact and finalised)."""
    import orjson

    from recorder import format as fmt
    from recorder.reader import read_block, scan

    problems: list[str] = []
    info = scan(path)
    if info.problem:
        problems.append(info.problem)
    elif info.footer is None:
        problems.append("no footer: the file was not finalised (crash or still being written)")
    if not info.blocks:
        problems.append("no complete block")
        return problems
    last = None
    with open(path, "rb") as f:
        for n, block in enumerate(info.blocks):
            try:
                records = read_block(f, block)
            except Exception as exc:
                problems.append(f"block {n} at offset {block.offset}: cannot decode: {exc}")
                continue
            frames = sum(r.kind == fmt.FRAME for r in records)
            if len(records) != block.records or frames != block.frames:
                problems.append(
                    f"block {n}: header says {block.records} records, holds {len(records)}"
                )
            if records and (
                records[0].arrival_ns != block.first_ns or records[-1].arrival_ns != block.last_ns
            ):
                problems.append(f"block {n}: time range differs from its header")
            for r in records:
                if r.kind not in fmt.KINDS:
                    problems.append(f"block {n}: unknown record kind {r.kind!r}")
                    break
                if last is not None and r.arrival_ns < last:
                    problems.append(f"block {n}: time goes backwards at {r.arrival_ns}")
                    break
                last = r.arrival_ns
            if n == 0:
                if not records or records[0].kind != fmt.HEADER:
                    problems.append("the first record is not a header")
                else:
                    header = orjson.loads(records[0].payload)
                    if (
                        header.get("format") != fmt.FORMAT_NAME
                        or header.get("version") != fmt.FORMAT_VERSION
                    ):
                        problems.append(
                            f"unknown format {header.get('format')} v{header.get('version')}"
                        )
    return problems


def run(args: argparse.Namespace) -> int:
    from recorder.reader import recording_files_or_exit

    files = recording_files_or_exit(args.paths, "verify")
    bad = 0
    for path in files:
        problems = verify_file(path)
        print(f"{'OK  ' if not problems else 'FAIL'} {path}")
        for problem in problems:
            print(f"     {problem}")
        bad += bool(problems)
    print(f"{len(files) - bad} of {len(files)} file(s) intact")
    return 1 if bad else 0
