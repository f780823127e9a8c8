"""Reading recordings: cut at any byte, index vs header walk, seeking by time without
decoding what is skipped, rotated directories, damage; and the info/verify commands."""

import logging
import random
import shutil
import subprocess
import sys

import pytest

from recorder import format as fmt
from recorder import reader as reader_module
from recorder.reader import (
    CorruptBlock,
    RecordingReader,
    file_header,
    header_session,
    iter_file,
    iter_records,
    recording_files,
    scan,
    summarize,
)
from recorder.writer import RecordingWriter

SEC = 1_000_000_000
T0 = 1_795_000_000 * SEC
JUNK = [b"", b"\n", b"F 1 2 3 x\n\n", bytes(range(256)), b'{"topic":"update:BTC-PERP_0"}']


def payload(i: int) -> bytes:
    return JUNK[i % len(JUNK)] + b"#%d" % i


def record_dir(directory, n=3000, step=SEC // 100, **kw):
    kw.setdefault("rotate_s", None)
    kw.setdefault("block_records", 100)
    with RecordingWriter(directory, {"symbols": ["BTC-PERP"]}, **kw) as w:
        for i in range(n):
            w.write_frame(i % 2, T0 + i * step, payload(i))
    return w


def test_cut_at_any_byte_yields_every_complete_block_and_never_raises(tmp_path, caplog):
    (path,) = record_dir(tmp_path / "full", n=1500).files
    data = path.read_bytes()
    full = list(iter_file(path))
    blocks = scan(path).blocks
    edges = [b.offset for b in blocks] + [b.end for b in blocks]
    cuts = random.Random(5).sample(range(len(data)), 150)
    cuts += [0, 1, 7, 8, len(data) - 1, len(data) - fmt.TRAILER_SIZE]
    cuts += [e + d for e in edges for d in (-1, 0, 1) if 0 <= e + d < len(data)]
    for cut in cuts:
        cut_path = tmp_path / f"cut{fmt.SUFFIX}{fmt.PARTIAL}"
        cut_path.write_bytes(data[:cut])
        with caplog.at_level(logging.WARNING, logger="recorder.reader"):
            reader = RecordingReader(cut_path)
            got = list(reader)
        complete = [b for b in blocks if b.end <= cut]
        assert got == full[: sum(b.records for b in complete)], cut
        info = scan(cut_path)
        assert not info.finalised and info.blocks == complete
        assert [s.path for s in reader.truncated] == [cut_path]
    assert any("cut at byte" in m for m in caplog.messages)


def test_finalised_files_are_read_from_the_index_and_it_matches_the_walk(tmp_path):
    (path,) = record_dir(tmp_path, n=2000).files
    indexed, walked = scan(path), scan(path, use_index=False)
    assert indexed.indexed and not walked.indexed
    assert indexed.blocks == walked.blocks and len(indexed.blocks) == 21
    assert indexed.footer == walked.footer and indexed.finalised
    assert indexed.footer["records"] == 2001 and indexed.footer["kinds"]["frame"] == 2000
    # a damaged trailer: the reader falls back to the walk and still finds everything
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF
    path.write_bytes(bytes(data))
    fallback = scan(path)
    assert not fallback.indexed and fallback.blocks == walked.blocks
    assert [r.payload for r in iter_file(path) if r.kind == fmt.FRAME] == [
        payload(i) for i in range(2000)
    ]


def test_seeking_by_time_decodes_only_the_blocks_in_range(tmp_path, monkeypatch):
    record_dir(tmp_path, n=3000, max_bytes=4096)  # many rotated files
    files = recording_files([tmp_path])
    assert len(files) > 3
    decoded = []
    real = reader_module.read_block

    def counting(f, info, decompressor=None):
        decoded.append(info)
        return real(f, info, decompressor)

    monkeypatch.setattr(reader_module, "read_block", counting)
    start, end = T0 + 2000 * SEC // 100, T0 + 2049 * SEC // 100  # frames 2000..2049
    got = list(iter_records([tmp_path], start_ns=start, end_ns=end))
    assert [r.payload for r in got if r.kind == fmt.FRAME] == [
        payload(i) for i in range(2000, 2050)
    ]
    assert all(start <= r.arrival_ns <= end for r in got)
    total = sum(len(scan(p).blocks) for p in files)
    # only the blocks holding the range were decompressed, nothing before or after
    assert decoded and all(b.last_ns >= start and b.first_ns <= end for b in decoded)
    assert len(decoded) <= 4 < total
    decoded.clear()
    tail = [r for r in iter_records(tmp_path, start_ns=T0 + 2990 * SEC // 100)]
    assert [r.payload for r in tail if r.kind == fmt.FRAME] == [
        payload(i) for i in range(2990, 3000)
    ]
    assert all(b.last_ns >= T0 + 2990 * SEC // 100 for b in decoded) and len(decoded) <= 3


def test_a_damaged_block_before_the_start_is_never_touched(tmp_path):
    (path,) = record_dir(tmp_path, n=1000).files
    first = scan(path).blocks[1]
    data = bytearray(path.read_bytes())
    data[first.offset + fmt.BLOCK_HEAD + 10] ^= 0xFF  # inside block 1's zstd data
    path.write_bytes(bytes(data))
    later = list(iter_records([path], start_ns=T0 + 900 * SEC // 100))
    assert [r.payload for r in later] == [payload(i) for i in range(900, 1000)]
    with pytest.raises(CorruptBlock, match=f"offset {first.offset}"):
        list(iter_records([path]))


def test_a_directory_reads_in_time_order_across_rotation_and_a_crash(tmp_path):
    record_dir(tmp_path, n=500, step=SEC, rotate_s=60)  # 9 files, aligned minutes
    crashed = RecordingWriter(tmp_path, rotate_s=None, block_records=10)
    for i in range(500, 530):
        crashed.write_frame(0, T0 + i * SEC, payload(i))
    # never closed: a .partial with 3 complete blocks (header + 29 frames) and 1 in memory
    files = recording_files([tmp_path])
    assert files[-1].name.endswith(fmt.PARTIAL) and len(files) == 10
    reader = RecordingReader([tmp_path])
    got = [r.payload for r in reader if r.kind == fmt.FRAME]
    assert got == [payload(i) for i in range(529)]
    (cut,) = reader.truncated  # the crashed file: complete blocks, no footer
    assert cut.path == files[-1] and cut.footer is None and len(cut.blocks) == 3
    headers = [r for r in iter_records([tmp_path]) if r.kind == fmt.HEADER]
    assert len(headers) == 10


def test_a_file_names_its_session_in_its_header(tmp_path):
    w = record_dir(tmp_path, n=1000, max_bytes=4096)
    assert len(w.files) > 1
    headers = [file_header(p) for p in w.files]
    assert {header_session(h) for h in headers} == {w.session}
    # files written before headers had a session id: host, pid and session start
    old = {"host": "h", "pid": 7, "start_ns": T0, "file_index": 3}
    assert header_session(old) == header_session({**old, "file_index": 4}) == f"h:7:{T0}"
    assert header_session({**old, "start_ns": T0 + 1}) != header_session(old)
    assert header_session(None) is None


def test_summary_counts_what_is_there(tmp_path):
    with RecordingWriter(tmp_path, {"symbols": ["BTC-PERP"], "url": "ws://sim"}) as w:
        w.write_frame(1, T0, b'{"topic":"update:BTC-PERP_0","data":{}}')
        w.write_frame(1, T0 + 1, b'{"topic":"update:ETH-PERP_0","data":{}}')
        w.write_frame(1, T0 + 2, b"pong")
        w.write_status(T0 + 3, "update:BTC-PERP_0", "out_of_sync", "gap")
        w.write_loss(T0 + 4, T0 + 5, 7)
    s = summarize(w.files[0])
    assert s.finalised and not s.truncated and s.header["url"] == "ws://sim"
    assert s.frames_per_topic == {
        "update:BTC-PERP_0": 1,
        "update:ETH-PERP_0": 1,
        "(no topic)": 1,
    }
    assert (s.gaps, s.resyncs, s.losses, s.holes) == (1, 1, 7, 1)
    assert s.kinds == {"header": 1, "frame": 3, "status": 1, "loss": 1}
    assert (s.first_ns, s.last_ns) == (T0, T0 + 5)


def cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "recorder", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_info_and_verify_commands(tmp_path):
    good = tmp_path / "good"
    (path,) = record_dir(good, n=1000).files
    verify = cli("verify", good)
    assert verify.returncode == 0 and "1 of 1 file(s) intact" in verify.stdout
    info = cli("info", good)
    assert info.returncode == 0 and "finalised (close)" in info.stdout
    assert "1,000 frames" in info.stdout and "update:BTC-PERP_0" in info.stdout

    cut = tmp_path / "cut"
    cut.mkdir()
    data = path.read_bytes()
    (cut / (path.name + fmt.PARTIAL)).write_bytes(data[: len(data) // 2])
    verify = cli("verify", cut)
    assert verify.returncode == 1 and "not finalised, truncated: cut at byte" in verify.stdout
    info = cli("info", cut)
    assert info.returncode == 0 and "NOT finalised, truncated" in info.stdout

    bad = tmp_path / "bad"
    bad.mkdir()
    block = scan(path).blocks[3]
    damaged = bytearray(data)
    damaged[block.offset + fmt.BLOCK_HEAD + 20] ^= 0x55
    (bad / path.name).write_bytes(bytes(damaged))
    verify = cli("verify", bad)
    assert verify.returncode == 1 and f"block at offset {block.offset} is damaged" in verify.stdout
    assert cli("info", bad).returncode == 1

    missing = cli("verify", tmp_path / "nope")
    assert missing.returncode != 0 and "verify: no such recording" in missing.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no recordings" in cli("info", empty).stderr


def test_zstdcat_prints_the_records(tmp_path):
    zstdcat = shutil.which("zstdcat")
    if zstdcat is None:
        pytest.skip("zstdcat is not installed")
    with RecordingWriter(tmp_path) as w:
        for i in range(2500):
            w.write_frame(0, T0 + i, b'{"topic":"update:BTC-PERP_0","n":%d}' % i)
    text = subprocess.run([zstdcat, str(w.files[0])], capture_output=True, check=True).stdout
    lines = text.splitlines()
    assert lines[0].startswith(b"H ") and len(lines) == 2501
    first = b'{"topic":"update:BTC-PERP_0","n":0}'
    assert lines[1] == b"F %d 0 %d %s" % (T0, len(first), first)
