"""Reading recordings: finalised or cut at any byte, one file, many, or a directory.

    for record in iter_records(["recordings/"], start_ns=..., end_ns=...):
        ...

Seeking never decompresses what it skips: every block is preceded by a small header
(zstd skippable frame) with its compressed size and time range, so a reader hops from
header to header. A file cut by a crash yields every complete block and then stops,
reporting where it was cut; it never raises for a cut tail.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import zstandard

from recorder import format as fmt
from recorder.format import BlockInfo, Record


@dataclass
class FileScan:
    """What a file holds, from its block headers alone (no decompression)."""

    path: Path
    blocks: list[BlockInfo] = field(default_factory=list)
    footer: dict | None = None
    problem: str | None = None  # why the scan stopped early: cut tail or foreign bytes
    size: int = 0

    @property
    def finalised(self) -> bool:
        return self.footer is not None and self.problem is None

    @property
    def first_ns(self) -> int | None:
        return self.blocks[0].first_ns if self.blocks else None

    @property
    def last_ns(self) -> int | None:
        return self.blocks[-1].last_ns if self.blocks else None


def recording_files(paths: Iterable[str | Path]) -> list[Path]:
    """Files named by `paths` (directories expanded), sorted by name = by start time."""
    files: list[Path] = []
    for item in paths:
        path = Path(item)
        if path.is_dir():
            found = [p for p in path.iterdir() if _is_recording(p.name)]
            files.extend(sorted(found, key=_sort_key))
        elif path.exists():
            files.append(path)
        else:
            raise FileNotFoundError(f"no such recording file or directory: {path}")
    return files


def recording_files_or_exit(paths: Iterable[str | Path], command: str) -> list[Path]:
    """For the CLI: the files, or a one-line error naming the command."""
    try:
        files = recording_files(paths)
    except FileNotFoundError as exc:
        raise SystemExit(f"{command}: {exc}") from None
    if not files:
        raise SystemExit(f"{command}: no recordings (*{fmt.SUFFIX}) found")
    return files


def _is_recording(name: str) -> bool:
    return name.endswith(fmt.SUFFIX) or name.endswith(fmt.SUFFIX + fmt.PARTIAL)


def _sort_key(path: Path) -> str:
    return path.name.removesuffix(fmt.PARTIAL)


def scan(path: str | Path) -> FileScan:
    """Walk the block headers of one file."""
    result = FileScan(Path(path))
    with open(path, "rb") as f:
        result.size = size = os.fstat(f.fileno()).st_size
        if size == 0:
            result.problem = "empty file (cut before its first block)"
        offset = 0
        while offset < size:
            head = f.read(8)
            if len(head) < 8:
                result.problem = f"cut at byte {offset} (inside a block header)"
                break
            data_size = fmt.parse_skippable_head(head)
            if data_size is None:
                result.problem = f"unexpected bytes at offset {offset}: not a recording block"
                break
            data = f.read(data_size)
            if len(data) < data_size:
                result.problem = f"cut at byte {offset} (inside a block header)"
                break
            if data.startswith(fmt.FOOTER_TAG):
                try:
                    result.footer = orjson.loads(data[len(fmt.FOOTER_TAG) :])
                except orjson.JSONDecodeError:
                    result.problem = f"unreadable footer at offset {offset}"
                offset += 8 + data_size
                continue
            info = fmt.parse_block_header(data, offset)
            if info is None:
                offset += 8 + data_size  # someone else's skippable frame: skip it
                continue
            end = offset + 8 + data_size + info.compressed
            if end > size:
                result.problem = f"cut at byte {size} (block at offset {offset} is incomplete)"
                break
            result.blocks.append(info)
            f.seek(end)
            offset = end
    return result


def read_block(f, info: BlockInfo) -> list[Record]:  # noqa: ANN001
    f.seek(info.offset + 8 + fmt._BLOCK.size)
    compressed = f.read(info.compressed)
    raw = zstandard.ZstdDecompressor().decompress(compressed, max_output_size=info.raw)
    return fmt.decode_records(raw)


def iter_file(
    path: str | Path,
    start_ns: int | None = None,
    end_ns: int | None = None,
    scanned: FileScan | None = None,
) -> Iterator[Record]:
    """Records of one file in order, from `start_ns` (blocks before it are skipped unread)."""
    info = scanned or scan(path)
    with open(path, "rb") as f:
        for block in info.blocks:
            if start_ns is not None and block.last_ns < start_ns:
                continue
            if end_ns is not None and block.first_ns > end_ns:
                return
            for record in read_block(f, block):
                if start_ns is not None and record.arrival_ns < start_ns:
                    continue
                if end_ns is not None and record.arrival_ns > end_ns:
                    return
                yield record


def iter_records(
    paths: Iterable[str | Path], start_ns: int | None = None, end_ns: int | None = None
) -> Iterator[Record]:
    """Records of many files (directories expanded, rotated files in order)."""
    for path in recording_files(paths):
        info = scan(path)
        if end_ns is not None and info.first_ns is not None and info.first_ns > end_ns:
            return
        if start_ns is not None and info.last_ns is not None and info.last_ns < start_ns:
            continue
        yield from iter_file(path, start_ns, end_ns, info)


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
    gaps: int
    resyncs: int
    losses: int
    compressed_bytes: int
    raw_bytes: int

    @property
    def ratio(self) -> float:
        return self.raw_bytes / self.compressed_bytes if self.compressed_bytes else 0.0


def summarize(path: str | Path) -> FileSummary:
    """Decode a whole file and count what is in it (for `btse-recorder info`)."""
    info = scan(path)
    kinds: dict[str, int] = {}
    topics: dict[str, int] = {}
    header = None
    gaps = resyncs = losses = 0
    for record in iter_file(path, scanned=info):
        name = fmt.KINDS.get(record.kind, "unknown")
        kinds[name] = kinds.get(name, 0) + 1
        if record.kind == fmt.FRAME:
            topic = frame_topic(record.payload) or "(no topic)"
            topics[topic] = topics.get(topic, 0) + 1
        elif record.kind == fmt.HEADER and header is None:
            header = orjson.loads(record.payload)
        elif record.kind == fmt.STATUS:
            status = orjson.loads(record.payload)
            gaps += status.get("reason") == "gap"
            resyncs += status.get("status") == "out_of_sync"
        elif record.kind == fmt.LOSS:
            losses += orjson.loads(record.payload).get("count", 0)
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
        gaps=gaps,
        resyncs=resyncs,
        losses=losses,
        compressed_bytes=info.size,
        raw_bytes=sum(b.raw for b in info.blocks),
    )
