"""The service's parts as plain function calls: config, retention, health, logging, and the
top-level error handling of the CLI."""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path

import pytest

from bookengine.errors import ArgumentError
from bookengine.events import Reason, StatusChanged, SyncStatus
from bookengine.feed import Feed
from recorder import cli
from recorder.config import RECORD_KEYS, load_config, merge
from recorder.exitcodes import Exit
from recorder.logs import JsonFormatter, split_verbosity
from recorder.metrics import health
from recorder.retention import Retention
from recorder.session import SessionControl

# --- config -----------------------------------------------------------------------------


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_config_converts_the_cli_spellings_and_resolves_paths(tmp_path):
    config = write(
        tmp_path / "r.toml",
        'symbols = ["BTC-USD", "BTC-PERP"]\noutput = "data"\nrotate = "15m"\n'
        'max_bytes = "2G"\nkeep = "30d"\nmin_free = "5G"\nmetrics_port = 9464\n'
        'status_every = 30\ntrades = false\nlog_format = "json"\nlog_file = "~/x.log"\n'
        'client = "picows"\n',
    )
    options = load_config(config)
    assert options["symbols"] == ["BTC-USD", "BTC-PERP"]
    assert options["output"] == str((tmp_path / "data").resolve())
    assert options["rotate"] == 900.0 and options["keep"] == 30 * 86400
    assert options["max_bytes"] == 2_000_000_000 and options["min_free"] == 5_000_000_000
    assert options["metrics_port"] == 9464 and options["status_every"] == 30.0
    assert options["trades"] is False and options["log_format"] == "json"
    assert options["log_file"] == str(Path("~/x.log").expanduser())  # absolute: kept
    assert options["client"] == "picows"


@pytest.mark.parametrize(
    "text, message",
    [
        ('symbol = ["BTC-USD"]', "unknown key 'symbol' (did you mean 'symbols'?)"),
        ('zzz = 1', "unknown key 'zzz' (known: symbols, output"),
        ('symbols = "BTC-USD"', "symbols: must be a non-empty list"),
        ("symbols = []", "symbols: must be a non-empty list"),
        ("symbols = [1]", "symbols: must hold strings"),
        ('rotate = "soon"', "rotate: not a duration"),
        ("rotate = 0", "rotate: a duration must be finite and > 0"),
        ('max_bytes = "1k"', "max_bytes: --max-bytes must be at least 4096"),
        ("metrics_port = 70000", "metrics_port: must be a port number"),
        ('metrics_port = "9464"', "metrics_port: must be a port number"),
        ('trades = "no"', "trades: must be true or false"),
        ('on_low_disk = "panic"', "on_low_disk: must be one of stop, delete"),
        ('client = "aiohttp"', "client: must be one of websockets, picows"),
        ("symbols = [", "not valid TOML"),
        ("max_bytes = inf", "max_bytes: not a usable value"),
        ("min_free = nan", "min_free: not a usable value"),
        ("sim_rate = inf", "sim_rate: must be a number > 0"),
        ("keep = inf", "keep: a duration must be finite and > 0"),
    ],
)
def test_config_errors_name_the_file_and_key(tmp_path, text, message):
    config = write(tmp_path / "r.toml", text + "\n")
    with pytest.raises(ArgumentError) as error:
        load_config(config)
    assert str(error.value).startswith(f"{config}: ") and message in str(error.value)


def test_config_file_missing_or_binary(tmp_path):
    with pytest.raises(ArgumentError, match="does not exist"):
        load_config(tmp_path / "none.toml")
    (tmp_path / "bin.toml").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ArgumentError, match="not valid TOML"):
        load_config(tmp_path / "bin.toml")


def test_every_config_key_is_a_record_option():
    from recorder.commands import record

    parser = argparse.ArgumentParser()
    record.add_arguments(parser)
    dests = {action.dest for action in parser._actions}
    assert set(RECORD_KEYS) <= dests
    assert set(record.DEFAULTS) <= dests


def test_flags_win_over_the_file_and_the_file_over_defaults():
    args = argparse.Namespace(rotate=60.0, keep=None, trades=None, url=None)
    merge(args, {"rotate": 3600.0, "keep": 86400.0, "trades": False}, {"url": "production"})
    assert args.rotate == 60.0 and args.keep == 86400.0 and args.trades is False
    assert args.url == "production"


# --- retention --------------------------------------------------------------------------


class Disk:
    """A file system of `capacity` bytes whose free space is what the files leave."""

    def __init__(self, directory: Path, capacity: int) -> None:
        self.directory = directory
        self.capacity = capacity

    def __call__(self, _path: Path) -> int:
        return self.capacity - sum(p.stat().st_size for p in self.directory.iterdir())


def recordings(tmp_path: Path, ages_days: list[float], size: int = 1000) -> list[Path]:
    now = time.time()
    made = []
    for n, age in enumerate(ages_days):
        path = tmp_path / f"btse-2026010{n}T000000.000000Z-000.btrec.zst"
        path.write_bytes(b"x" * size)
        os.utime(path, (now - age * 86400, now - age * 86400))
        made.append(path)
    return made


def test_keep_deletes_finalised_recordings_older_than_it(tmp_path):
    old, mid, new = recordings(tmp_path, [40, 20, 1])
    partial = tmp_path / "btse-20250101T000000.000000Z-000.btrec.zst.partial"
    other = tmp_path / "notes.txt"
    for path in (partial, other):
        path.write_bytes(b"x")
        os.utime(path, (0, 0))
    retention = Retention(tmp_path, keep_s=30 * 86400)
    assert retention.sweep() is None
    assert not old.exists() and mid.exists() and new.exists()
    assert partial.exists() and other.exists()
    assert retention.deleted == [old] and retention.deleted_bytes == 1000


def test_min_free_deletes_oldest_first_until_enough(tmp_path):
    files = recordings(tmp_path, [3, 2, 1, 0])
    disk = Disk(tmp_path, capacity=4500)  # 500 free
    retention = Retention(tmp_path, min_free=2000, on_low_disk="delete", free=disk)
    assert retention.sweep() is None
    assert [p.exists() for p in files] == [False, False, True, True]  # 2500 free now
    # nothing left that may go: it says why the recorder must stop
    disk.capacity = 1500  # even with both remaining files gone, 1500 < 2000
    reason = retention.sweep()
    assert reason is not None and "no finalised recording is left" in reason
    assert not any(p.exists() for p in files)


def test_min_free_stop_deletes_nothing(tmp_path):
    files = recordings(tmp_path, [3, 2])
    retention = Retention(tmp_path, min_free=10_000, free=Disk(tmp_path, 5000))
    reason = retention.sweep()
    assert reason is not None and "under --min-free" in reason
    assert all(p.exists() for p in files)
    assert Retention(tmp_path, min_free=1000, free=Disk(tmp_path, 5000)).sweep() is None


# --- health -----------------------------------------------------------------------------


def control_with(statuses: dict[str, tuple[str, float]]) -> SessionControl:
    """A session whose streams hold `statuses` (status, seconds held)."""
    control = SessionControl()
    control.feed = Feed(["BTC-USD", "BTC-PERP"], url="ws://127.0.0.1:9", trades=True)
    now = time.monotonic()
    control.started = now - 1000
    for key, (status, held) in statuses.items():
        control.streams[key] = (status, now - held)
    return control


def test_healthy_while_synced_or_recovering_within_the_grace():
    synced = {k: ("synced", 5.0) for k in ("update:BTC-USD_0", "update:BTC-PERP_0",
                                           "trades:BTC-USD", "trades:BTC-PERP")}  # fmt: skip
    ok, report = health(control_with(synced), grace_s=60)
    assert ok and report["problems"] == [] and len(report["streams"]) == 4
    recovering = dict(synced, **{"update:BTC-USD_0": ("out_of_sync", 10.0)})
    assert health(control_with(recovering), grace_s=60)[0]
    # a quiet market: no trade yet after 1000 s is not a fault
    quiet = dict(synced, **{"trades:BTC-PERP": ("waiting_for_snapshot", 1000.0)})
    assert health(control_with(quiet), grace_s=60)[0]


@pytest.mark.parametrize(
    "status, held, problem",
    [
        ("out_of_sync", 61.0, "update:BTC-USD_0: out_of_sync for 61s (grace 60s)"),
        ("waiting_for_snapshot", 100.0, "update:BTC-USD_0: waiting_for_snapshot for 100s"),
        ("failing", 1.0, "update:BTC-USD_0: failing"),
        ("unsubscribed", 1.0, "update:BTC-USD_0: rejected by the exchange"),
    ],
)
def test_unhealthy_when_failing_rejected_or_recovering_too_long(status, held, problem):
    statuses = {"update:BTC-USD_0": (status, held), "update:BTC-PERP_0": ("synced", 1.0),
                "trades:BTC-USD": ("synced", 1.0), "trades:BTC-PERP": ("synced", 1.0)}  # fmt: skip
    ok, report = health(control_with(statuses), grace_s=60)
    assert not ok and len(report["problems"]) == 1
    assert report["problems"][0].startswith(problem)


def test_a_stream_never_heard_of_is_connecting_since_the_start():
    control = control_with({})
    ok, report = health(control, grace_s=60)  # started 1000 s ago
    assert not ok and report["streams"]["update:BTC-USD_0"]["status"] == "connecting"
    control.started = time.monotonic()
    assert health(control, grace_s=60)[0]


def test_status_events_move_the_streams_and_a_repeat_keeps_the_clock():
    control = control_with({})
    event = StatusChanged(0, "BTC-USD", 0, SyncStatus.SYNCED, Reason.SNAPSHOT, "",
                          "update:BTC-USD_0")  # fmt: skip
    control.status_changed(event)
    assert control.streams["update:BTC-USD_0"][0] == "synced"
    # a book that never syncs says out_of_sync (snapshot_timeout) every 10 s: its time out
    # of sync must keep growing, or /healthz would never fail it
    timeout = StatusChanged(0, "BTC-USD", 0, SyncStatus.OUT_OF_SYNC, Reason.SNAPSHOT_TIMEOUT,
                            "", "update:BTC-USD_0")  # fmt: skip
    control.status_changed(timeout)
    since = control.streams["update:BTC-USD_0"][1]
    control.streams["update:BTC-USD_0"] = ("out_of_sync", since - 100)  # 100 s ago
    control.status_changed(timeout)
    assert control.streams["update:BTC-USD_0"] == ("out_of_sync", since - 100)
    ok, report = health(control, grace_s=60)
    assert not ok and "update:BTC-USD_0: out_of_sync for 100s" in report["problems"][0]


# --- logging and the top level ------------------------------------------------------------


@pytest.mark.parametrize(
    "argv, rest, verbosity",
    [
        (["record", "X", "-v"], ["record", "X"], 1),
        (["-vv", "record", "X"], ["record", "X"], 2),
        (["-v", "record", "--verbose", "X"], ["record", "X"], 2),
        (["record", "-q", "X"], ["record", "X"], -1),
        (["record", "--", "-v"], ["record", "--", "-v"], 0),
        (["record", "-vx"], ["record", "-vx"], 0),
    ],
)
def test_verbosity_flags_anywhere(argv, rest, verbosity):
    assert split_verbosity(argv) == (rest, verbosity)


def test_json_log_lines_carry_their_fields():
    record = logging.LogRecord("recorder", logging.INFO, __file__, 1, "status: %d", (5,), None)
    record.fields = {"frames": 5, "msg": "not over the message"}
    entry = json.loads(JsonFormatter().format(record))
    assert entry["msg"] == "status: 5" and entry["frames"] == 5 and entry["level"] == "info"
    assert entry["ts"].endswith("Z")


def test_an_unexpected_exception_is_exit_70_in_one_line(monkeypatch, capsys):
    from recorder.commands import info

    def broken(args: argparse.Namespace) -> int:
        raise RuntimeError("boom")

    monkeypatch.setattr(info, "run", broken)
    assert cli.main(["info", "anything"]) == Exit.INTERNAL
    err = capsys.readouterr().err
    assert "info: internal error: RuntimeError('boom')" in err and "Traceback" not in err


def test_no_command_is_a_usage_error(capsys):
    assert cli.main([]) == Exit.USAGE
    assert "exit status:" in capsys.readouterr().out
