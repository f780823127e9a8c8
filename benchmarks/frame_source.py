"""A frame source in its own process, so that the live benchmarks measure the client
(Feed, or a bare websockets receive loop) and not a Python server beside it.

It speaks just enough WebSocket (RFC 6455: the opening handshake, unmasked server text
frames) to serve pre-encoded realistic frames: every frame is framed once, before the
clock starts, and the whole stream is written to the socket in large chunks, as fast as
the client reads (TCP back-pressure). Paced, it writes frame i at `i / rate` seconds and
keeps the wall-clock ns of each write, so latency is send -> callback across processes.

    with FrameSource(frames, rate=None) as source:   # source.url: ws://127.0.0.1:PORT
        ...
    source.send_ns                                  # paced runs: when each frame left
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import multiprocessing
import struct
import time
from array import array
from pathlib import Path
from tempfile import TemporaryDirectory
from types import TracebackType

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_CHUNK = 256 * 1024


def text_frame(payload: bytes) -> bytes:
    """One unmasked, final text frame (a server's)."""
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x81, n)
    elif n < 1 << 16:
        head = struct.pack("!BBH", 0x81, 126, n)
    else:
        head = struct.pack("!BBQ", 0x81, 127, n)
    return head + payload


async def _handshake(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    request = await reader.readuntil(b"\r\n\r\n")
    key = b""
    for line in request.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"sec-websocket-key":
            key = value.strip()
    accept = base64.b64encode(hashlib.sha1(key + _GUID).digest())
    head = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    writer.write(head + b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n")
    await writer.drain()


async def _discard(reader: asyncio.StreamReader) -> None:
    """The client's frames (subscribe, pings) are read and dropped."""
    while await reader.read(65536):
        pass


def _serve(frames: list[bytes], rate: float | None, times_path: str, ready) -> None:  # noqa: ANN001
    framed = [text_frame(f) for f in frames]
    send_ns = array("q", bytes(8 * len(framed)))

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _handshake(reader, writer)
        await reader.read(65536)  # the subscribe: then the stream starts
        asyncio.create_task(_discard(reader))
        if rate is None:
            blob = b"".join(framed)
            for i in range(0, len(blob), _CHUNK):
                writer.write(blob[i : i + _CHUNK])
                await writer.drain()
        else:
            started = time.monotonic()
            i, n = 0, len(framed)
            while i < n:
                due = min(n, int((time.monotonic() - started) * rate) + 1)
                while i < due:
                    send_ns[i] = time.time_ns()
                    writer.write(framed[i])
                    i += 1
                await asyncio.sleep(0.0002)
            Path(times_path).write_bytes(send_ns.tobytes())
        await asyncio.sleep(3600)

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        ready.put(server.sockets[0].getsockname()[1])
        async with server:
            await server.serve_forever()

    asyncio.run(main())


class FrameSource:
    """The source process: one client connection is served the frames once."""

    def __init__(self, frames: list[bytes] | tuple[bytes, ...], rate: float | None = None):
        self.frames = list(frames)
        self.rate = rate
        self._dir = TemporaryDirectory()
        self._times = Path(self._dir.name) / "send_ns"
        ctx = multiprocessing.get_context("spawn")
        self._ready = ctx.Queue()
        self._proc = ctx.Process(
            target=_serve, args=(self.frames, rate, str(self._times), self._ready), daemon=True
        )
        self.url = ""

    def __enter__(self) -> FrameSource:
        self._proc.start()
        port = self._ready.get(timeout=60)
        self.url = f"ws://127.0.0.1:{port}"
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._proc.kill()
        self._proc.join(10)
        self._dir.cleanup()

    def send_ns(self, timeout: float = 60.0) -> list[int]:
        """Paced runs: the wall-clock ns each frame was written (once all were)."""
        deadline = time.monotonic() + timeout
        while not self._times.exists():
            if time.monotonic() > deadline:
                raise TimeoutError("the frame source did not finish")
            time.sleep(0.05)
        time.sleep(0.05)  # written whole
        times = array("q")
        times.frombytes(self._times.read_bytes())
        return times.tolist()
