"""A Range-capable HTTP file server with request, byte and in-flight counters, shaped like object storage
when asked (a delay before each answer, a bandwidth cap per request).

COGs are read through GDAL's /vsicurl exactly as from a cloud bucket; the counters let tests and
benchmarks measure read amplification and how many requests a reader keeps in flight. (Python's
http.server has no Range support: GDAL refuses it.)
"""

from __future__ import annotations

import re
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


@dataclass
class Counters:
    requests: int = 0
    bytes_sent: int = 0
    per_path: dict[str, list[int]] = field(default_factory=dict)  # path -> [requests, bytes, bytes of the first]
    in_flight: int = 0  # requests being answered now
    peak_in_flight: int = 0  # the most at once since the last reset
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def enter(self) -> None:
        with self.lock:
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)

    def leave(self) -> None:
        with self.lock:
            self.in_flight -= 1

    def add(self, path: str, nbytes: int) -> None:
        with self.lock:
            self.requests += 1
            self.bytes_sent += nbytes
            entry = self.per_path.setdefault(path, [0, 0, nbytes])  # a reader's first request is its header read
            entry[0] += 1
            entry[1] += nbytes

    def reset(self) -> None:
        with self.lock:
            self.requests, self.bytes_sent = 0, 0
            self.peak_in_flight = self.in_flight
            self.per_path.clear()


@dataclass(frozen=True)
class Shaping:
    """Object storage as a reader meets it: each request answered after `delay_s` (its time to first byte),
    and its body sent at most at `bytes_per_s` (None: as fast as the machine goes). Concurrent requests are
    shaped each on its own, as a bucket's are."""

    delay_s: float = 0.0
    bytes_per_s: float | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.delay_s <= 10:
            raise ValueError(f"delay {self.delay_s} s: expected 0 to 10 s per request")
        if self.bytes_per_s is not None and self.bytes_per_s <= 0:
            raise ValueError(f"bandwidth {self.bytes_per_s} bytes/s: expected more than 0")


def port_is_free(host: str, port: int) -> bool:
    """True when nothing listens on (host, port); connections in TIME_WAIT do not count."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class PortInUse(RuntimeError):
    pass


@dataclass
class Faults:
    """Failures to inject, per served path (relative to the root): for tests of retries and isolation."""

    errors: dict[str, list[int]] = field(default_factory=dict)  # path -> [remaining, HTTP status]
    truncated: dict[str, int] = field(default_factory=dict)  # path -> size the file appears to have
    stalls: dict[str, float] = field(default_factory=dict)  # path -> seconds each GET waits before answering
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def stall(self, path: str, seconds: float) -> None:
        """Hold every GET for `path` for `seconds` before answering (a stalled connection; bounded)."""
        with self.lock:
            self.stalls[path] = min(float(seconds), 300.0)

    def fail(self, path: str, times: int, status: int = 500) -> None:
        """Answer the next `times` GET requests for `path` with `status`."""
        with self.lock:
            self.errors[path] = [times, status]

    def truncate(self, path: str, size: int) -> None:
        """Serve `path` as if the file ended after `size` bytes (a partly uploaded COG)."""
        with self.lock:
            self.truncated[path] = size

    def take_error(self, path: str) -> int | None:
        with self.lock:
            entry = self.errors.get(path)
            if not entry or entry[0] <= 0:
                return None
            entry[0] -= 1
            return entry[1]


SEND_CHUNK = 1 << 20  # bytes read and sent at a time


def _handler(root: Path, counters: Counters, faults: Faults):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stall

        def log_message(self, *args):  # quiet: tests and builds make thousands of requests
            pass

        def _resolve(self) -> Path | None:
            rel = unquote(urlparse(self.path).path).lstrip("/")
            target = (root / rel).resolve()
            if root not in target.parents and target != root:
                return None  # never serve outside the root
            return target if target.is_file() else None

        def do_HEAD(self):
            self._shaped(body=False)

        def do_GET(self):
            self._shaped(body=True)

        def _shaped(self, body: bool):
            counters.enter()
            try:
                if self.server.shaping.delay_s:
                    time.sleep(self.server.shaping.delay_s)
                self._serve(body)
            finally:
                counters.leave()

        def _serve(self, body: bool):
            target = self._resolve()
            if target is None:
                self.send_error(404, "not found")
                return
            rel = str(target.relative_to(root))
            if body and faults.stalls.get(rel):
                time.sleep(faults.stalls[rel])
            if body and (status := faults.take_error(rel)) is not None:
                counters.add(rel, 0)
                self.send_error(status, "injected fault")
                return
            size = min(target.stat().st_size, faults.truncated.get(rel, target.stat().st_size))
            header = self.headers.get("Range")
            start, end, status = 0, size - 1, 200
            if header:
                m = _RANGE.match(header.strip())
                if not m or (not m.group(1) and not m.group(2)):
                    self.send_error(416, "unsupported range")
                    return
                if m.group(1):
                    start = int(m.group(1))
                    end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
                else:  # suffix range: the last n bytes
                    start = max(size - int(m.group(2)), 0)
                if start >= size or start > end:
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{size}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                status = 206
            length = end - start + 1
            self.send_response(status)
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Type", "application/json" if target.suffix == ".json" else "image/tiff")
            self.send_header("Content-Length", str(length))
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
            self.end_headers()
            if body:
                # Counted before sending: once the client has the bytes, the counters already show them.
                counters.add(rel, length)
                rate = self.server.shaping.bytes_per_s
                chunk = SEND_CHUNK if rate is None else max(1024, int(rate / 100))
                t0 = time.perf_counter()
                with open(target, "rb") as f:  # in pieces: memory per request stays at one chunk, not the range
                    f.seek(start)
                    left = length
                    while left > 0:
                        piece = f.read(min(chunk, left))
                        if not piece:
                            break
                        self.wfile.write(piece)
                        left -= len(piece)
                        if rate is not None:  # the cap: no piece goes out before its time
                            ahead = (length - left) / rate - (time.perf_counter() - t0)
                            if ahead > 0:
                                time.sleep(ahead)

    return Handler


class QuietServer(ThreadingHTTPServer):
    """A client that hangs up mid-answer (a reader that timed out, a truncated read) is normal here:
    no traceback on stderr for it; other errors are still printed."""

    daemon_threads = True
    shaping = Shaping()

    def handle_error(self, request, client_address) -> None:
        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return
        super().handle_error(request, client_address)


class AssetServer:
    """Serve `root` over HTTP on 127.0.0.1 from a background thread; use as a context manager."""

    def __init__(self, root: Path, port: int = 0, host: str = "127.0.0.1", shaping: Shaping | None = None):
        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise FileNotFoundError(f"{root}: folder to serve does not exist")
        if port and not port_is_free(host, port):
            raise PortInUse(f"port {port} is already in use on {host}")
        self.counters = Counters()
        self.faults = Faults()
        self._server = QuietServer((host, port), _handler(self.root, self.counters, self.faults))
        self.shape(shaping or Shaping())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="asset-server", daemon=True)

    def shape(self, shaping: Shaping) -> None:
        """Answer from now on with this delay and bandwidth (benchmarks change it between runs)."""
        self._server.shaping = shaping

    @property
    def shaping(self) -> Shaping:
        return self._server.shaping

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> AssetServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> AssetServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()



