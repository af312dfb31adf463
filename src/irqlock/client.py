"""The clients of a running `irqlock serve` session: status, config and clear.

Kept apart from commands/serve.py, and light to import: a client is a short-lived
process, often started while the session traces every lock in the kernel,
where every module imported costs time (seconds, under emulation).  Hence
HTTP/1.0 over a plain socket to our own server, rather than http.client and
the e-mail parser it brings in.
"""

from __future__ import annotations

import json
import socket
import sys
from typing import Any

from irqlock.defaults import DEFAULT_LISTEN
from irqlock.errors import IrqlockError

COMMAND_TIMEOUT_S = 300.0  # a reconfiguration reloads BPF objects: slow under emulation


def parse_listen(text: str) -> tuple[str, int]:
    """HOST:PORT (an IPv6 host in brackets) → (host, port); an empty host is 127.0.0.1."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise IrqlockError(f"bad address {text!r}: use HOST:PORT, e.g. {DEFAULT_LISTEN}")
    return host.strip("[]") or "127.0.0.1", int(port)


def request(connect: str, method: str, path: str,
            body: dict[str, Any] | None = None) -> dict[str, Any]:
    """One request to a running session; IrqlockError with its message on failure."""
    host, port = parse_listen(connect)
    payload = json.dumps(body).encode() if body is not None else b""
    head = (f"{method} {path} HTTP/1.0\r\nHost: {host}:{port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n")
    try:
        with socket.create_connection((host, port), timeout=COMMAND_TIMEOUT_S + 10) as sock:
            sock.sendall(head.encode() + payload)
            status_line, content = _read_response(sock)
    except OSError as exc:
        raise IrqlockError(f"no irqlock serve session at {host}:{port} ({exc})") from None
    code = status_line.split(b" ", 2)[1:2]
    try:
        result = json.loads(content)
    except ValueError:
        result = None
    if not code or not isinstance(result, dict):
        raise IrqlockError(f"{host}:{port} is not an irqlock serve session "
                           f"(it answered {status_line[:80].decode(errors='replace')!r})")
    if code[0] != b"200":
        raise IrqlockError(str(result.get("error", status_line.decode(errors="replace"))))
    return result


def _read_response(sock: socket.socket) -> tuple[bytes, bytes]:
    """The status line and the body: Content-Length bytes of it when the server says how
    many (a server that keeps the connection open), else all until it closes."""
    data = b""
    while b"\r\n\r\n" not in data and (chunk := sock.recv(65536)):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *headers = head.split(b"\r\n")
    length = None
    for header in headers:
        name, _, value = header.partition(b":")
        if name.strip().lower() == b"content-length" and value.strip().isdigit():
            length = int(value)
    while (length is None or len(body) < length) and (chunk := sock.recv(65536)):
        body += chunk
    return status_line, body if length is None else body[:length]


def parse_settings(pairs: list[str]) -> dict[str, str]:
    settings = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key or not value:
            raise IrqlockError(f"bad setting {pair!r}: use KEY=VALUE, e.g. threshold=2ms")
        settings[key] = value
    return settings


def print_status(status: dict[str, Any], as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(status) + "\n")
        return
    settings = status["settings"]
    sys.stdout.write(f"session up {status['uptime_s']:.0f} s, tracing {', '.join(settings['tools'])}\n")
    for key, value in settings.items():
        if key != "tools" and value is not None:
            sys.stdout.write(f"  {key}: {value}\n")
    counts = ", ".join(f"{n} {k}" for k, n in sorted(status["counts"].items())) or "nothing yet"
    sys.stdout.write(f"seen: {counts}\n")
    for stats in status["stats"]:
        sys.stdout.write(f"  {stats['tool']}: lost {stats.get('lost_events', 0)}, recursion "
                         f"misses {stats.get('recursion_misses', 0)}\n")
