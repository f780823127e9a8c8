"""Type stub of the optional C accelerator (`_fastbook.c`); `book.py` holds the pure-Python
twins, which are the specification."""

from collections.abc import Callable, Iterator, MutableMapping
from typing import TypeVar

_T = TypeVar("_T")

# A side maps integer price keys to sizes; typed float like book.Side (an int is a float
# to the type checker, and a best key is -inf/inf on an empty side).

class Side(MutableMapping[float, float]):
    """One side of a book: int64 key -> size, a sorted array with the best level last.
    Iteration, keys() and items() go best first."""

    def __init__(self, is_bid: bool) -> None: ...
    def __getitem__(self, key: float, /) -> float: ...
    def __setitem__(self, key: float, size: float, /) -> None: ...
    def __delitem__(self, key: float, /) -> None: ...
    def __iter__(self) -> Iterator[float]: ...
    def __len__(self) -> int: ...

class NeedsDecimals(Exception):
    """A price has more decimals than the book's keys: `args[0]` is how many it needs."""

# Functions taking a side take a book.Side (a MutableMapping) for the type checker; at
# run time it must be a Side (TypeError otherwise: dicts belong to the Python twins).

def apply_levels(
    side: MutableMapping[float, float],
    levels: list[object],
    best: float,
    is_bid: bool,
    decimals: int,
    price_parts: Callable[[object], tuple[int, int]],
    /,
) -> float:
    """Apply [price, size] levels to one side; the new best key (or -inf/inf if empty)."""

def levels(
    side: MutableMapping[float, float], descending: bool, n: int, scale: int, /
) -> list[tuple[float, float]]:
    """The best `n` levels (every level if n < 0) as (price, size), best first."""

class Scanner:
    """Reads a well-formed delta from the bytes; see `_fastbook.c`."""

    def __init__(self) -> None: ...
    def scan(self, raw: object, /) -> tuple[str, str, int, int, int | None] | None:
        """(topic, symbol, seqNum, prevSeqNum, timestamp) of a delta it fully understands."""
    def apply(
        self,
        bids: MutableMapping[float, float],
        asks: MutableMapping[float, float],
        decimals: int,
        /,
    ) -> tuple[float, float | None, float, float | None] | None:
        """Apply the levels of the last scanned delta; the new top (bid key, its size, ask
        key, its size: `OrderBook.top_keys()`), or None to decline (nothing changed)."""

def top_event(
    cls: type[_T],
    arrival_ns: int,
    timestamp: int | None,
    symbol: str,
    grouping: int | None,
    seq: int,
    top: tuple[float, float | None, float, float | None],
    scale: int,
    /,
) -> _T:
    """BookSync's TopOfBook of `top` (sync._top_event_py is the specification)."""
