"""Credentials, signing and redaction (bookengine.auth), and the OTC stream names
(bookengine.private): plain function calls."""

from __future__ import annotations

import os

import orjson
import pytest

from bookengine.auth import (
    REDACTED,
    Credentials,
    auth_request,
    is_auth_request,
    redact_auth,
    sign,
)
from bookengine.errors import ArgumentError
from bookengine.private import OtcRequest, fill_cost, otc_request

# BTSE's worked example (its OTC page prints it; the signature is over the spot path)
DOC_SECRET = "848db84ac252b6726e5f6e7a711d9c96d9fd77d020151b45839a5b59c37203bx"
DOC_KEY = "4e9536c79f0fdd72bf04f2430982d3f61d9d76c996f0175bbba470d69d59816x"
DOC_NONCE = 1624985375123
DOC_SIGNATURE = (
    "c410d38c681579adb335885800cff24c66171b7cc8376cfe43da1408c581748156b89bcc5a115bb496413bda481139fb"
)


def test_the_documented_signature_is_hmac_sha384_over_the_spot_path():
    assert sign(DOC_SECRET, "/ws/spot", DOC_NONCE) == DOC_SIGNATURE
    # the OTC docs print it beside "/ws/otc1624985375123": that is a different signature
    assert sign(DOC_SECRET, "/ws/otc", DOC_NONCE) != DOC_SIGNATURE
    assert len(sign(DOC_SECRET, "/ws/otc", DOC_NONCE)) == 96  # SHA-384, hex


def test_the_auth_request_and_what_a_recording_keeps_of_it():
    creds = Credentials(DOC_KEY, DOC_SECRET)
    request = auth_request(creds, "/ws/spot", DOC_NONCE)
    assert orjson.loads(request) == {
        "op": "authKeyExpires", "args": [DOC_KEY, str(DOC_NONCE), DOC_SIGNATURE]}  # fmt: skip
    assert is_auth_request(request) and is_auth_request(request.encode())
    kept = redact_auth(request)
    assert DOC_KEY not in kept and DOC_SIGNATURE not in kept and DOC_SECRET not in kept
    assert orjson.loads(kept)["args"] == [REDACTED, str(DOC_NONCE), REDACTED]
    other = '{"op":"subscribe","args":["notificationApiV4"]}'
    assert redact_auth(other) == other and not is_auth_request(other)
    assert DOC_KEY not in redact_auth('{"op":"authKeyExpires","args":"' + DOC_KEY + '"}')


def test_credentials_never_show_their_key_or_secret():
    creds = Credentials(DOC_KEY, DOC_SECRET, "a test")
    for text in (repr(creds), str(creds), f"{creds!r}"):
        assert DOC_KEY not in text and DOC_SECRET not in text
    with pytest.raises(ArgumentError):
        Credentials("", "x")
    with pytest.raises(ArgumentError):
        Credentials(" padded", "x")


def test_credentials_from_the_environment():
    creds = Credentials.from_env({"BTSE_API_KEY": "k1", "BTSE_API_SECRET": "s1"})
    assert creds.secrets() == ("k1", "s1") and "environment" in creds.source
    with pytest.raises(ArgumentError, match="set both"):
        Credentials.from_env({"BTSE_API_KEY": "k1"})
    with pytest.raises(ArgumentError, match="no credentials"):
        Credentials.from_env({})


def test_a_credentials_file_must_be_readable_by_its_owner_only(tmp_path):
    file = tmp_path / "btse.toml"
    file.write_text('api_key = "k2"\nsecret = "s2"\n')
    for mode in (0o644, 0o640, 0o604, 0o660):
        os.chmod(file, mode)
        with pytest.raises(ArgumentError, match="readable by others.*chmod 600"):
            Credentials.from_file(file)
    os.chmod(file, 0o600)
    assert Credentials.from_file(file).secrets() == ("k2", "s2")
    assert Credentials.from_env({"BTSE_CREDENTIALS": str(file)}).secrets() == ("k2", "s2")
    file.write_text('api_key = "k2"\nsecret = "s2"\npassphrase = "x"\n')
    with pytest.raises(ArgumentError, match="unknown: passphrase"):
        Credentials.from_file(file)
    file.write_text("api_key = ")
    with pytest.raises(ArgumentError, match="btse.toml"):
        Credentials.from_file(file)
    with pytest.raises(ArgumentError, match="No such file"):
        Credentials.from_file(tmp_path / "missing.toml")


def test_otc_streams_are_named_and_checked():
    assert otc_request(("btc-usd", 1, "btc")) == OtcRequest("BTC-USD", 1.0, "BTC", None)
    assert otc_request("otc:ETH-USD:50000:USD:buy").topic == "otc:ETH-USD:50000:USD:buy"
    assert otc_request(("BTC-USD", 0.5, "BTC")).topic == "otc:BTC-USD:0.5:BTC"
    request = otc_request(("BTC-USD", 2, "BTC", "sell")).request()
    assert request == {"op": "quote", "symbol": "BTC-USD", "side": "sell",
                       "clOrderId": "be-BTC-USD:2:BTC:sell",
                       "quantity": {"quantity": 2.0, "currency": "BTC"}}  # fmt: skip
    for bad, message in [
        (("BTC-USD", 0, "BTC"), "> 0"),
        (("BTC-USD", "x", "BTC"), "a number"),
        (("BTC-USD", 1, "BTC", "both"), "side"),
        (("BTC-PERP", 1, "BTC"), "spot markets"),
        (("BTC-USD", 1, "B T"), "currency"),
        ("otc:BTC-USD", "not an OTC stream"),
    ]:
        with pytest.raises(ArgumentError, match=message):
            otc_request(bad)


def test_walking_a_book_for_a_size():
    asks = [(100.0, 1.0), (101.0, 2.0), (105.0, 10.0)]
    assert fill_cost(asks, 2.0) == (2.0, 201.0)
    assert fill_cost(asks, 303.0, in_base=False) == pytest.approx((3 + 1 / 105, 303.0))
    assert fill_cost(asks, 100.0) is None  # too thin


def test_a_credentials_file_that_cannot_be_read_never_quotes_its_contents(tmp_path):
    file = tmp_path / "btse.toml"
    for data, message in [
        ('api_key = "mykey"\nsecret = "TOPSECRET123"\n'.encode("utf-16"), "not UTF-8"),
        (b'api_key = "mykey"\nsecret = "TOPSECRET123\xe9"\n', "not UTF-8"),
        (b'api_key = "mykey"\nsecret = TOPSECRET123\n', "not valid TOML"),
        (b'api_key = "mykey"\nsecret = 123\n', "must be strings"),
    ]:
        file.write_bytes(data)
        os.chmod(file, 0o600)
        with pytest.raises(ArgumentError, match=message) as caught:
            Credentials.from_file(file)
        assert "TOPSECRET" not in str(caught.value) and "mykey" not in str(caught.value)
    with pytest.raises(ArgumentError, match="Is a directory|not a regular file"):
        Credentials.from_file(tmp_path)
