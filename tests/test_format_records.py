"""The record encoding and the skippable frames of docs/FORMAT.md, byte for byte."""

import struct

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from recorder import format as fmt

KINDS = st.sampled_from(sorted(fmt.KINDS))
NS = st.integers(min_value=0, max_value=2**63 - 1)
CONN = st.integers(min_value=-1, max_value=2**31)
RECORDS = st.lists(st.tuples(KINDS, NS, CONN, st.binary(max_size=400)), max_size=40)


@settings(max_examples=200, deadline=None)
@given(records=RECORDS)
def test_any_bytes_round_trip(records):
    block = b"".join(fmt.encode_record(*r) for r in records)
    assert fmt.decode_records(block) == [fmt.Record(*r) for r in records]


def test_junk_newlines_and_record_lookalikes_round_trip():
    nasty = [
        b"",
        b"\n",
        b"\n\n\nF 1 2 3 abc\n",  # a payload that looks like records
        bytes(range(256)),
        b"\x00\xff\xfe junk \r\n",
        'ünïcödé {"topic":"x"}'.encode(),
        b" " * 10,
    ]
    block = b"".join(fmt.encode_record(fmt.FRAME, i, 7, p) for i, p in enumerate(nasty))
    assert [r.payload for r in fmt.decode_records(block)] == nasty
    # and through zstd, as in a file
    packed = zstandard.ZstdCompressor(level=3).compress(block)
    assert fmt.decode_records(zstandard.ZstdDecompressor().decompress(packed)) == [
        fmt.Record(fmt.FRAME, i, 7, p) for i, p in enumerate(nasty)
    ]


def test_the_line_is_human_readable():
    line = fmt.encode_record(fmt.SENT, 1795000000123456789, 3, b'{"op":"subscribe"}')
    assert line == b'S 1795000000123456789 3 18 {"op":"subscribe"}\n'
    assert fmt.Record(fmt.SENT, 1, 3, b"").kind_name == "sent"
    assert fmt.Record(b"?", 1, 3, b"").kind_name == "unknown"


@pytest.mark.parametrize(
    "bad",
    [
        b"F 1 2 5 abc\n",  # length says more than there is
        b"F 1 2 3 abcd\n",  # no newline where the length ends
        b"F 1 2 3 abc",  # cut before the newline
        b"F 1 2",  # cut inside the prefix
        b"FF 1 2 0 \n",  # a kind is one letter
        b"F x 2 0 \n",  # not a number
        b"F 1 2 -1 \n",
    ],
)
def test_malformed_blocks_raise_value_error(bad):
    with pytest.raises(ValueError, match="cut or malformed"):
        fmt.decode_records(fmt.encode_record(fmt.FRAME, 1, 1, b"ok") + bad)


def test_block_header_and_index_round_trip():
    blocks = [
        fmt.BlockInfo(0, 100, 500, 10, 9, 5, 50),
        fmt.BlockInfo(136, 3, 4, 1, 0, -1, 2**62),
    ]
    for b in blocks:
        head = fmt.block_header(*b[1:])
        assert len(head) == fmt.BLOCK_HEAD
        size = fmt.parse_skippable_head(head[:8])
        assert size == len(head) - 8
        assert fmt.parse_block_header(head[8:], b.offset) == b
    index = fmt.index_frame(blocks)
    assert fmt.parse_index(index[8:]) == blocks
    assert fmt.parse_index(index[8:-1]) is None  # not a whole number of entries
    assert fmt.parse_index(b"XXXX") is None
    assert blocks[0].end == 0 + fmt.BLOCK_HEAD + 100


def test_trailer_round_trip_and_rejects_lookalikes():
    t = fmt.trailer(1234, 5678)
    assert len(t) == fmt.TRAILER_SIZE
    assert fmt.parse_trailer(t) == (1234, 5678)
    assert fmt.parse_trailer(t[1:]) is None
    assert fmt.parse_trailer(b"\0" * fmt.TRAILER_SIZE) is None
    other = struct.pack("<II", fmt.SKIPPABLE_MAGIC, 20) + b"BEXX" + b"\0" * 16
    assert fmt.parse_trailer(other) is None


def test_skippable_frames_are_ignored_by_zstd():
    """The property the whole layout rests on: zstd tools skip our metadata frames."""
    payload = b"F 1 0 3 abc\n"
    data = (
        fmt.block_header(1, 2, 3, 4, 5, 6)
        + zstandard.ZstdCompressor().compress(payload)
        + fmt.skippable(fmt.FOOTER_TAG + b"{}")
        + fmt.index_frame([fmt.BlockInfo(0, 1, 2, 3, 4, 5, 6)])
        + fmt.trailer(1, 2)
    )
    reader = zstandard.ZstdDecompressor().stream_reader(data, read_across_frames=True)
    assert reader.read() == payload
    assert fmt.parse_skippable_head(b"\x28\xb5\x2f\xfd\0\0\0\0") is None  # a zstd frame
