"""A picture of one symbol of a recording: mid price with trades, the spread, and a depth
heatmap (price x time, resting size as colour), with every hole in the book marked.

    plot_recording(["recordings/"], "BTC-PERP", "btc.png")

matplotlib is an optional extra (`pip install 'bookengine[plot]'`); it is imported here
only, with the non-interactive Agg backend (no display needed).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bookengine import naming
from bookengine.errors import ArgumentError, MissingExtra
from bookengine.events import BookUpdate, StatusChanged, TopOfBook, Trade
from recorder.export import _left_sync
from recorder.replay import Replay, ReplayStats

COLUMNS = 400  # time samples of the heatmap
ROWS = 160  # price bins of the heatmap


@dataclass
class PlotStats:
    """What went into the picture (the test and the CLI report it)."""

    path: Path
    tops: int = 0
    trades: int = 0
    holes: list[int] = field(default_factory=list)  # arrival ns of each loss of sync
    samples: int = 0  # heatmap columns with a book
    titles: list[str] = field(default_factory=list)
    replay: ReplayStats | None = None


def plot_recording(
    paths: Iterable[str | Path],
    symbol: str,
    out: str | Path,
    *,
    start_ns: int | None = None,
    end_ns: int | None = None,
    depth: int = 20,
    sizes: str = "contracts",
    skip_damaged: bool = True,
) -> PlotStats:
    """Replay `symbol` and draw it into `out` (.png, .svg or .pdf)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.colors import LogNorm
    except ImportError:
        raise MissingExtra("plot needs matplotlib: pip install 'bookengine[plot]'") from None
    out = Path(out)
    if out.suffix not in (".png", ".svg", ".pdf"):
        raise ArgumentError(f"unknown picture type {out.suffix!r}: use .png, .svg or .pdf")
    if not out.parent.is_dir():
        raise ArgumentError(f"the output's directory {out.parent} does not exist")
    symbol = naming.canonical(symbol)
    replay = Replay(paths, symbols=[symbol], start_ns=start_ns, end_ns=end_ns,
                    book_updates=True, skip_damaged=skip_damaged, sizes=sizes)  # fmt: skip
    stats = PlotStats(out)
    top_t: list[int] = []
    mid: list[float] = []
    spread_bps: list[float] = []
    trade_t: list[int] = []
    trade_p: list[float] = []
    trade_buy: list[bool] = []
    books: list[tuple[int, list[tuple[float, float]]]] = []  # (ns, levels) per update
    for event in replay.events():
        if isinstance(event, TopOfBook) and event.grouping in (0, None):
            if event.bid_price is not None and event.ask_price is not None:
                m = (event.bid_price + event.ask_price) / 2
                top_t.append(event.arrival_ns)
                mid.append(m)
                spread_bps.append((event.ask_price - event.bid_price) / m * 1e4)
        elif isinstance(event, BookUpdate) and event.grouping in (0, None):
            bids, asks = event.book.depth(depth)
            books.append((event.arrival_ns, [*bids, *asks]))
        elif isinstance(event, Trade):
            trade_t.append(event.arrival_ns)
            trade_p.append(event.price)
            trade_buy.append(event.side == "BUY")
        elif isinstance(event, StatusChanged) and _left_sync(event):
            stats.holes.append(event.arrival_ns)
            top_t.append(event.arrival_ns)  # a break in the lines: NaN
            mid.append(np.nan)
            spread_bps.append(np.nan)
    stats.replay = replay.stats
    stats.tops = sum(1 for m in mid if m == m)
    stats.trades = len(trade_t)
    if not stats.tops:
        raise ArgumentError(f"no synced book of {symbol} in the recordings (window)")
    origin = min(top_t)

    def seconds(ns: list[int]) -> np.ndarray:
        return (np.array(ns, dtype=np.int64) - origin) / 1e9

    fig, (ax_mid, ax_spread, ax_depth) = plt.subplots(
        3, 1, figsize=(11, 8.5), sharex=True, height_ratios=[3, 1.2, 3]
    )
    ax_mid.plot(seconds(top_t), mid, lw=0.8, color="#1f3b73", label="mid")
    if trade_t:
        buys = np.array(trade_buy)
        t = seconds(trade_t)
        p = np.array(trade_p)
        ax_mid.scatter(t[buys], p[buys], s=6, color="#2a9d3a", label="buy trades", zorder=3)
        ax_mid.scatter(t[~buys], p[~buys], s=6, color="#c0392b", label="sell trades", zorder=3)
    ax_spread.plot(seconds(top_t), spread_bps, lw=0.7, color="#6c3483")
    stats.samples = _heatmap(ax_depth, books, origin, mid, fig, LogNorm)
    ax_depth.plot(seconds(top_t), mid, lw=0.6, color="white", alpha=0.8)
    for ax in (ax_mid, ax_spread, ax_depth):
        for n, hole in enumerate(stats.holes):
            ax.axvline((hole - origin) / 1e9, color="#e67e22", lw=0.8, ls="--",
                       label="out of sync" if n == 0 and ax is ax_mid else None)  # fmt: skip
    ax_mid.set_title(f"{symbol}: mid price and trades")
    ax_mid.set_ylabel("price")
    ax_mid.legend(loc="upper left", fontsize=8)
    ax_spread.set_title("spread")
    ax_spread.set_ylabel("bps")
    ax_depth.set_title(f"depth: resting size at each price (top {depth} levels per side)")
    ax_depth.set_ylabel("price")
    ax_depth.set_xlabel("seconds from " + _iso(origin))
    stats.titles = [ax.get_title() for ax in (ax_mid, ax_spread, ax_depth)]
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return stats


def _heatmap(ax, books, origin: int, mid: list[float], fig, lognorm) -> int:  # noqa: ANN001
    """Resting size per (time column, price bin), drawn with a log colour scale."""
    if not books:
        return 0
    times = np.array([ns for ns, _ in books], dtype=np.int64)
    prices = [p for _, levels in books for p, _ in levels]
    lo, hi = min(prices), max(prices)
    if hi <= lo:
        hi = lo + 1.0
    distinct = np.unique(np.array(prices))
    steps = np.diff(distinct)
    tick = float(steps[steps > 0].min()) if steps.size and (steps > 0).any() else hi - lo
    rows = max(1, min(ROWS, round((hi - lo) / tick) + 1))  # never finer than a tick
    hi = lo + rows * tick if rows < ROWS else hi
    edges_t = np.linspace(times.min(), times.max() + 1, COLUMNS + 1)
    grid = np.full((rows, COLUMNS), np.nan)
    column_of = np.clip(np.searchsorted(edges_t, times, side="right") - 1, 0, COLUMNS - 1)
    last_in_column: dict[int, int] = {}
    for n, column in enumerate(column_of.tolist()):
        last_in_column[column] = n  # the book as it stood at the column's end
    for column, n in last_in_column.items():
        for price, size in books[n][1]:
            row = min(int((price - lo) / (hi - lo) * rows), rows - 1)
            grid[row, column] = (0 if grid[row, column] != grid[row, column] else
                                 grid[row, column]) + size  # fmt: skip
    positive = grid[grid > 0]
    norm = lognorm(vmin=max(positive.min(), 1e-12), vmax=positive.max()) if positive.size else None
    mesh = ax.pcolormesh(
        (edges_t - origin) / 1e9,
        np.linspace(lo, hi, rows + 1),
        np.ma.masked_invalid(grid),
        cmap="viridis",
        norm=norm,
        shading="flat",
    )
    # an inset colour bar: the three panels keep one width and one time axis
    fig.colorbar(mesh, cax=ax.inset_axes((1.01, 0.0, 0.015, 1.0)), label="size")
    return len(last_in_column)


def _iso(ns: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
