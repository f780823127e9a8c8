"""The recording format: what one file holds, byte for byte. docs/FORMAT.md is the spec.

A file is a sequence of independent zstd frames ("blocks"), each preceded by a zstd
*skippable frame* describing it, and closed, when finalised, by a skippable footer:

    [skippable: block header][zstd frame: records]  [skippable: block header][zstd ...] ...
    [skippable: footer]                                   (only in a finalised file)

`zstdcat FILE` prints every record (skippable frames are ignored by zstd tools); a reader
hops from block header to block header without decompressing to seek by time; a file cut
at any byte is readable up to its last complete block.

Inside a block, one record per line: `KIND ARRIVAL_NS CONN LEN PAYLOAD\\n`, where PAYLOAD
is exactly LEN bytes (so raw frames with any bytes, newlines included, round-trip).
"""

from __future__ import annotations

import struct
from typing import NamedTuple

FORMAT_NAME = "bookengine-recording"
FORMAT_VERSION = 1
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
}

# zstd skippable frames: magic 0x184D2A50..5F (little endian), u32 size, then data.
SKIPPABLE_MAGIC = 0x184D2A5B
_SKIP = struct.Struct("<II")
BLOCK_TAG = b"BEBK"
FOOTER_TAG = b"BEFT"
# block header: tag, compressed size, raw size, records, frames, first ns, last ns
_BLOCK = struct.Struct("<4sIIIIqq")


class Record(NamedTuple):
    kind: bytes  # one of KINDS
    arrival_ns: int
    conn_id: int
    payload: bytes


class BlockInfo(NamedTuple):
    offset: int  # of the block's skippable header in the file
    compressed: int
    raw: int
    records: int
    frames: int
    first_ns: int
    last_ns: int


def encode_record(kind: bytes, arrival_ns: int, conn_id: int, payload: bytes) -> bytes:
    return b"%s %d %d %d %s\n" % (kind, arrival_ns, conn_id, len(payload), payload)


def decode_records(block: bytes) -> list[Record]:
    """Split a decompressed block into records; ValueError if it is not well formed."""
    records = []
    pos, end = 0, len(block)
    while pos < end:
        head_end = pos
        for _ in range(4):  # KIND ARRIVAL CONN LEN, each followed by one space
            head_end = block.index(b" ", head_end) + 1
        kind, arrival, conn, length = block[pos : head_end - 1].split(b" ")
        size = int(length)
        payload = block[head_end : head_end + size]
        if len(payload) != size or block[head_end + size : head_end + size + 1] != b"\n":
            raise ValueError(f"record at byte {pos} is cut or malformed")
        records.append(Record(kind, int(arrival), int(conn), payload))
        pos = head_end + size + 1
    return records


def skippable(data: bytes) -> bytes:
    return _SKIP.pack(SKIPPABLE_MAGIC, len(data)) + data


def block_header(
    compressed: int, raw: int, records: int, frames: int, first: int, last: int
) -> bytes:
    return skippable(_BLOCK.pack(BLOCK_TAG, compressed, raw, records, frames, first, last))


def parse_skippable_head(head: bytes) -> int | None:
    """Size of a skippable frame's data if `head` (8 bytes) starts one, else None."""
    magic, size = _SKIP.unpack(head)
    return size if 0x184D2A50 <= magic <= 0x184D2A5F else None


def parse_block_header(data: bytes, offset: int) -> BlockInfo | None:
    if len(data) != _BLOCK.size or data[:4] != BLOCK_TAG:
        return None
    _, compressed, raw, records, frames, first, last = _BLOCK.unpack(data)
    return BlockInfo(offset, compressed, raw, records, frames, first, last)
