"""The CLI as a user runs it: real subprocesses, the built-in simulator on loopback."""

import subprocess
import sys

import pytest

from recorder.cli import COMMANDS, build_parser


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "recorder", *args], capture_output=True, text=True, timeout=timeout
    )


def test_every_subcommand_has_help():
    parser = build_parser()
    for name in COMMANDS:
        with pytest.raises(SystemExit) as exit_:
            parser.parse_args([name, "--help"])
        assert exit_.value.code == 0


def test_demo_engine_equals_truth_and_detects_the_gap():
    result = cli("demo", "--frames", "3000")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("equals simulator truth: True") == 2
    assert "gaps 2" in result.stdout and "(gap)" in result.stdout
    # the counters are said to be the injected faults, caught
    assert "injected: 2 dropped frame(s), one per symbol" in result.stdout
    assert "all were caught" in result.stdout


@pytest.mark.integration
def test_watch_against_the_builtin_simulator():
    result = cli("watch", "BTC-USD", "BTC-PERP", "--sim", "--duration", "1.5", "--refresh", "0.5")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    # piped: the column names once, then the final state, one line per symbol (no table
    # redrawn every 0.5 s)
    assert lines[0].split()[:2] == ["time", "symbol"]
    assert [line.split()[1] for line in lines[1:-1]] == ["BTC-USD", "BTC-PERP"]
    assert all(line.split()[-1] == "synced" for line in lines[1:-1])
    assert "gaps 0" in lines[-1]


def test_bad_arguments_are_clear():
    result = cli("watch", "not a symbol!", "--sim", "--duration", "1")
    assert result.returncode != 0 and "watch:" in result.stderr
    result = cli("simulate", "--faults", "drop=7")
    assert result.returncode != 0 and "probability" in result.stderr


@pytest.mark.integration
def test_record_and_replay_take_every_spelling_btse_hands_out(tmp_path):
    spellings = ["BTC-PERP-USDT", "btc-usd", "K_PEIPEI-USDT", "BTC-261225-USDT", "BTCPFC"]
    result = cli("record", *spellings, "snapshotL1:BTC-PERP_0", "--sim", "--duration", "3s",
                 "-o", str(tmp_path), "--quiet")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "gaps 0" in result.stdout
    from recorder.replay import Replay

    tops = [e for e in Replay([tmp_path]).events() if type(e).__name__ == "TopOfBook"]
    assert {t.symbol for t in tops} == {"BTC-PERP", "BTC-USD", "K_PEIPEI-USDT", "BTC-261225"}
    result = cli("replay", str(tmp_path), "--symbols", "btcpfc")
    assert result.returncode == 0, result.stderr
    perp = sum(1 for t in tops if t.symbol == "BTC-PERP")
    assert f"top-of-book events {perp:,}" in result.stdout
