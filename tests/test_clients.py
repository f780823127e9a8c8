"""The Feed's WebSocket clients (bookengine/clients.py) against a real websockets server on
127.0.0.1: fragmented messages, pings, size limits, close codes, a failing callback."""

from __future__ import annotations

import asyncio
import sys

import pytest
from conftest import need_extra
from simclient import run
from websockets.asyncio.server import serve

from bookengine import ArgumentError, clients

pytestmark = pytest.mark.integration


@pytest.fixture(params=clients.CLIENTS)
def client(request):
    if request.param == "picows":
        need_extra("picows", "picows")
    return request.param


async def exchange(client: str, script, max_size: int = 1 << 20, on_message=None):
    """Run `script(ws)` on a server connection; read everything the client receives.
    Returns (messages, (code, reason)) as read() saw them, and what the server got."""
    got_by_server: list[str] = []

    async def handler(ws):
        got_by_server.append(await ws.recv())  # the client's first word, then the script
        await script(ws)

    async with serve(handler, "127.0.0.1", 0, compression=None) as server:
        port = server.sockets[0].getsockname()[1]
        sock = await clients.connect(client, f"ws://127.0.0.1:{port}/", max_size=max_size)
        await sock.send("hello")
        messages: list[bytes] = []
        ended = await asyncio.wait_for(sock.read(on_message or messages.append), 10)
    return messages, ended, got_by_server


def test_messages_fragments_and_close_code(client):
    async def script(ws):
        await ws.send("one")
        await ws.send(b"\x00binary")
        await ws.send(["frag", "mented", " text"])  # one message in three frames
        pong = await ws.ping(b"are you there")  # answered by the client, never handed out
        await asyncio.wait_for(pong, 2)
        await ws.send("two")
        await ws.close(4000, "bye")

    messages, ended, server_got = run(exchange(client, script))
    assert messages == [b"one", b"\x00binary", b"fragmented text", b"two"]
    assert ended == (4000, "bye")
    assert server_got == ["hello"]


@pytest.mark.parametrize("how", ["fragments", "one frame"])
def test_a_message_over_max_size_ends_the_socket_with_1009(client, how):
    """Nothing over max_size, nor anything after it, reaches the reader."""

    async def script(ws):
        await ws.send("small")
        if how == "fragments":
            await ws.send(["x" * 600, "y" * 600])  # 1200 bytes in two frames
        else:
            await ws.send("x" * 1200)
        await ws.send("never read")
        await asyncio.sleep(0.5)

    messages, ended, _ = run(exchange(client, script, max_size=1000))
    assert messages == [b"small"]
    assert ended[0] == 1009


def test_a_close_frame_without_a_code_reads_as_1005(client):
    async def script(ws):
        await ws.send("one")
        await ws.close(None)  # an empty close frame: no code, no reason

    messages, ended, _ = run(exchange(client, script))
    assert messages == [b"one"]
    assert ended[0] == 1005


def test_a_raising_callback_ends_read_with_its_exception(client):
    seen: list[bytes] = []

    def on_message(message: bytes) -> None:
        seen.append(message)
        if message == b"boom":
            raise RuntimeError("a bug in the reader")

    async def script(ws):
        await ws.send("fine")
        await ws.send("boom")
        await ws.send("after")
        await asyncio.sleep(0.5)

    with pytest.raises(RuntimeError, match="a bug in the reader"):
        run(exchange(client, script, on_message=on_message))
    assert seen[:2] == [b"fine", b"boom"] and b"after" not in seen


def test_a_dropped_connection_reads_as_no_close_code(client):
    async def script(ws):
        await ws.send("one")
        ws.transport.abort()

    messages, ended, _ = run(exchange(client, script))
    assert messages == [b"one"]
    assert ended[0] is None or ended[0] == 1006


def test_close_and_abort_end_the_read(client):
    async def body():
        async def handler(ws):
            async for _ in ws:
                pass

        async with serve(handler, "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            url = f"ws://127.0.0.1:{port}/"
            polite = await clients.connect(client, url, max_size=1000)
            reading = asyncio.create_task(polite.read(lambda m: None))
            await asyncio.sleep(0.05)
            await polite.close(1000, "done")
            polite_end = await asyncio.wait_for(reading, 5)
            rude = await clients.connect(client, url, max_size=1000)
            reading = asyncio.create_task(rude.read(lambda m: None))
            await asyncio.sleep(0.05)
            rude.abort()
            rude_end = await asyncio.wait_for(reading, 5)
        return polite_end, rude_end

    polite_end, rude_end = run(body())
    assert polite_end[0] == 1000
    assert rude_end[0] in (None, 1006)


def test_unknown_or_missing_clients_are_refused(monkeypatch):
    with pytest.raises(ArgumentError, match="one of websockets, picows"):
        clients.check_client("aiohttp")
    monkeypatch.setitem(sys.modules, "picows", None)  # as if the extra were not installed
    with pytest.raises(ArgumentError, match=r"pip install 'bookengine\[picows\]'"):
        clients.check_client("picows")


def test_messages_before_read_starts_are_kept(client):
    """The server may speak first (a welcome, data): nothing is lost before read()."""

    async def body():
        async def handler(ws):
            for i in range(5):
                await ws.send(f"early {i}")
            await asyncio.sleep(0.3)
            await ws.close(1000, "done")

        async with serve(handler, "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            sock = await clients.connect(client, f"ws://127.0.0.1:{port}/", max_size=1000)
            await asyncio.sleep(0.15)  # the messages are in before anyone reads
            messages: list[bytes] = []
            ended = await asyncio.wait_for(sock.read(messages.append), 5)
        return messages, ended

    messages, ended = run(body())
    assert messages == [f"early {i}".encode() for i in range(5)]
    assert ended == (1000, "done")


def test_a_raising_callback_on_an_early_message_stops_there_too(client):
    """Messages read before read() started go through the callback like live ones: the
    first one it raises on is the last one it sees, and read() raises that."""
    seen: list[bytes] = []

    def on_message(message: bytes) -> None:
        seen.append(message)
        if message.startswith(b"boom"):
            raise RuntimeError(message.decode())

    async def body():
        async def handler(ws):
            for text in ("a", "boom", "c", "boom2", "d"):
                await ws.send(text)
            await asyncio.sleep(1.0)

        async with serve(handler, "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            sock = await clients.connect(client, f"ws://127.0.0.1:{port}/", max_size=1000)
            await asyncio.sleep(0.15)  # all five are in before anyone reads
            try:
                await asyncio.wait_for(sock.read(on_message), 5)
            finally:
                await sock.close()

    with pytest.raises(RuntimeError, match="^boom$"):
        run(body())
    assert seen == [b"a", b"boom"]
