"""`btse-recorder record` run as an operator runs it: a real subprocess, real signals, real
HTTP scrapes, the simulator on loopback, and every documented exit status."""

from __future__ import annotations

import json
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import orjson
import pytest

from recorder import format as fmt
from recorder.exitcodes import Exit
from recorder.reader import scan

pytestmark = pytest.mark.integration
CLI = [sys.executable, "-m", "recorder"]


class Proc:
    """A CLI subprocess whose stderr lines are collected as they come."""

    def __init__(self, *args: str, preexec_fn=None, env=None) -> None:  # noqa: ANN001
        self.popen = subprocess.Popen(
            [*CLI, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=preexec_fn,
            env=env,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.popen.stderr is not None
        for line in self.popen.stderr:  # ends when the process closes its stderr
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, pattern: str, timeout: float = 20.0) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                match = re.search(pattern, line)
                if match:
                    return match
            if self.popen.poll() is not None and not self._reader.is_alive():
                break
            time.sleep(0.05)
        raise AssertionError(f"no line matching {pattern!r} in:\n" + "\n".join(self.lines))

    def signal(self, sig: int) -> None:
        self.popen.send_signal(sig)

    def finish(self, timeout: float = 30.0) -> tuple[int, str]:
        """Wait for the exit; stdout is small (the summary), stderr is the reader's."""
        assert self.popen.stdout is not None
        self.popen.wait(timeout=timeout)
        stdout = self.popen.stdout.read()
        self._reader.join(5)
        return self.popen.returncode, stdout

    @property
    def stderr(self) -> str:
        return "\n".join(self.lines)

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()
        self._reader.join(5)


@pytest.fixture
def procs():
    started: list[Proc] = []

    def start(*args: str, **kw) -> Proc:  # noqa: ANN003
        proc = Proc(*args, **kw)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.kill()


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def metrics(text: bytes) -> dict[str, float]:
    """`name{labels}` -> value of a Prometheus text exposition."""
    out = {}
    for line in text.decode().splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout)


def verify(path: Path) -> subprocess.CompletedProcess:
    return cli("verify", str(path))


def start_simulator(procs, symbols: str):  # noqa: ANN001, ANN201
    """A simulator subprocess listing only `symbols`: it rejects the others as BTSE does."""
    sim = procs("simulate", "--port", "0", "--symbols", symbols)
    assert sim.popen.stdout is not None
    line = sim.popen.stdout.readline()
    match = re.search(r"spot (ws://127\.0\.0\.1:\d+)", line)
    assert match, line
    return match.group(1)


def test_sigterm_under_faults_scraped_then_finalised_and_verified(tmp_path, procs):
    out = tmp_path / "rec"
    rec = procs("record", "BTC-USD", "BTC-PERP", "--sim", "--sim-faults",
                "drop=0.02,duplicate=0.01,malformed=0.01", "-o", str(out),
                "--metrics-port", "0", "--status-every", "1")  # fmt: skip
    port = int(rec.wait_for(r"metrics on http://127\.0\.0\.1:(\d+)/metrics").group(1))
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:  # until the faults have shown in the counters (drops make gaps)
        status, body = get(base + "/metrics")
        assert status == 200
        values = metrics(body)
        # (a scrape before the feed exists has no feed counters yet)
        if (
            values.get("btse_recorder_gaps_total", 0) > 0
            and values.get("btse_recorder_bad_frames_total", 0) > 0
            and values.get("btse_recorder_frames_total", 0) > 500
        ):
            break
        assert time.monotonic() < deadline, values
        time.sleep(0.3)
    assert values["btse_recorder_resyncs_total"] >= 1
    assert values["btse_recorder_bad_frames_total"] > 0  # the malformed frames injected
    for name in ("reconnects_total", "written_bytes_total", "records_written_total",
                 "files_rotated_total", "disk_free_bytes", "writer_queue_records",
                 "lost_records_total", "healthy", "up_seconds"):  # fmt: skip
        assert "btse_recorder_" + name in values, name
    assert values["btse_recorder_disk_free_bytes"] > 0
    assert values["btse_recorder_lost_records_total"] == 0
    statuses = {k: v for k, v in values.items() if k.startswith("btse_recorder_topic_status{")}
    # one status at a time per stream: exactly four streams have a 1
    assert sum(statuses.values()) == 4
    assert any(k.startswith("btse_recorder_exchange_lag_seconds{") for k in values)
    assert values['btse_recorder_topic_frames_total{topic="update:BTC-USD_0"}'] > 0
    status, body = get(base + "/healthz")
    report = orjson.loads(body)
    assert status == 200 and report["healthy"] is True, report
    assert set(report["streams"]) == {
        "update:BTC-USD_0", "update:BTC-PERP_0", "trades:BTC-USD", "trades:BTC-PERP"
    }  # fmt: skip
    assert get(base + "/nope")[0] == 404

    rec.signal(signal.SIGTERM)
    code, stdout = rec.finish(timeout=30)  # bounded: --stop-timeout (20 s) and the feed's
    assert code == Exit.OK, rec.stderr
    assert "stopped by signal SIGTERM" in stdout
    assert list(out.glob("*.partial")) == []
    files = sorted(out.glob("*" + fmt.SUFFIX))
    assert files and all(scan(f).footer["finalised_by"] == "close" for f in files[-1:])
    checked = verify(out)
    assert checked.returncode == 0, checked.stdout
    replay = cli("replay", str(out))
    assert replay.returncode == 0 and " 0 differ" in replay.stdout, replay.stdout
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()  # the server is gone


def test_sighup_rotates_and_sigint_finalises(tmp_path, procs):
    out = tmp_path / "rec"
    log = tmp_path / "recorder.log"
    rec = procs("record", "BTC-USD", "--sim", "-o", str(out), "--status-every", "1",
                "--log-file", str(log))  # fmt: skip
    deadline = time.monotonic() + 20
    while "status:" not in (log.read_text() if log.exists() else ""):
        assert time.monotonic() < deadline and rec.popen.poll() is None, rec.stderr
        time.sleep(0.1)
    log.rename(tmp_path / "recorder.log.1")  # what logrotate does before its SIGHUP
    rec.signal(signal.SIGHUP)
    while not log.exists() or "status:" not in log.read_text():
        assert time.monotonic() < deadline + 10 and rec.popen.poll() is None, rec.stderr
        time.sleep(0.1)
    rec.signal(signal.SIGINT)
    code, stdout = rec.finish()
    assert code == Exit.OK, rec.stderr + log.read_text()
    assert "stopped by signal SIGINT" in stdout
    assert "SIGHUP" in log.read_text() and "SIGINT" in log.read_text()
    assert "SIGHUP" not in (tmp_path / "recorder.log.1").read_text()
    assert rec.stderr == ""  # with --log-file, nothing on stderr
    files = sorted(out.glob("*" + fmt.SUFFIX))
    assert len(files) == 2 and not list(out.glob("*.partial"))
    assert [scan(f).footer["finalised_by"] for f in files] == ["reopen", "close"]
    assert verify(out).returncode == 0
    replay = cli("replay", str(out))
    assert replay.returncode == 0 and " 0 differ" in replay.stdout, replay.stdout


def test_piped_output_is_one_status_line_per_interval(tmp_path):
    result = cli("record", "BTC-USD", "--sim", "-o", str(tmp_path), "--duration", "3.5s",
                 "--status-every", "1")  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    status = [line for line in lines if "status:" in line]
    assert 2 <= len(status) <= 4, lines
    assert len(lines) - len(status) <= 2, lines  # the startup lines only
    assert "\r" not in result.stderr
    quiet = cli("record", "BTC-USD", "--sim", "-o", str(tmp_path), "--duration", "2s")
    assert quiet.returncode == 0 and "status:" not in quiet.stderr  # default: one a minute


def test_json_logs_and_verbosity_anywhere(tmp_path):
    result = cli("record", "BTC-USD", "--sim", "-o", str(tmp_path), "--duration", "2.5s",
                 "--status-every", "1", "--log-format", "json")  # fmt: skip
    assert result.returncode == 0, result.stderr
    entries = [json.loads(line) for line in result.stderr.splitlines()]
    assert entries and all({"ts", "level", "logger", "msg"} <= set(e) for e in entries)
    status = [e for e in entries if e["msg"].startswith("status:")]
    assert status and all(isinstance(e["frames"], int) and "gaps" in e for e in status)

    def frame_logs(*args: str) -> tuple[int, int]:
        r = cli(*args)
        assert r.returncode == 0, r.stderr
        debug = sum(" DEBUG " in line for line in r.stderr.splitlines())
        frames = sum("websockets" in line and " DEBUG " in line for line in r.stderr.splitlines())
        return debug, frames

    base = ["record", "BTC-USD", "--sim", "-o", str(tmp_path), "--duration", "1.5s"]
    assert frame_logs(*base) == (0, 0)
    before, before_frames = frame_logs("-v", *base)
    after, after_frames = frame_logs(*base, "-v")
    assert before > 0 and after > 0 and before_frames == after_frames == 0
    _, frames = frame_logs(*base, "-vv")
    assert frames > 10  # websockets' frame-level debug only at -vv
    quiet = cli(*base[:-2], "--duration", "1.5s", "-q", "--status-every", "0.5")
    assert quiet.returncode == 0 and quiet.stderr == ""


def test_config_file_with_cli_overrides(tmp_path):
    config = tmp_path / "conf" / "recorder.toml"
    config.parent.mkdir()
    config.write_text(
        'symbols = ["BTC-USD", "btc-perp"]\noutput = "data"\nsim = true\n'
        'duration = "2s"\nrotate = "1h"\nmax_bytes = "50M"\nstatus_every = 60\n'
    )
    result = cli("record", "--config", str(config))
    assert result.returncode == 0, result.stderr
    made = list((tmp_path / "conf" / "data").glob("*" + fmt.SUFFIX))  # relative to the file
    assert len(made) == 1
    assert scan(made[0]).footer is not None
    symbols = cli("info", str(made[0])).stdout
    assert "symbols update:BTC-USD_0,update:BTC-PERP_0 " in symbols
    other = tmp_path / "other"
    result = cli("record", "--config", str(config), "ETH-USD", "-o", str(other))
    assert result.returncode == 0, result.stderr
    info = cli("info", str(other)).stdout
    assert "symbols update:ETH-USD_0 " in info  # the flags won
    config.write_text('symbols = ["BTC-USD"]\noutput = "data"\nsymbol = "x"\n')
    bad = cli("record", "--config", str(config))
    assert bad.returncode == Exit.USAGE and "unknown key 'symbol'" in bad.stderr
    assert "did you mean 'symbols'" in bad.stderr and "Traceback" not in bad.stderr


def test_usage_errors_are_one_line_and_leave_nothing(tmp_path):
    out = tmp_path / "never"
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    cases = [
        (["BTC-USD", "--url", "http://example.com"], "url must be"),
        (["BTC-USD", "--url", "prod"], "url must be"),
        (["not a symbol!"], "record:"),
        (["BTC-USD", "--duration", "soon"], "not a duration"),
        (["BTC-USD", "--sim", "--sim-faults", "drop=7"], "probability"),
        (["BTC-USD", "--metrics-port", str(taken.getsockname()[1]), "--sim"], "cannot serve"),
        (["BTC-USD", "--config", str(tmp_path / "missing.toml")], "does not exist"),
        (["BTC-USD", "--url", "ws://"], "names no host"),
        (["BTC-USD", "--url", "ws://127.0.0.1:99999"], "bad port"),
        (["BTC-USD", "--url", "ws://exa mple"], "names no host"),
        (["BTC-USD", "--sim", "--sim-rate", "inf"], "--sim-rate"),
        (["BTC-USD", "--sim-rate", "10", "--url", "ws://127.0.0.1:9"], "go(es) with --sim"),
        (["BTC-USD", "--sim-faults", "drop=0.1", "--url", "ws://127.0.0.1:9"], "with --sim"),
        ([], "no symbols"),
    ]
    for args, message in cases:
        if "--url" not in args and "--sim" not in args:
            args = [*args, "--url", "ws://127.0.0.1:9"]  # never production, even if it failed
        result = cli("record", *args, "-o", str(out / "deeper"))
        assert result.returncode == Exit.USAGE, (args, result.stderr)
        assert message in result.stderr and "Traceback" not in result.stderr, result.stderr
        assert not out.exists(), args  # nothing created, or removed again
    taken.close()
    (tmp_path / "README.md").write_text("x")
    result = cli("record", "BTC-USD", "--sim", "-o", str(tmp_path / "README.md"))
    assert result.returncode == Exit.USAGE and "not a directory" in result.stderr


def test_exit_nothing_recorded_when_unreachable(tmp_path):
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
    port = dead.getsockname()[1]
    out = tmp_path / "rec"
    result = cli("record", "BTC-USD", "--url", f"ws://127.0.0.1:{port}", "-o", str(out),
                 "--startup-timeout", "1.5s", "-q")  # fmt: skip
    dead.close()
    assert result.returncode == Exit.NOTHING_RECORDED, result.stderr
    assert "nothing recorded" in result.stderr
    assert not out.exists()


def test_exit_rejected_when_the_exchange_refuses_every_topic(tmp_path, procs):
    url = start_simulator(procs, "BTC-USD")
    result = cli("record", "DOGE-USD", "ETH-USD", "--url", url, "-o", str(tmp_path), "-q",
                 "--duration", "30s")  # fmt: skip
    assert result.returncode == Exit.REJECTED, result.stderr
    assert "rejected every topic" in result.stderr and "update:DOGE-USD_0" in result.stderr
    assert "stopped by rejected" in result.stdout  # at once, not after --duration
    assert verify(tmp_path).returncode == 0  # the refusals are recorded too, finalised


def test_healthz_fails_for_a_rejected_topic(tmp_path, procs):
    url = start_simulator(procs, "BTC-USD")
    rec = procs("record", "BTC-USD", "DOGE-USD", "--url", url, "-o", str(tmp_path),
                "--metrics-port", "0", "--no-trades")  # fmt: skip
    port = int(rec.wait_for(r"metrics on http://127\.0\.0\.1:(\d+)/").group(1))
    deadline = time.monotonic() + 20
    while True:
        status, body = get(f"http://127.0.0.1:{port}/healthz")
        report = orjson.loads(body)
        if status == 503:
            break
        assert time.monotonic() < deadline, report
        time.sleep(0.2)
    assert report["healthy"] is False
    assert report["problems"] == ["update:DOGE-USD_0: rejected by the exchange"]
    assert report["streams"]["update:BTC-USD_0"]["status"] in ("synced", "waiting_for_snapshot")
    values = metrics(get(f"http://127.0.0.1:{port}/metrics")[1])
    assert values["btse_recorder_healthy"] == 0
    rec.signal(signal.SIGTERM)
    code, stdout = rec.finish()
    assert code == Exit.OK and "rejected by the exchange: update:DOGE-USD_0" in stdout


def _limit_file_size() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (256 * 1024, 256 * 1024))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes fail with EFBIG, as on a full disk


def test_exit_disk_full_keeps_what_was_written(tmp_path, procs):
    rec = procs("record", "BTC-USD", "BTC-PERP", "ETH-USD", "--sim", "--sim-rate", "1000",
                "-o", str(tmp_path), "-q", preexec_fn=_limit_file_size)  # fmt: skip
    code, _ = rec.finish(timeout=60)
    assert code == Exit.DISK, rec.stderr
    assert "disk full" in rec.stderr and "Traceback" not in rec.stderr
    partial = list(tmp_path.glob("*.partial"))
    assert len(partial) == 1
    assert scan(partial[0]).blocks  # readable up to its last complete block
    info = cli("info", str(tmp_path))
    assert "NOT finalised" in info.stdout


def test_min_free_stops_before_anything_is_created(tmp_path):
    out = tmp_path / "rec"
    result = cli("record", "BTC-USD", "--sim", "-o", str(out), "--min-free", "1000000T")
    assert result.returncode == Exit.DISK and "--min-free" in result.stderr
    assert not out.exists()


def test_keep_deletes_only_old_finalised_recordings(tmp_path):
    first = cli("record", "BTC-USD", "--sim", "-o", str(tmp_path), "--duration", "1s", "-q")
    assert first.returncode == 0, first.stderr
    (old,) = tmp_path.glob("*" + fmt.SUFFIX)
    aged = time.time() - 40 * 86400
    partial = tmp_path / "btse-20200101T000000.000000Z-000.btrec.zst.partial"
    partial.write_bytes(old.read_bytes())
    foreign = tmp_path / "notes-20200101.btrec.zst"
    foreign.write_bytes(b"mine")
    for path in (old, partial, foreign):
        os.utime(path, (aged, aged))
    second = cli("record", "BTC-USD", "--sim", "-o", str(tmp_path), "--duration", "1s",
                 "--keep", "30d")  # fmt: skip
    assert second.returncode == 0, second.stderr
    assert not old.exists() and "retention: deleted " + old.name in second.stderr
    assert partial.exists() and foreign.exists()
    assert len(list(tmp_path.glob("btse-*" + fmt.SUFFIX))) == 1  # the new one


# --- the exit statuses of the offline subcommands ---------------------------------------


@pytest.fixture(scope="module")
def recording(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("rec")
    result = cli("record", "BTC-USD", "--sim", "-o", str(out), "--duration", "3s", "-q")
    assert result.returncode == 0, result.stderr
    return out


def test_offline_exit_statuses(recording, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# not a recording\n" * 50)
    for command in ("info", "replay", "verify", "export"):
        extra = ["-o", str(tmp_path / "x.npz")] if command == "export" else []
        result = cli(command, str(readme), *extra)
        assert result.returncode == Exit.NO_DATA, (command, result.stdout, result.stderr)
        assert "not a recording" in result.stderr
    assert cli("replay", str(tmp_path / "missing")).returncode == Exit.NO_DATA
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli("info", str(empty)).returncode == Exit.NO_DATA
    late = cli("replay", str(recording), "--from", "+1h")
    assert late.returncode == Exit.NO_DATA and "outside the recordings" in late.stderr
    assert cli("replay", str(recording), "--from", "+2s", "--to", "+1s").returncode == Exit.USAGE
    assert cli("replay", str(recording)).returncode == Exit.OK
    assert cli("verify", str(recording)).returncode == Exit.OK
    bad_out = cli("export", str(recording), "-o", str(tmp_path / "missing" / "x.npz"))
    assert bad_out.returncode == Exit.USAGE and "does not exist" in bad_out.stderr
    assert cli("export", str(recording), "-o", str(tmp_path / "x.xlsx")).returncode == Exit.USAGE
    # damage: one byte of a block flipped
    (source,) = recording.glob("*" + fmt.SUFFIX)
    damaged = tmp_path / source.name
    data = bytearray(source.read_bytes())
    block = scan(source).blocks[0]
    data[block.offset + fmt.BLOCK_HEAD + 10] ^= 0xFF  # inside the zstd data
    damaged.write_bytes(bytes(data))
    assert cli("verify", str(damaged)).returncode == Exit.CHECK_FAILED
    assert cli("info", str(damaged)).returncode == Exit.CHECK_FAILED
    strict = cli("replay", str(damaged), "--no-skip-damaged")
    assert strict.returncode == Exit.CHECK_FAILED, strict.stderr


def test_interrupted_replay_and_a_closed_pipe(recording):
    proc = subprocess.Popen([*CLI, "replay", str(recording), "--speed", "1", "-q"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == Exit.INTERRUPTED and "interrupted" in err and "Traceback" not in err
    proc = subprocess.Popen([*CLI, "replay", str(recording), "--speed", "1", "-q"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == Exit.INTERRUPTED, err
    piped = subprocess.run(
        f"{sys.executable} -m recorder replay {recording} --print | head -n 2",
        shell=True, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert len(piped.stdout.splitlines()) == 2
    assert "Traceback" not in piped.stderr and "BrokenPipe" not in piped.stderr, piped.stderr
    info = subprocess.run(f"{sys.executable} -m recorder info {recording} {recording} | head -n 1",
                          shell=True, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert len(info.stdout.splitlines()) == 1 and "Traceback" not in info.stderr


def test_help_lists_every_exit_status():
    result = cli("record", "--help")
    assert result.returncode == 0
    for code in Exit:
        assert re.search(rf"^\s+{int(code)}\s", result.stdout, re.M), code


def test_free_space_falling_under_min_free_stops_the_session_cleanly(tmp_path):
    from simclient import FAST, run

    from bookengine.simulator import Simulator
    from recorder.commands.verify import verify_file
    from recorder.retention import Retention
    from recorder.session import record_session

    checks = []

    def free(_path: Path) -> int:  # plenty, until the third look
        checks.append(1)
        return 10**12 if len(checks) < 3 else 10

    async def body():  # noqa: ANN202
        async with Simulator(symbols=["BTC-USD"], rate=200) as sim:
            return await record_session(
                ["BTC-USD"], tmp_path, url=sim.url, duration=60, feed_options=FAST,
                retention=Retention(tmp_path, min_free=1000, free=free), retention_interval=0.3,
            )  # fmt: skip

    stats = run(body(), timeout=60)
    assert stats.stopped_by == "min_free" and len(checks) >= 3
    assert stats.disk_problem is not None and "under --min-free" in stats.disk_problem
    assert stats.frames > 0 and not list(tmp_path.glob("*.partial"))
    (path,) = tmp_path.glob("*" + fmt.SUFFIX)
    assert verify_file(path) == ([], [])


def dead_port() -> tuple[socket.socket, int]:
    """A port that refuses connections (bound, never listening) while the socket lives."""
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    return dead, dead.getsockname()[1]


def test_a_source_on_the_command_line_beats_the_config_file(tmp_path):
    dead, port = dead_port()
    config = tmp_path / "r.toml"
    config.write_text('symbols = ["BTC-USD"]\noutput = "out"\nsim = true\ntrades = false\n')
    result = cli("record", "--config", str(config), "--url", f"ws://127.0.0.1:{port}",
                 "--startup-timeout", "1s")  # fmt: skip
    assert result.returncode == Exit.NOTHING_RECORDED, result.stderr  # the URL, not the sim
    assert f"from ws://127.0.0.1:{port} " in result.stderr
    config.write_text(f'symbols = ["BTC-USD"]\noutput = "out"\nurl = "ws://127.0.0.1:{port}"\n'
                      "trades = false\n")  # fmt: skip
    result = cli("record", "--config", str(config), "--sim", "--trades", "--duration", "2s")
    dead.close()
    assert result.returncode == Exit.OK, result.stderr
    info = cli("info", str(tmp_path / "out")).stdout
    assert "tradeHistoryApi:BTC-USD" in info  # --trades beat the file's false


def test_a_signal_before_the_first_frame_is_a_clean_stop(tmp_path, procs):
    dead, port = dead_port()
    out = tmp_path / "rec"
    rec = procs("record", "BTC-USD", "--url", f"ws://127.0.0.1:{port}", "-o", str(out))
    rec.wait_for("recording 1 symbol")
    time.sleep(0.5)
    rec.signal(signal.SIGTERM)
    code, stdout = rec.finish()
    dead.close()
    assert code == Exit.OK, rec.stderr
    assert "stopped by signal SIGTERM" in stdout and not out.exists()


def test_a_closed_pipe_never_turns_a_failure_into_success(tmp_path):
    dead, port = dead_port()
    piped = subprocess.run(
        ["bash", "-o", "pipefail", "-c",
         f"{sys.executable} -m recorder record BTC-USD --url ws://127.0.0.1:{port} "
         f"-o {tmp_path / 'rec'} --startup-timeout 1s -q | true"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    dead.close()
    assert piped.returncode == Exit.NOTHING_RECORDED, piped.stderr
    assert "Traceback" not in piped.stderr


def test_a_taken_metrics_port_fails_before_retention_deletes_anything(tmp_path):
    old = tmp_path / "btse-20200101T000000.000000Z-000.btrec.zst"
    old.write_bytes(b"x")
    os.utime(old, (0, 0))
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    result = cli("record", "BTC-USD", "--sim", "-o", str(tmp_path), "--keep", "30d",
                 "--metrics-port", str(taken.getsockname()[1]),
                 "--log-file", str(tmp_path / "new.log"))  # fmt: skip
    taken.close()
    assert result.returncode == Exit.USAGE and "cannot serve metrics" in result.stderr
    assert old.exists() and not (tmp_path / "new.log").exists()


def test_dot_dot_in_the_output_never_removes_a_users_directory(tmp_path):
    dead, port = dead_port()
    keep = tmp_path / "keepme"
    keep.mkdir()
    out = str(tmp_path / "newdir" / ".." / "keepme")
    result = cli("record", "BTC-USD", "--url", f"ws://127.0.0.1:{port}", "-o", out,
                 "--startup-timeout", "1s", "-q")  # fmt: skip
    dead.close()
    assert result.returncode == Exit.NOTHING_RECORDED
    assert keep.is_dir() and not (tmp_path / "newdir").exists()


def test_json_logs_carry_the_final_error(tmp_path):
    dead, port = dead_port()
    result = cli("record", "BTC-USD", "--url", f"ws://127.0.0.1:{port}", "-o",
                 str(tmp_path / "rec"), "--startup-timeout", "1s",
                 "--log-format", "json")  # fmt: skip
    dead.close()
    assert result.returncode == Exit.NOTHING_RECORDED
    entries = [json.loads(line) for line in result.stderr.splitlines()]  # every line JSON
    assert entries[-1]["level"] == "error" and "nothing recorded" in entries[-1]["msg"]


def test_watch_exit_statuses(tmp_path):
    rejected = cli("watch", "DOGE-USDD", "--sim", "--duration", "2s")
    assert rejected.returncode == Exit.REJECTED and "rejected every topic" in rejected.stderr
    dead, port = dead_port()
    silent = cli("watch", "BTC-USD", "--url", f"ws://127.0.0.1:{port}", "--duration", "1s", "-q")
    dead.close()
    assert silent.returncode == Exit.NOTHING_RECORDED


def test_sim_options_never_fall_back_to_the_exchange(tmp_path):
    # no --sim, no --url: without the check this would connect to BTSE itself
    result = cli("record", "BTC-USD", "--sim-rate", "10", "-o", str(tmp_path / "x"))
    assert result.returncode == Exit.USAGE and "--sim-rate go(es) with --sim" in result.stderr
    config = tmp_path / "r.toml"
    config.write_text('symbols = ["BTC-USD"]\noutput = "o"\nsim_rate = 50\n')
    result = cli("record", "--config", str(config))
    assert result.returncode == Exit.USAGE and "with --sim" in result.stderr
    config.write_text('symbols = ["BTC-USD"]\noutput = "o"\nsim = true\nurl = "production"\n')
    result = cli("record", "--config", str(config))
    assert result.returncode == Exit.USAGE and "two sources" in result.stderr
    assert not (tmp_path / "x").exists() and not (tmp_path / "o").exists()


def test_a_silent_server_keeps_neither_a_stop_nor_the_summary_waiting(tmp_path, procs):
    silent = socket.socket()  # accepts connections (the backlog), never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(50)
    port = silent.getsockname()[1]
    rec = procs("record", "BTC-USD", "--url", f"ws://127.0.0.1:{port}", "-o", str(tmp_path))
    rec.wait_for("recording 1 symbol")
    rec.signal(signal.SIGTERM)
    code, stdout = rec.finish(timeout=5)  # not the markets fetch's timeouts
    silent.close()
    assert code == Exit.OK and "stopped by signal SIGTERM" in stdout, rec.stderr
    assert "Traceback" not in rec.stderr
