"""Fault injection for the simulator: what can go wrong on BTSE's socket, on demand.

Per-frame faults are probabilities applied to each delta a connection receives; per-second
faults are probabilities checked once a second per connection. All draws come from a
seeded RNG, and every fault injected is recorded (`Simulator.injected`) so a test can hold
a client to account, e.g. "every dropped seqNum was detected".
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import NamedTuple

from bookengine.errors import ArgumentError


@dataclass
class Faults:
    """What goes wrong, as probabilities (0..1) and sizes; all off by default.

    `Simulator(faults=...)` applies them to every topic; `sim.set_faults(f, topic=T)`
    gives topic T its own: its deltas, (re)subscribes and subscribers then draw from `f`,
    and `stall` there means the topic itself goes quiet for `stall_s` (a quiet book).
    `Faults.parse("drop=0.01,stall_s=1")` reads the CLI's `--faults`.
    """

    # per delta, per connection
    drop: float = 0.0  # not sent: the client sees a gap
    duplicate: float = 0.0  # sent twice
    reorder: float = 0.0  # held back and sent after the next delta
    malformed: float = 0.0  # a truncated, non-JSON frame goes out before it
    oversized: float = 0.0  # a frame of `oversized_bytes` goes out before it
    error_frame: float = 0.0  # an unsolicited error frame goes out before it
    # per delta, per topic (they change the chain every subscriber sees)
    crossed: float = 0.0  # an extra delta after which the published book is crossed
    seq_restart: float = 0.0  # the topic's sequence restarts with a new, lower chain
    seq_poison: float = 0.0  # an extra delta with an absurd seqNum (2**62) goes out
    # per (re)subscribe
    stale_snapshot: float = 0.0  # the snapshot is 3 seqNums old (a gap follows it)
    bad_snapshot: float = 0.0  # the snapshot has a negative price: the client cannot use it
    # per second, per connection
    stall: float = 0.0  # silence for `stall_s`, then the held frames in a burst
    disconnect: float = 0.0  # TCP dropped, no close frame (1006)
    close_1007: float = 0.0  # error 1007 then close 1007, as BTSE does on a full buffer
    # sizes
    stall_s: float = 2.0
    oversized_bytes: int = 2_000_000

    @classmethod
    def parse(cls, text: str) -> Faults:
        """`drop=0.01,duplicate=0.005,stall_s=1` -> Faults; `all=P` sets every probability."""
        faults = cls()
        names = {f.name: f.type for f in fields(cls)}
        for item in filter(None, (part.strip() for part in text.split(","))):
            name, eq, value = item.partition("=")
            name = name.strip()
            if not eq:
                raise ArgumentError(f"fault {item!r}: expected NAME=VALUE, e.g. drop=0.01")
            if name == "all":
                for prob in PROBABILITIES:
                    setattr(faults, prob, float(value))
                continue
            if name not in names:
                raise ArgumentError(f"unknown fault {name!r}; known: {', '.join(names)}, all")
            number = int(value) if name == "oversized_bytes" else float(value)
            if name in PROBABILITIES and not 0.0 <= number <= 1.0:
                raise ArgumentError(f"fault {name}: a probability must be in [0, 1], got {value}")
            setattr(faults, name, number)
        return faults

    def any(self) -> bool:
        return any(getattr(self, name) for name in PROBABILITIES)


PROBABILITIES = (
    "drop",
    "duplicate",
    "reorder",
    "malformed",
    "oversized",
    "error_frame",
    "crossed",
    "seq_restart",
    "seq_poison",
    "stale_snapshot",
    "bad_snapshot",
    "stall",
    "disconnect",
    "close_1007",
)


class Injected(NamedTuple):
    """One fault the simulator injected: what, on which connection and topic, at which
    seqNum (the dropped/duplicated/... delta's, the stale snapshot's), when (wall ns)."""

    kind: str
    conn_id: int | None
    topic: str | None
    seq: int | None
    time_ns: int

    @property
    def type(self) -> str:
        """Alias of `kind`."""
        return self.kind
