"""`btse-recorder info`: what a recording holds.

Exit status 1 if a file is damaged (a complete block does not decode, a block is
duplicated) or the recorder marked a hole in it (`loss` records); a file cut by a crash
is described, not failed (`verify` fails it).
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

HELP = "summarise recordings: time span, frames per topic, gaps, resyncs, compression"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", help="recording files or directories")


def _when(ns: int | None) -> str:
    if ns is None:
        return "-"
    seconds, rest = divmod(ns, 1_000_000_000)
    when = datetime.fromtimestamp(seconds, UTC)
    return f"{when:%Y-%m-%d %H:%M:%S}.{rest // 1_000_000:03d}Z"


def run(args: argparse.Namespace) -> int:
    from recorder.reader import describe_leftover, find_recordings_or_fail, summarize

    files, leftovers = find_recordings_or_fail(args.paths)
    for partial, final in leftovers:
        print(describe_leftover(partial, final))
    status = 0
    totals = {"frames": 0, "compressed": 0, "raw": 0, "gaps": 0, "resyncs": 0, "lost": 0}
    for path in files:
        try:
            s = summarize(path)
        except (OSError, ValueError) as exc:  # say so, go on with the next file
            print(f"{path}: unreadable: {exc}")
            status = 1
            continue
        if s.finalised:
            state = f"finalised ({(s.footer or {}).get('finalised_by', 'footer')})"
        else:
            state = f"NOT finalised, truncated: {s.problem or 'no footer'}"
        # first_ns/last_ns are None exactly when the file has no blocks
        if s.first_ns is not None and s.last_ns is not None:
            span = (s.last_ns - s.first_ns) / 1e9
        else:
            span = 0.0
        header = s.header or {}
        frames = s.kinds.get("frame", 0)
        print(f"{path}")
        print(f"  {state}; {s.blocks:,} blocks, {s.records:,} records, {frames:,} frames")
        print(f"  from {_when(s.first_ns)} to {_when(s.last_ns)} ({span:,.1f}s)")
        symbols = ",".join(header.get("symbols") or []) or "?"
        print(
            f"  source {header.get('url', '?')}  symbols {symbols}  "
            f"{header.get('library', '')}  host {header.get('host', '?')}"
        )
        print(
            f"  {s.compressed_bytes:,} bytes on disk, {s.raw_bytes:,} raw (x{s.ratio:.1f}); "
            f"gaps {s.gaps}, resyncs {s.resyncs}, lost {s.losses} in {s.holes} hole(s)"
        )
        print(f"  records: {', '.join(f'{k} {v:,}' for k, v in sorted(s.kinds.items()))}")
        for topic, count in sorted(s.frames_per_topic.items()):
            print(f"    {topic:<28} {count:>10,} frames")
        if s.trades:
            print(f"  trades: {s.trades:,} (as received: the batch after a subscribe repeats some)")
        if s.duplicates:
            print(f"  DAMAGED: {s.duplicates} duplicated block(s), read once")
        if s.damaged:
            print(
                f"  DAMAGED: {len(s.damaged)} damaged block(s), {s.damaged_records:,} records "
                f"unreadable (the first: {s.damaged[0]})"
            )
        if s.losses or s.duplicates or s.damaged:
            status = max(status, 1)
        totals["frames"] += frames
        totals["compressed"] += s.compressed_bytes
        totals["raw"] += s.raw_bytes
        totals["gaps"] += s.gaps
        totals["resyncs"] += s.resyncs
        totals["lost"] += s.losses
    if len(files) > 1:
        ratio = totals["raw"] / totals["compressed"] if totals["compressed"] else 0.0
        print(
            f"{len(files)} files: {totals['frames']:,} frames, {totals['compressed']:,} bytes "
            f"(x{ratio:.1f}); gaps {totals['gaps']}, resyncs {totals['resyncs']}, "
            f"lost {totals['lost']}"
        )
    return status
