"""Client side of the admin HTTP API for the operator CLI (`sip-edge activities|flag|block|numbers`).

Where to connect: --admin-url / --token-file, else SIP_EDGE_ADMIN_URL / SIP_EDGE_TOKEN_FILE, else the
`[admin]` table of --config (default config/edge.toml when present, else the installed
/etc/sip-edge/edge.toml), else http://127.0.0.1:8081 and
var/admin.token. Synchronous (urllib): one request per command, no event loop needed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import tomllib
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import msgspec

from edge.store.schema import AdminConfig, split_listen

DEFAULT_URL = "http://127.0.0.1:8081"
DEFAULT_CONFIG = "config/edge.toml"
INSTALLED_CONFIG = "/etc/sip-edge/edge.toml"  # where the Debian package puts it


def default_config() -> str | None:
    """The config an operator command reads when given none: a checkout's, else the installed one."""
    for path in (DEFAULT_CONFIG, INSTALLED_CONFIG):
        if Path(path).exists():
            return path
    return None
ENV_URL = "SIP_EDGE_ADMIN_URL"
ENV_TOKEN = "SIP_EDGE_TOKEN_FILE"


class AdminError(Exception):
    """The API answered with an error (`status` is the HTTP code, 0 when it could not be reached)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class AdminClient:
    def __init__(self, url: str, token: str, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout

    def request(self, method: str, path: str, params: dict[str, Any] | None = None, body: Any = None) -> Any:
        url = self.url + urllib.parse.quote(path)
        if params:
            clean = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in params.items() if v not in (None, "")}
            if clean:
                url += "?" + urllib.parse.urlencode(clean)
        data = msgspec.json.encode(body) if body is not None else None
        req = urllib.request.Request(url, data=data, method=method)
        req.add_header("Authorization", f"Bearer {self.token}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                raw = resp.read()
                if resp.headers.get("Content-Type", "").startswith("application/x-ndjson"):
                    return [json.loads(line) for line in raw.splitlines() if line.strip()]
                return json.loads(raw) if raw else None
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                message = json.loads(raw)["error"]
            except (ValueError, KeyError, TypeError):
                message = raw.decode(errors="replace") or exc.reason
            raise AdminError(exc.code, message) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise AdminError(0, f"cannot reach the admin API at {self.url}: {reason}") from None

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params)

    def post(self, path: str, body: Any = None) -> Any:
        return self.request("POST", path, body=body if body is not None else {})

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)


def client_options() -> argparse.ArgumentParser:
    """Parent parser for every operator command. SUPPRESS defaults never clobber a top-level --config."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--admin-url", default=argparse.SUPPRESS, help=f"admin API base URL (env {ENV_URL}; default {DEFAULT_URL})")
    p.add_argument("--token-file", default=argparse.SUPPRESS, help=f"bearer token file (env {ENV_TOKEN}; default from [admin] in the config)")
    p.add_argument("--config", default=argparse.SUPPRESS,
                   help=f"config file to read [admin] from (default {DEFAULT_CONFIG}, else {INSTALLED_CONFIG})")
    p.add_argument("--json", action="store_true", default=False, help="machine-readable JSON output")
    return p


def _admin_config(path: str | None) -> AdminConfig:
    if path is None:
        path = default_config()
        if path is None:
            return AdminConfig()
    try:
        with open(path, "rb") as f:
            table = tomllib.load(f).get("admin", {})
        return msgspec.convert(table, AdminConfig)
    except (OSError, tomllib.TOMLDecodeError, msgspec.ValidationError) as exc:
        raise AdminError(0, f"cannot read [admin] from {path}: {exc}") from None


def client_from_args(args: argparse.Namespace) -> AdminClient:
    url = getattr(args, "admin_url", None) or os.environ.get(ENV_URL)
    token_file = getattr(args, "token_file", None) or os.environ.get(ENV_TOKEN)
    if not url or not token_file:
        cfg = _admin_config(getattr(args, "config", None))
        if not url:
            try:
                host, port = split_listen(cfg.listen)
            except ValueError:
                host, port = "127.0.0.1", 8081
            if host in ("0.0.0.0", "::", ""):
                host = "127.0.0.1"
            url = f"http://{'[' + host + ']' if ':' in host else host}:{port}"
        token_file = token_file or cfg.token_file
    try:
        token = Path(token_file).read_text().strip()
    except OSError as exc:
        raise AdminError(0, f"cannot read the admin token file {token_file}: {exc.strerror}") from None
    return AdminClient(url, token)


def command(fn: Callable[[AdminClient, argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Wrap a command: build the client, turn API errors into a message on stderr and exit code 1 (2: unreachable)."""

    def run(args: argparse.Namespace) -> int:
        try:
            return fn(client_from_args(args), args)
        except AdminError as exc:
            sys.stderr.write(f"error: {exc.message}\n")
            return 2 if exc.status == 0 else 1

    run.__name__ = fn.__name__
    return run


# --- output ------------------------------------------------------------------------------------------
def write_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True) + "\n")


def fmt_time(ts: float | None) -> str:
    if ts is None:
        return "-"
    return dt.datetime.fromtimestamp(ts, tz=dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def write_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[str(h) for h in headers]] + [["-" if v in (None, "") else str(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for r in cells:
        sys.stdout.write("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() + "\n")


def write_fields(data: dict[str, Any], order: Sequence[str] = ()) -> None:
    keys = list(order) + sorted(k for k in data if k not in order)
    width = max((len(k) for k in keys), default=0)
    for k in keys:
        v = data.get(k)
        if k.endswith("_at") and isinstance(v, (int, float)):
            v = f"{fmt_time(v)} UTC"
        elif isinstance(v, (list, dict)):
            v = json.dumps(v, sort_keys=True) if v else "-"
        sys.stdout.write(f"{k.ljust(width)}  {'-' if v in (None, '') else v}\n")
