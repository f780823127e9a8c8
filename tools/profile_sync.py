"""Where BookSync.feed spends its time on realistic frames (issue 8's profile summary).

    python tools/profile_sync.py [--frames 20000] [--pure]

cProfile distorts absolute times (it charges each Python call) but shows the split
between parsing, the level loop and the bookkeeping; the ratios in the README come from
`python -m benchmarks`, which is not profiled.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import sys


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=20_000)
    parser.add_argument("--pure", action="store_true", help="profile without the C accelerator")
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args()
    if args.pure:
        os.environ["BOOKENGINE_PURE"] = "1"

    from bookengine import BookSync
    from bookengine.book import ACCELERATED
    from bookengine.simulator import realistic_frames

    frames = realistic_frames(n=args.frames)
    sync = BookSync()
    sync.subscribe(["update:BTC-PERP_0"], 0)
    profiler = cProfile.Profile()
    profiler.enable()
    for i, raw in enumerate(frames):
        sync.feed(i, raw)
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(args.top)
    print(f"BookSync.feed over {len(frames):,} frames, C accelerator: {ACCELERATED}")
    print(out.getvalue())
    return 0


if __name__ == "__main__":
    sys.exit(main())
