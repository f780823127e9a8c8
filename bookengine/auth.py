"""API credentials and the `authKeyExpires` handshake of BTSE's private streams (pure).

    credentials = Credentials.from_env()            # BTSE_API_KEY, BTSE_API_SECRET
    credentials = Credentials.from_file("~/.config/bookengine/btse.toml")  # mode 0600
    auth_request(credentials, "/ws/otc", nonce_ms)  # the frame to send first

`signature = HMAC-SHA384(secret, path + nonce)`, hex, where `path` is the socket's path
(`/ws/spot`, `/ws/futures`, `/ws/otc`) and `nonce` the time in ms. Credentials come from
the environment or from a file only its owner can read, never from a command line (where
`ps` shows them to everyone); their `repr` shows neither the key nor the secret, and
`redact_auth` is what a recording or a log line gets instead of the request.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import stat
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from bookengine.errors import ArgumentError

AUTH_OP = "authKeyExpires"
ENV_KEY = "BTSE_API_KEY"
ENV_SECRET = "BTSE_API_SECRET"
ENV_FILE = "BTSE_CREDENTIALS"  # a path: the file form, named in the environment
REDACTED = "<redacted>"


@dataclass(frozen=True)
class Credentials:
    """An API key and its secret. Never printed: `repr` shows where they came from."""

    api_key: str = field(repr=False)
    secret: str = field(repr=False)
    source: str = "given"

    def __post_init__(self) -> None:
        for name, value in (("API key", self.api_key), ("secret", self.secret)):
            if not isinstance(value, str) or not value.strip() or value != value.strip():
                raise ArgumentError(f"the {name} must be a non-empty string without spaces")

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Credentials:
        """From BTSE_API_KEY and BTSE_API_SECRET, or from the file BTSE_CREDENTIALS names."""
        env = os.environ if environ is None else environ
        if env.get(ENV_KEY) or env.get(ENV_SECRET):
            key, secret = env.get(ENV_KEY, ""), env.get(ENV_SECRET, "")
            if not key or not secret:
                raise ArgumentError(f"set both {ENV_KEY} and {ENV_SECRET}, or neither")
            return cls(key, secret, f"environment ({ENV_KEY}, {ENV_SECRET})")
        if env.get(ENV_FILE):
            return cls.from_file(env[ENV_FILE])
        raise ArgumentError(
            f"no credentials: set {ENV_KEY} and {ENV_SECRET}, or {ENV_FILE} to a file "
            "(mode 0600) with api_key and secret"
        )

    @classmethod
    def from_file(cls, path: str | Path) -> Credentials:
        """A TOML file with `api_key = "..."` and `secret = "..."`, readable by its owner
        only (mode 0600 or 0400): a file others can read is refused, as ssh refuses keys."""
        file = Path(path).expanduser()
        try:
            with open(file, "rb") as f:  # the mode checked is the file's that is read
                mode = os.fstat(f.fileno()).st_mode
                if not stat.S_ISREG(mode):
                    raise ArgumentError(f"credentials file {file} is not a regular file")
                data = f.read(65536)
        except OSError as exc:
            raise ArgumentError(f"credentials file {file}: {exc.strerror or exc}") from None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ArgumentError(
                f"credentials file {file} is readable by others (mode {stat.S_IMODE(mode):o}): "
                f"chmod 600 {file}"
            )
        try:  # never quote the file in a message: it holds the secret
            values = tomllib.loads(data.decode("utf-8"))
        except UnicodeDecodeError:
            raise ArgumentError(f"credentials file {file} is not UTF-8 text") from None
        except tomllib.TOMLDecodeError as exc:
            where = str(exc).rpartition("(")[2].rstrip(")")  # "line 2, column 9"
            raise ArgumentError(f"credentials file {file}: not valid TOML ({where})") from None

        unknown = sorted(set(values) - {"api_key", "secret"})
        if unknown or "api_key" not in values or "secret" not in values:
            raise ArgumentError(
                f"credentials file {file} must hold exactly api_key and secret"
                + (f" (unknown: {', '.join(unknown)})" if unknown else "")
            )
        if not all(isinstance(values[k], str) for k in ("api_key", "secret")):
            raise ArgumentError(f"credentials file {file}: api_key and secret must be strings")
        return cls(values["api_key"], values["secret"], f"file {file}")

    def secrets(self) -> tuple[str, str]:
        """What must never appear in a log or a file: the key and the secret."""
        return self.api_key, self.secret


def sign(secret: str, path: str, nonce_ms: int) -> str:
    """HMAC-SHA384(secret, path + nonce), hex: BTSE's signature of a socket session."""
    message = f"{path}{nonce_ms}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha384).hexdigest()


def auth_request(credentials: Credentials, path: str, nonce_ms: int) -> str:
    """The `authKeyExpires` frame for a socket at `path`, signed with a fresh nonce."""
    signature = sign(credentials.secret, path, nonce_ms)
    args = [credentials.api_key, str(nonce_ms), signature]
    return orjson.dumps({"op": AUTH_OP, "args": args}).decode()


class RedactAuthFilter(logging.Filter):
    """For a websockets logger (client or server): a frame log line that holds an
    `authKeyExpires` request is replaced whole; websockets logs frames at DEBUG, truncated
    in the middle, so a key's head and a signature's tail would otherwise show."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else (record.args,)
        if any(AUTH_OP in str(a) for a in args) or AUTH_OP in str(record.msg):
            direction = "<" if str(record.msg).startswith("<") else ">"
            record.msg, record.args = f"{direction} TEXT {AUTH_OP} [redacted]", ()
        return True


def is_auth_request(payload: str | bytes) -> bool:
    if isinstance(payload, bytes):
        return AUTH_OP.encode() in payload[:40]
    return AUTH_OP in payload[:40]


def redact_auth(payload: str) -> str:
    """An `authKeyExpires` request as a recording keeps it: the op and the nonce, with
    the key and the signature replaced. Any other payload is returned as is."""
    if not is_auth_request(payload):
        return payload
    try:
        request = orjson.loads(payload)
        nonce = str(request["args"][1])
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError):
        nonce = REDACTED
    return orjson.dumps({"op": AUTH_OP, "args": [REDACTED, nonce, REDACTED]}).decode()
