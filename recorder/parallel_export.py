"""Exports of many recordings in parallel on Dask: a partitioned Parquet dataset.

    summary = export_dataset(["recordings/"], "dataset/", depth=10, interval_ms=100,
                             workers=8)                  # a LocalCluster of 8 processes
    summary = export_dataset(paths, "dataset/", scheduler="tcp://host:8786")  # a cluster

One task per recording file: the task replays the time window its file starts (to where
the next file starts), seeking like `replay --from` (the recorder's checkpoints, one at
every file's start, give every book a valid start), so its rows are exactly the rows a
sequential export has in that window. Windows are cut on `interval_ms` boundaries, so a
sampling bucket never straddles two tasks. Rows go into a hive-partitioned dataset
(`date=YYYY-MM-DD/symbol=BTC-PERP/part-NNNNN-0.parquet`) that pyarrow, polars, pandas and
DuckDB read as is. A damaged or `.partial` file is exported up to its damage; a task that
fails is reported in the summary, never the whole job.

Dask (`dask.distributed`) is the `[parallel]` extra: a LocalCluster on one machine, the
same code on a real cluster (the workers must see the recordings and the output at the
same paths).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bookengine.errors import ArgumentError, MissingExtra


@dataclass(frozen=True)
class Window:
    """The part of the recordings one task exports: [start_ns, end_ns] of arrival time,
    read from `paths` (its file, and those it warms up from)."""

    index: int
    file: str
    start_ns: int
    end_ns: int | None  # None: to the end
    paths: tuple[str, ...]


def windows(paths: Iterable[str | Path], step_ns: int = 1) -> tuple[list[Window], float]:
    """One window per recording file, from its first record to the next file's first,
    both rounded down to `step_ns` (the sampling interval); -> (windows, the largest
    checkpoint interval of any session, which bounds every task's read-back).

    Raises ArgumentError for recordings of two sessions that overlap in time (two
    recorders writing into one directory): a task could not tell their rows apart."""
    from recorder.reader import file_header, header_session, recording_files, scan

    spans: list[tuple[int, int, str, str | None]] = []  # first, last, path, session
    interval = 60.0
    for file in recording_files(paths):
        info = scan(file)
        if info.first_ns is None or info.last_ns is None:
            continue  # no complete block: nothing to export (a crash at its very start)
        header = file_header(file, info)
        value = (header or {}).get("checkpoint_interval_s")
        if isinstance(value, int | float) and value > 0:
            interval = max(interval, float(value))
        session = header_session(header) if header else None
        spans.append((info.first_ns, info.last_ns, str(file), session))
    spans.sort()
    for n, span in enumerate(spans):  # a file whose header block is damaged: as replay
        if span[3] is None and n:  # does, it continues the session before it
            spans[n] = (*span[:3], spans[n - 1][3])
    sessions: dict[str | None, tuple[int, int]] = {}
    for first, last, _, session in spans:
        lo, hi = sessions.get(session, (first, last))
        sessions[session] = (min(lo, first), max(hi, last))
    ranges = sorted(sessions.items(), key=lambda item: item[1])
    for (a, (_, a_end)), (b, (b_start, _)) in zip(ranges, ranges[1:], strict=False):
        if b_start <= a_end:
            raise ArgumentError(
                f"recording sessions {a} and {b} overlap in time (two recorders wrote into "
                "one directory): export each session's files apart"
            )
    back = int(interval * 1.5e9)
    out: list[Window] = []
    for n, (first, _, path, _) in enumerate(spans):
        start = first // step_ns * step_ns
        end = spans[n + 1][0] // step_ns * step_ns - 1 if n + 1 < len(spans) else None
        if end is not None and end < start:
            continue  # a file inside another's window (same step): the other exports it
        # the files a seek from `start` reads: those ending after start - read-back
        needed = tuple(p for f, last, p, _ in spans
                       if last >= start - back and (end is None or f <= end))  # fmt: skip
        out.append(Window(len(out), path, start, end, needed))
    return out, interval


def export_window(
    window: Window,
    out_dir: str,
    *,
    depth: int = 0,
    interval_ms: float | None = None,
    symbols: list[str] | None = None,
    trades: bool = False,
    sizes: str = "contracts",
    checkpoint_interval_s: float = 60.0,
    skip_damaged: bool = True,
) -> dict[str, Any]:
    """Export one window into the dataset; -> its summary row, counted inside the
    window only (never raises: a failure is the row's `error`)."""
    from recorder.export import collect, collect_trades
    from recorder.replay import Replay

    started = time.perf_counter()
    name = Path(window.file).name
    row: dict[str, Any] = {"index": window.index, "file": name, "rows": 0, "frames": 0,
                           "gaps": 0, "resyncs": 0, "digests_checked": 0,
                           "digest_mismatches": 0, "damaged_blocks": 0, "lost_records": 0,
                           "error": ""}  # fmt: skip
    try:
        # a seek, even for the first window: every task reads the same way
        replay = Replay(list(window.paths), start_ns=window.start_ns, end_ns=window.end_ns,
                        symbols=symbols, skip_damaged=skip_damaged, sizes=sizes,
                        checkpoint_interval_s=checkpoint_interval_s)  # fmt: skip
        columns = collect_trades(replay) if trades else collect(replay, depth, interval_ms)
        stats = replay.stats
        row.update(rows=len(columns), frames=stats.selected_frames, gaps=stats.window_gaps,
                   resyncs=stats.window_resyncs, digests_checked=stats.window_digests_checked,
                   digest_mismatches=sum(m.arrival_ns >= window.start_ns
                                         for m in stats.mismatches),
                   damaged_blocks=sum(str(e).startswith(f"{window.file}:")
                                      for e in replay.damaged),
                   lost_records=stats.window_lost_records)  # fmt: skip
        if len(columns):
            _write_partition(columns.as_numpy(), out_dir, window.index)
    except Exception as exc:  # reported in the summary: one bad file never sinks the job
        row["error"] = f"{type(exc).__name__}: {exc}"
    row["seconds"] = round(time.perf_counter() - started, 3)
    return row


def _write_partition(arrays: dict, out_dir: str, index: int) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    days = np.array(
        [datetime.fromtimestamp(ns / 1e9, UTC).strftime("%Y-%m-%d")
         for ns in arrays["arrival_ns"].tolist()]
    )  # fmt: skip
    table = pa.table({"date": days, **{name: pa.array(v) for name, v in arrays.items()}})
    pq.write_to_dataset(
        table,
        out_dir,
        partition_cols=["date", "symbol"],
        basename_template=f"part-{index:05d}-{{i}}.parquet",
        existing_data_behavior="overwrite_or_ignore",
        compression="zstd",
    )


def require_dask() -> None:
    try:
        import dask.distributed  # noqa: F401
    except ImportError:
        raise MissingExtra("--parallel needs Dask: pip install 'bookengine[parallel]'") from None


def export_dataset(
    paths: Iterable[str | Path],
    out_dir: str | Path,
    *,
    depth: int = 0,
    interval_ms: float | None = None,
    symbols: list[str] | None = None,
    trades: bool = False,
    sizes: str = "contracts",
    workers: int | None = None,
    scheduler: str | None = None,
    progress: Callable[[int, int, dict], None] | None = None,
    skip_damaged: bool = True,
) -> list[dict[str, Any]]:
    """Export every recording file as a task on Dask (a LocalCluster of `workers`
    processes, or the cluster at `scheduler`); -> the summary, one row per file, in file
    order. `workers=0`: no Dask, the tasks run here one after the other (the sequential
    reference)."""
    if trades and (depth or interval_ms is not None):
        raise ArgumentError("trades is a table of its own: no depth or interval with it")
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ArgumentError(f"{out} must be a new or empty directory (a dataset is written)")
    step = int(interval_ms * 1e6) if interval_ms else 1
    plan, checkpoint_interval = windows(list(paths), step)
    if not plan:
        raise ArgumentError("no recording with records in the paths")
    options: dict[str, Any] = {"depth": depth, "interval_ms": interval_ms, "symbols": symbols,
                               "trades": trades, "sizes": sizes,
                               "checkpoint_interval_s": checkpoint_interval,
                               "skip_damaged": skip_damaged}  # fmt: skip
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ArgumentError(f"cannot create {out}: {exc.strerror or exc}") from None
    rows: list[dict[str, Any]] = []
    if workers == 0:
        for window in plan:
            rows.append(export_window(window, str(out), **options))
            if progress is not None:
                progress(len(rows), len(plan), rows[-1])
        return rows
    require_dask()
    from dask.distributed import Client, LocalCluster, as_completed

    cluster = None
    if scheduler is None:
        cluster = LocalCluster(n_workers=workers or 2, threads_per_worker=1,
                               processes=True, dashboard_address=None)  # fmt: skip
    client = Client(scheduler or cluster)
    try:
        futures = [client.submit(export_window, w, str(out), pure=False, **options)
                   for w in plan]  # fmt: skip
        for future in as_completed(futures):
            rows.append(future.result())
            if progress is not None:
                progress(len(rows), len(plan), rows[-1])
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return sorted(rows, key=lambda r: r["index"])
