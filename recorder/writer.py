"""Writing recordings: `RecordingWriter` (the file side) and `RecorderSink` (the hand-off).

The socket reader must never wait for a disk. `RecorderSink` takes records on the event
loop without blocking (a deque append) and a writer thread does the encoding, zstd and
I/O. The queue is bounded (records and bytes): past the bound the sink drops and *counts*
(how many, first and last arrival ns), logs a warning, and puts an explicit `loss` record
into the stream at the place of the hole as soon as there is room again. Nothing is lost
silently.

Both classes take records through the same methods (`write_frame`, `write_open`, ...), so
a Feed tap can write synchronously (tests, tools) or through the thread (live).
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import threading
import time
import uuid
from collections import deque
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

import orjson
import zstandard

from bookengine import __version__
from bookengine.errors import ArgumentError
from bookengine.errors import RecorderError as RecorderError  # its home; re-exported
from recorder import format as fmt

log = logging.getLogger(__name__)


class _RecordMethods:
    """The record kinds as methods; subclasses implement `_put(kind, ns, conn, payload)`."""

    def _put(self, kind: bytes, arrival_ns: int, conn_id: int, payload: bytes) -> None:
        raise NotImplementedError

    def write_frame(self, conn_id: int, arrival_ns: int, raw: bytes) -> None:
        """A received frame, raw bytes exactly as received (text frames as UTF-8)."""
        self._put(fmt.FRAME, arrival_ns, conn_id, raw)

    def write_open(self, conn_id: int, now_ns: int, url: str) -> None:
        self._put(fmt.OPEN, now_ns, conn_id, url.encode())

    def write_close(self, conn_id: int, now_ns: int, code: int | None, reason: str) -> None:
        self._put(fmt.CLOSE, now_ns, conn_id, orjson.dumps({"code": code, "reason": reason}))

    def write_sent(self, conn_id: int, now_ns: int, payload: str) -> None:
        """A request we sent: subscribe/unsubscribe JSON, or the text `ping`."""
        self._put(fmt.SENT, now_ns, conn_id, payload.encode())

    def write_status(
        self,
        now_ns: int,
        topic: str,
        status: str,
        reason: str | None = None,
        *,
        conn_id: int = fmt.NO_CONN,
        detail: str = "",
    ) -> None:
        """A live sync status change (gap, crossed, resync...)."""
        payload = {"topic": topic, "status": str(status), "reason": reason, "detail": detail}
        if reason is not None:
            payload["reason"] = str(reason)
        self._put(fmt.STATUS, now_ns, conn_id, orjson.dumps(payload))

    def write_digest(
        self, now_ns: int, topic: str, seq: int | None, digest: str, *, conn_id: int = fmt.NO_CONN
    ) -> None:
        """A top-of-book digest (`OrderBook.digest()`) after frame `seq`, for replay checks
        (`seq` None: the book has no valid seqNum, e.g. its snapshot's was negative; replay
        compares it with its own book's, None too)."""
        payload = orjson.dumps({"topic": topic, "seq": seq, "digest": digest})
        self._put(fmt.DIGEST, now_ns, conn_id, payload)

    def write_checkpoint(self, conn_id: int, now_ns: int, snapshot_frame: bytes) -> None:
        """A synced book as a snapshot frame (BTSE shape): a seeking replay starts here."""
        self._put(fmt.CHECKPOINT, now_ns, conn_id, snapshot_frame)

    def write_call(self, conn_id: int, now_ns: int, call: str, topics: list[str]) -> None:
        """A call the live Feed made into its BookSync (subscribe, unsubscribe,
        connection_lost, check_timeouts): Replay makes the same calls at the same times."""
        self._put(fmt.CALL, now_ns, conn_id, orjson.dumps({"call": call, "topics": topics}))

    def write_loss(self, first_ns: int, last_ns: int, count: int) -> None:
        """An explicit hole: `count` records between `first_ns` and `last_ns` are missing."""
        payload = orjson.dumps({"first_ns": first_ns, "last_ns": last_ns, "count": count})
        self._put(fmt.LOSS, last_ns, fmt.NO_CONN, payload)


class RecordingWriter(_RecordMethods):
    """Writes records into rotated, crash-safe files in `out_dir` (single-threaded).

    A file is `NAME.btrec.zst.partial` while written and renamed to `NAME.btrec.zst` when
    finalised (rotation, close). A crash leaves the `.partial` file, readable up to its
    last complete block; a writer never overwrites a file (exclusive create, no-clobber
    rename). Blocks are cut at `block_records` records, `block_bytes` raw bytes, or
    `flush_s` seconds after the block's first record, whichever comes first; written
    data is fsynced at most every `fsync_s` seconds and at finalisation.

    Files rotate at wall-clock boundaries aligned to `rotate_s` (3600: on the hour) and/or
    once `max_bytes` is reached (counting the open block at the last block's ratio, so a
    file ends close to it; it can exceed it by a record, a misjudged block and the index).
    """

    def __init__(
        self,
        out_dir: str | Path,
        metadata: dict | None = None,
        *,
        rotate_s: float | None = 3600.0,
        max_bytes: int | None = None,
        block_records: int = 1000,
        block_bytes: int = 1 << 20,
        flush_s: float = 1.0,
        fsync_s: float = 1.0,
        level: int = 3,
        prefix: str = "btse",
    ) -> None:
        if rotate_s is not None and rotate_s <= 0:
            raise ArgumentError("rotate_s must be > 0 (or None: no time rotation)")
        if max_bytes is not None and max_bytes < 4096:
            raise ArgumentError("max_bytes must be at least 4096")
        if block_records < 1 or block_bytes < 1 or flush_s <= 0:
            raise ArgumentError("block_records, block_bytes and flush_s must be > 0")
        if block_bytes > fmt.MAX_BLOCK_BYTES:
            raise ArgumentError(
                f"block_bytes must be at most {fmt.MAX_BLOCK_BYTES} (a reader's cap)"
            )
        if not prefix or "/" in prefix or prefix.startswith("."):
            raise ArgumentError(f"bad file name prefix {prefix!r}")
        self.out_dir = Path(out_dir)
        self.metadata = dict(metadata or {})
        self.rotate_ns = None if rotate_s is None else int(rotate_s * 1e9)
        self.max_bytes = max_bytes
        self.block_records = block_records
        self.block_bytes = block_bytes
        self.flush_s = flush_s
        self.fsync_s = fsync_s
        self.level = level
        self.prefix = prefix
        self._compressor = zstandard.ZstdCompressor(
            level=level, write_content_size=True, write_checksum=True
        )
        self._file: BinaryIO | None = None
        self._path: Path | None = None  # set whenever _file is
        self._buffer: list[bytes] = []
        self._buffer_bytes = 0
        self._block_frames = 0
        self._block_min = 0
        self._block_max = 0
        self._block_started = 0.0  # monotonic time of the open block's first record
        self._blocks: list[fmt.BlockInfo] = []  # of the current file, for its index
        self._kinds: dict[bytes, int] = {}  # of the current file
        self._file_bytes = 0
        self._file_raw = 0
        self._boundary = 0
        self._last_fsync = time.monotonic()
        self._session_start_ns: int | None = None
        self._name_ns = 0
        self._packed = 0.25  # compressed / raw of the last block
        # one id for every file of this writer: readers tell sessions apart by it (conn
        # ids restart at 0 in each session, and overlapping sessions interleave files)
        self.session = uuid.uuid4().hex
        self.files: list[Path] = []  # finalised files, in order
        self.frames = 0
        self.records = 0
        self.raw_bytes = 0
        self.compressed_bytes = 0
        self.closed = False
        self.error: RecorderError | None = None  # set when the disk failed; final
        prepare_directory(self.out_dir)

    @property
    def current(self) -> Path | None:
        """The file being written (a `.partial`), if any."""
        return self._path

    def _put(self, kind: bytes, arrival_ns: int, conn_id: int, payload: bytes) -> None:
        self.add(kind, arrival_ns, conn_id, payload)

    def add(self, kind: bytes, arrival_ns: int, conn_id: int, payload: bytes) -> None:
        """Append one record (any kind); opens, rotates and flushes files as needed.
        Raises RecorderError (and keeps raising it) once the disk has failed."""
        if self.error is not None:
            raise self.error
        if self._file is None:
            self._open(arrival_ns)
        elif self.rotate_ns and arrival_ns >= self._boundary:
            self._finalise("time")
            self._open(arrival_ns)
        elif self.max_bytes and (
            self._file_bytes + self._buffer_bytes * self._packed >= self.max_bytes
        ):
            self._finalise("size")
            self._open(arrival_ns)
        self._append(kind, arrival_ns, conn_id, payload)

    def _append(self, kind: bytes, arrival_ns: int, conn_id: int, payload: bytes) -> None:
        record = b"%s %d %d %d %s\n" % (kind, arrival_ns, conn_id, len(payload), payload)
        if self._buffer_bytes + len(record) > fmt.MAX_BLOCK_BYTES:
            self.flush()  # readers refuse a block over the cap: this record starts the next
            if len(record) > fmt.MAX_BLOCK_BYTES:
                log.warning(
                    "a %s record of %d bytes is larger than a block may be (%d): "
                    "written as a loss record",
                    fmt.KINDS.get(kind, "?"),
                    len(record),
                    fmt.MAX_BLOCK_BYTES,
                )
                hole = {"first_ns": arrival_ns, "last_ns": arrival_ns, "count": 1}
                self._append(fmt.LOSS, arrival_ns, fmt.NO_CONN, orjson.dumps(hole))
                return
        buffer = self._buffer
        if buffer:
            if arrival_ns < self._block_min:
                self._block_min = arrival_ns
            elif arrival_ns > self._block_max:
                self._block_max = arrival_ns
        else:
            self._block_min = self._block_max = arrival_ns
            self._block_started = time.monotonic()
        buffer.append(record)
        self._buffer_bytes += len(record)
        self._kinds[kind] = self._kinds.get(kind, 0) + 1
        if kind == fmt.FRAME:
            self._block_frames += 1
        if (
            len(buffer) >= self.block_records
            or self._buffer_bytes >= self.block_bytes
            or time.monotonic() - self._block_started >= self.flush_s
        ):
            self.flush()

    def tick(self, now_ns: int | None = None) -> None:
        """Housekeeping when records are sparse: flush a block older than `flush_s`, and
        finalise the file once the wall clock passes its rotation boundary (the next file
        is opened by the next record). The sink's thread calls this every few ms."""
        if self._buffer and time.monotonic() - self._block_started >= self.flush_s:
            self.flush()
        if self._file is not None and self.rotate_ns:
            now_ns = time.time_ns() if now_ns is None else now_ns
            # only just past the boundary: records stamped in another era (a backfill,
            # synthetic times) rotate by their own stamps in add(), not by the clock
            if 0 <= now_ns - self._boundary < self.rotate_ns:
                self._finalise("time")

    maybe_flush = tick  # the name the first sink used

    def rotate(self) -> None:
        """Finalise the current file now (SIGHUP); the next record opens a new one."""
        if self.error is None:
            self._finalise("reopen")

    def flush(self) -> None:
        """Compress the buffered records into one independent block and write it."""
        if not self._buffer or self._file is None:
            return
        raw = b"".join(self._buffer)
        block = self._compressor.compress(raw)
        info = fmt.BlockInfo(
            self._file_bytes,
            len(block),
            len(raw),
            len(self._buffer),
            self._block_frames,
            self._block_min,
            self._block_max,
        )
        self._write(fmt.block_header(*info[1:]) + block)
        self._blocks.append(info)
        self.records += info.records
        self.frames += info.frames
        self.raw_bytes += info.raw
        self._file_raw += info.raw
        self._packed = max(len(block) / len(raw), 0.01)  # to size the open block on disk
        self._buffer = []
        self._buffer_bytes = 0
        self._block_frames = 0
        if time.monotonic() - self._last_fsync >= self.fsync_s:
            self._sync()

    def close(self) -> None:
        """Finalise the current file (footer, index, fsync, rename). Idempotent; after a
        disk failure it does nothing: the `.partial` file is kept as written."""
        if self.error is None:
            self._finalise("close")
        self.closed = True

    def __enter__(self) -> RecordingWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- files ------------------------------------------------------------------------

    def _open(self, arrival_ns: int) -> None:
        if self.closed:
            raise RecorderError("the recording writer is closed")
        # names sort by time even if the wall clock steps back: never before the last one
        self._name_ns = max(arrival_ns, self._name_ns)
        seconds, ns = divmod(self._name_ns, 1_000_000_000)
        when = datetime.fromtimestamp(seconds, UTC).replace(microsecond=ns // 1000)
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
                raise _write_error(path, exc, "create") from None
        else:
            raise RecorderError(f"no free file name for {stem} in {self.out_dir}")
        self._path = path
        self._file_bytes = 0
        self._file_raw = 0
        self._blocks = []
        self._kinds = {}
        if self.rotate_ns:
            self._boundary = (arrival_ns // self.rotate_ns + 1) * self.rotate_ns
        if self._session_start_ns is None:
            self._session_start_ns = arrival_ns
        header = {
            "symbols": [],
            "url": None,
            "library": f"bookengine {__version__}",
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "start_ns": self._session_start_ns,
            **self.metadata,
            # the writer's own facts win over metadata
            "format": fmt.FORMAT_NAME,
            "version": fmt.FORMAT_VERSION,
            "session": self.session,
            "created_ns": arrival_ns,
            "file_index": len(self.files),
            "previous": self.files[-1].name if self.files else None,
            "rotate_s": None if self.rotate_ns is None else self.rotate_ns / 1e9,
            "max_bytes": self.max_bytes,
            "block_records": self.block_records,
            "flush_s": self.flush_s,
            "zstd_level": self.level,
        }
        self._append(fmt.HEADER, arrival_ns, fmt.NO_CONN, orjson.dumps(header))

    def _finalise(self, why: str) -> None:
        if self._file is None:
            return
        self.flush()
        blocks = self._blocks
        footer = {
            "format": fmt.FORMAT_NAME,
            "version": fmt.FORMAT_VERSION,
            "first_ns": min((b.first_ns for b in blocks), default=None),
            "last_ns": max((b.last_ns for b in blocks), default=None),
            "blocks": len(blocks),
            "records": sum(b.records for b in blocks),
            "frames": sum(b.frames for b in blocks),
            "raw_bytes": self._file_raw,
            "kinds": {fmt.KINDS.get(k, k.decode()): n for k, n in sorted(self._kinds.items())},
            "finalised_ns": time.time_ns(),
            "finalised_by": why,
            "indexed": True,  # an index and a trailer follow this footer
        }
        footer_offset = self._file_bytes
        self._write(fmt.skippable(fmt.FOOTER_TAG + orjson.dumps(footer)))
        index_offset = self._file_bytes
        self._write(fmt.index_frame(blocks) + fmt.trailer(footer_offset, index_offset))
        self._sync()
        self._file.close()
        self._file = None
        assert self._path is not None  # _open sets it together with _file
        final = self._path.with_name(self._path.name[: -len(fmt.PARTIAL)])
        _rename_no_clobber(self._path, final)
        _sync_directory(self.out_dir)
        self.files.append(final)
        self._path = None
        log.log(
            logging.DEBUG if why == "close" else logging.INFO,
            "finalised %s (%s): %d records, %d bytes",
            final.name, why, footer["records"], self._file_bytes,
            extra={"fields": {"file": str(final), "finalised_by": why}},
        )  # fmt: skip

    def _write(self, data: bytes) -> None:
        # callers (flush, _finalise) return early when no file is open
        assert self._file is not None
        try:
            self._file.write(data)
            self._file.flush()  # into the OS: a killed process loses nothing written
        except OSError as exc:
            raise self._fail(exc) from None
        self._file_bytes += len(data)
        self.compressed_bytes += len(data)

    def _sync(self) -> None:
        self._last_fsync = time.monotonic()
        # callers (flush, _finalise) return early when no file is open
        assert self._file is not None
        try:
            os.fsync(self._file.fileno())
        except OSError as exc:
            raise self._fail(exc) from None

    def _fail(self, exc: OSError) -> RecorderError:
        """Stop for good: close the file as it is (readable up to its last complete
        block) and remember why, so every later call says the same."""
        self.error = _write_error(self._path, exc)  # raised, not logged: the caller tells
        # only _write and _sync call this, on a failed operation on the open file
        assert self._file is not None
        try:
            self._file.close()
        except OSError:
            pass  # the unwritten tail: that is the cut the reader reports
        self._file = None
        return self.error


def prepare_directory(out_dir: Path) -> None:
    """Fail at once, with the reason, if records could not be written into `out_dir`
    (a probe file, not os.access: root passes access checks that writes then fail)."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise RecorderError(f"output path {out_dir} exists and is not a directory") from None
    except OSError as exc:
        raise RecorderError(
            f"cannot create output directory {out_dir}: {exc.strerror or exc}"
        ) from None
    if not out_dir.is_dir():
        raise RecorderError(f"output path {out_dir} is not a directory")
    probe = out_dir / f".btrec-probe-{os.getpid()}-{threading.get_ident()}"
    try:
        with open(probe, "xb") as f:
            f.write(b"probe")
    except OSError as exc:
        raise RecorderError(
            f"output directory {out_dir} is not writable: {exc.strerror or exc}"
        ) from None
    finally:
        try:
            probe.unlink()
        except OSError:
            pass


def _rename_no_clobber(src: Path, dst: Path) -> None:
    """Rename, but never over an existing file (link + unlink; replace where the file
    system has no hard links, after checking)."""
    try:
        os.link(src, dst)
    except FileExistsError:
        raise RecorderError(
            f"cannot finalise {src}: {dst.name} already exists (left as .partial)"
        ) from None
    except OSError:
        if dst.exists():
            raise RecorderError(f"cannot finalise {src}: {dst.name} already exists") from None
        os.replace(src, dst)
        return
    os.unlink(src)


def _sync_directory(path: Path) -> None:
    """Make a rename durable (best effort: not every platform can open a directory)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_error(path: Path | None, exc: OSError, action: str = "write") -> RecorderError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        why = "disk full (or file size limit reached)"
    else:
        why = exc.strerror or str(exc)
    return RecorderError(f"cannot {action} {path}: {why}; everything before this point is kept")


class RecorderSink(_RecordMethods):
    """Non-blocking hand-off from the event loop to a writer thread (bounded, loss counted).

    Its write_* methods are what a Feed tap calls, from one thread (the event loop); they
    never block and never raise for a slow or failed disk. At most `max_pending` records
    and `max_pending_bytes` payload bytes wait; past that, records are dropped, counted
    (`lost`), logged, and marked in the file by a `loss` record placed where they were.
    `close()` drains, finalises and raises the writer's error if there was one.
    """

    def __init__(
        self,
        writer: RecordingWriter,
        *,
        max_pending: int = 200_000,
        max_pending_bytes: int = 256 << 20,
        poll_s: float = 0.005,
    ) -> None:
        self.writer = writer
        self.max_pending = max_pending
        self.max_pending_bytes = max_pending_bytes
        self.poll_s = poll_s
        self.error: RecorderError | None = None
        self.lost = 0  # records dropped because the writer was behind (all of them logged)
        self.holes = 0  # loss records put into the stream
        self._queue: deque = deque()
        self._in_bytes = 0  # payload bytes queued (only the producer writes it)
        self._out_bytes = 0  # payload bytes taken (only the writer thread writes it)
        self._hole: list[int] | None = None  # [count, first_ns, last_ns] of the open hole
        self._closing = False
        self._rotate = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bookengine-recorder", daemon=True)
        self._thread.start()

    # --- the event-loop side: never blocks ----------------------------------------------

    def _put(self, kind: bytes, arrival_ns: int, conn_id: int, payload: bytes) -> None:
        queue = self._queue
        if (
            len(queue) < self.max_pending
            and self._in_bytes - self._out_bytes < self.max_pending_bytes
            and self.error is None
            and not self._closing
        ):
            if self._hole is not None:
                self._close_hole()
            self._in_bytes += len(payload)
            queue.append((kind, arrival_ns, conn_id, payload))
            return
        self.lost += 1
        hole = self._hole
        if hole is None:
            self._hole = [1, arrival_ns, arrival_ns]
            why = self.error or ("closed" if self._closing else f"{len(queue)} records pending")
            log.warning("recorder is behind (%s): dropping and counting", why)
        else:
            hole[0] += 1
            if arrival_ns < hole[1]:
                hole[1] = arrival_ns
            if arrival_ns > hole[2]:
                hole[2] = arrival_ns

    def _close_hole(self) -> None:
        """Put the open hole into the stream as a `loss` record, where it happened."""
        assert self._hole is not None  # both callers check that a hole is open
        count, first, last = self._hole
        self._hole = None
        self.holes += 1
        payload = orjson.dumps({"first_ns": first, "last_ns": last, "count": count})
        self._queue.append((fmt.LOSS, last, fmt.NO_CONN, payload))
        log.warning(
            "recorder lost %d records between %d and %d ns (marked in the file)",
            count,
            first,
            last,
        )

    def rotate(self) -> None:
        """Ask the writer thread to finalise the current file (after the records queued
        so far); the next record starts a new file."""
        self._rotate.set()

    @property
    def pending(self) -> int:
        """Records waiting for the writer thread."""
        return len(self._queue)

    def close(self, timeout: float | None = 60.0) -> None:
        """Write everything still queued (and a final loss record if a hole is open),
        finalise the file, stop the thread. Raises RecorderError if the writer failed or
        could not drain within `timeout` seconds."""
        if self._hole is not None and self.error is None:
            self._close_hole()
        self._closing = True
        self._stop.set()
        self._thread.join(timeout)
        if self.error is not None:
            raise self.error
        if self._thread.is_alive():
            raise RecorderError(
                f"the recorder did not finish writing within {timeout}s "
                f"({len(self._queue)} records still queued; the file stays .partial)"
            )

    # --- the writer thread --------------------------------------------------------------

    def _run(self) -> None:
        writer, queue = self.writer, self._queue
        popleft = queue.popleft
        try:
            while True:
                stopping = self._stop.is_set()
                while queue:
                    kind, arrival_ns, conn_id, payload = popleft()
                    self._out_bytes += len(payload)
                    writer.add(kind, arrival_ns, conn_id, payload)
                if self._rotate.is_set():
                    self._rotate.clear()
                    writer.rotate()
                writer.tick()
                if stopping:
                    writer.close()
                    return
                self._stop.wait(self.poll_s)
        except RecorderError as exc:
            self.error = exc
            log.error("%s", exc)
        except Exception as exc:  # keep the cause: the recording is over either way
            self.error = RecorderError(f"recorder thread failed: {exc!r}")
            log.exception("recorder thread failed")
