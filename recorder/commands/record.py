"""`btse-recorder record`: capture sessions to compressed, crash-safe, rotating files.

Built to run for months under systemd or Docker: SIGTERM/SIGINT finalise and exit 0,
SIGHUP starts a new file and reopens the log file, a config file holds hundreds of
symbols, `--metrics-port` serves Prometheus metrics and a health check, `--keep` and
`--min-free` bound the disk. Piped (not a terminal), progress is one line per
`--status-every`.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from recorder.commands._live import add_source_arguments, check_source, run_loop, source_url
from recorder.commands._values import (
    Deprecated,
    add_symbols_argument,
    chosen_symbols,
    parse_duration,
    parse_file_size,
    parse_size,
)
from recorder.exitcodes import CommandFailed, Exit, usage
from recorder.logs import FORMATS

HELP = "record order book streams to compressed, rotating files (see docs/FORMAT.md)"
log = logging.getLogger("recorder")

DEFAULTS = {
    "client": "websockets",
    "url": None,
    "sim": False,
    "sim_rate": None,
    "sim_faults": None,
    "sim_symbols": None,
    "duration": None,
    "rotate": 3600.0,
    "max_bytes": None,
    "digest_interval": 5.0,
    "trades": True,
    "status_every": 60.0,
    "metrics_port": None,
    "metrics_host": "127.0.0.1",
    "health_grace": 60.0,
    "keep": None,
    "min_free": None,
    "on_low_disk": "stop",
    "startup_timeout": 60.0,
    "stop_timeout": 20.0,
    "log_format": None,
    "log_file": None,
    "otc": None,
    "notifications": False,
    "credentials": None,
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_symbols_argument(parser, positional=True)
    parser.add_argument("--config", default=None, help="a TOML file of these options (flags win)")
    parser.add_argument(
        "-o", "--output", default=None, help="output directory (created if missing)"
    )
    parser.add_argument("--out", dest="output", action=Deprecated, new="-o/--output")
    add_source_arguments(parser)
    parser.add_argument("--duration", type=parse_duration, default=None, help="e.g. 30s, 2h")
    parser.add_argument(
        "--rotate", type=parse_duration, default=None, help="aligned time rotation (default 1h)"
    )
    parser.add_argument(
        "--max-bytes", type=parse_file_size, default=None, help="also rotate at size"
    )
    parser.add_argument("--digest-interval", type=parse_duration, default=None, help="default 5s")
    parser.add_argument(
        "--trades",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="each symbol's public trades too (default: yes; --no-trades: books only)",
    )
    private = parser.add_argument_group(
        "authenticated streams (credentials from BTSE_API_KEY/BTSE_API_SECRET or "
        "--credentials; never on the command line; docs/SECURITY.md)"
    )
    private.add_argument(
        "--otc", action="append", default=None, metavar="SYM:QTY:CUR[:side]",
        help="an OTC quote stream, e.g. BTC-USD:1:BTC or ETH-USD:50000:USD:buy (repeatable)",
    )  # fmt: skip
    private.add_argument(
        "--notifications", action="store_true", default=None,
        help="your own order notifications (notificationApiV4)",
    )  # fmt: skip
    private.add_argument(
        "--credentials", default=None, metavar="FILE",
        help="a TOML file with api_key and secret, mode 0600 (default: the environment; "
        "with --sim: the simulator's test key, the environment is not read)",
    )  # fmt: skip
    ops = parser.add_argument_group("running as a service")
    ops.add_argument(
        "--status-every", type=parse_duration, default=None,
        help="not on a terminal: one status line this often (default 60s)",
    )  # fmt: skip
    ops.add_argument(
        "--metrics-port", type=int, default=None,
        help="serve Prometheus /metrics and /healthz on this port ([metrics] extra)",
    )  # fmt: skip
    ops.add_argument("--metrics-host", default=None, help="address to serve on (default 127.0.0.1)")
    ops.add_argument(
        "--health-grace", type=parse_duration, default=None,
        help="/healthz fails once a stream is out of sync this long (default 60s)",
    )  # fmt: skip
    ops.add_argument("--keep", type=parse_duration, default=None,
                     help="delete finalised recordings older than this (e.g. 30d)")  # fmt: skip
    ops.add_argument("--min-free", type=parse_size, default=None,
                     help="free disk space to keep (e.g. 5G): see --on-low-disk")  # fmt: skip
    ops.add_argument(
        "--on-low-disk", choices=("stop", "delete"), default=None,
        help="under --min-free: stop cleanly (default) or delete the oldest recordings",
    )  # fmt: skip
    ops.add_argument(
        "--startup-timeout", type=parse_duration, default=None,
        help="give up (exit 4) if no frame arrives within this (default 60s)",
    )  # fmt: skip
    ops.add_argument("--stop-timeout", type=parse_duration, default=None,
                     help="at most this long to finalise after SIGTERM (default 20s)")  # fmt: skip
    ops.add_argument("--log-format", choices=FORMATS, default=None, help="text (default) or json")
    ops.add_argument("--log-file", default=None, help="log here instead of stderr (SIGHUP reopens)")


def run(args: argparse.Namespace) -> int:
    from bookengine.errors import BookEngineError
    from bookengine.wire import to_topic
    from recorder.config import load_config, merge
    from recorder.writer import prepare_directory

    try:
        options = load_config(args.config) if args.config else {}
    except BookEngineError as exc:
        raise usage(str(exc)) from None
    if args.url is not None or args.sim is not None:  # a source on the command line wins
        options.pop("url", None)
        options.pop("sim", None)
    args.symbols = chosen_symbols(args) or None
    merge(args, options, DEFAULTS)
    if not args.symbols:
        raise usage("no symbols: give them as arguments or as `symbols = [...]` in --config")
    if not args.output:
        raise usage('no output directory: give -o DIR or `output = "DIR"` in --config')
    try:
        topics = [to_topic(s) for s in args.symbols]
    except BookEngineError as exc:
        raise usage(str(exc)) from None
    check_source(args, topics)
    args.feed_options = {**private_options(args), "client": args.client}
    server = None
    if args.metrics_port is not None:  # bound now: a taken port fails before any effect
        from recorder.metrics import MetricsServer, require_prometheus

        if not 0 <= args.metrics_port <= 65535:
            raise usage("--metrics-port must be 0-65535")
        try:
            require_prometheus()
        except BookEngineError as exc:
            raise usage(str(exc)) from None
        from recorder.session import SessionControl

        server = MetricsServer(SessionControl(), args.health_grace)
        try:
            server.bind(args.metrics_host, args.metrics_port)
        except OSError as exc:
            raise usage(
                f"cannot serve metrics on {args.metrics_host}:{args.metrics_port}: "
                f"{exc.strerror or exc}"
            ) from None
    out = Path(args.output).expanduser().resolve()
    created = _first_missing(out)  # removed again if nothing gets recorded
    try:
        try:
            prepare_directory(out)
        except BookEngineError as exc:
            raise usage(str(exc)) from None
        if args.log_format or args.log_file:
            try:
                args.logs.configure(args.log_format, args.log_file)
            except OSError as exc:
                raise usage(
                    f"cannot open log file {args.log_file}: {exc.strerror or exc}"
                ) from None
        return _run_created(args, topics, out, server)
    finally:
        if server is not None:
            server.close()
        _remove_if_empty(out, created)


def _run_created(args: argparse.Namespace, topics: list[str], out: Path, server) -> int:  # noqa: ANN001
    """The run once the output directory exists (removed again if left empty)."""
    from recorder.retention import Retention
    from recorder.session import SessionControl

    retention = Retention(out, args.keep, args.min_free, args.on_low_disk)
    reason = retention.sweep()
    if reason is not None:
        raise CommandFailed(Exit.DISK, f"not starting: {reason}")
    control = SessionControl()
    if server is not None:
        server.control = control

    def hup() -> None:
        control.rotate()
        try:
            args.logs.reopen()
        except OSError as exc:
            log.error("SIGHUP: cannot reopen the log file (%s): still writing to the old one",
                      exc.strerror or exc)  # fmt: skip
        else:
            log.info("SIGHUP: starting a new file and reopening the log")

    return run_loop(
        lambda: _record(args, topics, out, control, retention, server),
        on_stop=lambda name: control.stop(f"signal {name}"),
        on_hup=hup,
    )


def private_options(args: argparse.Namespace) -> dict[str, object]:
    """The Feed's options for --otc/--notifications, with credentials (checked now, before
    anything is created: a missing or world-readable file is exit 2)."""
    from bookengine.auth import Credentials
    from bookengine.errors import BookEngineError
    from bookengine.private import otc_request

    otc = list(args.otc or [])
    if not otc and not args.notifications:
        if args.credentials:
            raise usage("--credentials is for --otc or --notifications")
        return {}
    try:
        quotes = [otc_request(q if q.startswith("otc:") else f"otc:{q}") for q in otc]
        if args.credentials:
            credentials = Credentials.from_file(args.credentials)
        elif args.sim:  # the local simulator knows its test key only: a real key stays home
            from bookengine.simulator.private import TEST_API_KEY, TEST_SECRET

            credentials = Credentials(TEST_API_KEY, TEST_SECRET, "the simulator's test key")
        else:
            credentials = Credentials.from_env()
    except BookEngineError as exc:
        raise usage(str(exc)) from None
    return {
        "otc_quotes": quotes,
        "notifications": bool(args.notifications),
        "credentials": credentials,
    }


def _first_missing(path: Path) -> Path | None:
    """The outermost directory of `path` that does not exist yet, if any."""
    missing = None
    for candidate in (path, *path.parents):
        if candidate.exists():
            return missing
        missing = candidate
    return missing


def _remove_if_empty(out: Path, created: Path | None) -> None:
    """Nothing was recorded: remove the directories this run created (empty ones only)."""
    if created is None:
        return
    for directory in (out, *out.parents):
        try:
            directory.rmdir()  # only if empty
        except OSError:
            return
        if directory == created:
            return


async def _record(args, topics, out, control, retention, server) -> int:  # noqa: ANN001
    from recorder.session import record_session
    from recorder.writer import RecorderError

    if server is not None:
        await server.start()
        log.info("metrics on http://%s:%d/metrics, health on /healthz",
                 args.metrics_host, server.port)  # fmt: skip
    status = _StatusReporter(args)
    credentials = args.feed_options.get("credentials")
    if credentials is not None:  # where from, never what
        log.info("authenticated streams with credentials from %s", credentials.source)
    try:
        async with source_url(args, topics) as url:
            log.info(
                "recording %d symbol(s) from %s into %s",
                len(topics), url, out,
                extra={"fields": {"symbols": len(topics), "url": url, "output": str(out)}},
            )  # fmt: skip
            try:
                stats = await record_session(
                    topics,
                    out,
                    url=url,
                    duration=args.duration,
                    rotate_s=args.rotate,
                    max_bytes=args.max_bytes,
                    digest_interval=args.digest_interval,
                    on_status=status,
                    trades=args.trades,
                    control=control,
                    startup_timeout=args.startup_timeout,
                    stop_timeout=args.stop_timeout,
                    retention=retention,
                    feed_options=args.feed_options,
                )
            except RecorderError as exc:
                status.done()
                raise CommandFailed(Exit.DISK, str(exc)) from None
    finally:
        if server is not None:
            await server.stop()
    status.done()
    code, problem = _exit_status(stats)
    if problem:
        args.logs.error(f"record: {problem}")
    try:
        _summary(stats)
    except BrokenPipeError:  # nobody reads stdout any more: the status still stands
        from recorder.cli import silence_stdout

        silence_stdout()
    return code


def _exit_status(stats) -> tuple[Exit, str | None]:  # noqa: ANN001
    """(status, why it is not 0). A stop by signal is a success whatever came before."""
    if stats.stopped_by == "min_free":
        return Exit.DISK, f"stopped: {stats.disk_problem}"
    if stats.stopped_by.startswith("signal"):
        return Exit.OK, None
    if stats.stopped_by == "rejected":
        return (
            Exit.REJECTED,
            f"the exchange rejected every topic: {', '.join(sorted(stats.rejected))}",
        )
    if stats.stopped_by == "startup_timeout" or stats.frames == 0:
        return Exit.NOTHING_RECORDED, (
            "nothing recorded: no frame arrived (is the URL right, the host reachable?)"
        )
    return Exit.OK, None


def _summary(stats) -> None:  # noqa: ANN001
    print(
        f"recorded {stats.frames:,} frames in {stats.elapsed_s:.1f}s into {len(stats.files)} "
        f"file(s), x{stats.ratio:.1f} compression, gaps {stats.gaps}, resyncs {stats.resyncs}, "
        f"lost {stats.lost}; stopped by {stats.stopped_by or '?'}"
    )
    for path in stats.files:
        print(f"  {path}")
    if stats.rejected:
        print(f"rejected by the exchange: {', '.join(sorted(stats.rejected))}")


class _StatusReporter:
    """Progress as the place it goes wants it: on a terminal a line redrawn in place, in
    a log one line per --status-every, with -q nothing."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.tty = args.logs.plain_stderr
        self.quiet = args.quiet
        self.every = args.status_every
        self.shown_errors = 0
        self.next_line = time.monotonic() + self.every
        self.last_frames = 0
        self.last_time = time.monotonic()
        self.drawn = False

    def __call__(self, stats) -> None:  # noqa: ANN001
        for error in stats.exchange_errors[self.shown_errors :]:
            self._clear()
            log.warning("exchange error: %s", error)
        self.shown_errors = len(stats.exchange_errors)
        now = time.monotonic()
        if self.quiet:
            return
        if self.tty:
            sys.stderr.write("\r" + _line(stats) + "\x1b[K")
            sys.stderr.flush()
            self.drawn = True
        elif now >= self.next_line:
            self.next_line += self.every * max(1, int((now - self.next_line) // self.every) + 1)
            rate = (stats.frames - self.last_frames) / max(now - self.last_time, 1e-9)
            self.last_frames, self.last_time = stats.frames, now
            fields = {
                "frames": stats.frames, "frames_per_s": round(rate, 1), "bytes_in": stats.bytes_in,
                "written_bytes": stats.compressed_bytes, "gaps": stats.gaps,
                "resyncs": stats.resyncs, "lost": stats.lost, "files": len(stats.files) + 1,
                "rejected": len(stats.rejected),
            }  # fmt: skip
            log.info("status: %s, %.0f frames/s", _line(stats).strip(), rate,
                     extra={"fields": fields})  # fmt: skip

    def _clear(self) -> None:
        if self.drawn:
            sys.stderr.write("\r\x1b[K")
            self.drawn = False

    def done(self) -> None:
        if self.drawn:
            sys.stderr.write("\n")
            sys.stderr.flush()
            self.drawn = False


def _line(stats) -> str:  # noqa: ANN001
    return (
        f"{stats.elapsed_s:7.1f}s  frames {stats.frames:,}  in {stats.bytes_in / 1e6:,.1f} MB  "
        f"file {stats.compressed_bytes / 1e6:,.2f} MB (x{stats.ratio:.1f})  gaps {stats.gaps}  "
        f"resyncs {stats.resyncs}  lost {stats.lost}  files {len(stats.files) + 1}"
    )
