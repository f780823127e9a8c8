"""Damaged recordings: duplicated blocks, the two names a crash while finalising leaves,
damaged blocks skipped with a loss record in their place, footers with damaged keys,
blocks over the size cap. Every file here is built by the writer, then damaged by hand."""

import logging
import os
import shutil
import subprocess
import sys
import tracemalloc

import numpy as np
import orjson
import pytest
import zstandard

from bookengine.simulator import MarketModel
from recorder import format as fmt
from recorder.commands.verify import verify_file
from recorder.reader import (
    CorruptBlock,
    RecordingReader,
    iter_file,
    iter_records,
    recording_files,
    scan,
)
from recorder.replay import Replay
from recorder.writer import RecordingWriter

SEC = 1_000_000_000
T0 = 1_795_000_000 * SEC
TOPIC = "update:BTC-PERP_0"


def record(directory, n=2000):
    """A small BTC-PERP session as the recorder writes it: open, subscribe, snapshot,
    deltas, in blocks of 100 records; returns the finalised file."""
    model = MarketModel("BTC-PERP", seed=4)
    with RecordingWriter(directory, {"symbols": [TOPIC]}, rotate_s=None, block_records=100) as w:
        w.write_open(0, T0, "ws://sim/ws/oss/futures")
        w.write_sent(0, T0 + 1, orjson.dumps({"op": "subscribe", "args": [TOPIC]}).decode())
        w.write_frame(0, T0 + 2, model.snapshot_frame())
        for i in range(n):
            w.write_frame(0, T0 + 3 + i * SEC // 1000, model.next_delta_frame())
    (path,) = w.files
    return path


def cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "recorder", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def place(directory, name, data):
    directory.mkdir(exist_ok=True)
    (directory / name).write_bytes(data)
    return directory / name


# --- a: duplicated blocks ------------------------------------------------------------------


def test_a_duplicated_block_is_read_once_and_flagged(tmp_path, caplog):
    path = record(tmp_path / "good")
    expected = list(iter_file(path))
    data = path.read_bytes()
    block = scan(path).blocks[3]
    twice = data[: block.end] + data[block.offset : block.end] + data[block.end :]
    finalised = place(tmp_path / "dup", path.name, twice)
    footer_at = scan(path).blocks[-1].end + block.end - block.offset
    cut = place(tmp_path / "dup-cut", path.name + fmt.PARTIAL, twice[:footer_at])  # no footer
    for damaged in (finalised, cut):
        with caplog.at_level(logging.WARNING, logger="recorder.reader"):
            reader = RecordingReader(damaged)
            got = list(reader)
        assert got == expected and reader.duplicates == 1
        assert any(f"repeats the block at offset {block.offset}" in m for m in caplog.messages)
    assert list(iter_records([finalised])) == expected
    replay = Replay([finalised])
    tops = list(replay.events())
    assert tops and replay.stats.records == len(expected) and replay.stats.duplicate_blocks == 1
    info = cli("info", finalised)
    assert info.returncode == 1 and "1 duplicated block" in info.stdout
    verify = cli("verify", finalised)
    repeated = f"block at offset {block.end} repeats the block at offset {block.offset}"
    assert verify.returncode == 1 and repeated in verify.stdout


# --- b: a crash between link and unlink ---------------------------------------------------


def test_the_two_names_a_crash_while_finalising_leaves_are_read_once(tmp_path):
    path = record(tmp_path)
    expected = list(iter_file(path))
    leftover = path.with_name(path.name + fmt.PARTIAL)
    os.link(path, leftover)  # finalising is link(.partial, final) then unlink(.partial)
    assert recording_files([tmp_path]) == [path]
    assert recording_files([leftover, path]) == [path]  # named one by one (a shell glob)
    assert list(iter_records([tmp_path])) == expected
    verify = cli("verify", tmp_path)
    assert verify.returncode == 0 and "1 of 1 file(s) intact" in verify.stdout
    assert f"{leftover.name}: ignored, the same file as {path.name}" in verify.stdout
    info = cli("info", tmp_path)
    assert info.returncode == 0 and f"{leftover.name}: ignored" in info.stdout
    # a copy of the directory (cp -r) turns the link into two files with the same bytes
    copied = tmp_path / "copied"
    copied.mkdir()
    shutil.copy(path, copied / path.name)
    shutil.copy(leftover, copied / leftover.name)
    assert recording_files([copied]) == [copied / path.name]


def test_a_partial_with_other_bytes_under_a_finalised_name_is_still_read(tmp_path):
    """Finalising never clobbers: a writer that found its final name taken leaves its own
    `.partial` next to someone else's file; both hold records."""
    path = record(tmp_path / "a", n=300)
    other = record(tmp_path / "b", n=500)
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    shutil.copy(path, mixed / path.name)
    shutil.copy(other, mixed / (path.name + fmt.PARTIAL))
    assert recording_files([mixed]) == [mixed / path.name, mixed / (path.name + fmt.PARTIAL)]
    assert len(list(iter_records([mixed]))) == len(list(iter_file(path))) + len(
        list(iter_file(other))
    )


# --- c: damaged blocks --------------------------------------------------------------------


def damage(path, directory, n=5):
    """A copy of `path` with a bit flipped in block n's zstd frame; (copy, that block)."""
    block = scan(path).blocks[n]
    data = bytearray(path.read_bytes())
    data[block.offset + fmt.BLOCK_HEAD + block.compressed // 2] ^= 0x10
    return place(directory, path.name, bytes(data)), block


def test_skip_damaged_puts_a_loss_record_in_place_of_a_damaged_block(tmp_path, caplog):
    path = record(tmp_path / "good")
    expected = list(iter_file(path))
    damaged, block = damage(path, tmp_path / "bad")
    with pytest.raises(CorruptBlock, match=f"offset {block.offset}"):
        list(iter_records([damaged]))
    with caplog.at_level(logging.WARNING, logger="recorder.reader"):
        reader = RecordingReader([damaged], skip_damaged=True)
        got = list(reader)
    before = sum(b.records for b in scan(path).blocks[:5])
    hole = {"first_ns": block.first_ns, "last_ns": block.last_ns, "count": 100}
    loss = fmt.Record(
        fmt.LOSS, block.last_ns, fmt.NO_CONN, orjson.dumps(hole | {"damaged": block.offset})
    )
    assert got == expected[:before] + [loss] + expected[before + 100 :]
    assert [str(e) for e in reader.damaged] and f"offset {block.offset}" in str(reader.damaged[0])
    assert any(str(damaged) in m and f"offset {block.offset}" in m for m in caplog.messages)
    # a range inside the damaged block: the loss record, stamped inside the range
    inside = list(iter_records([damaged], block.first_ns + 1, block.last_ns - 1, skip_damaged=True))
    assert [r.kind for r in inside] == [fmt.LOSS] and inside[0].arrival_ns == block.last_ns - 1
    replay = Replay([damaged], skip_damaged=True)
    list(replay.events())
    assert replay.stats.lost_records == 100 and replay.stats.damaged_blocks == 1
    with pytest.raises(CorruptBlock):
        list(Replay([damaged]).events())


def test_replay_and_export_skip_damage_unless_told_not_to_and_never_print_a_traceback(tmp_path):
    path = record(tmp_path / "good")
    damaged, block = damage(path, tmp_path / "bad")
    replay = cli("replay", damaged.parent)
    assert replay.returncode == 0, replay.stderr
    assert "1 damaged block(s) skipped" in replay.stdout and "Traceback" not in replay.stderr
    strict = cli("replay", damaged.parent, "--no-skip-damaged")
    assert strict.returncode != 0 and "Traceback" not in strict.stderr
    (line,) = strict.stderr.strip().splitlines()
    assert line.startswith("replay: ") and f"block at offset {block.offset} is damaged" in line

    out = tmp_path / "top.npz"
    export = cli("export", damaged.parent, "-o", out)
    assert export.returncode == 0, export.stderr
    assert "1 damaged block(s) skipped (100 records)" in export.stdout
    assert len(np.load(out)["arrival_ns"]) > 100
    out.unlink()
    strict = cli("export", damaged.parent, "-o", out, "--no-skip-damaged")
    assert strict.returncode != 0 and "Traceback" not in strict.stderr and not out.exists()
    (line,) = strict.stderr.strip().splitlines()
    assert line.startswith("export: ") and f"block at offset {block.offset} is damaged" in line

    verify = cli("verify", damaged.parent)
    assert verify.returncode == 1 and f"block at offset {block.offset} is damaged" in verify.stdout
    assert cli("verify", damaged.parent, "--no-skip-damaged").returncode == 1
    refused = cli("verify", damaged.parent, "--skip-damaged")
    assert refused.returncode == 2 and "verify fails on damage" in refused.stderr
    info = cli("info", damaged.parent)
    assert info.returncode == 1 and "1 damaged block(s)" in info.stdout
    assert "Traceback" not in info.stderr


# --- d: footers with damaged keys ---------------------------------------------------------


def with_footer(path, directory, footer: bytes):
    """A copy of finalised `path` whose footer frame holds `footer` (after its tag); the
    index and trailer are rewritten to match, so only the footer is wrong."""
    info = scan(path)
    data = path.read_bytes()
    footer_offset = info.blocks[-1].end
    head = data[:footer_offset] + fmt.skippable(fmt.FOOTER_TAG + footer)
    tail = fmt.index_frame(info.blocks) + fmt.trailer(footer_offset, len(head))
    return place(directory, path.name, head + tail)


def test_verify_checks_the_footer_keys(tmp_path):
    path = record(tmp_path / "good")
    assert verify_file(path) == ([], [])
    footer = scan(path).footer
    renamed = orjson.dumps(footer).replace(b'"records"', b'"recordz"')
    missing = orjson.dumps({k: v for k, v in footer.items() if k != "frames"})
    mistyped = orjson.dumps({**footer, "blocks": str(footer["blocks"])})
    wrong = orjson.dumps({**footer, "first_ns": footer["first_ns"] - 1})
    cases = {
        "renamed": (renamed, "footer lacks records"),
        "missing": (missing, "footer lacks frames"),
        "mistyped": (mistyped, "footer blocks is not"),
        "wrong": (wrong, "footer says first_ns"),
        "not an object": (b"[1, 2]", "footer"),
    }
    for name, (text, expected) in cases.items():
        copy = with_footer(path, tmp_path / name.replace(" ", "-"), text)
        assert list(iter_file(copy)) == list(iter_file(path))  # the records are intact
        problems, _ = verify_file(copy)
        assert any(expected in p for p in problems), (name, problems)
    verify = cli("verify", tmp_path / "renamed")
    assert verify.returncode == 1 and "footer lacks records" in verify.stdout
    info = cli("info", tmp_path / "not-an-object")
    assert "Traceback" not in info.stderr


# --- e: the block size cap ----------------------------------------------------------------


def crafted(directory, path, frame: bytes, raw: int):
    """The header block of `path`, then a block of `raw` bytes said to be `frame`."""
    head = path.read_bytes()[: scan(path).blocks[0].end]
    block = fmt.block_header(len(frame), raw, 1, 1, T0 + 10, T0 + 10) + frame
    return place(directory, path.name + fmt.PARTIAL, head + block)


def zeros_frame(size: int) -> bytes:
    """A zstd frame that declares and holds `size` zero bytes, made without holding them."""
    packer = zstandard.ZstdCompressor(level=1).compressobj(size=size)
    chunk = bytes(1 << 20)
    out = [packer.compress(chunk) for _ in range(size >> 20)]
    return b"".join(out) + packer.compress(bytes(size & ((1 << 20) - 1))) + packer.flush()


def read_with_peak(path):
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        records = list(iter_records([path], skip_damaged=True))
        return records, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_block_over_the_cap_is_damage_and_is_never_decompressed(tmp_path):
    path = record(tmp_path / "good", n=10)
    # well-formed records, one block just over the cap
    payload = b"x" * (fmt.MAX_BLOCK_BYTES - 20)
    line = fmt.encode_record(fmt.FRAME, T0 + 10, 0, payload)
    assert len(line) > fmt.MAX_BLOCK_BYTES
    frame = zstandard.ZstdCompressor(level=1).compress(line)
    del payload
    big = crafted(tmp_path / "big", path, frame, len(line))
    del line
    with pytest.raises(CorruptBlock, match="bytes: over the cap"):
        list(iter_records([big]))
    records, peak = read_with_peak(big)
    assert [r.kind for r in records][-1:] == [fmt.LOSS] and peak < fmt.MAX_BLOCK_BYTES // 8
    # a small block header in front of a frame that declares a quarter of a GiB
    lying = crafted(tmp_path / "lying", path, zeros_frame(256 << 20), 100)
    records, peak = read_with_peak(lying)
    assert [r.kind for r in records][-1:] == [fmt.LOSS] and peak < 4 << 20


def test_the_writer_keeps_every_block_under_the_cap(tmp_path, caplog):
    with pytest.raises(ValueError, match="block_bytes"):
        RecordingWriter(tmp_path, block_bytes=fmt.MAX_BLOCK_BYTES + 1)
    half = b"y" * (fmt.MAX_BLOCK_BYTES // 2 + 1)
    with caplog.at_level(logging.WARNING, logger="recorder.writer"):
        with RecordingWriter(tmp_path, rotate_s=None, block_bytes=fmt.MAX_BLOCK_BYTES) as w:
            w.write_frame(0, T0, half)
            w.write_frame(0, T0 + 1, half)  # together over the cap: a block each
            w.write_frame(0, T0 + 2, b"z" * fmt.MAX_BLOCK_BYTES)  # alone over it
            w.write_frame(0, T0 + 3, b"after")
    blocks = scan(w.files[0]).blocks
    assert all(b.raw <= fmt.MAX_BLOCK_BYTES for b in blocks)
    records = [r for r in iter_file(w.files[0]) if r.kind != fmt.HEADER]
    assert [r.kind for r in records] == [fmt.FRAME, fmt.FRAME, fmt.LOSS, fmt.FRAME]
    assert records[0].payload == records[1].payload == half and records[3].payload == b"after"
    assert orjson.loads(records[2].payload) == {"first_ns": T0 + 2, "last_ns": T0 + 2, "count": 1}
    assert any("larger than a block may be" in m for m in caplog.messages)
