"""Backtest exports (issue 19) against replay alone, in the same run: frames/s through
`to_hftbacktest` (level diffs, event order correction, npz) and `to_tardis` (five gzip
CSV files) vs a plain replay of the same recording.

    python -m benchmarks.bench_backtest_export
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from benchmarks.bench_replay import make_recording, replay


def measure(n: int = 20_000, repeat: int = 2) -> dict:
    from benchmarks.workloads import compare
    from recorder.to_hftbacktest import to_hftbacktest
    from recorder.to_tardis import to_tardis

    with tempfile.TemporaryDirectory() as d, tempfile.TemporaryDirectory() as out:
        frames = make_recording(d, n)
        events = {}

        def hbt() -> int:
            _, stats = to_hftbacktest([d], "BTC-PERP", Path(out) / "b.npz")
            events["hftbacktest"] = stats.events
            return frames

        def tardis() -> int:
            stats = to_tardis([d], ["BTC-PERP"], Path(out) / "t")
            events["tardis"] = sum(stats.rows.values())
            return frames

        rates = compare({"replay": lambda: replay(d), "hftbacktest": hbt, "tardis": tardis},
                        frames, repeat)  # fmt: skip
    return {
        **rates,
        "hftbacktest_ratio": rates["hftbacktest"] / rates["replay"],
        "tardis_ratio": rates["tardis"] / rates["replay"],
        "hftbacktest_events_per_frame": events["hftbacktest"] / frames,
        "tardis_rows_per_frame": events["tardis"] / frames,
    }


if __name__ == "__main__":
    print(measure())
