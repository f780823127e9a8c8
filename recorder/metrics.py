"""`record --metrics-port`: Prometheus `/metrics` and a `/healthz` for a running recorder.

The metrics are read from the session when scraped (a custom collector), so the socket
reader pays nothing for them. The HTTP side is a few lines on the recorder's own event
loop: reading the feed's state from the loop that changes it needs no locks, and a scrape
is cheap next to a 15 s scrape interval. prometheus-client (the `[metrics]` extra) writes
the exposition format.

`/healthz` answers 200 while every stream is synced, or recovering (waiting for a
snapshot, out of sync, connecting) for less than `grace_s`; 503 with the reasons once one
is failing, rejected by the exchange, or recovering for longer, or the disk failed. A
trade stream waiting for its first trade is healthy however long: markets go quiet.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from typing import Any

import orjson

from bookengine.errors import MissingExtra
from bookengine.private import stream_name
from recorder.retention import disk_free
from recorder.session import SessionControl

log = logging.getLogger(__name__)

STATUSES = (
    "connecting",
    "waiting_for_snapshot",
    "synced",
    "out_of_sync",
    "failing",
    "unsubscribed",
)
_RECOVERING = {"connecting", "waiting_for_snapshot", "out_of_sync"}
_MAX_REQUEST = 8192


def require_prometheus() -> None:
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        raise MissingExtra(
            "--metrics-port needs prometheus-client: pip install 'bookengine[metrics]'"
        ) from None


def stream_states(
    control: SessionControl, now: float | None = None
) -> dict[str, tuple[str, float]]:
    """stream key -> (status, seconds held) for every stream the session subscribes."""
    now = time.monotonic() if now is None else now
    feed = control.feed
    if feed is None:
        return {}
    states = {}
    for topic in feed.topics:
        key = stream_name(topic)
        status, since = control.streams.get(key, ("connecting", control.started))
        states[key] = (status, now - since)
    return states


def health(control: SessionControl, grace_s: float, now: float | None = None) -> tuple[bool, dict]:
    """(healthy, a JSON-able report) as /healthz serves them."""
    problems: list[str] = []
    streams = {}
    for key, (status, held) in stream_states(control, now).items():
        streams[key] = {"status": status, "for_s": round(held, 1)}
        if status == "synced":
            continue
        if status == "waiting_for_snapshot" and key.startswith("trades:"):
            continue  # no trade yet: a quiet market, not a fault
        if status in _RECOVERING and held < grace_s:
            continue
        if status == "unsubscribed":
            problems.append(f"{key}: rejected by the exchange")
        elif status == "failing":
            problems.append(f"{key}: failing (recovery keeps failing)")
        else:
            problems.append(f"{key}: {status} for {held:.0f}s (grace {grace_s:.0f}s)")
    sink = control.sink
    if sink is not None and sink.error is not None:
        problems.append(f"writer: {sink.error}")
    if control.stop_reason is not None:
        problems.append(f"stopping: {control.stop_reason}")
    report = {"healthy": not problems, "problems": problems, "streams": streams}
    return not problems, report


class SessionCollector:
    """The session's state as Prometheus metric families, computed at scrape time."""

    def __init__(self, control: SessionControl, grace_s: float = 60.0) -> None:
        self.control = control
        self.grace_s = grace_s

    def describe(self) -> list[Any]:
        return []  # families are known at scrape time only; no eager registration

    def collect(self) -> Any:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        control = self.control
        feed, writer, sink = control.feed, control.writer, control.sink
        p = "btse_recorder_"

        def counter(name: str, doc: str, value: float) -> Any:
            return CounterMetricFamily(p + name, doc, value=value)

        def gauge(name: str, doc: str, value: float) -> Any:
            return GaugeMetricFamily(p + name, doc, value=value)

        yield gauge("up_seconds", "seconds since the session started",
                    time.monotonic() - control.started)  # fmt: skip
        healthy, _ = health(control, self.grace_s)
        yield gauge("healthy", "1 while /healthz answers 200", float(healthy))
        if feed is not None:
            fs = feed.stats()
            yield counter("frames", "frames received", fs.frames)
            yield counter("received_bytes", "bytes received (frames as sent)", fs.bytes)
            yield counter("gaps", "sequence gaps detected", fs.gaps)
            yield counter("resyncs", "books that went out of sync", fs.resyncs)
            yield counter("reconnects", "connections re-opened", fs.reconnects)
            yield counter("bad_frames", "frames that did not parse", fs.bad_frames)
            yield counter("error_frames", "error frames from the exchange", fs.error_frames)
            status = GaugeMetricFamily(
                p + "topic_status", "1 for the status each stream is in", labels=["topic", "status"]
            )
            held = GaugeMetricFamily(
                p + "topic_status_seconds", "seconds in the current status", labels=["topic"]
            )
            for key, (now_status, seconds) in stream_states(control).items():
                for name in STATUSES:
                    status.add_metric([key, name], float(name == now_status))
                held.add_metric([key], seconds)
            yield status
            yield held
            per_topic = feed.topic_stats()
            frames = CounterMetricFamily(p + "topic_frames", "frames per stream", labels=["topic"])
            gaps = CounterMetricFamily(p + "topic_gaps", "gaps per stream", labels=["topic"])
            resyncs = CounterMetricFamily(
                p + "topic_resyncs", "resyncs per stream", labels=["topic"]
            )
            for key, ts in sorted(per_topic.items()):
                frames.add_metric([key], ts.frames)
                gaps.add_metric([key], ts.gaps)
                resyncs.add_metric([key], ts.resyncs)
            yield frames
            yield gaps
            yield resyncs
            lag = GaugeMetricFamily(
                p + "exchange_lag_seconds",
                "arrival time minus the exchange's timestamp, over the last 4096 updates",
                labels=["topic", "quantile"],
            )
            for key, summary in sorted(fs.latency.items()):
                for quantile, field in (("0.5", "exchange_ms_p50"), ("0.99", "exchange_ms_p99")):
                    value = summary.get(field)
                    if value is not None:
                        lag.add_metric([key, quantile], value / 1000)
            yield lag
        if writer is not None:
            yield counter("records_written", "records written to files", writer.records)
            yield counter("written_bytes", "compressed bytes written", writer.compressed_bytes)
            yield counter("files_rotated", "files finalised", len(writer.files))
            yield gauge("disk_free_bytes", "free bytes on the output's file system",
                        disk_free(writer.out_dir))  # fmt: skip
        if sink is not None:
            yield gauge("writer_queue_records", "records waiting for the writer", sink.pending)
            yield counter("lost_records", "records dropped (marked in files)", sink.lost)
            yield gauge("writer_failed", "1 once the disk failed", float(sink.error is not None))


class MetricsServer:
    """GET /metrics, /healthz and / on `host:port`, served on the running event loop."""

    def __init__(self, control: SessionControl, grace_s: float = 60.0) -> None:
        from prometheus_client import CollectorRegistry

        self.grace_s = grace_s
        self.registry = CollectorRegistry(auto_describe=False)
        self.collector = SessionCollector(control, grace_s)
        self.registry.register(self.collector)  # type: ignore[arg-type]
        self._server: asyncio.Server | None = None
        self._socket: socket.socket | None = None
        self.requests = 0

    def bind(self, host: str, port: int) -> None:
        """Take the port now, before any other effect (OSError if it is taken)."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen(64)
        except OSError:
            sock.close()
            raise
        sock.setblocking(False)
        self._socket = sock

    async def start(self, host: str | None = None, port: int | None = None) -> None:
        """Serve on the bound socket (binding `host:port` first if not bound yet)."""
        if self._socket is None:
            assert host is not None and port is not None
            self.bind(host, port)
        self._server = await asyncio.start_server(
            self._serve, sock=self._socket, limit=_MAX_REQUEST
        )

    @property
    def port(self) -> int:
        assert self._socket is not None
        return int(self._socket.getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
        self.close()

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()

    @property
    def control(self) -> SessionControl:
        return self.collector.control

    @control.setter
    def control(self, control: SessionControl) -> None:
        self.collector.control = control

    def respond(self, path: str) -> tuple[int, str, bytes]:
        """(status, content type, body) for a GET of `path`."""
        path = path.split("?", 1)[0]
        if path == "/metrics":
            from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

            return 200, CONTENT_TYPE_LATEST, generate_latest(self.registry)
        if path == "/healthz":
            ok, report = health(self.control, self.grace_s)
            return (200 if ok else 503), "application/json", orjson.dumps(report) + b"\n"
        if path == "/":
            return 200, "text/plain", b"btse-recorder: /metrics /healthz\n"
        return 404, "text/plain", b"not found: /metrics or /healthz\n"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5.0)
            request = head.split(b"\r\n", 1)[0].decode("latin-1").split()
            if len(request) != 3:
                code, kind, body = 400, "text/plain", b"bad request\n"
            elif request[0] not in ("GET", "HEAD"):
                code, kind, body = 405, "text/plain", b"GET only\n"
            else:
                code, kind, body = self.respond(request[1])
            self.requests += 1
            reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
                      503: "Service Unavailable"}[code]  # fmt: skip
            writer.write(
                f"HTTP/1.1 {code} {reason}\r\nContent-Type: {kind}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + (body if request and request[0] != "HEAD" else b"")
            )
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                ConnectionError, UnicodeDecodeError):  # fmt: skip
            pass  # a client that went away or sent garbage: nothing to answer
        except Exception:  # a scrape must never take the recorder down
            log.exception("metrics: request failed")
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
