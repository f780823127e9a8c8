"""Writing recordings: `RecordingWriter` (the file side) and `RecorderSink` (the hand-off).

The socket reader must never wait for a disk. `RecorderSink` takes records on the event
loop without blocking (a deque append) and a writer thread does the encoding, zstd and
I/O. The queue is bounded: past `max_pending` records the sink drops and *counts*, and
writes a `loss` record (count and time range) into the file as soon as it catches up,
with a warning in the log. Nothing is lost silently.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import threading
import time
from collections import deque
from datetime import UTC, datetime
from pathlib import Path

import orjson
import zstandard

from recorder import format as fmt

log = logging.getLogger(__name__)


class RecorderError(Exception):
    """The recording cannot go on (disk full, unwritable directory...); says why."""


class RecordingWriter:
    """Writes records into rotated, crash-safe files in `out_dir` (single-threaded).

    A file is `NAME.btrec.zst.partial` while written and renamed to `NAME.btrec.zst` when
    finalised (rotation, close). A crash leaves the `.partial` file, readable up to its
    last complete block; a new writer never overwrites a file (exclusive create).
    """

    def __init__(
        self,
        out_dir: str | Path,
        metadata: dict | None = None,
        *,
        rotate_s: float | None = 3600.0,
        max_bytes: int | None = None,
        block_records: int = 1000,
        flush_s: float = 1.0,
        level: int = 3,
        prefix: str = "btse",
    ) -> None:
        if rotate_s is not None and rotate_s <= 0:
            raise ValueError("rotate_s must be > 0 (or None: no time rotation)")
        if max_bytes is not None and max_bytes < 4096:
            raise ValueError("max_bytes must be at least 4096")
        self.out_dir = Path(out_dir)
        self.metadata = dict(metadata or {})
        self.rotate_ns = None if rotate_s is None else int(rotate_s * 1e9)
        self.max_bytes = max_bytes
        self.block_records = block_records
        self.flush_s = flush_s
        self.prefix = prefix
        self._compressor = zstandard.ZstdCompressor(level=level, write_content_size=True)
        self._file = None
        self._path: Path | None = None
        self._buffer: list[bytes] = []
        self._block_frames = 0
        self._block_first = 0
        self._block_last = 0
        self._file_bytes = 0
        self._file_stats: dict = {}
        self._boundary = 0
        self._last_flush = time.monotonic()
        self._last_fsync = time.monotonic()
        self.files: list[Path] = []  # finalised files, in order
        self.frames = 0
        self.records = 0
        self.raw_bytes = 0
        self.compressed_bytes = 0
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RecorderError(
                f"cannot create output directory {self.out_dir}: {exc.strerror}"
            ) from None
        if not self.out_dir.is_dir():
            raise RecorderError(f"output path {self.out_dir} is not a directory")
        if not os.access(self.out_dir, os.W_OK):
            raise RecorderError(f"output directory {self.out_dir} is not writable")

    @property
    def current(self) -> Path | None:
        """The file being written (a `.partial`), if any."""
        return self._path

    def add(self, kind: bytes, arrival_ns: int, conn_id: int, payload: bytes) -> None:
        if self._file is None or (self.rotate_ns and arrival_ns >= self._boundary):
            self._rotate(arrival_ns)
        elif self.max_bytes and self._file_bytes >= self.max_bytes:
            self._rotate(arrival_ns)
        record = fmt.encode_record(kind, arrival_ns, conn_id, payload)
        if not self._buffer:
            self._block_first = arrival_ns
        self._buffer.append(record)
        self._block_last = arrival_ns
        self.records += 1
        self.raw_bytes += len(record)
        if kind == fmt.FRAME:
            self.frames += 1
            self._block_frames += 1
        kinds = self._file_stats.setdefault("kinds", {})
        name = fmt.KINDS.get(kind, "?")
        kinds[name] = kinds.get(name, 0) + 1
        if len(self._buffer) >= self.block_records:
            self.flush()

    def maybe_flush(self) -> None:
        """Flush the open block if it is older than `flush_s` (called by the sink thread)."""
        if self._buffer and time.monotonic() - self._last_flush >= self.flush_s:
            self.flush()

    def flush(self) -> None:
        """Compress the buffered records into one independent block and write it."""
        self._last_flush = time.monotonic()
        if not self._buffer or self._file is None:
            return
        raw = b"".join(self._buffer)
        block = self._compressor.compress(raw)
        header = fmt.block_header(
            len(block),
            len(raw),
            len(self._buffer),
            self._block_frames,
            self._block_first,
            self._block_last,
        )
        self._write(header + block)
        self._buffer = []
        self._block_frames = 0
        stats = self._file_stats
        stats["first_ns"] = stats.get("first_ns") or self._block_first
        stats["last_ns"] = self._block_last
        stats["blocks"] = stats.get("blocks", 0) + 1
        stats["raw_bytes"] = stats.get("raw_bytes", 0) + len(raw)
        self.compressed_bytes += len(header) + len(block)
        if time.monotonic() - self._last_fsync >= 1.0:
            self._last_fsync = time.monotonic()
            self._sync()

    def close(self) -> None:
        """Finalise the current file (footer, fsync, rename)."""
        self._finalise()

    # --- files ------------------------------------------------------------------------

    def _rotate(self, arrival_ns: int) -> None:
        self._finalise()
        when = datetime.fromtimestamp(arrival_ns / 1e9, UTC)
        stem = f"{self.prefix}-{when:%Y%m%dT%H%M%S.%f}Z"
        for n in range(1000):
            name = f"{stem}-{n:03d}"  # a counter, so that same-instant files still sort
            path = self.out_dir / (name + fmt.SUFFIX + fmt.PARTIAL)
            if (self.out_dir / (name + fmt.SUFFIX)).exists():
                continue
            try:
                self._file = open(path, "xb")  # noqa: SIM115 - closed in _finalise
                break
            except FileExistsError:
                continue
            except OSError as exc:
                raise RecorderError(f"cannot create {path}: {exc.strerror}") from None
        else:
            raise RecorderError(f"no free file name for {stem} in {self.out_dir}")
        self._path = path
        self._file_bytes = 0
        self._file_stats = {}
        if self.rotate_ns:
            self._boundary = (arrival_ns // self.rotate_ns + 1) * self.rotate_ns
        header = {
            "format": fmt.FORMAT_NAME,
            "version": fmt.FORMAT_VERSION,
            "host": socket.gethostname(),
            "created_ns": arrival_ns,
            "file_index": len(self.files),
            "previous": self.files[-1].name if self.files else None,
            **self.metadata,
        }
        self.add(fmt.HEADER, arrival_ns, -1, orjson.dumps(header))

    def _finalise(self) -> None:
        if self._file is None:
            return
        self.flush()
        footer = dict(self._file_stats, finalised_ns=time.time_ns(), format=fmt.FORMAT_NAME)
        self._write(fmt.skippable(fmt.FOOTER_TAG + orjson.dumps(footer)))
        self._sync()
        self._file.close()
        self._file = None
        final = self._path.with_name(self._path.name[: -len(fmt.PARTIAL)])
        os.replace(self._path, final)
        self.files.append(final)
        self._path = None

    def _write(self, data: bytes) -> None:
        try:
            self._file.write(data)
            self._file.flush()  # into the OS: a killed process loses nothing written
        except OSError as exc:
            raise _write_error(self._path, exc) from None
        self._file_bytes += len(data)

    def _sync(self) -> None:
        try:
            os.fsync(self._file.fileno())
        except OSError as exc:
            raise _write_error(self._path, exc) from None


def _write_error(path: Path | None, exc: OSError) -> RecorderError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        why = "disk full (or file size limit reached)"
    else:
        why = exc.strerror or str(exc)
    return RecorderError(f"cannot write {path}: {why}; everything before this point is kept")


class RecorderSink:
    """Non-blocking hand-off from the event loop to a writer thread (bounded, loss counted).

    Its write_* methods are what a Feed tap calls; `close()` drains and finalises.
    """

    def __init__(self, writer: RecordingWriter, *, max_pending: int = 200_000) -> None:
        self.writer = writer
        self.max_pending = max_pending
        self.error: RecorderError | None = None
        self.lost = 0  # records dropped because the writer was behind (all of them logged)
        self._queue: deque = deque()
        self._loss: list[int] | None = None  # [count, first_ns, last_ns] of the open hole
        self._loss_lock = threading.Lock()  # only taken while dropping: never on the normal path
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bookengine-recorder", daemon=True)
        self._thread.start()

    # --- the event-loop side: never blocks ----------------------------------------------

    def _put(self, item: tuple) -> None:
        if len(self._queue) < self.max_pending and self.error is None:
            self._queue.append(item)
            return
        self.lost += 1
        ns = item[1]
        if self._loss is None:
            self._loss = [0, ns, ns]
            log.warning(
                "recorder is behind (%d records pending): dropping and counting", len(self._queue)
            )
        self._loss[0] += 1
        self._loss[2] = ns

    def write_frame(self, conn_id: int, arrival_ns: int, raw: bytes) -> None:
        self._put((fmt.FRAME, arrival_ns, conn_id, raw))

    def write_open(self, conn_id: int, now_ns: int, url: str) -> None:
        self._put((fmt.OPEN, now_ns, conn_id, url.encode()))

    def write_close(self, conn_id: int, now_ns: int, code: int | None, reason: str) -> None:
        self._put((fmt.CLOSE, now_ns, conn_id, orjson.dumps({"code": code, "reason": reason})))

    def write_sent(self, conn_id: int, now_ns: int, payload: str) -> None:
        self._put((fmt.SENT, now_ns, conn_id, payload.encode()))

    def write_status(
        self, conn_id: int, now_ns: int, topic: str, status: str, reason: str, detail: str = ""
    ) -> None:
        payload = {"topic": topic, "status": status, "reason": reason, "detail": detail}
        self._put((fmt.STATUS, now_ns, conn_id, orjson.dumps(payload)))

    def write_digest(self, conn_id: int, now_ns: int, topic: str, seq: int, digest: str) -> None:
        payload = {"topic": topic, "seq": seq, "digest": digest}
        self._put((fmt.DIGEST, now_ns, conn_id, orjson.dumps(payload)))

    def write_checkpoint(self, conn_id: int, now_ns: int, snapshot_frame: bytes) -> None:
        self._put((fmt.CHECKPOINT, now_ns, conn_id, snapshot_frame))

    @property
    def pending(self) -> int:
        return len(self._queue)

    def close(self, timeout: float = 30.0) -> None:
        """Write everything still queued, finalise the file, stop the thread."""
        self._stop.set()
        self._thread.join(timeout)
        if self.error is not None:
            raise self.error

    # --- the writer thread --------------------------------------------------------------

    def _run(self) -> None:
        writer, queue = self.writer, self._queue
        try:
            while True:
                stopping = self._stop.is_set()
                while queue:
                    writer.add(*queue.popleft())
                with self._loss_lock:
                    hole, self._loss = self._loss, None
                if hole is not None:
                    count, first, last = hole
                    payload = orjson.dumps({"first_ns": first, "last_ns": last, "count": count})
                    writer.add(fmt.LOSS, last, -1, payload)
                    log.warning(
                        "recorder lost %d records between %d and %d ns (marked in the file)",
                        count,
                        first,
                        last,
                    )
                writer.maybe_flush()
                if stopping and not queue:
                    writer.close()
                    return
                time.sleep(0.002)
        except RecorderError as exc:
            self.error = exc
            log.error("%s", exc)
        except Exception as exc:  # keep the cause: the recording is over either way
            self.error = RecorderError(f"recorder thread failed: {exc!r}")
            log.exception("recorder thread failed")
