"""Reading recordings: finalised or cut at any byte, one file, many, or a directory.

    for kind, arrival_ns, conn_id, payload in iter_records(["recordings/"], start_ns=t0):
        ...

    reader = RecordingReader(["recordings/"])
    for record in reader: ...
    reader.truncated        # the files that were cut (crash, disk full), with the reason

Seeking never decompresses what it skips. A finalised file ends with a trailer pointing
at a block index (one read from the end); a cut file is walked header to header (every
block is preceded by a small skippable frame with its compressed size and time range).
A cut file yields every complete block and then stops, reporting where it was cut; a
cut tail never raises. A block that is complete but does not decode (bit rot, foreign
bytes) raises `CorruptBlock` naming the file and offset: that is damage, not a crash.
With `skip_damaged=True` such a block is logged and replaced by a `loss` record instead,
so a long recording with one bad block still reads (and the hole is counted).
A block that repeats an earlier block of its file byte for byte is read once (skipped,
logged and counted): a record is never yielded twice.
"""

from __future__ import annotations

import filecmp
import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import orjson
import zstandard

# re-exported here for callers of the reader; their home is bookengine.errors
from bookengine.errors import CorruptBlock as CorruptBlock
from bookengine.errors import NoRecordings as NoRecordings
from recorder import format as fmt
from recorder.format import BlockInfo, Record

log = logging.getLogger(__name__)


@dataclass
class FileScan:
    """What a file holds, from its index or block headers alone (no decompression)."""

    path: Path
    blocks: list[BlockInfo] = field(default_factory=list)
    footer: dict | None = None
    problem: str | None = None  # why the scan stopped early: cut tail or foreign bytes
    size: int = 0
    indexed: bool = False  # the blocks came from the finalised file's index
    trailer: bool = False  # a trailer frame was seen (the walk)
    # (copy, original): blocks left out of `blocks` as byte-for-byte repeats
    duplicates: list[tuple[BlockInfo, BlockInfo]] = field(default_factory=list)

    @property
    def finalised(self) -> bool:
        return self.footer is not None and self.problem is None

    @property
    def truncated(self) -> bool:
        """Cut (crash, disk full) or damaged: only a prefix of the session is here."""
        return not self.finalised

    @property
    def first_ns(self) -> int | None:
        return min((b.first_ns for b in self.blocks), default=None)

    @property
    def last_ns(self) -> int | None:
        return max((b.last_ns for b in self.blocks), default=None)

    @property
    def complete_bytes(self) -> int:
        """Bytes up to the end of the last complete block."""
        return self.blocks[-1].end if self.blocks else 0


def recording_files(paths: Iterable[str | Path]) -> list[Path]:
    """Files named by `paths` (directories expanded), sorted by name = by start time;
    without the leftover names of finalised files (see find_recordings), logged once."""
    files, leftovers = find_recordings(paths)
    for partial, final in leftovers:
        if partial not in _reported:
            _reported.add(partial)
            log.warning("%s", describe_leftover(partial, final))
    return files


_reported: set[Path] = set()  # leftovers already logged: several calls list the same files


def find_recordings(paths: Iterable[str | Path]) -> tuple[list[Path], list[tuple[Path, Path]]]:
    """(files to read, leftovers): a `.partial` listed next to its finalised name with the
    same bytes is a leftover, not a file. Finalising is link(partial, final) then
    unlink(partial): a crash in between leaves both names, which would read every record
    twice. (A `.partial` with other bytes is another writer's file and is read.)"""
    files: list[Path] = []
    for item in paths:
        path = Path(item)
        if path.is_dir():
            found = [p for p in path.iterdir() if _is_recording(p.name) and p.is_file()]
            files.extend(sorted(found, key=_sort_key))
        elif path.exists():
            if not _is_recording(path.name) and not _starts_as_recording(path):
                raise NoRecordings(
                    f"{path} is not a recording (it does not start with a recording block)"
                )
            files.append(path)
        else:
            raise FileNotFoundError(f"no such recording file or directory: {path}")
    listed = set(files)
    leftovers = []
    for path in files:
        final = path.with_name(path.name.removesuffix(fmt.PARTIAL))
        if final != path and final in listed and _same_bytes(path, final):
            leftovers.append((path, final))
    ignored = {partial for partial, _ in leftovers}
    return [p for p in files if p not in ignored], leftovers


def _same_bytes(a: Path, b: Path) -> bool:
    return os.path.samefile(a, b) or filecmp.cmp(a, b, shallow=False)


def describe_leftover(partial: Path, final: Path) -> str:
    return (
        f"{partial}: ignored, the same file as {final.name} (a crash while "
        "finalising left both names; safe to delete)"
    )


def find_recordings_or_fail(
    paths: Iterable[str | Path],
) -> tuple[list[Path], list[tuple[Path, Path]]]:
    """`find_recordings`, raising `NoRecordings` when a path is missing or holds none."""
    try:
        files, leftovers = find_recordings(paths)
    except FileNotFoundError as exc:
        raise NoRecordings(str(exc)) from None
    if not files:
        raise NoRecordings(f"no recordings (*{fmt.SUFFIX}) found")
    return files, leftovers


def _is_recording(name: str) -> bool:
    return name.endswith(fmt.SUFFIX) or name.endswith(fmt.SUFFIX + fmt.PARTIAL)


def _starts_as_recording(path: Path) -> bool:
    """A file by another name, but a recording's first bytes: a block header."""
    try:
        with open(path, "rb") as f:
            head = f.read(8 + 4)
    except OSError:
        return True  # unreadable: the reader says why, with the file's name
    return fmt.parse_skippable_head(head[:8]) is not None and head[8:12] == fmt.BLOCK_TAG


def _sort_key(path: Path) -> tuple[str, str]:
    return path.name.removesuffix(fmt.PARTIAL), path.name  # a name before its .partial


def scan(path: str | Path, *, use_index: bool = True) -> FileScan:
    """The blocks of one file: from its index if it is finalised (and `use_index`), else
    by hopping from block header to block header."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        result = _scan_index(f, size, Path(path)) if use_index else None
        if result is None:
            result = _scan_headers(f, size, Path(path))
        _drop_duplicates(f, result)
        return result


def _drop_duplicates(f: BinaryIO, result: FileScan) -> None:
    """Move blocks that repeat an earlier block of the file (same header, same zstd
    bytes: a block written twice) from `blocks` to `duplicates`. Only blocks whose headers
    are equal are read and compared, which real recordings never have."""
    seen: dict[tuple, list[BlockInfo]] = {}
    kept = []
    for block in result.blocks:
        same = seen.setdefault(block[1:], [])
        original = next((b for b in same if _zstd_bytes(f, b) == _zstd_bytes(f, block)), None)
        if original is None:
            same.append(block)
            kept.append(block)
        else:
            result.duplicates.append((block, original))
    result.blocks = kept


def _zstd_bytes(f: BinaryIO, block: BlockInfo) -> bytes:
    f.seek(block.offset + fmt.BLOCK_HEAD)
    return f.read(block.compressed)


def _read_skippable(f: BinaryIO, offset: int, limit: int) -> bytes | None:
    """The data of the skippable frame at `offset`, if one ends by `limit`."""
    f.seek(offset)
    head = f.read(fmt.SKIP_HEAD)
    if len(head) < fmt.SKIP_HEAD:
        return None
    size = fmt.parse_skippable_head(head)
    if size is None or offset + fmt.SKIP_HEAD + size > limit:
        return None
    data = f.read(size)
    return data if len(data) == size else None


def _scan_index(f: BinaryIO, size: int, path: Path) -> FileScan | None:
    """The fast path for finalised files; None (fall back to the walk) unless the
    trailer, footer and index are all present and agree with each other."""
    if size < fmt.TRAILER_SIZE:
        return None
    f.seek(size - fmt.TRAILER_SIZE)
    where = fmt.parse_trailer(f.read(fmt.TRAILER_SIZE))
    if where is None:
        return None
    footer_offset, index_offset = where
    footer_data = _read_skippable(f, footer_offset, index_offset)
    index_data = _read_skippable(f, index_offset, size - fmt.TRAILER_SIZE)
    if footer_data is None or index_data is None or not footer_data.startswith(fmt.FOOTER_TAG):
        return None
    if index_offset + fmt.SKIP_HEAD + len(index_data) != size - fmt.TRAILER_SIZE:
        return None
    blocks = fmt.parse_index(index_data)
    if blocks is None:
        return None
    expected = 0
    for block in blocks:  # contiguous blocks from byte 0 up to the footer
        if block.offset != expected:
            return None
        expected = block.end
    if expected != footer_offset:
        return None
    footer = _footer(footer_data)
    if footer is None:
        return None
    return FileScan(path, blocks, footer, None, size, indexed=True, trailer=True)


def _footer(data: bytes) -> dict | None:
    """The footer's JSON object, or None if it is not one (verify checks its keys)."""
    try:
        footer = orjson.loads(data[len(fmt.FOOTER_TAG) :])
    except orjson.JSONDecodeError:
        return None
    return footer if isinstance(footer, dict) else None


def _scan_headers(f: BinaryIO, size: int, path: Path) -> FileScan:
    result = FileScan(path, size=size)
    if size == 0:
        result.problem = "empty file (cut before its first block)"
    f.seek(0)
    offset = 0
    while offset < size:
        head = f.read(fmt.SKIP_HEAD)
        if len(head) < fmt.SKIP_HEAD:
            result.problem = f"cut at byte {size} (inside the header at offset {offset})"
            break
        data_size = fmt.parse_skippable_head(head)
        if data_size is None:
            result.problem = f"unexpected bytes at offset {offset}: not a recording block"
            break
        data = f.read(data_size)
        if len(data) < data_size:
            result.problem = f"cut at byte {size} (inside the header at offset {offset})"
            break
        if data.startswith(fmt.FOOTER_TAG):
            result.footer = _footer(data)
            if result.footer is None:
                result.problem = f"unreadable footer at offset {offset}"
            offset += fmt.SKIP_HEAD + data_size
            continue
        if data.startswith(fmt.TRAILER_TAG):
            result.trailer = True
        info = fmt.parse_block_header(data, offset)
        if info is None:
            offset += fmt.SKIP_HEAD + data_size  # index, trailer, someone else's: skip
            continue
        if info.end > size:
            result.problem = f"cut at byte {size} (the block at offset {offset} is incomplete)"
            break
        result.blocks.append(info)
        f.seek(info.end)
        offset = info.end
    if result.footer is not None and not result.problem and not result.trailer:
        if result.footer.get("indexed"):  # what follows the footer was cut off
            result.problem = f"cut at byte {size} (after the footer, before the trailer)"
    return result


def read_block(
    f: BinaryIO, info: BlockInfo, decompressor: zstandard.ZstdDecompressor | None = None
) -> list[Record]:
    """Decode one block; CorruptBlock if it does not decode to what its header says. Sizes
    are checked before decompressing: zstd allocates what a frame declares whatever
    `max_output_size` says, so a crafted block could otherwise cost gigabytes."""
    f.seek(info.offset + fmt.BLOCK_HEAD)
    compressed = f.read(info.compressed)
    try:
        if info.raw > fmt.MAX_BLOCK_BYTES:
            raise ValueError(f"{info.raw} bytes: over the cap, {fmt.MAX_BLOCK_BYTES}")
        declared = zstandard.get_frame_parameters(compressed).content_size
        if declared not in (info.raw, zstandard.CONTENTSIZE_UNKNOWN):
            raise ValueError(f"the zstd frame declares {declared} bytes, the header {info.raw}")
        raw = (decompressor or zstandard.ZstdDecompressor()).decompress(
            compressed, max_output_size=info.raw
        )
        if len(raw) != info.raw:
            raise ValueError(f"{len(raw)} bytes, the header says {info.raw}")
        return fmt.decode_records(raw)
    except (zstandard.ZstdError, ValueError) as exc:
        name = getattr(f, "name", "?")
        raise CorruptBlock(f"{name}: block at offset {info.offset} is damaged: {exc}") from None


def iter_file(
    path: str | Path,
    start_ns: int | None = None,
    end_ns: int | None = None,
    scanned: FileScan | None = None,
    *,
    skip_damaged: bool = False,
    damaged: list[CorruptBlock] | None = None,
) -> Iterator[Record]:
    """Records of one file in order, with `start_ns <= arrival_ns <= end_ns` (either
    bound optional); blocks wholly outside the range are skipped unread. A damaged block
    raises CorruptBlock, or with `skip_damaged` is logged, appended to `damaged` and
    replaced by a loss record (see damage_record)."""
    for records in iter_file_blocks(
        path, start_ns, end_ns, scanned, skip_damaged=skip_damaged, damaged=damaged
    ):
        yield from records


def iter_file_blocks(
    path: str | Path,
    start_ns: int | None = None,
    end_ns: int | None = None,
    scanned: FileScan | None = None,
    *,
    skip_damaged: bool = False,
    damaged: list[CorruptBlock] | None = None,
) -> Iterator[list[Record]]:
    """iter_file's records a block at a time (a list each): replay loops over lists,
    which spares a generator step per record."""
    info = scanned or scan(path)
    decompressor = zstandard.ZstdDecompressor()
    with open(path, "rb") as f:
        for block in info.blocks:
            if start_ns is not None and block.last_ns < start_ns:
                continue
            if end_ns is not None and block.first_ns > end_ns:
                continue
            try:
                records = read_block(f, block, decompressor)
            except CorruptBlock as exc:
                if not skip_damaged:
                    raise
                log.warning("%s; skipped (%d records lost)", exc, block.records)
                if damaged is not None:
                    damaged.append(exc)
                yield [damage_record(block, end_ns)]
                continue
            if (start_ns is None or block.first_ns >= start_ns) and (
                end_ns is None or block.last_ns <= end_ns
            ):
                yield records
                continue
            lo = start_ns if start_ns is not None else block.first_ns
            hi = end_ns if end_ns is not None else block.last_ns
            yield [record for record in records if lo <= record.arrival_ns <= hi]


def damage_record(block: BlockInfo, end_ns: int | None = None) -> Record:
    """The loss record read in place of a damaged block: the writer's loss payload (the
    block header's time range and record count) plus `damaged`, the block's offset.
    Stamped at the block's last arrival, or at `end_ns` if the read stops before it."""
    hole = {
        "first_ns": block.first_ns,
        "last_ns": block.last_ns,
        "count": block.records,
        "damaged": block.offset,
    }
    ns = block.last_ns if end_ns is None else min(block.last_ns, end_ns)
    return Record(fmt.LOSS, ns, fmt.NO_CONN, orjson.dumps(hole))


class RecordingReader:
    """Records of many files (directories expanded, rotated files in name = time order),
    optionally limited to `[start_ns, end_ns]`; files outside the range are not decoded.

    After iterating, `scans` holds what was learnt per file and `truncated` the files
    that were cut; each cut file is also logged once as a warning. `skip_damaged`: a
    damaged block becomes a loss record (and an entry of `damaged`) instead of raising.
    """

    def __init__(
        self,
        paths: Iterable[str | Path] | str | Path,
        start_ns: int | None = None,
        end_ns: int | None = None,
        *,
        skip_damaged: bool = False,
    ) -> None:
        if isinstance(paths, str | Path):
            paths = [paths]
        self.files = recording_files(paths)
        self.start_ns = start_ns
        self.end_ns = end_ns
        self.skip_damaged = skip_damaged
        self.scans: dict[Path, FileScan] = {}
        self.damaged: list[CorruptBlock] = []  # the blocks skipped as damaged, so far

    def scan_all(self) -> list[FileScan]:
        """Scan every file (cheap: headers or index only)."""
        return [self._scan(path) for path in self.files]

    def _scan(self, path: Path) -> FileScan:
        if path not in self.scans:
            info = self.scans[path] = scan(path)
            if info.problem:
                log.warning(
                    "%s: %s; reading its %d complete blocks", path, info.problem, len(info.blocks)
                )
            for copy, original in info.duplicates:
                log.warning("%s: %s; skipped", path, describe_duplicate(copy, original))
        return self.scans[path]

    @property
    def truncated(self) -> list[FileScan]:
        return [s for s in self.scans.values() if s.truncated]

    @property
    def duplicates(self) -> int:
        """Duplicated blocks skipped so far."""
        return sum(len(s.duplicates) for s in self.scans.values())

    def __iter__(self) -> Iterator[Record]:
        for _, blocks in self.by_file():
            for records in blocks:
                yield from records

    def by_file(self) -> Iterator[tuple[FileScan, Iterator[list[Record]]]]:
        """(scan, records in range a block at a time) of each file that has some, in
        order: for readers that need to know where a file starts (replay: each file
        names its session)."""
        start, end = self.start_ns, self.end_ns
        for path in self.files:
            info = self._scan(path)
            first_ns, last_ns = info.first_ns, info.last_ns
            if first_ns is None or last_ns is None:  # no blocks
                continue
            if start is not None and last_ns < start:
                continue
            if end is not None and first_ns > end:
                continue
            yield (
                info,
                iter_file_blocks(
                    path, start, end, info, skip_damaged=self.skip_damaged, damaged=self.damaged
                ),
            )


def iter_records(
    paths: Iterable[str | Path] | str | Path,
    start_ns: int | None = None,
    end_ns: int | None = None,
    *,
    skip_damaged: bool = False,
) -> Iterator[Record]:
    """Records of many files in order (see RecordingReader)."""
    return iter(RecordingReader(paths, start_ns, end_ns, skip_damaged=skip_damaged))


def describe_duplicate(copy: BlockInfo, original: BlockInfo) -> str:
    return f"the block at offset {copy.offset} repeats the block at offset {original.offset}"


def file_header(path: str | Path, scanned: FileScan | None = None) -> dict | None:
    """A file's header record (its first record, in block 0) as a dict; None if that
    block is damaged or does not start with a header."""
    info = scanned or scan(path)
    if not info.blocks:
        return None
    with open(path, "rb") as f:
        try:
            records = read_block(f, info.blocks[0])
        except CorruptBlock:
            return None
    if not records or records[0].kind != fmt.HEADER:
        return None
    try:
        header = orjson.loads(records[0].payload)
    except orjson.JSONDecodeError:
        return None
    return header if isinstance(header, dict) else None


def header_session(header: dict | None) -> str | None:
    """The recording session a header belongs to: the writer's `session` id or, in files
    written before there was one, its host, pid and session start (equal in every file of
    a session, different between sessions). None without a header."""
    if header is None:
        return None
    if header.get("session"):
        return str(header["session"])
    return f"{header.get('host')}:{header.get('pid')}:{header.get('start_ns')}"


def frame_topic(raw: bytes) -> str | None:
    """The topic of a raw frame, found without parsing it (for summaries)."""
    start = raw.find(b'"topic":"', 0, 64)
    if start < 0:
        return None
    start += 9
    end = raw.find(b'"', start, start + 80)
    return raw[start:end].decode("utf-8", "replace") if end > 0 else None


@dataclass
class FileSummary:
    """What `btse-recorder info` prints for one file."""

    path: Path
    header: dict | None
    finalised: bool
    problem: str | None
    first_ns: int | None
    last_ns: int | None
    blocks: int
    records: int
    kinds: dict[str, int]
    frames_per_topic: dict[str, int]
    trades: int  # public trades in the trade frames (each counted as often as it was sent)
    gaps: int
    resyncs: int
    losses: int  # records the recorder lost (sum of loss records' counts)
    compressed_bytes: int  # the file's size
    raw_bytes: int  # decompressed record bytes
    frame_bytes: int = 0  # raw frame payload bytes, as received
    holes: int = 0  # loss records
    duplicates: int = 0  # blocks that repeat an earlier one, read once
    damaged: list[CorruptBlock] = field(default_factory=list)  # blocks that do not decode
    damaged_records: int = 0  # records in them, by their headers
    footer: dict | None = None
    size: int = 0

    @property
    def ratio(self) -> float:
        return self.raw_bytes / self.compressed_bytes if self.compressed_bytes else 0.0

    @property
    def truncated(self) -> bool:
        return not self.finalised


def summarize(path: str | Path) -> FileSummary:
    """Decode a whole file and count what is in it (for `btse-recorder info`); damaged
    blocks are counted, and the rest of the file summarised."""
    info = scan(path)
    kinds: dict[str, int] = {}
    topics: dict[str, int] = {}
    header = None
    gaps = resyncs = losses = holes = frame_bytes = damaged_records = trades = 0
    damaged: list[CorruptBlock] = []
    for record in iter_file(path, scanned=info, skip_damaged=True, damaged=damaged):
        if record.kind == fmt.LOSS:
            hole = orjson.loads(record.payload)
            if "damaged" in hole:  # read in place of a damaged block, not in the file
                damaged_records += hole["count"]
                continue
            losses += hole.get("count", 0)
            holes += 1
        name = fmt.KINDS.get(record.kind, "unknown")
        kinds[name] = kinds.get(name, 0) + 1
        if record.kind == fmt.FRAME:
            topic = frame_topic(record.payload) or "(no topic)"
            topics[topic] = topics.get(topic, 0) + 1
            frame_bytes += len(record.payload)
            if topic.startswith("tradeHistoryApi"):  # one "tradeId" per trade, unparsed
                trades += record.payload.count(b'"tradeId"')
        elif record.kind == fmt.HEADER and header is None:
            header = orjson.loads(record.payload)
        elif record.kind == fmt.STATUS:
            status = orjson.loads(record.payload)
            gaps += status.get("reason") == "gap"
            resyncs += status.get("status") == "out_of_sync"
    return FileSummary(
        path=Path(path),
        header=header,
        finalised=info.finalised,
        problem=info.problem,
        first_ns=info.first_ns,
        last_ns=info.last_ns,
        blocks=len(info.blocks),
        records=sum(b.records for b in info.blocks),
        kinds=kinds,
        frames_per_topic=topics,
        trades=trades,
        gaps=gaps,
        resyncs=resyncs,
        losses=losses,
        compressed_bytes=info.size,
        raw_bytes=sum(b.raw for b in info.blocks),
        frame_bytes=frame_bytes,
        holes=holes,
        duplicates=len(info.duplicates),
        damaged=damaged,
        damaged_records=damaged_records,
        footer=info.footer,
        size=info.size,
    )
