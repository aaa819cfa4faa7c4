"""A replay ARM server: serves a recorded tenant over HTTPS as Azure Resource Manager would.

The real Azure SDK clients talk to it unchanged (``base_url=server.base_url``,
``connection_verify=server.ca_bundle``), so demos, benchmarks and tests of the live collector run with no
Azure account. The folder format is ``shared/spec/recorded-tenant.md``; in short, ``GET /<path>`` answers:

- ``arm/<path>.json`` (looked up case-insensitively; the query string is ignored). A list file
  (``{"value": [...]}``) is served in pages of ``page_size`` items with a ``nextLink`` back to this server
  (the original query string plus ``$skiptoken=<offset>``).
- ``arm/<path>.error.json`` (``{"status": 403, "error": {...}}``): that status with the ARM error body.
- neither: ``{"value": []}`` for a collection path (its last segment names a resource type); for a
  resource id, its item from the list file that holds it (:mod:`plmon.monitor.collect.list_items`, shared with the
  recorded source); otherwise 404 ``ResourceNotFound``.

What else a client sees, in the order the server applies it to each request:

1. ``latency_ms`` is waited before every answer.
2. ``throttle_every=N``: every Nth request (counting all requests) is answered 429 ``TooManyRequests``
   with ``Retry-After: <retry_after>`` seconds. azure-core reads the header with ``float()`` (an HTTP date
   also works), so fractional seconds such as ``0.05`` are honoured; ``0`` makes azure-core fall back to
   its exponential backoff instead.
   ``arm_limits=(capacity, per_second)`` instead enforces ARM's read limits: a token bucket per
   subscription (reads under ``/subscriptions/<id>``) and one for tenant-level reads, each ``capacity``
   tokens refilled at ``per_second`` (ARM's defaults since 2024: :data:`ARM_READ_LIMITS`, 250 refilled at 25
   a second). A read finding its bucket empty is answered 429 ``SubscriptionRequestsThrottled`` with the
   seconds until its next token in ``Retry-After`` (rounded up to the millisecond), and spends no token;
   ``x-ms-ratelimit-remaining-subscription-reads`` then counts the bucket's whole tokens. The bucket is
   charged on arrival, before the latency, as ARM throttles before the resource provider answers.
   Resource Graph queries keep their own quota and are not charged.
3. ``hang_paths`` (globs): a matching request gets no answer until the server stops (client timeouts).
4. ``fail_first`` (``{glob: n}``): each distinct matching path is answered 500 ``InternalServerError``
   ``n`` times before it is served normally (retries of 5xx).
5. Methods: GET and HEAD are served; POST to the Resource Graph query path answers plmon's fixed queries
   from the folder's lists (:mod:`plmon.monitor.replay.graph`: ``$skipToken`` pages of ``page_size`` rows, the
   ``graph_quota`` per ``graph_quota_window`` seconds in the quota headers) and any other query 400; any
   other method answers 405 ``MethodNotAllowed``. The server writes nothing, ever.

Globs match the request path with its leading ``/`` and without the query string, case-insensitively,
with :func:`fnmatch.fnmatchcase` (``*`` also matches ``/``), e.g. ``*/providers/Microsoft.Network/*``.

Every answer carries ``x-ms-request-id`` and ``x-ms-ratelimit-remaining-subscription-reads``. Every request
is logged in :attr:`ReplayServer.requests` (method, path, status) so a test can assert, say, that plmon
sent only GETs. ``GET /.plmon/stats`` answers ``{"requests": n, "throttled": m}`` (itself not counted): every
request received so far (pages, retries, 429s and failures included) and how many were answered 429, so a
process that does not hold the server (the scale-out benchmark) can count the ARM requests of what it measures.

A recorded file is parsed once and kept, and parsed again when its modification time or size changed: a
benchmark or test that rewrites a resource on disk (a change in Azure) is served the new body at once.
"""

from __future__ import annotations

import contextlib
import fnmatch
import http.client
import json
import logging
import math
import os
import shutil
import signal
import socket
import ssl
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import SplitResult, parse_qsl, unquote, urlencode, urlsplit

import orjson
import structlog
import trustme

from plmon.monitor.collect.list_items import ListItems
from plmon.monitor.http_headers import parse_headers, request_id
from plmon.monitor.outside_json import UNPARSED, fast_loads
from plmon.monitor.replay.graph import GraphEmulator

__all__ = [
    "ARM_READ_LIMITS", "DEFAULT_PAGE_SIZE", "ReadLimits", "ReplayServer", "RequestRecord", "is_collection_path",
    "run_replay_server",
]

log = structlog.get_logger()

DEFAULT_PAGE_SIZE = 100
SKIPTOKEN = "$skiptoken"
STATS_PATH = "/.plmon/stats"  # the server's own counters, not a recorded path (ARM paths never start with a dot)
RESOURCE_GRAPH_PATH = "providers/microsoft.resourcegraph/resources"
# ARM's historical hourly read budget per subscription; the header counts down from it, never below 0.
READ_BUDGET = 12000
# ARM's read limits per subscription and per tenant since 2024 (request-limits-and-throttling): a token
# bucket of 250 reads refilled at 25 a second, for each (subscription, principal) and for the tenant.
ARM_READ_LIMITS = (250.0, 25.0)
_CERT_NAMES = ("127.0.0.1", "localhost", "::1")
_WILDCARD_HOSTS = {"", "0.0.0.0", "::"}


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One request the server saw. ``status`` is None for a request it never answered (a hang)."""

    method: str
    path: str
    query: str
    status: int | None
    received: float  # time.monotonic() when the request arrived, to measure client retry delays


def is_collection_path(path: str) -> bool:
    """True when the last segment of an ARM path names a resource type (a list), not a resource.

    Above a provider, segments alternate type/name from the root (``subscriptions``,
    ``subscriptions/<s>/resourceGroups``); below the last ``providers/<Namespace>`` they alternate again
    (``privateEndpoints``, ``privateEndpoints/<pe>/privateDnsZoneGroups``).
    """
    segments = [s for s in path.strip("/").lower().split("/") if s]
    if not segments:
        return False
    if segments[-1] == "providers":
        return True
    if "providers" not in segments:
        return len(segments) % 2 == 1
    last = len(segments) - 1 - segments[::-1].index("providers")
    below_namespace = segments[last + 2 :]
    return len(below_namespace) % 2 == 1


def _index_folder(arm_dir: Path) -> tuple[dict[str, Path], dict[str, Path]]:
    """Lower-cased request path -> file, for bodies and for error files."""
    bodies: dict[str, Path] = {}
    errors: dict[str, Path] = {}
    for file in sorted(arm_dir.rglob("*.json")):
        rel = file.relative_to(arm_dir).as_posix()
        if rel.lower().endswith(".error.json"):
            table, key = errors, rel[: -len(".error.json")].lower()
        else:
            table, key = bodies, rel[: -len(".json")].lower()
        if key in table:
            log.warning("replay.duplicate_path", path=key, kept=str(table[key]), ignored=str(file))
            continue
        table[key] = file
    return bodies, errors


def _load_list(file: Path) -> Any:
    """A list file for by-id reads; one nested too deeply to parse is invalid (answered 500), not a crash."""
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except RecursionError:
        raise ValueError(f"{file}: JSON nested too deeply") from None


def _arm_error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


class ReadLimits:
    """ARM's read throttling as the server enforces it: one token bucket per budget scope, never blocking.

    Unlike the client's :class:`~plmon.monitor.collect.azure.budget.TokenBucket`, which waits for a token,
    ARM refuses a read that finds its bucket empty; :meth:`take` says so and how long until the next token.
    """

    def __init__(self, capacity: float, per_second: float, clock: Callable[[], float] = time.monotonic) -> None:
        if capacity < 1 or per_second <= 0:
            raise ValueError("arm_limits needs a capacity of at least 1 and a positive refill rate")
        self.capacity, self.rate, self._clock = float(capacity), float(per_second), clock
        self._buckets: dict[str, tuple[float, float]] = {}  # scope -> (tokens, when last refilled)
        self._lock = threading.Lock()
        self.throttled = 0  # reads refused, for tests and the benchmark

    @staticmethod
    def scope(path: str) -> str:
        """A read's budget: its subscription (lower case) or ``tenant`` for paths outside a subscription."""
        parts = [p for p in path.split("/") if p]
        return parts[1].lower() if len(parts) >= 2 and parts[0].lower() == "subscriptions" else "tenant"

    def take(self, scope: str) -> tuple[bool, float, int]:
        """Spend one token of ``scope``: (allowed, seconds until a token if refused, whole tokens left)."""
        with self._lock:
            now = self._clock()  # read under the lock: an older stamp applied late would un-refill the bucket
            tokens, stamp = self._buckets.get(scope, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - stamp) * self.rate)
            allowed = tokens >= 1
            if allowed:
                tokens -= 1
            else:
                self.throttled += 1
            self._buckets[scope] = (tokens, now)
        return allowed, 0.0 if allowed else (1 - tokens) / self.rate, int(tokens)


@dataclass(frozen=True, slots=True)
class _RecordedText:
    """An answer already encoded as UTF-8 JSON text (a recorded file as it is, or a page orjson wrote)."""

    data: bytes


class _TLSServer(ThreadingHTTPServer):
    """ThreadingHTTPServer over TLS that can close its live connections when it stops."""

    daemon_threads = False  # server_close() joins the handler threads: nothing outlives stop()
    block_on_close = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], context: ssl.SSLContext, replay: ReplayServer) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.replay = replay
        self._context = context
        self._live: set[socket.socket] = set()
        self._live_lock = threading.Lock()
        super().__init__(address, _Handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, addr = self.socket.accept()
        # The handshake runs in the handler thread, so a slow client never blocks accept().
        return self._context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr

    def process_request(self, request: Any, client_address: Any) -> None:
        # Registered before its thread starts, so close_live_connections() can never miss it.
        with self._live_lock:
            self._live.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._live_lock:
            self._live.discard(request)
        super().shutdown_request(request)

    def close_live_connections(self) -> None:
        with self._live_lock:
            live = list(self._live)
        for sock in live:
            # The plain socket's shutdown: wakes a handler blocked reading and leaves its SSL state alone.
            with contextlib.suppress(OSError):
                socket.socket.shutdown(sock, socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        log.debug("replay.connection_error", client=str(client_address), error=repr(exc))


_DATE: list[tuple[int, str]] = [(-1, "")]  # (second, its Date header), shared by every handler thread


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the SDK's connection pool expects
    server_version = "plmon-replay"
    sys_version = ""
    timeout = 300  # an idle keep-alive connection is dropped after this many seconds
    # Headers and body go out as two TLS records: with Nagle on, the body waits for the client's delayed
    # ACK of the headers (~40 ms on Linux), which doubled every collection's wall time against its floor.
    disable_nagle_algorithm = True
    server: _TLSServer
    received = 0.0
    split: SplitResult | None = None  # the request's URL, once _answer has split it (for its record)
    _headers_buffer: list[bytes]  # BaseHTTPRequestHandler's own (send_header fills it, flush_headers writes it)
    raw_requestline: bytes        # BaseHTTPRequestHandler's own (handle_one_request reads it)

    def setup(self) -> None:
        super().setup()
        self.request.do_handshake()

    def parse_request(self) -> bool:
        """BaseHTTPRequestHandler.parse_request (3.11-3.13) step for step, with the header block read by
        :func:`plmon.monitor.http_headers.parse_headers`: the email package's parser the stdlib uses took over a
        third of the server's CPU per answer, and the server shares the machine with the client it measures."""
        self.command = None  # type: ignore[assignment]  # set in case of error on the first line
        self.request_version = version = self.default_request_version
        self.close_connection = True
        requestline = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n")
        self.requestline = requestline
        words = requestline.split()
        if len(words) == 0:
            return False
        if len(words) >= 3:  # enough to determine the protocol version
            version = words[-1]
            try:
                if not version.startswith("HTTP/"):
                    raise ValueError
                base_version_number = version.split("/", 1)[1]
                parts = base_version_number.split(".")
                if len(parts) != 2:
                    raise ValueError
                if any(not component.isdigit() for component in parts):
                    raise ValueError("non digit in http version")
                if any(len(component) > 10 for component in parts):
                    raise ValueError("unreasonable length http version")
                version_number = int(parts[0]), int(parts[1])
            except (ValueError, IndexError):
                self.send_error(HTTPStatus.BAD_REQUEST, f"Bad request version ({version!r})")
                return False
            if version_number >= (1, 1) and self.protocol_version >= "HTTP/1.1":
                self.close_connection = False
            if version_number >= (2, 0):
                self.send_error(HTTPStatus.HTTP_VERSION_NOT_SUPPORTED, f"Invalid HTTP version ({base_version_number})")
                return False
            self.request_version = version
        if not 2 <= len(words) <= 3:
            self.send_error(HTTPStatus.BAD_REQUEST, f"Bad request syntax ({requestline!r})")
            return False
        command, path = words[:2]
        if len(words) == 2:
            self.close_connection = True
            if command != "GET":
                self.send_error(HTTPStatus.BAD_REQUEST, f"Bad HTTP/0.9 request type ({command!r})")
                return False
        self.command, self.path = command, path
        if self.path.startswith("//"):
            self.path = "/" + self.path.lstrip("/")  # reduce to a single /
        try:
            self.headers = parse_headers(self.rfile, _class=self.MessageClass)
        except http.client.LineTooLong as err:
            self.send_error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "Line too long", str(err))
            return False
        except http.client.HTTPException as err:
            self.send_error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "Too many headers", str(err))
            return False
        conntype = self.headers.get("Connection", "")
        if conntype.lower() == "close":
            self.close_connection = True
        elif conntype.lower() == "keep-alive" and self.protocol_version >= "HTTP/1.1":
            self.close_connection = False
        expect = self.headers.get("Expect", "")
        expects = expect.lower() == "100-continue" and self.protocol_version >= "HTTP/1.1" \
            and self.request_version >= "HTTP/1.1"
        return not expects or bool(self.handle_expect_100())

    def date_time_string(self, timestamp: float | None = None) -> str:
        """The ``Date`` header, formatted once per second rather than once per answer (the email package's
        formatting was a twentieth of the server's CPU per answer)."""
        if timestamp is not None:
            return super().date_time_string(timestamp)
        now = int(time.time())
        cached = _DATE[0]
        if cached[0] != now:
            cached = _DATE[0] = (now, super().date_time_string(now))
        return cached[1]

    def log_message(self, format: str, *args: Any) -> None:
        pass  # requests are logged through structlog in ReplayServer._answer

    def do_GET(self) -> None:
        self.server.replay._answer(self, head=False)

    def do_HEAD(self) -> None:
        self.server.replay._answer(self, head=True)

    def do_POST(self) -> None:
        self.server.replay._answer(self, head=False)

    do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_POST

    def send_json(self, status: int, body: Any, headers: Mapping[str, str], *, head: bool = False) -> None:
        data = body.data if isinstance(body, _RecordedText) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        # Status line, headers and body in one write (one TLS record, one syscall): the server's CPU per answer
        # shares the machine with the client it serves.
        self._headers_buffer.append(b"\r\n")  # what end_headers() adds
        if not head:
            self._headers_buffer.append(data)
        self.flush_headers()


class ReplayServer:
    """Serves a recorded-tenant folder over HTTPS on a background thread.

    Nothing happens until :meth:`start` (or ``with ReplayServer(...) as server:``); :meth:`stop` closes
    every connection, answers nothing more and removes the CA directory if the server created it.
    """

    def __init__(
        self,
        folder: str | os.PathLike[str],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        page_size: int = DEFAULT_PAGE_SIZE,
        latency_ms: float = 0,
        throttle_every: int = 0,
        retry_after: float = 1,
        hang_paths: Sequence[str] = (),
        fail_first: Mapping[str, int] | None = None,
        ca_dir: str | os.PathLike[str] | None = None,
        graph_quota: int = 0,
        graph_quota_window: float = 5.0,
        graph_page_size: int | None = None,
        arm_limits: tuple[float, float] | None = None,
        preload: bool = False,
    ) -> None:
        if page_size < 1 or (graph_page_size is not None and graph_page_size < 1):
            raise ValueError("page_size and graph_page_size must be at least 1")
        if latency_ms < 0 or throttle_every < 0 or retry_after < 0:
            raise ValueError("latency_ms, throttle_every and retry_after must not be negative")
        self.folder = Path(folder)
        self.host = host
        self.port = port
        self.page_size = page_size
        # Resource Graph serves up to 1,000 rows a page where ARM lists page by ~100: None keeps page_size.
        self.graph_page_size = graph_page_size or page_size
        self.latency_ms = latency_ms
        self.throttle_every = throttle_every
        self.retry_after = retry_after
        self.hang_paths = tuple(g.lower() for g in hang_paths)
        self.fail_first = {g.lower(): n for g, n in (fail_first or {}).items()}
        if graph_quota < 0 or graph_quota_window <= 0:
            raise ValueError("graph_quota must not be negative and graph_quota_window must be positive")
        self.graph_quota = graph_quota
        self.graph_quota_window = graph_quota_window
        self._graph: GraphEmulator | None = None
        self.limits = ReadLimits(*arm_limits) if arm_limits is not None else None
        self.preload = preload
        self._ca_dir_arg = Path(ca_dir) if ca_dir is not None else None
        self._server: _TLSServer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._requests: list[RequestRecord] = []
        self._log_requests = True  # (start() decides)
        self._count = 0  # requests received, counted on arrival (throttling counts these)
        self._failures: Counter[str] = Counter()
        self._bodies: dict[str, Path] = {}
        self._errors: dict[str, Path] = {}
        self._cache: dict[Path, Any] = {}
        self._texts: dict[Path, bytes] = {}  # the text each cached file was parsed from, UTF-8
        self._stamps: dict[Path, tuple[int, int]] = {}  # (mtime_ns, size) each cached file had when parsed
        self._throttled = 0  # answers 429 (ARM's limits or throttle_every), for /.plmon/stats
        self._plain: set[Path] = set()  # cached files orjson parsed (see _encoded)
        # Lists are parsed afresh here (not through _cache) so that an edited list answers by-id reads as it is.
        self._list_items = ListItems(self._bodies_get, _load_list)
        self._owned_ca_dir: Path | None = None
        self.base_url = ""
        self.ca_bundle = ""

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> ReplayServer:
        if self._server is not None:
            raise RuntimeError("replay server already started")
        arm_dir = self.folder / "arm"
        if not arm_dir.is_dir():
            raise FileNotFoundError(f"{self.folder} is not a recorded tenant: it has no arm/ folder")
        self._bodies, self._errors = _index_folder(arm_dir)
        # A debug line per request only when debug lines are written (as logging is configured when the server
        # starts): structlog's lazy logger binds anew on every call, about 1% of the server's CPU per answer.
        enabled = getattr(structlog.get_logger(), "is_enabled_for", None)  # (a filtering logger's; else: write)
        self._log_requests = True if enabled is None else bool(enabled(logging.DEBUG))
        if self.preload:
            self._preload()
        self._graph = GraphEmulator(self._list_of, tenant_id=self._tenant_id(), page_size=self.graph_page_size,
                                    quota=self.graph_quota, window=self.graph_quota_window)
        context = self._tls_context()
        try:
            self._server = _TLSServer((self.host, self.port), context, self)
        except BaseException:
            self._remove_owned_ca_dir()
            raise
        port = self._server.server_address[1]
        shown = "127.0.0.1" if self.host in _WILDCARD_HOSTS else self.host
        self.base_url = f"https://[{shown}]:{port}" if ":" in shown else f"https://{shown}:{port}"
        self._stopping.clear()
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, name="plmon-replay", daemon=True
        )
        self._thread.start()
        return self

    def _preload(self) -> None:
        """Every recorded file read and parsed before the first request (``preload``), as ARM has no cold cache.

        Read on first use instead, the files of a 100-subscription tenant (17k) cost the server a seventh of its
        CPU during a collection, and that CPU shares the machine with the client the collection measures. What an
        answer is does not change: the cache is the one first use fills (a file edited after the start is parsed
        again on its next read, as any cached file is)."""
        for file in (*self._bodies.values(), *self._errors.values()):
            with contextlib.suppress(OSError, ValueError, TypeError, RecursionError):  # answered as on first use
                self._load(file)

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()  # releases hung requests and latency waits
        server.shutdown()
        server.close_live_connections()
        server.server_close()  # joins the handler threads
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._remove_owned_ca_dir()
        log.info("replay.stopped", requests=len(self._requests))

    def __enter__(self) -> ReplayServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _tls_context(self) -> ssl.SSLContext:
        ca = trustme.CA()
        names = list(_CERT_NAMES)
        if self.host not in _WILDCARD_HOSTS and self.host not in names:
            names.append(self.host)
        cert = ca.issue_cert(*names)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(context)
        if self._ca_dir_arg is None:
            self._owned_ca_dir = Path(tempfile.mkdtemp(prefix="plmon-replay-"))
            ca_dir = self._owned_ca_dir
        else:
            ca_dir = self._ca_dir_arg
            ca_dir.mkdir(parents=True, exist_ok=True)
        ca_path = ca_dir / "ca.pem"
        ca.cert_pem.write_to_path(str(ca_path))
        self.ca_bundle = str(ca_path)
        return context

    def _remove_owned_ca_dir(self) -> None:
        if self._owned_ca_dir is not None:
            shutil.rmtree(self._owned_ca_dir, ignore_errors=True)
            self._owned_ca_dir = None

    # -- request log -------------------------------------------------------------------------------

    @property
    def requests(self) -> list[RequestRecord]:
        """A copy of the request log, oldest first."""
        with self._lock:
            return list(self._requests)

    @property
    def methods(self) -> Counter[str]:
        """How many requests of each HTTP method the server saw."""
        return Counter(r.method for r in self.requests)

    @property
    def statuses(self) -> Counter[int | None]:
        """How many answers of each status the server gave (None: never answered)."""
        return Counter(r.status for r in self.requests)

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    def stats(self) -> dict[str, int]:
        """``/.plmon/stats``: requests received and answered 429 since the start (what the benchmark counts)."""
        with self._lock:
            return {"requests": self._count, "throttled": self._throttled}

    def _record(self, handler: _Handler, status: int | None) -> None:
        split = handler.split if handler.split is not None else urlsplit(handler.path)
        record = RequestRecord(handler.command, split.path, split.query, status, handler.received)
        with self._lock:
            self._requests.append(record)
        if self._log_requests:
            log.debug("replay.request", method=record.method, path=record.path, status=status)

    # -- answering ---------------------------------------------------------------------------------

    def _next_count(self) -> int:
        with self._lock:
            self._count += 1
            return self._count

    def _answer(self, handler: _Handler, *, head: bool) -> None:
        handler.received = time.monotonic()
        length = int(handler.headers.get("Content-Length") or 0)
        # Read in full to keep the connection usable; only a Resource Graph query's body is looked at.
        request_body = handler.rfile.read(length) if length else b""
        split = handler.split = urlsplit(handler.path)
        path = unquote(split.path)
        if path == STATS_PATH and handler.command == "GET":  # the server's counters: no latency, not counted
            return handler.send_json(200, self.stats(), {})
        key = path.strip("/").lower()
        glob_path = "/" + key
        count = self._next_count()
        headers = {
            "x-ms-request-id": request_id(),
            "x-ms-ratelimit-remaining-subscription-reads": str(max(0, READ_BUDGET - count)),
        }

        limited: tuple[bool, float, int] | None = None
        if self.limits is not None and handler.command in ("GET", "HEAD"):
            limited = self.limits.take(ReadLimits.scope(path))
            headers["x-ms-ratelimit-remaining-subscription-reads"] = str(limited[2])
        if self.latency_ms and self._stopping.wait(self.latency_ms / 1000):
            return self._drop(handler)
        if limited is not None and not limited[0]:
            headers["Retry-After"] = f"{math.ceil(limited[1] * 1000) / 1000:g}"
            body = _arm_error("SubscriptionRequestsThrottled",
                              "Number of read requests exceeded the limit (replay of ARM's token bucket).")
            return self._send(handler, 429, body, headers, head)
        if self.throttle_every and count % self.throttle_every == 0:
            headers["Retry-After"] = f"{self.retry_after:g}"
            body = _arm_error(
                "TooManyRequests", f"Replay throttling: every {self.throttle_every}th request is refused."
            )
            return self._send(handler, 429, body, headers, head)
        if any(fnmatch.fnmatchcase(glob_path, g) for g in self.hang_paths):
            self._record(handler, None)
            self._stopping.wait()
            return self._drop(handler, record=False)
        if self._should_fail(glob_path):
            body = _arm_error("InternalServerError", "Replay fault injection: failing before succeeding.")
            return self._send(handler, 500, body, headers, head)

        if handler.command not in ("GET", "HEAD"):
            if handler.command == "POST" and key == RESOURCE_GRAPH_PATH and self._graph is not None:
                try:
                    status, body, extra = self._graph.answer(request_body)
                except (OSError, ValueError, TypeError, AttributeError) as exc:
                    log.warning("replay.bad_file", path=path, error=repr(exc))
                    status, body, extra = 500, _arm_error("ReplayFileInvalid", "A recorded list is invalid."), {}
                return self._send(handler, status, body, {**headers, **extra}, head)
            headers["Allow"] = "GET, HEAD"
            body = _arm_error(
                "MethodNotAllowed", f"The replay server is read-only: {handler.command} is not allowed."
            )
            return self._send(handler, 405, body, headers, head)

        try:
            status, body = self._lookup(key, path, split.query, handler.headers.get("Host"))
        except (OSError, ValueError, TypeError, AttributeError, RecursionError) as exc:
            log.warning("replay.bad_file", path=path, error=type(exc).__name__)
            status, body = 500, _arm_error("ReplayFileInvalid", f"The recorded file for '{path}' is invalid.")
        return self._send(handler, status, body, headers, head)

    def _should_fail(self, glob_path: str) -> bool:
        for glob, times in self.fail_first.items():
            if fnmatch.fnmatchcase(glob_path, glob):
                with self._lock:
                    if self._failures[glob_path] < times:
                        self._failures[glob_path] += 1
                        return True
                return False
        return False

    def _load(self, file: Path) -> Any:
        """``file`` parsed, from the cache unless its stat changed since: a by-id file cached for ever made a
        rewrite on disk (the benchmark's change in Azure) invisible to every later read. One ``stat`` a read."""
        info = file.stat()
        stamp = (info.st_mtime_ns, info.st_size)
        if file not in self._cache or self._stamps.get(file) != stamp:
            data = file.read_bytes()
            # orjson where it reads the text exactly as json does (outside_json.fast_loads), json otherwise.
            doc = fast_loads(data)
            if doc is UNPARSED:
                doc = json.loads(data.decode("utf-8"))
                self._plain.discard(file)
            else:
                self._plain.add(file)
            # A reader racing this re-parse gets the old document or the new text, either one whole.
            self._texts[file] = data
            self._cache[file] = doc
            self._stamps[file] = stamp
        return self._cache[file]

    def _as_recorded(self, file: Path, body: Any) -> Any:
        """``body`` (parsed from ``file``) as the file's own text when that is what the answer is: the same
        document for any JSON reader, without encoding it again for every read."""
        text = self._texts.get(file)
        return _RecordedText(text) if text is not None and self._cache.get(file) is body else body

    def _encoded(self, file: Path, body: Any) -> Any:
        """``body`` (built from ``file``'s document) encoded by orjson when orjson read that file: nothing in it
        (NaN, an integer beyond 64 bits, a lone surrogate) that orjson would write differently from json."""
        return _RecordedText(orjson.dumps(body)) if file in self._plain else body

    def _list_of(self, path: str) -> tuple[int, Any]:
        """A list path's whole recorded answer (unpaged), for the Resource Graph emulation."""
        key = path.strip("/").lower()
        if key in self._errors:
            recorded = self._load(self._errors[key])
            error = recorded.get("error") or {"code": "Unknown", "message": "recorded error"}
            return int(recorded.get("status", 500)), {"error": error}
        if key in self._bodies:
            return 200, self._load(self._bodies[key])
        refused = self._list_items.refused_scope(key)
        if refused is not None:  # the list of a subscription the identity cannot read: refused, not empty
            recorded = self._load(refused)
            error = recorded.get("error") or {"code": "Unknown", "message": "recorded error"}
            return int(recorded.get("status", 500)), {"error": error}
        return 200, {"value": []}

    def _tenant_id(self) -> str:
        try:
            manifest = json.loads((self.folder / "manifest.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return ""
        tenant = manifest.get("tenant_id") if isinstance(manifest, dict) else None
        return tenant if isinstance(tenant, str) else ""

    def _lookup(self, key: str, path: str, query: str, host: str | None) -> tuple[int, Any]:
        if key in self._bodies:
            file = self._bodies[key]
            body = self._load(file)
            if isinstance(body, dict) and isinstance(body.get("value"), list):
                status, page = self._page(body, path, query, host)
                # One page holding the whole list is the file itself (less any recorded nextLink).
                whole = (len(page.get("value", ())) == len(body["value"]) and "nextLink" not in body
                         and "nextLink" not in page)
                if status == 200 and whole:
                    return status, self._as_recorded(file, body)
                return status, self._encoded(file, page) if status == 200 else page
            return 200, self._as_recorded(file, body)
        if key in self._errors:
            recorded = self._load(self._errors[key])
            error = recorded.get("error") or {"code": "Unknown", "message": "recorded error"}
            return int(recorded.get("status", 500)), {"error": error}
        refused = self._list_items.refused_scope(key)
        if refused is not None:  # under a refused scope (a subscription the identity cannot read): refused too
            recorded = self._load(refused)
            error = recorded.get("error") or {"code": "Unknown", "message": "recorded error"}
            return int(recorded.get("status", 500)), {"error": error}
        if is_collection_path(key):
            return 200, {"value": []}
        held = self._list_items.find(key)
        if held is not None and held[1] is None:
            return 200, held[0]
        if held is not None and held[1] is not None:  # its list is refused: so is the read of what it holds
            recorded = self._load(held[1])
            error = recorded.get("error") or {"code": "Unknown", "message": "recorded error"}
            return int(recorded.get("status", 500)), {"error": error}
        return 404, _arm_error("ResourceNotFound", f"The recorded tenant holds nothing at '{path}'.")

    def _bodies_get(self, key: str) -> tuple[Path | None, bool]:
        """The file indexed for ``key`` and whether it is an error file (read at call time: ``start`` replaces
        the index)."""
        if key in self._bodies:
            return self._bodies[key], False
        return self._errors.get(key), key in self._errors

    def _page(self, body: dict[str, Any], path: str, query: str, host: str | None) -> tuple[int, Any]:
        params = parse_qsl(query, keep_blank_values=True)
        tokens = [v for k, v in params if k.lower() == SKIPTOKEN]
        try:
            start = int(tokens[-1]) if tokens else 0
        except ValueError:
            return 400, _arm_error("InvalidSkipToken", f"'{tokens[-1]}' is not a skip token of this server.")
        items = body["value"]
        end = start + self.page_size
        page = {k: v for k, v in body.items() if k != "nextLink"}
        page["value"] = items[start:end]
        if end < len(items):
            kept = [(k, v) for k, v in params if k.lower() != SKIPTOKEN]
            base = f"https://{host}" if host else self.base_url
            page["nextLink"] = f"{base}{path}?{urlencode([*kept, (SKIPTOKEN, str(end))])}"
        return 200, page

    def _send(
        self, handler: _Handler, status: int, body: Any, headers: Mapping[str, str], head: bool
    ) -> None:
        if status == 429:
            with self._lock:
                self._throttled += 1
        self._record(handler, status)
        handler.send_json(status, body, headers, head=head)

    def _drop(self, handler: _Handler, *, record: bool = True) -> None:
        """The server is stopping: close this connection without an answer."""
        if record:
            self._record(handler, None)
        handler.close_connection = True


def run_replay_server(
    folder: str | os.PathLike[str],
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    page_size: int = DEFAULT_PAGE_SIZE,
    latency_ms: float = 0,
    throttle_every: int = 0,
    retry_after: float = 1,
    hang_paths: Sequence[str] = (),
    fail_first: Mapping[str, int] | None = None,
    ca_dir: str | os.PathLike[str] | None = None,
    graph_quota: int = 0,
    graph_quota_window: float = 5.0,
    graph_page_size: int | None = None,
    arm_limits: tuple[float, float] | None = None,
    preload: bool = False,
) -> int:
    """Serve ``folder`` until SIGTERM or SIGINT; return the exit code (0).

    The first line on stdout is ``{"base_url": ..., "ca_bundle": ...}``; nothing else is printed.
    Call from the main thread (it installs signal handlers, and restores the previous ones on return).
    """
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("replay.signal", signal=signal.Signals(signum).name)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    server = ReplayServer(
        folder, host=host, port=port, page_size=page_size, latency_ms=latency_ms,
        throttle_every=throttle_every, retry_after=retry_after, hang_paths=hang_paths,
        fail_first=fail_first, ca_dir=ca_dir, graph_quota=graph_quota, graph_quota_window=graph_quota_window,
        graph_page_size=graph_page_size, arm_limits=arm_limits, preload=preload,
    )
    # The server's heap is mostly its cache of parsed recorded files, which only grows: the collector's full
    # passes walked all of it to free nothing and stopped every answer meanwhile (each pass at a 100-subscription
    # tenant held the 32-64 answers in flight up to a few hundred ms); its young passes still free the handlers'
    # cycles. (Its own process: the thresholds are process-wide.)
    from plmon.monitor.collect.plan import young_gc

    try:
        with server, young_gc():
            sys.stdout.write(json.dumps({"base_url": server.base_url, "ca_bundle": server.ca_bundle}) + "\n")
            sys.stdout.flush()
            log.info("replay.serving", base_url=server.base_url, folder=str(folder), page_size=page_size,
                     latency_ms=latency_ms, throttle_every=throttle_every, arm_limits=arm_limits)
            while not stop.wait(0.5):
                pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
