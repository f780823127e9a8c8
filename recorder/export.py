"""Export book series from recordings to numpy (`.npz`) or Parquet (pyarrow, optional).

Two tables, with the columns a pandas/polars user expects:

- top of book (`depth=0`): arrival_ns, exchange_ms, symbol, grouping, seq, bid_price,
  bid_size, ask_price, ask_size; one row per top-of-book change.
- depth snapshots (`depth=N`): arrival_ns, exchange_ms, symbol, grouping, seq, then
  bid_price_0..N-1, bid_size_0.., ask_price_0.., ask_size_0.. (best first, NaN where the
  book is thinner); one row per book update, or per `interval_ms` of arrival time.

- trades (`trades=True`): arrival_ns, exchange_ms, symbol, trade_id, side (BUY/SELL,
  the taker's), batch (came in the post-subscribe batch), price, size; one row per trade,
  each once, in exchange order per symbol. Futures sizes are contracts.

Prices and sizes are float64 holding the exact decimals sent; an empty side is NaN.
"""

from __future__ import annotations

import os
from array import array
from collections.abc import Iterable
from math import nan
from pathlib import Path

import numpy as np

from bookengine.errors import ArgumentError, MissingExtra
from bookengine.events import BookUpdate, TopOfBook, Trade
from recorder.replay import Replay, ReplayStats


class Columns:
    """Column-wise accumulation in compact arrays (a row of Python objects per update
    would cost ~10x the memory)."""

    def __init__(self, float_names: list[str]) -> None:
        self.arrival_ns = array("q")
        self.exchange_ms = array("q")
        self.seq = array("q")
        self.grouping = array("q")
        self.symbol: list[str] = []
        self.floats = {name: array("d") for name in float_names}

    def add(self, event, values: Iterable[float | None]) -> None:  # noqa: ANN001
        self.arrival_ns.append(event.arrival_ns)
        self.exchange_ms.append(event.exchange_ms if event.exchange_ms is not None else -1)
        self.seq.append(event.seq)
        self.grouping.append(-1 if event.grouping is None else event.grouping)
        self.symbol.append(event.symbol)
        for column, value in zip(self.floats.values(), values, strict=True):
            column.append(nan if value is None else value)

    def __len__(self) -> int:
        return len(self.arrival_ns)

    def as_numpy(self) -> dict[str, np.ndarray]:
        out = {
            "arrival_ns": np.frombuffer(self.arrival_ns, dtype=np.int64).copy(),
            "exchange_ms": np.frombuffer(self.exchange_ms, dtype=np.int64).copy(),
            "symbol": np.array(self.symbol, dtype=str),
            "grouping": np.frombuffer(self.grouping, dtype=np.int64).copy(),
            "seq": np.frombuffer(self.seq, dtype=np.int64).copy(),
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


def collect_trades(replay: Replay) -> TradeColumns:
    """Replay and gather every trade (each once: TradeSync de-duplicates)."""
    columns = TradeColumns()
    for event in replay.events():
        if type(event) is Trade:
            columns.add(event)
    return columns


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
        return columns
    replay.book_updates = True
    columns = Columns(depth_columns(depth))
    step = None if interval_ms is None else int(interval_ms * 1e6)
    due: dict[tuple, int] = {}
    for event in replay.events():
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


def check_output(path: str | Path) -> Path:
    """Refuse an output that could not be written, before any replay: an unknown type,
    a missing directory, Parquet without pyarrow."""
    path = Path(path)
    if path.suffix not in (".npz", ".parquet"):
        raise ArgumentError(f"unknown output type {path.suffix!r}: use .npz or .parquet")
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
    return path


def write(columns: Columns | TradeColumns, path: str | Path) -> Path:
    """`.npz` (numpy) or `.parquet` (needs pyarrow: pip install 'bookengine[parquet]'),
    written beside under a temporary name and renamed: never a half-written output."""
    path = check_output(path)
    arrays = columns.as_numpy()
    partial = path.with_name(f".{path.name}.partial")
    try:
        with open(partial, "wb") as f:
            if path.suffix == ".npz":
                # allow_pickle: numpy's default, spelled out so that mypy does not match the
                # **arrays against that bool keyword (no column is named so; none is object)
                np.savez_compressed(f, allow_pickle=True, **arrays)
            else:
                import pyarrow as pa
                import pyarrow.parquet as pq

                table = pa.table({name: pa.array(values) for name, values in arrays.items()})
                pq.write_table(table, f, compression="zstd")
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path


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
    sizes: str = "contracts",
) -> tuple[Path, int, ReplayStats]:
    """Replay `paths` and write the series to `out`; returns (path, rows, replay stats).
    Nothing is written if the replay fails (a damaged block without `skip_damaged`).

    Raises what `Replay` raises, `ArgumentError` for an unknown output type or bad
    depth/interval, `MissingExtra` for Parquet without pyarrow."""
    check_output(out)
    replay = Replay(
        paths,
        symbols=symbols,
        start_ns=start_ns,
        end_ns=end_ns,
        skip_damaged=skip_damaged,
        sizes=sizes,
    )
    if trades and (depth or interval_ms is not None):
        raise ArgumentError("trades is a table of its own: no depth or interval with it")
    columns = collect_trades(replay) if trades else collect(replay, depth, interval_ms)
    return write(columns, out), len(columns), replay.stats
