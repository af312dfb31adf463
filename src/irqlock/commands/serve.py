"""`irqlock serve`: a long-running session that other shells and Prometheus talk to.

The session runs the chosen tracers and serves, on localhost by default:

    GET  /metrics   Prometheus text format (histograms, findings, drops)
    GET  /status    JSON: settings, counts, the latest records, tracer statistics
    POST /config    JSON {"threshold": "2ms", "irq": "24,25", ...}: reconfigure
    POST /clear     start counting again

`irqlock status`, `irqlock config KEY=VALUE ...` and `irqlock clear` are the
clients: the part the seed system's procfs files played.  The HTTP thread only
reads what the main loop prepared and hands commands to it; the tracers are
touched by the main loop alone.  Nothing received is executed: settings are
parsed as durations and numbers, and anything else is refused.
"""

from __future__ import annotations

import ipaddress
import json
import queue
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from irqlock import session
from irqlock.client import COMMAND_TIMEOUT_S, parse_listen
from irqlock.defaults import CONFIG_KEYS
from irqlock.errors import IrqlockError
from irqlock.kernel.features import KernelFeatures
from irqlock.report.prometheus import Metrics
from irqlock.tracers.irqline import IrqlineConfig
from irqlock.tracerset import Selection, TracerSet
from irqlock.units import parse_duration_ns

RECENT = 1000  # latest records kept for /status
REFRESH_S = 1.0  # how often the main loop refreshes what /metrics and /status show


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def apply_config(selection: Selection, settings: dict[str, str]) -> Selection:
    """A new selection with `settings` applied; raises IrqlockError on anything unknown."""
    new = replace(selection)
    for key, value in settings.items():
        if key not in CONFIG_KEYS:
            raise IrqlockError(f"unknown setting {key!r} (known: {', '.join(CONFIG_KEYS)})")
        if not isinstance(value, str):
            raise IrqlockError(f"{key}: give the value as text")
        if key == "threshold":
            if new.irqoff is None:
                raise IrqlockError("threshold: this session does not trace IRQ-off windows")
            new.irqoff = replace(new.irqoff, threshold_ns=parse_duration_ns(value))
        elif key == "irq":
            new.irq = _irq_setting(value, new.irq)
        elif key == "irq_threshold":
            if new.irq is None:
                raise IrqlockError("irq_threshold: this session does not trace IRQ lines")
            new.irq = replace(new.irq, threshold_ns=parse_duration_ns(value))
        elif key == "hung_after":
            if new.deadlock is None:
                raise IrqlockError("hung_after: this session does not look for deadlocks")
            try:
                seconds = float(value)
            except ValueError:
                raise IrqlockError(f"hung_after: not a number of seconds: {value!r}") from None
            if seconds <= 0:
                raise IrqlockError("hung_after: must be positive")
            new.deadlock = replace(new.deadlock, hung_after_ns=round(seconds * 1e9))
    return new


def _irq_setting(value: str, current: IrqlineConfig | None) -> IrqlineConfig | None:
    base = current or IrqlineConfig(irqs=[])
    if value == "none":
        return None
    if value == "all":
        return replace(base, irqs=None)
    try:
        irqs = sorted({int(part) for part in value.split(",")})
    except ValueError:
        raise IrqlockError(f"irq: give IRQ numbers (24 or 24,25), all or none, not {value!r}") \
            from None
    return replace(base, irqs=irqs)


@dataclass
class Command:
    name: str  # config | clear
    settings: dict[str, str] = field(default_factory=dict)
    done: threading.Event = field(default_factory=threading.Event)
    result: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


class Session:
    """The tracers, what they have shown, and the commands other shells send."""

    def __init__(self, selection: Selection, features: KernelFeatures) -> None:
        self.features = features
        self.metrics = Metrics()
        # What the HTTP thread may read, under `lock`: records as they come, and what
        # publish() prepared from the tracers.
        self.lock = threading.Lock()
        self.recent: deque[dict[str, Any]] = deque(maxlen=RECENT)
        self.counts: dict[str, int] = {}
        self.view: dict[str, Any] = {"metrics": "", "stats": [], "settings": {}}
        self.started = time.monotonic()
        self.commands: queue.Queue[Command] = queue.Queue()
        self.tracers = TracerSet(selection, features, self.on_record)
        self._next_refresh = 0.0

    @property
    def selection(self) -> Selection:
        return self.tracers.selection

    def on_record(self, record: dict[str, Any]) -> None:
        self.metrics.observe(record)
        with self.lock:
            self.recent.append(record)
            self.counts[record["type"]] = self.counts.get(record["type"], 0) + 1

    def poll(self, timeout_ms: int) -> int:
        handled = self.tracers.poll(timeout_ms)
        while not self.commands.empty():
            self._run(self.commands.get())
        if time.monotonic() >= self._next_refresh:
            self.publish()
        return handled

    def _run(self, command: Command) -> None:
        try:
            if command.name == "clear":
                self.clear()
            else:
                self.tracers.reconfigure(apply_config(self.selection, command.settings))
            self.publish()
            command.result = self.status()
        except IrqlockError as exc:
            command.error = str(exc).splitlines()[0]
        finally:
            command.done.set()

    def clear(self) -> None:
        self.tracers.clear()
        self.metrics = Metrics()
        with self.lock:
            self.recent.clear()
            self.counts = {}

    def status(self) -> dict[str, Any]:
        """What the session is and has seen (any thread: built from what publish() left)."""
        with self.lock:
            view, counts, recent = self.view, dict(self.counts), list(self.recent)
        return {"type": "status", "uptime_s": round(time.monotonic() - self.started, 3),
                "settings": view["settings"], "counts": counts, "stats": view["stats"],
                "recent": recent}

    def metrics_text(self) -> str:
        with self.lock:
            text: str = self.view["metrics"]
            return text

    def publish(self) -> None:
        """Read the tracers for what the HTTP thread serves (it never touches them)."""
        if self.tracers.locks:
            self.metrics.set_locks(self.tracers.lock_records(with_holders=False))
        stats = self.tracers.stats()
        self.metrics.set_stats(stats)
        view = {"metrics": self.metrics.text(), "stats": stats,
                "settings": self.selection.describe()}
        with self.lock:
            self.view = view
        self._next_refresh = time.monotonic() + REFRESH_S

    def submit(self, command: Command) -> Command:
        self.commands.put(command)
        command.done.wait(COMMAND_TIMEOUT_S)
        return command


def _handler(sess: Session) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "irqlock"

        def _send(self, code: int, body: str, content_type: str) -> None:
            data = body.encode()
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _json(self, code: int, value: dict[str, Any]) -> None:
            self._send(code, json.dumps(value) + "\n", "application/json")

        def do_GET(self) -> None:
            if self.path == "/metrics":
                self._send(200, sess.metrics_text(), "text/plain; version=0.0.4")
            elif self.path == "/status":
                self._json(200, sess.status())
            else:
                self._json(404, {"error": f"no {self.path}: /metrics, /status"})

        def do_POST(self) -> None:
            if self.path not in ("/config", "/clear"):
                self._json(404, {"error": f"no {self.path}: POST /config or /clear"})
                return
            length = int(self.headers.get("Content-Length") or 0)
            if length > 65536:
                self._json(413, {"error": "request too large"})
                return
            try:
                body = json.loads(self.rfile.read(length) or b"{}")
            except json.JSONDecodeError:
                self._json(400, {"error": "the body must be a JSON object"})
                return
            if not isinstance(body, dict):
                self._json(400, {"error": "the body must be a JSON object"})
                return
            command = sess.submit(Command(self.path.strip("/"), body))
            if not command.done.is_set():
                self._json(503, {"error": "the session did not answer in time"})
            elif command.error:
                self._json(400, {"error": command.error})
            else:
                self._json(200, command.result)

        def log_message(self, format: str, *args: Any) -> None:
            return  # requests are not news

    return Handler


def run(selection: Selection, listen: str, features: KernelFeatures, duration_s: float | None,
        ready_file: Path | None, as_json: bool) -> int:
    host, port = parse_listen(listen)
    if not is_loopback(host):
        sys.stderr.write(f"irqlock serve: listening on {host}: anyone who reaches this machine "
                         "can read the metrics and change the session\n")
    try:
        server = ThreadingHTTPServer((host, port), BaseHTTPRequestHandler)
    except OSError as exc:
        raise IrqlockError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    try:
        sess = Session(selection, features)
        server.RequestHandlerClass = _handler(sess)
        thread = threading.Thread(target=server.serve_forever, name="irqlock-http", daemon=True)
        thread.start()
        try:
            sess.publish()
            if not as_json:
                sys.stdout.write(f"Serving {', '.join(selection.tools)} on "
                                 f"http://{host}:{port}/metrics (status, config, clear: "
                                 "irqlock status|config|clear). Ctrl-C to stop.\n")
                sys.stdout.flush()
            session.run(sess.poll, duration_s, ready_file, lambda: sess.tracers.detach())
        finally:
            server.shutdown()
            sess.tracers.close()
    finally:
        server.server_close()
    return 0
