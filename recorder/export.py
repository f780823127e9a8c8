"""Export book series from recordings to numpy (`.npz`), Parquet (pyarrow, optional) or
CSV, with the columns a pandas/polars user expects:

- top of book (`depth=0`): arrival_ns, exchange_ms, symbol, grouping, seq, synced,
  bid_price, bid_size, ask_price, ask_size; one row per top-of-book change.
- depth snapshots (`depth=N`): arrival_ns, exchange_ms, symbol, grouping, seq, synced,
  then bid_price_0..N-1, bid_size_0.., ask_price_0.., ask_size_0.. (best first, NaN where
  the book is thinner); one row per book update, or per `interval_ms` of arrival time.

Holes are rows: when a book goes out of sync (a gap, a lost connection, a crossed book),
a row with `synced` false, seq -1 and NaN prices is written at that instant; rows resume
(`synced` true) once the book is rebuilt. A series never silently spans a hole.

- L1 quotes (`l1=True`): the recorded `snapshotL1` streams: arrival_ns, exchange_ms,
  symbol, topic, bid_price, bid_size, ask_price, ask_size; one row per quote.

- trades (`trades=True`): arrival_ns, exchange_ms, symbol, trade_id, side (BUY/SELL,
  the taker's), batch (came in the post-subscribe batch), price, size; one row per trade,
  each once, in exchange order per symbol. Futures sizes are contracts.

- OTC quotes (`otc=True`) and own order notifications (`notifications=True`), each row
  beside the book at that instant: recorder/private_export.py lists their columns.

Prices and sizes are float64 holding the exact decimals sent; an empty side is NaN.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
from array import array
from collections.abc import Iterable
from math import nan
from pathlib import Path
from typing import BinaryIO, TypeVar

import numpy as np

from bookengine.errors import ArgumentError, MissingExtra
from bookengine.events import BookUpdate, L1Quote, StatusChanged, SyncStatus, TopOfBook, Trade
from recorder.private_export import RowTable, collect_notifications, collect_otc
from recorder.replay import Replay, ReplayStats

T = TypeVar("T")


class Columns:
    """Column-wise accumulation in compact arrays (a row of Python objects per update
    would cost ~10x the memory)."""

    def __init__(self, float_names: list[str]) -> None:
        self.arrival_ns = array("q")
        self.exchange_ms = array("q")
        self.seq = array("q")
        self.grouping = array("q")
        self.synced = array("b")
        self.symbol: list[str] = []
        self.floats = {name: array("d") for name in float_names}

    def add(self, event, values: Iterable[float | None]) -> None:  # noqa: ANN001
        self.arrival_ns.append(event.arrival_ns)
        self.exchange_ms.append(event.exchange_ms if event.exchange_ms is not None else -1)
        self.seq.append(event.seq)
        self.grouping.append(-1 if event.grouping is None else event.grouping)
        self.synced.append(1)
        self.symbol.append(event.symbol)
        for column, value in zip(self.floats.values(), values, strict=True):
            column.append(nan if value is None else value)

    def add_hole(self, status: StatusChanged) -> None:
        """The book of `status` left sync here: one marker row (synced false, NaN)."""
        self.arrival_ns.append(status.arrival_ns)
        self.exchange_ms.append(-1)
        self.seq.append(-1)
        self.grouping.append(-1 if status.grouping is None else status.grouping)
        self.synced.append(0)
        self.symbol.append(status.symbol)
        for column in self.floats.values():
            column.append(nan)

    def __len__(self) -> int:
        return len(self.arrival_ns)

    def as_numpy(self) -> dict[str, np.ndarray]:
        out = {
            "arrival_ns": np.frombuffer(self.arrival_ns, dtype=np.int64).copy(),
            "exchange_ms": np.frombuffer(self.exchange_ms, dtype=np.int64).copy(),
            "symbol": np.array(self.symbol, dtype=str),
            "grouping": np.frombuffer(self.grouping, dtype=np.int64).copy(),
            "seq": np.frombuffer(self.seq, dtype=np.int64).copy(),
            "synced": np.frombuffer(self.synced, dtype=np.int8).astype(bool),
        }
        for name, column in self.floats.items():
            out[name] = np.frombuffer(column, dtype=np.float64).copy()
        return out


class TradeColumns:
    """The trades table, column-wise (see the module docstring)."""

    def __init__(self) -> None:
        self.arrival_ns = array("q")
        self.exchange_ms = array("q")
        self.trade_id = array("q")
        self.price = array("d")
        self.size = array("d")
        self.symbol: list[str] = []
        self.side: list[str] = []
        self.batch: list[bool] = []

    def add(self, trade: Trade) -> None:
        self.arrival_ns.append(trade.arrival_ns)
        self.exchange_ms.append(trade.exchange_ms)
        self.trade_id.append(trade.trade_id)
        self.price.append(trade.price)
        self.size.append(trade.size)
        self.symbol.append(trade.symbol)
        self.side.append(trade.side)
        self.batch.append(trade.batch)

    def __len__(self) -> int:
        return len(self.arrival_ns)

    def as_numpy(self) -> dict[str, np.ndarray]:
        return {
            "arrival_ns": np.frombuffer(self.arrival_ns, dtype=np.int64).copy(),
            "exchange_ms": np.frombuffer(self.exchange_ms, dtype=np.int64).copy(),
            "symbol": np.array(self.symbol, dtype=str),
            "trade_id": np.frombuffer(self.trade_id, dtype=np.int64).copy(),
            "side": np.array(self.side, dtype=str),
            "batch": np.array(self.batch, dtype=bool),
            "price": np.frombuffer(self.price, dtype=np.float64).copy(),
            "size": np.frombuffer(self.size, dtype=np.float64).copy(),
        }


class L1Columns:
    """The snapshotL1 quotes, column-wise (see the module docstring)."""

    def __init__(self) -> None:
        self.arrival_ns = array("q")
        self.exchange_ms = array("q")
        self.symbol: list[str] = []
        self.topic: list[str] = []
        self.floats = {n: array("d") for n in ("bid_price", "bid_size", "ask_price", "ask_size")}

    def add(self, quote: L1Quote) -> None:
        self.arrival_ns.append(quote.arrival_ns)
        self.exchange_ms.append(-1 if quote.exchange_ms is None else quote.exchange_ms)
        self.symbol.append(quote.symbol)
        self.topic.append(quote.topic)
        for column, value in zip(self.floats.values(), quote[3:7], strict=True):
            column.append(nan if value is None else value)

    def __len__(self) -> int:
        return len(self.arrival_ns)

    def as_numpy(self) -> dict[str, np.ndarray]:
        out = {
            "arrival_ns": np.frombuffer(self.arrival_ns, dtype=np.int64).copy(),
            "exchange_ms": np.frombuffer(self.exchange_ms, dtype=np.int64).copy(),
            "symbol": np.array(self.symbol, dtype=str),
            "topic": np.array(self.topic, dtype=str),
        }
        for name, column in self.floats.items():
            out[name] = np.frombuffer(column, dtype=np.float64).copy()
        return out


def collect_l1(replay: Replay) -> L1Columns:
    """Replay and gather every recorded snapshotL1 quote."""
    return _gather(replay, L1Quote, L1Columns())


def collect_trades(replay: Replay) -> TradeColumns:
    """Replay and gather every trade (each once: TradeSync de-duplicates)."""
    return _gather(replay, Trade, TradeColumns())


def _gather(replay: Replay, kind: type, columns: T) -> T:
    """Every event of exactly `kind` into `columns` (which has `add(event)`)."""
    add = columns.add  # type: ignore[attr-defined]
    for event in replay.events():
        if type(event) is kind:
            add(event)
    return columns


def _left_sync(status: StatusChanged) -> bool:
    """A book stream (not L1, not trades) stopped being synced."""
    return status.topic.startswith("update:") and status.status in (
        SyncStatus.OUT_OF_SYNC, SyncStatus.FAILING, SyncStatus.UNSUBSCRIBED
    )  # fmt: skip


def depth_columns(depth: int) -> list[str]:
    return [
        *(f"bid_price_{i}" for i in range(depth)),
        *(f"bid_size_{i}" for i in range(depth)),
        *(f"ask_price_{i}" for i in range(depth)),
        *(f"ask_size_{i}" for i in range(depth)),
    ]


def collect(replay: Replay, depth: int = 0, interval_ms: float | None = None) -> Columns:
    """Replay and gather the series (depth 0: top of book; N: N levels per side)."""
    if depth < 0 or (interval_ms is not None and interval_ms <= 0):
        raise ArgumentError("depth must be >= 0 and interval_ms > 0")
    if depth == 0:
        columns = Columns(["bid_price", "bid_size", "ask_price", "ask_size"])
        for event in replay.events():
            if type(event) is TopOfBook:
                columns.add(event, event[5:9])
            elif type(event) is StatusChanged and _left_sync(event):
                columns.add_hole(event)
        return columns
    replay.book_updates = True
    columns = Columns(depth_columns(depth))
    step = None if interval_ms is None else int(interval_ms * 1e6)
    due: dict[tuple, int] = {}
    for event in replay.events():
        if type(event) is StatusChanged and _left_sync(event):
            columns.add_hole(event)
            due.pop((event.symbol, event.grouping), None)  # the first row after it is kept
            continue
        if type(event) is not BookUpdate:
            continue
        if step is not None:
            key = (event.symbol, event.grouping)
            if event.arrival_ns < due.get(key, 0):
                continue
            due[key] = (event.arrival_ns // step + 1) * step
        bids, asks = event.book.depth(depth)
        pad: list[float | None] = [None] * depth  # NaN where the book is thinner
        columns.add(
            event,
            [
                *([p for p, _ in bids] + pad)[:depth],
                *([s for _, s in bids] + pad)[:depth],
                *([p for p, _ in asks] + pad)[:depth],
                *([s for _, s in asks] + pad)[:depth],
            ],
        )
    return columns


OUTPUT_TYPES = (".npz", ".parquet", ".csv")
Table = Columns | TradeColumns | L1Columns | RowTable


def check_output(path: str | Path) -> Path:
    """Refuse an output that could not be written, before any replay: an unknown type,
    a missing directory, Parquet without pyarrow."""
    path = Path(path)
    if path.suffix not in OUTPUT_TYPES:
        raise ArgumentError(f"unknown output type {path.suffix!r}: use {', '.join(OUTPUT_TYPES)}")
    if not path.parent.is_dir():
        raise ArgumentError(f"the output's directory {path.parent} does not exist")
    if path.is_dir():
        raise ArgumentError(f"the output {path} is a directory")
    if path.suffix == ".parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise MissingExtra(
                "Parquet export needs pyarrow: pip install 'bookengine[parquet]' (or use .npz)"
            ) from None
    probe = path.with_name(f".{path.name}.{os.getpid()}.probe")
    try:  # can a file be written there at all (read-only, no permission)?
        with open(probe, "xb"):
            pass
    except FileExistsError:
        return path  # someone's file of that name: left alone, and the directory is usable
    except OSError as exc:
        raise ArgumentError(f"cannot write into {path.parent}: {exc.strerror or exc}") from None
    with contextlib.suppress(OSError):
        probe.unlink()
    return path


def write(columns: Table, path: str | Path) -> Path:
    """`.npz` (numpy), `.parquet` (needs pyarrow: pip install 'bookengine[parquet]') or
    `.csv` (a header line, then one line per row; floats as their shortest exact
    spelling, NaN empty), written beside under a temporary name and renamed: never a
    half-written output."""
    path = check_output(path)
    arrays = columns.as_numpy()
    partial = path.with_name(f".{path.name}.partial")
    try:
        with open(partial, "wb") as f:
            if path.suffix == ".npz":
                # allow_pickle: numpy's default, spelled out so that mypy does not match the
                # **arrays against that bool keyword (no column is named so; none is object)
                np.savez_compressed(f, allow_pickle=True, **arrays)
            elif path.suffix == ".csv":
                _write_csv(arrays, f)
            else:
                import pyarrow as pa
                import pyarrow.parquet as pq

                table = pa.table({name: pa.array(values) for name, values in arrays.items()})
                pq.write_table(table, f, compression="zstd")
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path


def _write_csv(arrays: dict[str, np.ndarray], f: BinaryIO) -> None:
    text = io.TextIOWrapper(f, encoding="utf-8", newline="")
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(arrays)
    columns = [_csv_column(values) for values in arrays.values()]
    writer.writerows(zip(*columns, strict=True))
    text.flush()
    text.detach()


def _csv_column(values: np.ndarray) -> list:
    if values.dtype == np.float64:
        return ["" if v != v else repr(v) for v in values.tolist()]  # NaN: empty
    if values.dtype == bool:
        return ["true" if v else "false" for v in values.tolist()]
    return values.tolist()


def export(
    paths: Iterable[str | Path],
    out: str | Path,
    *,
    depth: int = 0,
    interval_ms: float | None = None,
    symbols: Iterable[str] | None = None,
    start_ns: int | None = None,
    end_ns: int | None = None,
    skip_damaged: bool = False,
    trades: bool = False,
    l1: bool = False,
    otc: bool = False,
    notifications: bool = False,
    sizes: str = "contracts",
    write_empty: bool = True,
) -> tuple[Path | None, int, ReplayStats]:
    """Replay `paths` and write the series to `out`; returns (path, rows, replay stats).
    Nothing is written if the replay fails (a damaged block without `skip_damaged`).

    Raises what `Replay` raises, `ArgumentError` for an unknown output type or bad
    depth/interval, `MissingExtra` for Parquet without pyarrow. With `write_empty`
    False, a table without rows is not written (the path returned is None)."""
    check_output(out)
    replay = Replay(
        paths,
        symbols=symbols,
        start_ns=start_ns,
        end_ns=end_ns,
        skip_damaged=skip_damaged,
        sizes=sizes,
    )
    tables = sum((trades, l1, otc, notifications))
    if tables and (depth or interval_ms is not None):
        raise ArgumentError(
            "trades, L1, OTC quotes and notifications are tables of their own: no depth or "
            "interval"
        )
    if tables > 1:
        raise ArgumentError("one table per file: trades, l1, otc or notifications")
    columns: Table
    if otc:
        columns = collect_otc(replay)
    elif notifications:
        columns = collect_notifications(replay)
    elif trades:
        columns = collect_trades(replay)
    elif l1:
        columns = collect_l1(replay)
    else:
        columns = collect(replay, depth, interval_ms)
    if not len(columns) and not write_empty:
        return None, 0, replay.stats
    return write(columns, out), len(columns), replay.stats
