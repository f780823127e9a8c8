"""deploy/: the systemd unit, the Dockerfile, compose and Prometheus files agree with the
recorder they run (signals, ports, exit statuses, config keys) and pass their linters."""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from recorder.config import load_config
from recorder.exitcodes import Exit

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"


def seconds(text: str) -> float:
    match = re.fullmatch(r"(\d+)(s|min)?", text.strip())
    assert match, text
    return float(match.group(1)) * (60 if match.group(2) == "min" else 1)


def test_the_example_config_loads_with_every_key_valid():
    from recorder.config import RECORD_KEYS

    text = (DEPLOY / "recorder.toml").read_text()
    for key in RECORD_KEYS:  # every key is shown, set or commented out
        assert re.search(rf"^(# )?{key} = ", text, re.M), key
    options = load_config(DEPLOY / "recorder.toml")
    assert options["symbols"] and options["metrics_port"] == 9464
    assert options["output"] == "/data" and options["metrics_host"] == "0.0.0.0"
    assert options["stop_timeout"] < seconds("30")  # docker stop -t / TimeoutStopSec


def test_systemd_unit_stops_with_sigterm_in_time_and_reloads_with_sighup(tmp_path):
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # systemd keys are case-sensitive
    unit.read(DEPLOY / "btse-recorder.service")
    service = unit["Service"]
    assert service["KillSignal"] == "SIGTERM"
    assert "record --config /etc/btse-recorder/recorder.toml" in service["ExecStart"]
    assert "-HUP" in service["ExecReload"]
    stop_timeout = load_config(DEPLOY / "recorder.toml")["stop_timeout"]
    assert seconds(service["TimeoutStopSec"]) > stop_timeout + 5
    assert service["RestartPreventExitStatus"].split() == [str(int(Exit.USAGE))]
    assert service["Restart"] == "on-failure"  # exit 0 (a clean stop) is not restarted
    if shutil.which("systemd-analyze"):  # the real parser too, where the machine has it
        text = (DEPLOY / "btse-recorder.service").read_text()
        text = text.replace("/opt/btse-recorder/bin/btse-recorder", f"{sys.executable} -m recorder")
        text = re.sub(r"^(User|Group)=.*$", "", text, flags=re.M)  # no such user here
        copy = tmp_path / "btse-recorder.service"
        copy.write_text(text)
        result = subprocess.run(
            ["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stderr


def test_dockerfile_passes_hadolint_and_matches_the_recorder():
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    result = subprocess.run(
        [hadolint, str(DEPLOY / "Dockerfile")], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    text = (DEPLOY / "Dockerfile").read_text()
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert "STOPSIGNAL SIGTERM" in lines
    port = load_config(DEPLOY / "recorder.toml")["metrics_port"]
    assert f"EXPOSE {port}" in lines
    assert f"ENV BTSE_RECORDER_METRICS_PORT={port}" in lines
    assert any("/healthz" in line and "BTSE_RECORDER_METRICS_PORT" in line for line in lines)
    assert any(line.startswith('ENTRYPOINT ["btse-recorder", "record"]') for line in lines)
    for line in lines:  # every file the build copies exists in the repository
        if line.startswith("COPY") and "--from" not in line:
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), source
    assert re.search(r"^USER \d+$", text, re.M)  # not root


def test_compose_scrapes_the_recorder_it_runs():
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    recorder = compose["services"]["recorder"]
    assert recorder["build"]["dockerfile"] == "deploy/Dockerfile"
    assert recorder["stop_signal"] == "SIGTERM"
    assert seconds(recorder["stop_grace_period"]) > load_config(DEPLOY / "recorder.toml")[
        "stop_timeout"
    ]
    assert any(v.startswith("./recorder.toml:/etc/btse-recorder/recorder.toml") for v in
               recorder["volumes"])  # fmt: skip
    prometheus = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    targets = prometheus["scrape_configs"][0]["static_configs"][0]["targets"]
    port = load_config(DEPLOY / "recorder.toml")["metrics_port"]
    assert targets == [f"recorder:{port}"]
    assert "./prometheus.yml:/etc/prometheus/prometheus.yml:ro" in (
        compose["services"]["prometheus"]["volumes"]
    )
