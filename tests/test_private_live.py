"""Authenticated streams end to end on loopback: the Feed against the simulator's real
HMAC checks, and the recorder: OTC quotes and own notifications recorded, replayed and
exported beside the book, and never a key, secret or signature in a file or a log."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zstandard

from bookengine import Feed
from bookengine.auth import Credentials, sign
from bookengine.errors import ArgumentError
from bookengine.events import OrderNotification, OtcQuote, Reason, StatusChanged, SyncStatus
from bookengine.simulator import Simulator
from bookengine.simulator.private import TEST_API_KEY, TEST_SECRET
from tests.simclient import FAST, run

pytestmark = pytest.mark.integration
GOOD = Credentials(TEST_API_KEY, TEST_SECRET)
BTC = "otc:BTC-USD:1:BTC"
ETH = "otc:ETH-USD:50000:USD:buy"


class Seen:
    def __init__(self) -> None:
        self.quotes: list[OtcQuote] = []
        self.notes: list[OrderNotification] = []
        self.statuses: list[StatusChanged] = []

    def on_status(self, event: object) -> None:
        if isinstance(event, StatusChanged):
            self.statuses.append(event)


def private_feed(sim: Simulator, seen: Seen, credentials: Credentials, **kw) -> Feed:
    return Feed(
        ["BTC-USD"], url=sim.url, otc_quotes=[("BTC-USD", 1, "BTC"), ETH],
        notifications=True, credentials=credentials, on_otc_quote=seen.quotes.append,
        on_notification=seen.notes.append, on_status=seen.on_status, **{**FAST, **kw},
    )  # fmt: skip


def test_quotes_and_notifications_arrive_and_a_new_socket_authenticates_afresh():
    async def body():
        seen = Seen()
        async with Simulator(symbols=["BTC-USD", "ETH-USD"], rate=100) as sim:
            async with private_feed(sim, seen, GOOD) as feed:
                await feed.wait_synced(5)
                await asyncio.sleep(0.6)
                before = (len(seen.quotes), len(seen.notes))
                await sim.disconnect_all()
                await feed.wait_synced(5)
                await asyncio.sleep(0.6)
                book = feed.book("BTC-USD")
            return seen, before, list(sim.private.auths), book

    seen, before, auths, book = run(body(), timeout=30)
    assert before[0] > 0 and before[1] > 0
    assert len(seen.quotes) > before[0] and len(seen.notes) > before[1]  # after the reconnect
    btc = [q for q in seen.quotes if q.topic == BTC]
    eth = [q for q in seen.quotes if q.topic == ETH]
    assert btc and all(q.buy_unit_price > q.sell_unit_price for q in btc)
    assert all(q.buy_quote_id and q.sell_quote_id for q in btc)
    assert eth and all(q.sell_quote_id is None and q.buy_total >= 50000 for q in eth)
    assert book is not None and btc[-1].buy_unit_price > book.best_ask[0]  # over the ask
    # every socket authenticated with its own, later nonce: two sockets x two sessions
    accepted = [nonce for _, nonce, ok in auths if ok]
    assert len(accepted) == 4 and len(set(accepted)) == 4 and all(ok for *_, ok in auths)
    statuses = {(s.topic, s.status, s.reason) for s in seen.statuses}
    assert (BTC, SyncStatus.SYNCED, Reason.AUTHENTICATED) in statuses
    assert (BTC, SyncStatus.OUT_OF_SYNC, Reason.CONNECTION_LOST) in statuses
    assert {n.status_name for n in seen.notes} >= {"ORDER_INSERTED"}


def test_a_wrong_secret_is_a_clear_status_and_bounded_retries_and_books_go_on():
    async def body():
        seen = Seen()
        async with Simulator(symbols=["BTC-USD", "ETH-USD"], rate=100) as sim:
            wrong = Credentials(TEST_API_KEY, "not-the-secret")
            async with private_feed(sim, seen, wrong, auth_attempts=3) as feed:
                await asyncio.sleep(2.5)
                state = (feed.status(BTC), feed.status("notificationApiV4"),
                         feed.status("BTC-USD"))  # fmt: skip
            return seen, list(sim.private.auths), state

    seen, auths, state = run(body(), timeout=30)
    assert state == (SyncStatus.UNSUBSCRIBED, SyncStatus.UNSUBSCRIBED, SyncStatus.SYNCED)
    assert len(auths) == 6 and not any(ok for *_, ok in auths)  # 3 per socket, then no more
    failing = [s for s in seen.statuses if s.status is SyncStatus.FAILING]
    assert failing and all(s.reason is Reason.AUTH_FAILED for s in failing)
    assert "signature does not match" in failing[0].detail
    final = [s for s in seen.statuses if s.status is SyncStatus.UNSUBSCRIBED]
    assert {s.topic for s in final} == {BTC, ETH, "notificationApiV4"}
    assert "check the key" in final[0].detail
    assert not seen.quotes and not seen.notes


def test_private_streams_need_credentials():
    with pytest.raises(ArgumentError, match="need credentials"):
        Feed(["BTC-USD"], otc_quotes=[("BTC-USD", 1, "BTC")])


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "recorder", *args], capture_output=True,
                          text=True, timeout=60, env=env)  # fmt: skip


def test_recorded_quotes_and_notifications_replay_and_export_and_no_file_or_log_holds_a_secret(
    tmp_path: Path,
):
    out, log = tmp_path / "rec", tmp_path / "recorder.log"
    env = {**os.environ, "BTSE_API_KEY": TEST_API_KEY, "BTSE_API_SECRET": TEST_SECRET}
    done = _cli("-vv", "record", "BTC-USD", "--sim", "--otc", "BTC-USD:1:BTC", "--otc",
                "BTC-USD:100000:USD:buy", "--notifications", "--duration", "4s", "-o", str(out),
                "--log-file", str(log), env=env)  # fmt: skip
    assert done.returncode == 0, done.stderr
    text = log.read_text()
    assert "environment (BTSE_API_KEY" in text and "authKeyExpires [redacted]" in text
    raw = b""
    for file in sorted(out.glob("*.btrec.zst")):  # every frame of it, as zstdcat reads it
        with open(file, "rb") as f:
            reader = zstandard.ZstdDecompressor().stream_reader(f, read_across_frames=True)
            raw += reader.read()
    assert raw.count(b"notificationApiV4") > 3  # the file holds the private streams
    assert b"authKeyExpires" in raw and b"<redacted>" in raw  # the request, redacted
    nonces = [int(n) for n in re.findall(rb'authKeyExpires","args":\["<redacted>","(\d+)"', raw)]
    assert len(nonces) == 2
    secrets = [TEST_API_KEY, TEST_SECRET]
    secrets += [sign(TEST_SECRET, path, n) for n in nonces for path in ("/ws/otc", "/ws/spot")]
    for secret in secrets:
        assert secret.encode() not in raw, "a secret in the recording"
        assert secret not in text and secret not in done.stdout + done.stderr, "a secret logged"

    replayed = _cli("replay", str(out))
    assert replayed.returncode == 0, replayed.stderr
    assert "OTC quotes" in replayed.stdout and "own order notifications" in replayed.stdout
    otc_file, notes_file = tmp_path / "otc.npz", tmp_path / "notes.npz"
    assert _cli("export", str(out), "--otc", "-o", str(otc_file)).returncode == 0
    assert _cli("export", str(out), "--notifications", "-o", str(notes_file)).returncode == 0
    otc = np.load(otc_file)
    assert len(otc["arrival_ns"]) >= 10
    assert set(otc["topic"]) == {"otc:BTC-USD:1:BTC", "otc:BTC-USD:100000:USD:buy"}
    synced = otc["book_synced"]
    assert synced.mean() > 0.8
    # the simulator quotes its book's price for the size plus 5 bps: the replayed book at
    # each quote's arrival gives that back (the book and the quote cross two sockets, so
    # a quote may now and then race a delta)
    markup = otc["buy_markup_bps"][synced & ~np.isnan(otc["buy_markup_bps"])]
    assert len(markup) > 5 and abs(np.median(markup) - 5.0) < 1e-6
    both_sides = (otc["topic"] == "otc:BTC-USD:1:BTC") & synced
    assert np.all(otc["otc_spread_bps"][both_sides] > otc["book_spread_bps"][both_sides])
    notes = np.load(notes_file)
    assert len(notes["order_id"]) >= 5
    assert set(notes["status_name"]) >= {"ORDER_INSERTED"}
    assert not np.isnan(notes["book_bid"]).all()


def test_a_credentials_file_others_can_read_is_refused_before_anything_is_created(tmp_path):
    creds = tmp_path / "btse.toml"
    creds.write_text(f'api_key = "{TEST_API_KEY}"\nsecret = "{TEST_SECRET}"\n')
    os.chmod(creds, 0o644)
    out = tmp_path / "rec"
    done = _cli("record", "BTC-USD", "--sim", "--otc", "BTC-USD:1:BTC", "--credentials",
                str(creds), "--duration", "1s", "-o", str(out))  # fmt: skip
    assert done.returncode == 2 and "readable by others" in done.stderr
    assert not out.exists() and TEST_SECRET not in done.stderr
    env = {k: v for k, v in os.environ.items() if not k.startswith("BTSE_")}
    done = _cli("record", "BTC-USD", "--url", "ws://127.0.0.1:9", "--notifications",
                "--duration", "1s", "-o", str(out), env=env)  # fmt: skip
    assert done.returncode == 2 and "no credentials" in done.stderr and not out.exists()
