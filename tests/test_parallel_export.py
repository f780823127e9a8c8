"""Parallel export on a real Dask LocalCluster (2 worker processes): the partitioned
dataset equals the sequential export, damaged files included (issue 22)."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import need_extra
from simclient import FAST, run

from bookengine.errors import ArgumentError
from bookengine.events import TopOfBook
from bookengine.simulator import Faults, Simulator
from recorder import format as fmt
from recorder.exitcodes import Exit
from recorder.export import collect, collect_trades
from recorder.reader import iter_file, recording_files, scan
from recorder.replay import Replay
from recorder.session import record_session

need_extra("dask.distributed", "parallel")
ds = need_extra("pyarrow.dataset", "parallel")
from recorder.parallel_export import export_dataset, windows  # noqa: E402

pytestmark = pytest.mark.integration
SYMBOLS = ["BTC-USD", "BTC-PERP"]


@pytest.fixture(scope="module")
def recording(tmp_path_factory) -> Path:
    """A faulted session rotated into many small files."""
    out = tmp_path_factory.mktemp("parallel")

    async def body() -> None:
        async with Simulator(symbols=SYMBOLS, rate=250, faults=Faults(drop=0.004)) as sim:
            await record_session(SYMBOLS, out, url=sim.url, duration=8.0, max_bytes=60_000,
                                 feed_options=FAST)  # fmt: skip

    run(body(), timeout=60)
    assert len(recording_files([out])) >= 5
    return out


def sequential(paths: list[Path], depth: int = 0, interval: float | None = None,
               trades: bool = False) -> dict[str, np.ndarray]:  # fmt: skip
    replay = Replay(paths, skip_damaged=True)
    columns = collect_trades(replay) if trades else collect(replay, depth, interval)
    return columns.as_numpy()


def dataset(path: Path) -> dict[str, np.ndarray]:
    table = ds.dataset(path, format="parquet", partitioning="hive").to_table()
    return {name: table.column(name).to_numpy() for name in table.column_names}


def assert_same(parallel: dict, expected: dict) -> None:
    """Equal row for row, once both are in (symbol, arrival) order (the dataset's files
    are per date and symbol)."""
    assert len(parallel["arrival_ns"]) == len(expected["arrival_ns"]) > 0
    p = np.lexsort((parallel["arrival_ns"], parallel["symbol"].astype(str)))
    e = np.lexsort((expected["arrival_ns"], expected["symbol"]))
    for name, column in expected.items():
        got = parallel[name][p]
        want = column[e]
        if want.dtype.kind == "f":
            assert np.array_equal(got, want, equal_nan=True), name
        else:
            assert np.array_equal(got.astype(want.dtype), want), name


@pytest.mark.parametrize(
    "depth, interval, trades", [(0, None, False), (5, 100.0, False), (0, None, True)]
)
def test_parallel_equals_sequential(recording, tmp_path, depth, interval, trades):
    rows = export_dataset([recording], tmp_path / "ds", depth=depth, interval_ms=interval,
                          trades=trades, workers=2)  # fmt: skip
    assert len(rows) == len(windows([recording], int(interval * 1e6) if interval else 1)[0])
    assert not any(r["error"] for r in rows)
    assert_same(dataset(tmp_path / "ds"), sequential([recording], depth, interval, trades))
    # the summary adds up to the sequential replay's own counts
    full = Replay([recording])
    for _ in full.events():
        pass
    assert sum(r["frames"] for r in rows) == full.stats.selected_frames
    assert sum(r["gaps"] for r in rows) == full.stats.window_gaps > 0
    assert sum(r["digests_checked"] for r in rows) == full.stats.digests_checked
    # hive layout: date=.../symbol=...
    parts = sorted(p.relative_to(tmp_path / "ds").parts[:2]
                   for p in (tmp_path / "ds").rglob("*.parquet"))  # fmt: skip
    assert {s for _, s in parts} == {f"symbol={s}" for s in SYMBOLS} or trades


def test_every_file_starts_with_checkpoints(recording):
    files = recording_files([recording])
    for path in files[1:]:  # each rotated file opens with every synced book
        records = list(iter_file(path))
        first_frame = next(r.arrival_ns for r in records if r.kind == fmt.FRAME)
        first_checkpoint = next(r.arrival_ns for r in records if r.kind == fmt.CHECKPOINT)
        # at the recorder's first loop turn after the rotation (the periodic ones are a
        # minute apart): within a second even on a loaded machine
        assert first_checkpoint - first_frame < 1_000_000_000, path.name
        first = scan(path).first_ns
        alone = Replay([path], start_ns=first)  # this file, nothing else
        symbols = {e.symbol for e in alone.events() if type(e) is TopOfBook}
        assert symbols == set(SYMBOLS), path.name


def test_a_damaged_and_a_cut_file_are_exported_up_to_their_damage(recording, tmp_path):
    copy = tmp_path / "rec"
    shutil.copytree(recording, copy)
    files = recording_files([copy])
    damaged, cut = files[2], files[3]
    data = bytearray(damaged.read_bytes())
    block = scan(damaged).blocks[-1]
    data[block.offset + fmt.BLOCK_HEAD + 10] ^= 0xFF  # its zstd data: the block is lost
    damaged.write_bytes(bytes(data))
    partial = cut.with_name(cut.name + fmt.PARTIAL)
    partial.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])  # a crash mid-block
    cut.unlink()
    rows = export_dataset([copy], tmp_path / "ds", workers=2)
    assert not any(r["error"] for r in rows)  # processed, reported, never sunk the job
    # the damage is the damaged file's alone (not the tasks that read it to warm up), and
    # the summary adds up to one sequential replay's count
    assert [r["file"] for r in rows if r["damaged_blocks"]] == [damaged.name]
    full = Replay([copy], skip_damaged=True)
    for _ in full.events():
        pass
    assert sum(r["lost_records"] for r in rows) == full.stats.lost_records > 0
    assert_same(dataset(tmp_path / "ds"), sequential([copy]))


def test_export_parallel_cli(recording, tmp_path):
    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "recorder", "export", str(recording),
                               *args], capture_output=True, text=True, timeout=300)  # fmt: skip

    ok = cli("-o", str(tmp_path / "ds"), "--parallel", "2", "--depth", "5", "--interval",
             "100ms")  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    summary = (tmp_path / "ds" / "_summary.csv").read_text().splitlines()
    assert len(summary) == 1 + len(windows([recording], 100_000_000)[0])
    assert "partitioned by date and symbol" in ok.stdout
    assert_same(dataset(tmp_path / "ds"), sequential([recording], 5, 100.0))
    windowed = cli("-o", str(tmp_path / "w"), "--parallel", "2", "--from", "+1s")
    assert windowed.returncode == Exit.USAGE
    again = cli("-o", str(tmp_path / "ds"), "--parallel", "2")
    assert again.returncode == Exit.USAGE and "new or empty directory" in again.stderr


def test_a_selection_of_files_from_mid_session_equals_its_sequential_export(recording):
    files = recording_files([recording])[2:]  # the session began before these
    rows = export_dataset(files, Path(str(files[0].parent) + "-subset-ds"), workers=0)
    try:
        assert not any(r["error"] for r in rows)
        expected = sequential(files)  # joins the session: checkpoints give the books
        assert len(expected["arrival_ns"]) > 100
        assert_same(dataset(Path(str(files[0].parent) + "-subset-ds")), expected)
    finally:
        shutil.rmtree(str(files[0].parent) + "-subset-ds", ignore_errors=True)


def test_overlapping_sessions_are_refused_not_mixed(tmp_path):
    async def body() -> None:
        async with Simulator(symbols=["BTC-USD"], rate=100) as sim:
            await asyncio.gather(*(record_session(["BTC-USD"], tmp_path, url=sim.url,
                                                  duration=1.5, feed_options=FAST)
                                   for _ in range(2)))  # fmt: skip

    run(body(), timeout=60)
    with pytest.raises(ArgumentError, match="overlap in time"):
        export_dataset([tmp_path], tmp_path.parent / "overlap-ds", workers=0)
