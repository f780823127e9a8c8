"""One CLI grammar, honest numbers, and the pictures (watch, book, plot): issue 18."""

from __future__ import annotations

import argparse
import asyncio
import csv
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import need_extra
from simclient import FAST, run

from bookengine.events import L1Quote, StatusChanged
from bookengine.feed import Feed
from bookengine.simulator import Faults, Simulator
from bookengine.wire import Topic
from recorder.cli import COMMANDS, build_parser
from recorder.commands._values import chosen_symbols
from recorder.exitcodes import Exit
from recorder.reader import frame_topic, iter_records
from recorder.replay import Replay, recording_span
from recorder.session import record_session

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "recorder"]


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout)


def subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {name: sub.choices[name] for name in COMMANDS}


def visible_options(parser: argparse.ArgumentParser) -> list[str]:
    out = []
    for action in parser._actions:
        if action.help == argparse.SUPPRESS or isinstance(action, argparse._HelpAction):
            continue
        if action.option_strings:
            out.append("/".join(action.option_strings))
        else:
            out.append((action.metavar or action.dest).upper())
    return out


def test_cli_md_lists_exactly_what_every_help_shows():
    text = (ROOT / "docs" / "CLI.md").read_text()
    table = text.split("## Every subcommand's options", 1)[1].split("\n## ", 1)[0]
    documented = {}
    for line in table.splitlines():
        match = re.match(r"\| `(\w+)` \| (.*) \|$", line)
        if match:
            documented[match.group(1)] = re.findall(r"`([^`]+)`", match.group(2))
    parsers = subparsers()
    assert set(documented) == set(parsers)
    for name, parser in parsers.items():
        assert documented[name] == visible_options(parser), name
        help_text = parser.format_help()
        for option in documented[name]:
            if option.startswith("-"):
                assert option.split("/")[-1] in help_text, (name, option)


def test_symbols_are_spelled_the_same_way_everywhere():
    parsers = subparsers()
    required = {"book": ["--at", "1"], "plot": ["-o", "x.png"], "export": ["-o", "x.npz"]}
    for name in ("replay", "export", "book", "plot"):
        args = ["rec/", *required.get(name, []), "-s", "BTC-PERP", "ETH-USD,SOL-USD"]
        assert chosen_symbols(parsers[name].parse_args(args)) == [
            "BTC-PERP", "ETH-USD", "SOL-USD"
        ], name  # fmt: skip
    for name in ("record", "watch", "instruments"):
        args = parsers[name].parse_args(["BTC-USD", "-s", "ETH-USD,BTC-USD", "SOL-USD"])
        assert chosen_symbols(args) == ["BTC-USD", "ETH-USD", "SOL-USD"], name
    for name in ("demo", "simulate"):
        args = parsers[name].parse_args(["--symbols", "BTC-PERP", "ETH-USD"])
        assert chosen_symbols(args) == ["BTC-PERP", "ETH-USD"], name


def test_durations_parse_alike_everywhere():
    parsers = subparsers()
    assert parsers["watch"].parse_args(["X", "--duration", "2m"]).duration == 120.0
    assert parsers["record"].parse_args(["X", "--duration", "2m"]).duration == 120.0
    assert parsers["simulate"].parse_args(["--duration", "2m"]).duration == 120.0
    assert parsers["simulate"].parse_args(["--idle-timeout", "90"]).idle_timeout == 90.0
    assert parsers["instruments"].parse_args(["--max-age", "1d"]).max_age == 86400.0


# --- a recording with faults, shared ------------------------------------------------------


@pytest.fixture(scope="module")
def recording(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("grammar")

    async def body() -> None:
        faults = Faults(drop=0.004)
        async with Simulator(symbols=["BTC-USD", "BTC-PERP"], rate=250, faults=faults) as sim:
            await record_session(
                ["BTC-USD", "BTC-PERP", "snapshotL1:BTC-PERP"], out, url=sim.url,
                duration=5.0, digest_interval=0.5, checkpoint_interval=1.0, feed_options=FAST,
            )  # fmt: skip

    run(body(), timeout=60)
    return out


def frames_of(path: Path, symbol: str, lo: int, hi: int) -> int:
    """An independent count: frames whose topic names `symbol`, in [lo, hi]."""
    count = 0
    for record in iter_records([path]):
        if record.kind != b"F" or not lo <= record.arrival_ns <= hi:
            continue
        topic = frame_topic(record.payload)
        if topic is not None and Topic.parse(topic).symbol == symbol:
            count += 1
    return count


@pytest.mark.integration
def test_replay_counts_the_selection_and_reports_warmup_apart(recording):
    first, last = recording_span([recording])
    lo, hi = first + 2_000_000_000, first + 4_000_000_000
    result = cli("replay", str(recording), "-s", "BTC-PERP", "--from", "+2s", "--to", "+4s")
    assert result.returncode == 0, result.stderr
    match = re.search(r"replayed ([\d,]+) frames of BTC-PERP \(also read: ([\d,]+) warm-up "
                      r"frames before --from; ([\d,]+) frames of other symbols\)",
                      result.stdout)  # fmt: skip
    assert match, result.stdout
    assert int(match.group(1).replace(",", "")) == frames_of(recording, "BTC-PERP", lo, hi)
    assert int(match.group(2).replace(",", "")) > 0
    full = Replay([recording]).run()
    perp = Replay([recording], symbols=["BTC-PERP"]).run()
    usd = Replay([recording], symbols=["BTC-USD"]).run()
    # gaps, resyncs and digests are per selected symbol: the two halves make the whole
    assert perp.gaps + usd.gaps == full.gaps and full.gaps > 0
    assert perp.resyncs + usd.resyncs == full.resyncs
    assert perp.digests_checked + usd.digests_checked == full.digests_checked
    assert perp.digests_checked > 0 and usd.digests_checked > 0
    assert perp.selected_frames == frames_of(recording, "BTC-PERP", 0, 2**63)


@pytest.mark.integration
def test_an_absent_symbol_or_an_empty_window_is_exit_3(recording):
    result = cli("replay", str(recording), "-s", "DOGE-USD")
    assert result.returncode == Exit.NO_DATA
    assert "not in the recordings (window): DOGE-USD" in result.stderr
    assert "0 match live" in result.stdout  # no digest of other symbols counted
    partly = cli("replay", str(recording), "-s", "BTC-USD,DOGE-USD")
    assert partly.returncode == Exit.NO_DATA and "DOGE-USD" in partly.stderr
    export = cli("export", str(recording), "-s", "DOGE-USD", "-o",
                 str(recording.parent / "none.npz"))  # fmt: skip
    assert export.returncode == Exit.NO_DATA


@pytest.mark.integration
def test_piped_progress_ends_at_100_percent(recording):
    result = cli("replay", str(recording))
    progress = [line for line in result.stderr.splitlines() if "%" in line]
    assert progress and progress[-1].split("]")[1].split("%")[0].strip() == "100.0"
    assert len(progress) <= 3  # not on a terminal: a line at most every 10 s, and the end


@pytest.mark.integration
def test_deprecated_spellings_still_work_with_a_note(recording, tmp_path):
    result = cli("export", str(recording), "--to-file", str(tmp_path / "top.npz"))
    assert result.returncode == 0, result.stderr
    assert "--to-file is deprecated, use -o/--output" in result.stderr
    assert (tmp_path / "top.npz").exists()
    result = cli("record", "BTC-USD", "--sim", "--out", str(tmp_path / "rec"),
                 "--duration", "1s", "-q")  # fmt: skip
    assert result.returncode == 0 and "--out is deprecated" in result.stderr
    assert list((tmp_path / "rec").iterdir())


@pytest.mark.integration
def test_a_typo_under_sim_fails_as_on_btse(tmp_path):
    result = cli("record", "BTC-USDD", "--sim", "-o", str(tmp_path), "--duration", "20s", "-q")
    assert result.returncode == Exit.REJECTED, result.stderr
    assert "update:BTC-USDD_0" in result.stderr
    listed = cli("record", "SOL-PERP", "K_PEIPEI-PERP", "BTC-270326", "--sim", "-o",
                 str(tmp_path / "ok"), "--duration", "2s", "-q")  # fmt: skip
    assert listed.returncode == 0, listed.stderr


# --- exports --------------------------------------------------------------------------------


@pytest.mark.integration
def test_exports_mark_holes_and_csv_equals_npz(recording, tmp_path):
    npz = cli("export", str(recording), "-s", "BTC-USD", "-o", str(tmp_path / "top.npz"))
    assert npz.returncode == 0, npz.stderr
    as_csv = cli("export", str(recording), "-s", "BTC-USD", "-o", str(tmp_path / "top.csv"))
    assert as_csv.returncode == 0, as_csv.stderr
    data = np.load(tmp_path / "top.npz")
    with open(tmp_path / "top.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(data["arrival_ns"])
    assert list(rows[0]) == list(data.keys())
    holes = [
        e for e in Replay([recording], symbols=["BTC-USD"]).events()
        if type(e) is StatusChanged and e.topic.startswith("update:") and e.status == "out_of_sync"
    ]  # fmt: skip
    assert holes and (~data["synced"]).sum() == len(holes)
    for row, ns, synced, bid in zip(rows, data["arrival_ns"], data["synced"],
                                    data["bid_price"], strict=True):  # fmt: skip
        assert int(row["arrival_ns"]) == ns and (row["synced"] == "true") == synced
        assert (row["bid_price"] == "") if bid != bid else float(row["bid_price"]) == bid


@pytest.mark.integration
def test_export_l1_quotes(recording, tmp_path):
    result = cli("export", str(recording), "--l1", "-o", str(tmp_path / "l1.npz"))
    assert result.returncode == 0, result.stderr
    data = np.load(tmp_path / "l1.npz")
    quotes = [e for e in Replay([recording]).events() if type(e) is L1Quote]
    assert quotes and data["arrival_ns"].tolist() == [q.arrival_ns for q in quotes]
    assert data["ask_price"].tolist() == [q.ask_price for q in quotes]
    assert set(data["topic"].tolist()) == {"snapshotL1:BTC-PERP"}
    # a selection without quotes: exit 3, and no empty file left behind
    none = cli("export", str(recording), "--l1", "-s", "BTC-USD", "-o", str(tmp_path / "n.csv"))
    assert none.returncode == Exit.NO_DATA and "nothing written" in none.stderr
    assert not (tmp_path / "n.csv").exists()


# --- book at a time ---------------------------------------------------------------------


@pytest.mark.integration
def test_book_at_an_instant_is_the_exact_book(recording):
    first, _ = recording_span([recording])
    at = first + 3_300_000_000
    result = cli("book", str(recording), "-s", "BTC-PERP", "--at", str(at), "--depth", "5")
    assert result.returncode == 0, result.stderr
    seq = int(re.search(r"seq (\d+)", result.stdout).group(1))
    # the same instant by a full replay from the start (no seek, no checkpoint)
    full = Replay([recording], symbols=["BTC-PERP"], end_ns=at)
    for _ in full.events():
        pass
    book = full.book("BTC-PERP")
    if book is None:  # out of sync at that instant: the command must say so instead
        pytest.fail("the fixture's instant fell in a hole; pick another")
    assert seq == full.last_seq("BTC-PERP")
    bids, asks = book.depth(5)
    ladder = result.stdout.splitlines()[2:]
    assert len(ladder) == 5
    for line, (bp, bs), (ap, az) in zip(ladder, bids, asks, strict=True):
        left, right = line.split("|")
        assert [float(x) for x in left.split()] == [bs, bp]
        assert [float(x) for x in right.split()] == [ap, az]
    outside = cli("book", str(recording), "-s", "BTC-PERP", "--at", "+1h")
    assert outside.returncode == Exit.NO_DATA and "which span" in outside.stderr
    grouped = cli("book", str(recording), "-s", "BTC-PERP", "--at", str(at), "--grouping", "1")
    assert grouped.returncode == Exit.NO_DATA
    assert "BTC-PERP is not in the recordings" in grouped.stderr  # never "(synced)"


# --- watch ----------------------------------------------------------------------------------


@pytest.mark.integration
def test_watch_table_fits_80_columns_and_names_rejected_symbols():
    from recorder.commands.watch import describe_error, table

    errors: list[str] = []

    async def body() -> str:
        async with Simulator(symbols=["BTC-USD", "K_PEIPEI-USDT"], rate=100) as sim:
            topics = ["update:BTC-USD_0", "update:K_PEIPEI-USDT_0", "update:DOGE-USD_0"]
            feed = Feed(topics, url=sim.url, on_error=lambda e: errors.append(describe_error(e)),
                        **FAST)  # fmt: skip
            async with feed:
                # (wait_synced raises for the rejected one: wait for each state instead)
                while not (feed.book("BTC-USD") and feed.book("K_PEIPEI-USDT")
                           and feed.status("DOGE-USD") == "unsubscribed"):  # fmt: skip
                    await asyncio.sleep(0.02)
                return table(feed, topics, sim.url, errors, ladder=3)

    screen = run(body(), timeout=30)
    lines = screen.splitlines()
    assert all(len(line) <= 80 for line in lines), max(lines, key=len)
    rows = {line.split()[0]: line for line in lines[2:5]}
    assert rows["BTC-USD"].endswith("synced") and rows["K_PEIPEI-USDT"].endswith("synced")
    assert rows["DOGE-USD"].endswith("REJECTED")
    assert errors == ["exchange error 1000 on update:DOGE-USD_0: "
                      "Market pair provided is currently not supported."]  # fmt: skip
    assert lines[-1].startswith("! exchange error 1000 on update:DOGE-USD_0")
    # a 3-level ladder with its header line per synced book
    assert sum(1 for line in lines if " | " in line) == 2 * (1 + 3)


# --- plot -----------------------------------------------------------------------------------


@pytest.mark.integration
def test_plot_renders_a_recording_with_its_holes(recording, tmp_path):
    need_extra("matplotlib", "plot")
    import matplotlib.image

    from recorder.plot import plot_recording

    out = tmp_path / "btc.png"
    stats = plot_recording([recording], "BTC-PERP", out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = matplotlib.image.imread(out)
    height, width = pixels.shape[:2]
    assert width >= 1000 and height >= 800
    assert pixels[..., :3].std() > 0.05  # not blank
    assert stats.titles == [
        "BTC-PERP: mid price and trades", "spread",
        "depth: resting size at each price (top 20 levels per side)",
    ]  # fmt: skip
    holes = [
        e for e in Replay([recording], symbols=["BTC-PERP"]).events()
        if type(e) is StatusChanged and e.topic == "update:BTC-PERP_0" and e.status == "out_of_sync"
    ]  # fmt: skip
    assert len(stats.holes) == len(holes) > 0
    assert stats.trades > 0 and stats.samples > 100
    result = cli("plot", str(recording), "-s", "BTC-PERP", "-o", str(tmp_path / "cli.png"))
    assert result.returncode == 0 and (tmp_path / "cli.png").stat().st_size > 10_000
    assert cli("plot", str(recording), "-s", "BTC-PERP", "-o", str(tmp_path / "x.gif")
               ).returncode == Exit.USAGE  # fmt: skip


@pytest.mark.integration
def test_record_with_the_picows_client_replays_to_the_live_digests(tmp_path):
    """The same recording whichever client read it: raw frames, and a replay that gives
    back every book digest the live feed wrote."""
    need_extra("picows", "picows")
    out = tmp_path / "rec"
    result = cli("record", "BTC-USD", "BTC-PERP", "--sim", "--sim-faults", "drop=0.01",
                 "--client", "picows", "-o", str(out), "--duration", "4s", "-q")  # fmt: skip
    assert result.returncode == 0, result.stderr
    stats = Replay([out]).run()
    assert stats.frames > 500 and stats.gaps > 0  # the faults were there, and seen
    assert stats.digests_checked > 0 and stats.mismatches == []


def test_an_unknown_client_is_a_usage_error(tmp_path):
    result = cli("record", "BTC-USD", "--sim", "--client", "aiohttp", "-o", str(tmp_path))
    assert result.returncode == Exit.USAGE
    assert "invalid choice: 'aiohttp'" in result.stderr
