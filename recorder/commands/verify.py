"""`btse-recorder verify`: check that recordings are intact.

A file passes when it is finalised (footer, index, trailer), its index agrees with a
header-by-header walk, every block decodes to what its header says, the footer's counts
agree with the blocks, and it starts with a header record of a known format version.
Holes the recorder marked (`loss` records) and clock steps are reported as notes: the
file is intact, the session was not.
"""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "check recordings: every block decodes, counts and times agree, files are finalised"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", help="recording files or directories")
    parser.add_argument(
        "--skip-damaged",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="only --no-skip-damaged (the default): verify reads every block, fails on damage",
    )


def verify_file(path: str | Path) -> tuple[list[str], list[str]]:
    """(problems, notes) for one file; no problems means intact and finalised."""
    import orjson
    import zstandard

    from recorder import format as fmt
    from recorder.reader import CorruptBlock, describe_duplicate, read_block, scan

    problems: list[str] = []
    notes: list[str] = []
    walked = scan(path, use_index=False)
    if walked.problem:
        problems.append(
            f"not finalised, truncated: {walked.problem} "
            f"(readable up to byte {walked.complete_bytes})"
        )
    elif walked.footer is None:
        problems.append("not finalised: no footer (crash, or still being written)")
    else:
        indexed = scan(path)
        if not indexed.indexed:
            problems.append("finalised, but the trailer/index is missing or inconsistent")
        elif indexed.blocks != walked.blocks:
            problems.append("the index disagrees with the block headers")
    for copy, original in walked.duplicates:
        problems.append(f"{describe_duplicate(copy, original)} (readers skip it)")
    if not walked.blocks:
        problems.append("no complete block")
        return problems, notes
    decompressor = zstandard.ZstdDecompressor()
    kinds: dict[str, int] = {}
    last = None
    stepped_back = 0
    with open(path, "rb") as f:
        for n, block in enumerate(walked.blocks):
            try:
                records = read_block(f, block, decompressor)
            except CorruptBlock as exc:
                problems.append(f"block {n}: {exc}")
                continue
            frames = sum(r.kind == fmt.FRAME for r in records)
            if len(records) != block.records or frames != block.frames:
                problems.append(
                    f"block {n}: header says {block.records} records ({block.frames} frames), "
                    f"holds {len(records)} ({frames})"
                )
            stamps = [r.arrival_ns for r in records]
            if stamps and (min(stamps) != block.first_ns or max(stamps) != block.last_ns):
                problems.append(f"block {n}: time range differs from its header")
            for r in records:
                name = fmt.KINDS.get(r.kind)
                if name is None:
                    problems.append(f"block {n}: unknown record kind {r.kind!r}")
                    break
                kinds[name] = kinds.get(name, 0) + 1
                if last is not None and r.arrival_ns < last:
                    stepped_back += 1
                last = r.arrival_ns
                if r.kind == fmt.LOSS:
                    hole = orjson.loads(r.payload)
                    notes.append(
                        f"hole: {hole['count']} records lost between {hole['first_ns']} "
                        f"and {hole['last_ns']} ns"
                    )
            if n == 0:
                if not records or records[0].kind != fmt.HEADER:
                    problems.append("the first record is not a header")
                else:
                    header = orjson.loads(records[0].payload)
                    if (
                        header.get("format") != fmt.FORMAT_NAME
                        or header.get("version") not in fmt.READABLE_VERSIONS
                    ):
                        problems.append(
                            f"unknown format {header.get('format')} v{header.get('version')}"
                        )
    if stepped_back:
        notes.append(f"arrival time steps back {stepped_back} time(s) (wall clock adjusted?)")
    if walked.footer is not None and not walked.problem:
        expect = {
            "format": fmt.FORMAT_NAME,
            # a footer says the version its file was written in (any readable one)
            "version": (
                walked.footer.get("version")
                if walked.footer.get("version") in fmt.READABLE_VERSIONS
                else fmt.FORMAT_VERSION
            ),
            "first_ns": walked.first_ns,
            "last_ns": walked.last_ns,
            "blocks": len(walked.blocks),
            "records": sum(b.records for b in walked.blocks),
            "frames": sum(b.frames for b in walked.blocks),
            "raw_bytes": sum(b.raw for b in walked.blocks),
            "kinds": kinds,
        }
        problems.extend(footer_problems(walked.footer, expect))
    return problems, notes


def footer_problems(footer: dict, expect: dict) -> list[str]:
    """Every key of the footer schema, of its type, and equal to what the blocks hold: a
    footer with a damaged key fails, it is not silently half checked."""
    from recorder import format as fmt

    problems = []
    for key, types in fmt.FOOTER_KEYS.items():
        value = footer.get(key)
        if key not in footer:
            problems.append(f"footer lacks {key}")
        elif not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            names = " or ".join("null" if t is type(None) else t.__name__ for t in types)
            problems.append(f"footer {key} is not {names}: {value!r}")
        elif key in expect and value != expect[key]:
            problems.append(f"footer says {key} {value!r}, the blocks hold {expect[key]!r}")
    if footer.get("finalised_by") not in fmt.FINALISED_BY:
        problems.append(f"footer finalised_by is not one of {', '.join(fmt.FINALISED_BY)}")
    return problems


def run(args: argparse.Namespace) -> int:
    from recorder.exitcodes import usage
    from recorder.reader import describe_leftover, find_recordings_or_fail

    if args.skip_damaged:  # accepted for symmetry with replay/export, never honoured
        raise usage("--skip-damaged is refused: verify fails on damage")
    files, leftovers = find_recordings_or_fail(args.paths)
    for partial, final in leftovers:
        print(f"NOTE {describe_leftover(partial, final)}")
    bad = 0
    for path in files:
        try:
            problems, notes = verify_file(path)
        except OSError as exc:
            problems, notes = [f"cannot read: {exc.strerror or exc}"], []
        if problems or not args.quiet:
            print(f"{'OK  ' if not problems else 'FAIL'} {path}")
            for problem in problems:
                print(f"     {problem}")
            for note in notes[:20]:
                print(f"     note: {note}")
            if len(notes) > 20:
                print(f"     note: ... and {len(notes) - 20} more")
        bad += bool(problems)
    print(f"{len(files) - bad} of {len(files)} file(s) intact")
    return 1 if bad else 0
