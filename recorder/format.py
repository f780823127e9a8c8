"""The recording format: what one file holds, byte for byte. docs/FORMAT.md is the spec.

A file is a sequence of independent zstd frames ("blocks"), each preceded by a zstd
*skippable frame* describing it; a finalised file ends with a footer, a block index and a
fixed-size trailer, all skippable frames too:

    [skip: block header][zstd frame: records]  [skip: block header][zstd frame] ...
    [skip: footer JSON][skip: block index][skip: trailer]      (only in a finalised file)

Why this layout:
- `zstdcat FILE` prints every record (zstd tools ignore skippable frames);
- a file cut at any byte is readable up to its last complete block (blocks are
  independent zstd frames, each announced by a header carrying its compressed size);
- a reader seeks by time without decompressing: from the trailer (one read from the end)
  to the index in a finalised file, or by hopping header to header in a cut one.

Inside a block, one record per line: `KIND ARRIVAL_NS CONN LEN PAYLOAD\\n`, where PAYLOAD
is exactly LEN bytes, so raw frames with any bytes (newlines, NULs, junk) round-trip.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from bookengine.wire import plain_decimal as plain_decimal  # spelt there; used here too

FORMAT_NAME = "bookengine-recording"
FORMAT_VERSION = 2  # 2: CALL records (the driver's calls into BookSync); 1 still reads
READABLE_VERSIONS = (1, 2)
SUFFIX = ".btrec.zst"
PARTIAL = ".partial"

# Record kinds (one ASCII letter).
HEADER = b"H"  # session metadata, JSON; the first record of every file
FRAME = b"F"  # a received frame, raw bytes exactly as received
OPEN = b"O"  # a connection opened; payload: URL
CLOSE = b"C"  # a connection closed; payload: JSON {"code", "reason"}
SENT = b"S"  # a request we sent (subscribe, unsubscribe, ping); payload: the text
STATUS = b"T"  # a sync status change seen live; payload: JSON {"topic", "status", ...}
DIGEST = b"D"  # top-of-book digest of a synced book; payload: JSON {"topic", "seq", ...}
LOSS = b"L"  # a hole: records the recorder could not keep; JSON {"first_ns", ...}
CHECKPOINT = b"K"  # a synced book as a snapshot frame: where a seeking replay starts from
CALL = b"A"  # a call the live driver made into BookSync: JSON {"call", "topics"} (v2)
KINDS = {
    HEADER: "header",
    FRAME: "frame",
    OPEN: "open",
    CLOSE: "close",
    SENT: "sent",
    STATUS: "status",
    DIGEST: "digest",
    LOSS: "loss",
    CHECKPOINT: "checkpoint",
    CALL: "call",
}
NO_CONN = -1  # conn_id of records that belong to no connection (header, status, loss...)
# The most a block may decompress to. The writer cuts blocks at 1 MiB of records (one
# record past it at most: a frame, which the Feed caps at 16 MiB) and never writes one
# over this; a reader treats a block that says or turns out larger as damaged, unread.
MAX_BLOCK_BYTES = 64 << 20

# The footer's keys and the JSON types of their values (docs/FORMAT.md); verify requires
# them all (a reader may add keys: unknown ones are allowed).
FOOTER_KEYS: dict[str, tuple[type, ...]] = {
    "format": (str,),
    "version": (int,),
    "first_ns": (int, type(None)),
    "last_ns": (int, type(None)),
    "blocks": (int,),
    "records": (int,),
    "frames": (int,),
    "raw_bytes": (int,),
    "kinds": (dict,),
    "finalised_ns": (int,),
    "finalised_by": (str,),
    "indexed": (bool,),
}
FINALISED_BY = ("time", "size", "close", "reopen")  # reopen: SIGHUP

# zstd skippable frames: u32 magic 0x184D2A50..5F (little endian), u32 size, then data.
SKIPPABLE_MAGIC = 0x184D2A5B
_SKIP = struct.Struct("<II")
SKIP_HEAD = _SKIP.size  # 8
BLOCK_TAG = b"BEBK"
FOOTER_TAG = b"BEFT"
INDEX_TAG = b"BEIX"
TRAILER_TAG = b"BEND"
# block header: tag, compressed size, raw size, records, frames, min ns, max ns
_BLOCK = struct.Struct("<4sIIIIqq")
BLOCK_HEAD = SKIP_HEAD + _BLOCK.size  # bytes from a block header's start to its zstd frame
# index entry: offset of the block header, then the block header's fields
_INDEX = struct.Struct("<QIIIIqq")
# trailer: tag, offset of the footer frame, offset of the index frame
_TRAILER = struct.Struct("<4sQQ")
TRAILER_SIZE = SKIP_HEAD + _TRAILER.size  # 28: the last bytes of a finalised file


class Record(NamedTuple):
    """One record. A 4-tuple on purpose: `for kind, ns, conn, payload in records` is the
    fastest way to consume a recording."""

    kind: bytes  # one of KINDS
    arrival_ns: int  # wall-clock ns, stamped once at receive (or when the event happened)
    conn_id: int  # connection slot; NO_CONN for file-level records
    payload: bytes

    @property
    def kind_name(self) -> str:
        return KINDS.get(self.kind, "unknown")


class BlockInfo(NamedTuple):
    """A block as its header (or the index) describes it; no decompression needed."""

    offset: int  # of the block's skippable header in the file
    compressed: int  # bytes of the zstd frame after the header
    raw: int  # decompressed bytes
    records: int
    frames: int  # records of kind FRAME
    first_ns: int  # earliest arrival_ns in the block (the first one unless the clock stepped)
    last_ns: int  # latest arrival_ns in the block

    @property
    def end(self) -> int:
        """Offset just past this block's zstd frame."""
        return self.offset + BLOCK_HEAD + self.compressed


def encode_record(kind: bytes, arrival_ns: int, conn_id: int, payload: bytes) -> bytes:
    """One record line. The explicit length makes any payload bytes safe."""
    return b"%s %d %d %d %s\n" % (kind, arrival_ns, conn_id, len(payload), payload)


def decode_records(block: bytes) -> list[Record]:
    """Split a decompressed block into records; ValueError if it is not well formed."""
    records: list[Record] = []
    append = records.append
    find = block.find
    pos, end = 0, len(block)
    try:
        while pos < end:
            a = find(b" ", pos)
            b = find(b" ", a + 1)
            c = find(b" ", b + 1)
            d = find(b" ", c + 1)
            if d < 0 or a - pos != 1:
                raise ValueError
            size = int(block[c + 1 : d])
            stop = d + 1 + size
            if size < 0 or stop >= end or block[stop] != 10:  # 10: b"\n"
                raise ValueError
            append(
                Record(
                    block[pos:a], int(block[a + 1 : b]), int(block[b + 1 : c]), block[d + 1 : stop]
                )
            )
            pos = stop + 1
    except ValueError:
        raise ValueError(f"record at byte {pos} of the block is cut or malformed") from None
    return records


def skippable(data: bytes) -> bytes:
    """`data` wrapped in a zstd skippable frame (ignored by zstd tools)."""
    return _SKIP.pack(SKIPPABLE_MAGIC, len(data)) + data


def parse_skippable_head(head: bytes) -> int | None:
    """Size of a skippable frame's data if `head` (8 bytes) starts one, else None."""
    if len(head) != _SKIP.size:
        return None
    magic, size = _SKIP.unpack(head)
    return size if 0x184D2A50 <= magic <= 0x184D2A5F else None


def block_header(
    compressed: int, raw: int, records: int, frames: int, first: int, last: int
) -> bytes:
    return skippable(_BLOCK.pack(BLOCK_TAG, compressed, raw, records, frames, first, last))


def parse_block_header(data: bytes, offset: int) -> BlockInfo | None:
    """The block described by a skippable frame's data, or None if it is not a header."""
    if len(data) != _BLOCK.size or data[:4] != BLOCK_TAG:
        return None
    _, compressed, raw, records, frames, first, last = _BLOCK.unpack(data)
    return BlockInfo(offset, compressed, raw, records, frames, first, last)


def index_frame(blocks: list[BlockInfo]) -> bytes:
    """The block index of a finalised file: one fixed-size entry per block, in order."""
    return skippable(INDEX_TAG + b"".join(_INDEX.pack(*b) for b in blocks))


def parse_index(data: bytes) -> list[BlockInfo] | None:
    """Blocks from an index frame's data, or None if it is not a well-formed index."""
    if data[:4] != INDEX_TAG or (len(data) - 4) % _INDEX.size:
        return None
    return [BlockInfo(*entry) for entry in _INDEX.iter_unpack(data[4:])]


def trailer(footer_offset: int, index_offset: int) -> bytes:
    """The last TRAILER_SIZE bytes of a finalised file: where its footer and index start."""
    return skippable(_TRAILER.pack(TRAILER_TAG, footer_offset, index_offset))


def parse_trailer(data: bytes) -> tuple[int, int] | None:
    """(footer offset, index offset) from a file's last TRAILER_SIZE bytes, else None."""
    if len(data) != TRAILER_SIZE or parse_skippable_head(data[:SKIP_HEAD]) != _TRAILER.size:
        return None
    tag, footer_offset, index_offset = _TRAILER.unpack(data[SKIP_HEAD:])
    return (footer_offset, index_offset) if tag == TRAILER_TAG else None
