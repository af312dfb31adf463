"""The serve session's clients (irqlock.client) against a real HTTP server on loopback."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from irqlock.client import parse_listen, parse_settings, request
from irqlock.errors import IrqlockError


class _Handler(BaseHTTPRequestHandler):
    """/echo answers the request it got; /refuse answers 400 with an error; /html is no session."""

    def _answer(self, code: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self._route(b"")

    def do_POST(self) -> None:
        self._route(self.rfile.read(int(self.headers["Content-Length"])))

    def _route(self, body: bytes) -> None:
        if self.path == "/echo":
            self._answer(200, json.dumps({"method": self.command,
                                          "body": json.loads(body) if body else None}).encode())
        elif self.path == "/refuse":
            self._answer(400, b'{"error": "unknown setting \'speed\'"}')
        else:
            self._answer(200, b"<html>a web page</html>", "text/html")

    def log_message(self, format: str, *args: object) -> None:
        pass


class _KeepAliveHandler(_Handler):
    """A server that keeps the connection open after answering."""

    protocol_version = "HTTP/1.1"


@pytest.fixture(name="server", params=[_Handler, _KeepAliveHandler], ids=["closes", "keep-alive"])
def _server(request: pytest.FixtureRequest) -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), request.param)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_get_and_post_carry_json_both_ways(server: str) -> None:
    assert request(server, "GET", "/echo") == {"method": "GET", "body": None}
    big = {"irq": ",".join(str(n) for n in range(20000))}  # more than one recv()
    assert request(server, "POST", "/echo", big) == {"method": "POST", "body": big}


def test_an_error_answer_becomes_its_message(server: str) -> None:
    with pytest.raises(IrqlockError, match="unknown setting 'speed'"):
        request(server, "POST", "/refuse", {"speed": "1"})


def test_something_else_listening_is_named(server: str) -> None:
    with pytest.raises(IrqlockError, match="is not an irqlock serve session"):
        request(server, "GET", "/")


def test_nobody_listening_is_one_clear_error() -> None:
    with ThreadingHTTPServer(("127.0.0.1", 0), _Handler) as closed:
        port = closed.server_address[1]
    with pytest.raises(IrqlockError, match=f"no irqlock serve session at 127.0.0.1:{port}"):
        request(f"127.0.0.1:{port}", "GET", "/status")


@pytest.mark.parametrize("text,expected", [("127.0.0.1:9464", ("127.0.0.1", 9464)),
                                           (":80", ("127.0.0.1", 80)),
                                           ("[::1]:9464", ("::1", 9464))])
def test_listen_addresses(text: str, expected: tuple[str, int]) -> None:
    assert parse_listen(text) == expected


@pytest.mark.parametrize("text", ["9464", "host:", "host:0", "host:70000", "host:port"])
def test_bad_listen_addresses(text: str) -> None:
    with pytest.raises(IrqlockError, match="bad address"):
        parse_listen(text)


def test_settings_are_key_value_pairs() -> None:
    assert parse_settings(["threshold=2ms", "irq=24,25"]) == {"threshold": "2ms", "irq": "24,25"}
    for bad in ["threshold", "=2ms", "threshold="]:
        with pytest.raises(IrqlockError, match="use KEY=VALUE"):
            parse_settings([bad])
