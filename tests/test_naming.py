"""Every spelling BTSE hands out folds to one socket name and endpoint (plain calls)."""

import pytest

from bookengine import TopicError, naming


@pytest.mark.parametrize(
    "spelling, socket, market",
    [
        ("BTC-PERP-USDT", "BTC-PERP", "futures"),
        ("btc-perp", "BTC-PERP", "futures"),
        ("BTCPFC", "BTC-PERP", "futures"),
        ("BTCPFC-USD", "BTC-PERP", "futures"),
        ("ETHPFC", "ETH-PERP", "futures"),
        ("BTC-260925", "BTC-260925", "futures"),
        ("BTC-260925-USDT", "BTC-260925", "futures"),
        ("1KFLOKI-PERP", "1KFLOKI-PERP", "futures"),
        ("BTCM23", "BTCM23", "futures"),
        ("K_PEIPEI-USDT", "K_PEIPEI-USDT", "spot"),
        ("BTC-USDT", "BTC-USDT", "spot"),
        (" btc-usd ", "BTC-USD", "spot"),
    ],
)
def test_every_spelling_folds_to_its_socket_name(spelling, socket, market):
    assert naming.canonical(spelling) == socket
    assert naming.market(spelling) == market
    assert naming.same_instrument(spelling, socket)


def test_names_lists_every_spelling_and_invents_none():
    assert naming.names("BTCPFC") == ("BTC-PERP", "BTC-PERP-USDT", "BTCPFC", "futures")
    assert naming.names("BTC-260925") == ("BTC-260925", "BTC-260925-USDT", None, "futures")
    assert naming.names("1KFLOKI-PERP").legacy is None  # no such legacy name existed
    assert naming.names("BTC-USD") == ("BTC-USD", "BTC-USD", None, "spot")


@pytest.mark.parametrize("bad", ["", "BTCUSD", "BTC_USD", "BTC--USD", "X" * 41 + "-USD", "€-USD"])
def test_bad_symbols_name_the_right_spelling(bad):
    with pytest.raises(TopicError, match="BTC-USD|characters"):
        naming.canonical(bad)
