"""The WebSocket clients a Feed can read with, behind one small interface.

- "websockets" (the default, a core dependency): messages come through its asyncio
  connection, one `recv()` each (~4-5 us a frame here, measured in benchmarks/bench_live.py).
- "picows" (the `[picows]` extra): a Cython client whose parser calls us for each frame
  from the socket's `data_received`, no queue and no task switch between (several times
  faster at receiving: docs/PERFORMANCE.md has the figures).

A Feed only needs what `Socket` lists: read every message into a callback until the
socket closes, send text, close politely, abort. Fragmented messages are assembled and
bounded by `max_size` by both; control frames (ping, pong, close) are answered by both.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable
from typing import Any, Protocol

from bookengine.errors import ArgumentError

CLIENTS = ("websockets", "picows")
OnMessage = Callable[[bytes], None]


class Socket(Protocol):
    """One open WebSocket, as a Feed's connection uses it."""

    async def read(self, on_message: OnMessage) -> tuple[int | None, str]:
        """Call `on_message` with every message (bytes, text or binary) until the socket
        closes; then (close code or None, reason). An exception `on_message` raises stops
        the reading and comes out of `read()` (the caller closes the socket)."""
        ...

    async def send(self, text: str) -> None: ...

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close politely (a close frame, a bounded wait for the server's)."""
        ...

    def abort(self) -> None:
        """Drop the connection at once, no close handshake."""
        ...


def check_client(client: str) -> None:
    """ArgumentError for an unknown client, or one whose extra is not installed."""
    if client not in CLIENTS:
        raise ArgumentError(f"client must be one of {', '.join(CLIENTS)}; got {client!r}")
    if client == "picows":
        try:
            import picows  # noqa: F401
        except ImportError:
            raise ArgumentError(
                "client='picows' needs the picows package: pip install 'bookengine[picows]'"
            ) from None


async def connect(
    client: str,
    url: str,
    *,
    max_size: int,
    open_timeout: float = 10.0,
    close_timeout: float = 2.0,
    logger: logging.Logger | None = None,
) -> Socket:
    """Open `url` with `client` (see CLIENTS); raises what the client raises on failure."""
    if client == "picows":
        return await _PicowsSocket.open(url, max_size, open_timeout, close_timeout)
    return await _WebsocketsSocket.open(url, max_size, open_timeout, close_timeout, logger)


class _WebsocketsSocket:
    def __init__(self, ws: Any) -> None:
        self.ws = ws

    @classmethod
    async def open(
        cls,
        url: str,
        max_size: int,
        open_timeout: float,
        close_timeout: float,
        logger: logging.Logger | None,
    ) -> _WebsocketsSocket:
        from websockets.asyncio.client import connect as ws_connect

        ws = await ws_connect(
            url,
            compression=None,  # BTSE deflates only if asked: ~3x the CPU per frame
            proxy=None,
            ping_interval=None,  # BTSE wants its own text ping
            max_size=max_size,
            open_timeout=open_timeout,
            close_timeout=close_timeout,
            logger=logger,
        )
        return cls(ws)

    async def read(self, on_message: OnMessage) -> tuple[int | None, str]:
        from websockets.exceptions import ConnectionClosed

        recv = self.ws.recv
        try:
            while True:
                on_message(await recv(decode=False))
        except ConnectionClosed as exc:
            code = exc.rcvd.code if exc.rcvd else (exc.sent.code if exc.sent else None)
            return code, (exc.rcvd.reason if exc.rcvd else "") or str(exc)

    async def send(self, text: str) -> None:
        await self.ws.send(text)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        await self.ws.close(code, reason)

    def abort(self) -> None:
        transport = self.ws.transport
        if transport is not None and not transport.is_closing():
            transport.abort()


class _PicowsSocket:
    """picows calls its listener's `on_ws_frame` for each frame; we hand each message on."""

    def __init__(self, transport: Any, listener: Any, close_timeout: float) -> None:
        self.transport = transport
        self.listener = listener
        self.close_timeout = close_timeout

    @classmethod
    async def open(
        cls, url: str, max_size: int, open_timeout: float, close_timeout: float
    ) -> _PicowsSocket:
        import picows

        listener_class = _listener_class()
        # picows times the handshake only: DNS, TCP and TLS are bounded here
        transport, listener = await asyncio.wait_for(
            picows.ws_connect(
                lambda: listener_class(max_size),
                url,
                websocket_handshake_timeout=open_timeout,
                enable_auto_pong=True,
                max_frame_size=max_size,
            ),
            open_timeout,
        )
        return cls(transport, listener, close_timeout)

    async def read(self, on_message: OnMessage) -> tuple[int | None, str]:
        listener = self.listener
        listener.start(on_message)
        with contextlib.suppress(Exception):  # what ended it is told below
            await self.transport.wait_disconnected()
        if listener.error is not None:
            raise listener.error
        handshake = self.transport.close_handshake
        info = None
        if handshake is not None:
            info = handshake.recv or handshake.sent
        if info is None:
            return None, listener.problem or "connection lost (no close frame)"
        code = _code(info.code)
        return code or 1005, info.reason or listener.problem  # 1005: a close without a code

    async def send(self, text: str) -> None:
        import picows

        self.transport.send(picows.WSMsgType.TEXT, text.encode())

    async def close(self, code: int = 1000, reason: str = "") -> None:
        import picows

        transport = self.transport
        if transport.is_disconnected:
            return
        if not transport.is_close_frame_sent:
            transport.send_close(picows.WSCloseCode(code), reason.encode())
        try:  # the server's close frame ends it (the listener disconnects on it)
            await asyncio.wait_for(transport.wait_disconnected(), self.close_timeout)
        except Exception:  # no answer in time, or the listener's error (read() says it)
            transport.disconnect(graceful=False)

    def abort(self) -> None:
        if not self.transport.is_disconnected:
            self.transport.disconnect(graceful=False)


def _code(code: Any) -> int:
    return int(getattr(code, "value", code))


@functools.cache
def _listener_class() -> Any:
    """The picows listener class, made on first use (picows is an optional extra)."""
    import picows

    text, binary = picows.WSMsgType.TEXT, picows.WSMsgType.BINARY
    continuation, close = picows.WSMsgType.CONTINUATION, picows.WSMsgType.CLOSE

    class Listener(picows.WSListener):
        def __init__(self, max_size: int) -> None:
            super().__init__()
            self.max_size = max_size
            self.on_message: OnMessage | None = None
            self.early: list[bytes] = []  # messages before read() started
            self.parts: list[bytes] | None = None  # a fragmented message so far
            self.size = 0
            self.error: BaseException | None = None
            self.problem = ""
            self.transport: Any = None

        def on_ws_connected(self, transport: Any) -> None:
            self.transport = transport

        def start(self, on_message: OnMessage) -> None:
            early, self.early = self.early, []
            failed = self.problem or self.error is not None
            self.on_message = _ignore if failed else on_message
            for message in early:  # they came before anything went wrong
                self._deliver(message, on_message)
                if self.error is not None:  # it raised: nothing more, as on a live frame
                    break

        def on_ws_frame(self, transport: Any, frame: Any) -> None:
            kind = frame.msg_type
            if (
                (kind is text or kind is binary)
                and frame.fin
                and self.parts is None
                and frame.payload_size <= self.max_size
            ):  # a whole message: the per-frame path, kept short
                on_message = self.on_message
                if on_message is None:
                    self.early.append(frame.get_payload_as_bytes())
                    return
                try:
                    on_message(frame.get_payload_as_bytes())
                except BaseException as exc:
                    self._failed(exc)
                return
            self._other_frame(transport, frame, kind)

        def _other_frame(self, transport: Any, frame: Any, kind: Any) -> None:
            """Close frames, fragments, oversized frames; no data after a failure."""
            if kind is close:  # answer (once), then the socket ends; read() gives the code
                self.on_message = _ignore  # a frame after the close is not the server's data
                if not transport.is_close_frame_sent:
                    code = frame.get_close_code()
                    if code is picows.WSCloseCode.NO_INFO:  # a close without a code
                        transport.send_close(picows.WSCloseCode.OK)
                    else:
                        transport.send_close(code, frame.get_close_message())
                transport.disconnect()
                return
            if self.problem or self.error is not None:
                return  # closing after a failure: what is still buffered is dropped
            if kind is not text and kind is not binary and kind is not continuation:
                return  # ping and pong: picows answers pings itself
            if frame.payload_size > self.max_size:
                # picows refuses it too (1009), but would still hand it to us
                self._fail(transport, picows.WSCloseCode.MESSAGE_TOO_BIG,
                           f"a message over {self.max_size} bytes")  # fmt: skip
            elif kind is not continuation and self.parts is not None:
                self._fail(transport, picows.WSCloseCode.PROTOCOL_ERROR,
                           "a new message inside a fragmented one")  # fmt: skip
            elif kind is continuation and self.parts is None:
                self._fail(transport, picows.WSCloseCode.PROTOCOL_ERROR,
                           "a continuation frame outside a message")  # fmt: skip
            else:
                if self.parts is None:
                    self.parts, self.size = [], 0
                self._add_part(transport, frame)

        def _add_part(self, transport: Any, frame: Any) -> None:
            assert self.parts is not None
            self.size += frame.payload_size
            if self.size > self.max_size:
                self._fail(transport, picows.WSCloseCode.MESSAGE_TOO_BIG,
                           f"a message over {self.max_size} bytes")  # fmt: skip
                return
            self.parts.append(frame.get_payload_as_bytes())
            if frame.fin:
                message, self.parts = b"".join(self.parts), None
                self._deliver(message)

        def _deliver(self, message: bytes, on_message: OnMessage | None = None) -> None:
            on_message = on_message or self.on_message
            if on_message is None:
                self.early.append(message)
                return
            try:
                on_message(message)
            except BaseException as exc:
                self._failed(exc)

        def _failed(self, exc: BaseException) -> None:
            """on_message raised: the socket is closed (1011) and read() raises it."""
            self.error = exc
            self.on_message = _ignore
            if not self.transport.is_close_frame_sent:
                self.transport.send_close(picows.WSCloseCode.INTERNAL_ERROR, b"reader failed")
            self.transport.disconnect()

        def _fail(self, transport: Any, code: Any, problem: str) -> None:
            """A protocol problem: close with `code`; frames still buffered are dropped."""
            if self.problem:
                return
            self.problem = problem
            self.parts = None
            self.on_message = _ignore
            transport.send_close(code, problem.encode())
            transport.disconnect()

    return Listener


def _ignore(message: bytes) -> None:
    pass
