"""`btse-recorder info`: what a recording holds."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

HELP = "summarise recordings: time span, frames per topic, gaps, resyncs, compression"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", help="recording files or directories")


def _when(ns: int | None) -> str:
    if ns is None:
        return "-"
    return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"


def run(args: argparse.Namespace) -> int:
    from recorder.reader import recording_files_or_exit, summarize

    files = recording_files_or_exit(args.paths, "info")
    status = 0
    for path in files:
        try:
            s = summarize(path)
        except Exception as exc:  # a damaged block: say so, go on with the next file
            print(f"{path}: unreadable: {exc}")
            status = 1
            continue
        state = "finalised" if s.finalised else f"NOT finalised ({s.problem or 'no footer'})"
        span = (s.last_ns - s.first_ns) / 1e9 if s.first_ns and s.last_ns else 0.0
        header = s.header or {}
        print(f"{path}")
        print(f"  {state}; {s.blocks} blocks, {s.records:,} records")
        print(f"  from {_when(s.first_ns)} to {_when(s.last_ns)} ({span:,.1f}s)")
        source = f"{header.get('url', '?')}  {header.get('library', '')}"
        print(f"  source {source}  host {header.get('host', '?')}")
        print(
            f"  {s.compressed_bytes:,} bytes on disk, {s.raw_bytes:,} raw (x{s.ratio:.1f}); "
            f"gaps {s.gaps}, resyncs {s.resyncs}, lost {s.losses}"
        )
        print(f"  records: {', '.join(f'{k} {v:,}' for k, v in sorted(s.kinds.items()))}")
        for topic, count in sorted(s.frames_per_topic.items()):
            print(f"    {topic:<28} {count:>10,} frames")
        if s.losses:
            status = max(status, 1)
    return status
