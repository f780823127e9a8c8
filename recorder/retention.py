"""Keeping a long-running recorder's disk in bounds: `--keep 30d` and `--min-free 5G`.

Only finalised recordings of the output directory are ever deleted (never a `.partial`,
never the file being written, never a file that is not a recording), oldest first by
name, which sorts by start time. When free space is under `min_free` the recorder either
deletes the oldest (`on_low_disk="delete"`) or stops cleanly (`"stop"`, the default:
nothing of yours is deleted unless you asked).
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from recorder import format as fmt

log = logging.getLogger(__name__)


def disk_free(path: Path) -> int:
    """Bytes free for an unprivileged writer at `path` (or its nearest existing parent)."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return shutil.disk_usage(candidate).free
    return shutil.disk_usage(".").free


@dataclass
class Retention:
    out_dir: Path
    keep_s: float | None = None
    min_free: int | None = None
    on_low_disk: str = "stop"  # or "delete"
    prefix: str = "btse"
    free: Callable[[Path], int] = disk_free  # a test passes its own disk
    deleted: list[Path] = field(default_factory=list)
    deleted_bytes: int = 0

    def finalised(self) -> list[Path]:
        """The finalised recordings this recorder may delete, oldest first."""
        try:
            names = os.listdir(self.out_dir)
        except OSError:
            return []
        start = self.prefix + "-"
        return [
            self.out_dir / name
            for name in sorted(names)
            if name.startswith(start) and name.endswith(fmt.SUFFIX)
        ]

    def low_on_space(self) -> bool:
        return self.min_free is not None and self.free(self.out_dir) < self.min_free

    def sweep(self, now: float | None = None) -> str | None:
        """Delete what `keep_s` and `min_free` ask for; -> why the recorder must stop, or
        None. `now` is wall-clock seconds (files age by their modification time, which is
        when they were finalised)."""
        now = time.time() if now is None else now
        if self.keep_s is not None:
            for path in self.finalised():
                try:
                    age = now - path.stat().st_mtime
                except OSError:
                    continue  # deleted meanwhile (another recorder's retention)
                if age > self.keep_s:
                    self._delete(path, f"older than --keep ({age / 86400:.1f} days)")
        if not self.low_on_space():
            return None
        if self.on_low_disk == "delete":
            for path in self.finalised():
                self._delete(path, "free space under --min-free")
                if not self.low_on_space():
                    return None
        assert self.min_free is not None  # low_on_space is False without it
        return (
            f"free space on {self.out_dir} is {_size(self.free(self.out_dir))}, under "
            f"--min-free {_size(self.min_free)}"
            + ("; no finalised recording is left to delete" if self.on_low_disk == "delete" else "")
        )

    def _delete(self, path: Path, why: str) -> None:
        try:
            size = path.stat().st_size
            path.unlink()
        except FileNotFoundError:
            return
        except OSError as exc:
            log.warning("retention: cannot delete %s: %s", path, exc.strerror or exc)
            return
        self.deleted.append(path)
        self.deleted_bytes += size
        log.info(
            "retention: deleted %s (%s)", path.name, why, extra={"fields": {"file": str(path)}}
        )


def _size(n: int) -> str:
    return f"{n / 1e9:,.2f} GB" if abs(n) >= 100_000_000 else f"{n:,} bytes"
