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
    # every socket authenticated with its own, later nonce: three sockets (one per OTC
    # stream, one for notifications) x two sessions
    accepted = [nonce for _, nonce, ok in auths if ok]
    assert len(accepted) == 6 and len(set(accepted)) == 6 and all(ok for *_, ok in auths)
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
    assert len(auths) == 9 and not any(ok for *_, ok in auths)  # 3 per socket, then no more
    failing = [s for s in seen.statuses if s.status is SyncStatus.FAILING]
    assert failing and all(s.reason is Reason.AUTH_FAILED for s in failing)
    assert "signature does not match" in failing[0].detail
    final = [s for s in seen.statuses if s.status is SyncStatus.UNSUBSCRIBED]
    assert {s.topic for s in final} == {BTC, ETH, "notificationApiV4"}
    assert "check the key" in final[0].detail
    assert not seen.quotes and not seen.notes


async def _refusing_server(behaviour: str, seen: list[str]):  # noqa: ANN202
    """A stand-in for BTSE refusing a key in ways it documents nothing about: closing the
    socket without a word, or accepting and then sending an auth error."""
    from websockets.asyncio.server import serve

    async def handle(ws) -> None:  # noqa: ANN001
        seen.append(ws.request.path)
        await ws.recv()  # the auth
        if behaviour == "close":
            await ws.close(1008, "no")
            return
        await ws.recv()  # the subscribe
        await ws.send('{"event":"subscribe","channel":["notificationApiV4"]}')
        await asyncio.sleep(0.05)
        await ws.send('{"severity":"ERROR","errors":[{"arg":"authKeyExpires",'
                      '"error":{"code":1002,"message":"key revoked"}}]}')  # fmt: skip
        await asyncio.sleep(5)

    return await serve(handle, "127.0.0.1", 0)


@pytest.mark.parametrize("behaviour", ["close", "error_after_auth"])
def test_retries_are_bounded_however_the_exchange_refuses(behaviour):
    async def body():
        seen: list[str] = []
        server = await _refusing_server(behaviour, seen)
        port = server.sockets[0].getsockname()[1]
        statuses: list[StatusChanged] = []
        feed = Feed([], url=f"ws://127.0.0.1:{port}", notifications=True, credentials=GOOD,
                    on_status=lambda e: statuses.append(e) if isinstance(e, StatusChanged)
                    else None, auth_attempts=3, backoff=(0.02, 0.05))  # fmt: skip
        async with feed:
            await asyncio.sleep(2.0)
            final = feed.status("notificationApiV4")
        server.close()
        return seen, statuses, final

    seen, statuses, final = run(body(), timeout=20)
    assert len(seen) == 3 and final is SyncStatus.UNSUBSCRIBED  # then no more sockets
    assert statuses[-1].reason is Reason.AUTH_FAILED
    refusals = [s for s in statuses if s.status is SyncStatus.FAILING]
    assert len(refusals) == 3


def test_short_keys_and_signatures_never_reach_a_log_at_any_level(caplog):
    import logging

    caplog.set_level(logging.DEBUG)  # websockets' frames, client's and server's
    key, secret = "AK7QZ", "s3cr3t-short"

    async def body():
        async with Simulator(symbols=["BTC-USD"], rate=50, api_keys={key: secret}) as sim:
            seen = Seen()
            async with Feed([], url=sim.url, notifications=True,
                            credentials=Credentials(key, secret), on_status=seen.on_status,
                            on_notification=seen.notes.append) as feed:  # fmt: skip
                await feed.wait_synced(5)
                await asyncio.sleep(0.5)
            return seen, list(sim.private.auths)

    seen, auths = run(body(), timeout=20)
    assert seen.notes and auths and all(ok for *_, ok in auths)
    signatures = [sign(secret, "/ws/spot", nonce) for _, nonce, _ in auths]
    assert "authKeyExpires [redacted]" in caplog.text
    for piece in [key, secret] + [p for s in signatures for p in (s[:10], s[-10:])]:
        assert piece not in caplog.text


def test_private_streams_need_credentials_and_may_be_named_as_topics():
    with pytest.raises(ArgumentError, match="need credentials"):
        Feed(["BTC-USD"], otc_quotes=[("BTC-USD", 1, "BTC")])
    feed = Feed(["BTC-USD", "otc:BTC-USD:1:BTC", "notificationApiV4"], credentials=GOOD)
    assert feed.topics == ["update:BTC-USD_0", BTC, "notificationApiV4"]
    assert [len(t) for _, _, t in feed.connections] == [1, 1, 1]  # one socket each


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "recorder", *args], capture_output=True,
                          text=True, timeout=60, env=env)  # fmt: skip


def test_recorded_quotes_and_notifications_replay_and_export_and_no_file_or_log_holds_a_secret(
    tmp_path: Path,
):
    out, log = tmp_path / "rec", tmp_path / "recorder.log"
    creds = tmp_path / "btse.toml"
    creds.write_text(f'api_key = "{TEST_API_KEY}"\nsecret = "{TEST_SECRET}"\n')
    os.chmod(creds, 0o600)
    # a real key in the environment is never read with --sim (nor sent to the simulator)
    env = {**os.environ, "BTSE_API_KEY": "REALKEY-do-not-send", "BTSE_API_SECRET": "real"}
    done = _cli("-vv", "record", "BTC-USD", "--sim", "--otc", "BTC-USD:1:BTC", "--otc",
                "BTC-USD:100000:USD:buy", "--otc", "ETH-USD:5000:USD", "--notifications",
                "--credentials", str(creds), "--duration", "4s", "-o", str(out),
                "--log-file", str(log), "--log-format", "json", env=env)  # fmt: skip
    assert done.returncode == 0, done.stderr
    text = log.read_text()
    assert "credentials from file" in text and "authKeyExpires [redacted]" in text
    raw = b""
    for file in sorted(out.glob("*.btrec.zst")):  # every frame of it, as zstdcat reads it
        with open(file, "rb") as f:
            reader = zstandard.ZstdDecompressor().stream_reader(f, read_across_frames=True)
            raw += reader.read()
    assert raw.count(b"notificationApiV4") > 3  # the file holds the private streams
    assert b"authKeyExpires" in raw and b"<redacted>" in raw  # the request, redacted
    nonces = [int(n) for n in re.findall(rb'authKeyExpires","args":\["<redacted>","(\d+)"', raw)]
    assert len(nonces) == 4  # three OTC sockets (one per stream) and the notifications'
    secrets = [TEST_API_KEY, TEST_SECRET, "REALKEY"]
    secrets += [sign(TEST_SECRET, path, n) for n in nonces for path in ("/ws/otc", "/ws/spot")]
    for secret in secrets:
        for piece in (secret, secret[:12], secret[-12:]):  # truncated log lines too
            assert piece.encode() not in raw, "a secret in the recording"
            assert piece not in text and piece not in done.stdout + done.stderr, "logged"

    replayed = _cli("replay", str(out))
    assert replayed.returncode == 0, replayed.stderr
    assert "OTC quotes" in replayed.stdout and "own order notifications" in replayed.stdout
    # a symbol only the private streams carry is a selectable symbol
    only_otc = _cli("replay", str(out), "-s", "ETH-USD")
    assert only_otc.returncode == 0 and "OTC quotes" in only_otc.stdout, only_otc.stderr
    otc_file, notes_file = tmp_path / "otc.npz", tmp_path / "notes.npz"
    assert _cli("export", str(out), "--otc", "-o", str(otc_file)).returncode == 0
    assert _cli("export", str(out), "--notifications", "-o", str(notes_file)).returncode == 0
    otc = np.load(otc_file)
    topics = {"otc:BTC-USD:1:BTC", "otc:BTC-USD:100000:USD:buy", "otc:ETH-USD:5000:USD"}
    assert set(otc["topic"]) == topics
    eth = otc["topic"] == "otc:ETH-USD:5000:USD"
    assert not otc["book_synced"][eth].any()  # its book was not recorded: NaN, never a guess
    assert np.isnan(otc["book_buy_price"][eth]).all()
    synced = otc["book_synced"]
    # the simulator quotes its book's price for the size, 5 bps worse on each side: the
    # replayed book at each quote's arrival gives that back, for base and quote-currency
    # sizes (book and quote cross two sockets, so a quote may now and then race a delta)
    for topic, side in [("otc:BTC-USD:1:BTC", "buy"), ("otc:BTC-USD:1:BTC", "sell"),
                        ("otc:BTC-USD:100000:USD:buy", "buy")]:  # fmt: skip
        rows = (otc["topic"] == topic) & synced
        markup = otc[f"{side}_markup_bps"][rows]
        assert len(markup) > 5 and abs(np.median(markup) - 5.0) < 1e-6, (topic, side)
    both_sides = (otc["topic"] == "otc:BTC-USD:1:BTC") & synced
    assert np.all(otc["otc_spread_bps"][both_sides] > otc["book_spread_bps"][both_sides])
    notes = np.load(notes_file)
    assert len(notes["order_id"]) >= 5
    assert set(notes["status_name"]) >= {"ORDER_INSERTED"}
    assert not np.isnan(notes["book_bid"]).all() and set(notes["maker"]) <= {0, 1}


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
