"""``--metrics-listen``: the server's counts in prometheus_client's metrics, and the HTTP
endpoint that serves them in Prometheus's text format.

Imported only after :func:`~.metrics.multiprocess_directory` (see :mod:`.metrics`):
prometheus_client reads ``PROMETHEUS_MULTIPROC_DIR`` when first imported.

:class:`PrometheusMetrics` keeps each labelled child's ``inc``/``observe`` in a dict,
so that an event costs a dict lookup and prometheus_client's own increment (a lock, and
with several processes a write to a memory-mapped file). The exposition, its content
negotiation (OpenMetrics, gzip, ``name[]`` filters) included, is prometheus_client's
WSGI application; :func:`serve` is the thin asyncio shell that hands it one request per
connection, in the process's event loop (no thread). The endpoint is reachable by every
local user, like the listeners, so what a client can make it hold is bounded: the
request's head (8 KiB), the time to send it and read the answer (5 s), and the
connections at once (8; a newcomer beyond them closes the oldest).
"""

from __future__ import annotations

import asyncio
import shutil
import socket
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, make_wsgi_app
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from .limits import Reason
from .metrics import CX, RFC4740, Metrics

PREFIX = "auth_diameter_server_"
# answers take a fraction of a millisecond from SQLite, a few from PostgreSQL; a store
# that hangs is cut off by its 1 s statement timeout
LATENCY_BUCKETS = (0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
HEAD_LIMIT = 8192  # bytes of a scrape's request line and headers
SCRAPE_TIMEOUT = 5.0  # seconds a scraper has to send its request and read the answer
MAX_SCRAPERS = 8  # connections to the endpoint at once, per process


class PrometheusMetrics(Metrics):
    """One process's counts in prometheus_client; ``directory``: multiprocess mode's
    (several processes), None: in memory (one); ``listeners``: the labels of the
    listeners served, whose series a scrape shows from the start. :attr:`registry` is
    what a scrape shows: this process's metrics, or every process's files summed.

    No ``_created`` series: multiprocess mode has none, so a single process shows none either.
    """

    def __init__(self, directory: str | None, listeners: tuple[str, ...]) -> None:
        disable_created_metrics()
        self.registry = CollectorRegistry()
        if directory is None:
            own: CollectorRegistry | None = self.registry
        else:
            own = None  # the values go to files; the collector reads every process's
            MultiProcessCollector(self.registry, path=directory)
        self._requests_total = Counter(
            PREFIX + "requests",
            "Requests answered, by type (legacy_auth, legacy_group, legacy_other, mar, sar, cx_mar, cer, dwr, dpr, "
            "other) and result (Result-Code, or Experimental-Result code)",
            ("type", "result"),
            registry=own,
        )
        latency = Histogram(
            PREFIX + "request_duration_seconds",
            "Time from the read that brought a request to the write of its answer, by listener",
            ("listener",),
            buckets=LATENCY_BUCKETS,
            registry=own,
        )
        connections = Gauge(
            PREFIX + "connections",
            "Connections open, by listener",
            ("listener",),
            multiprocess_mode="livesum",
            registry=own,
        )
        self._refused = Counter(
            PREFIX + "connections_refused", "Connections refused at accept: address not in --allow", registry=own
        ).inc
        evicted = Counter(
            PREFIX + "connections_evicted",
            "Connections closed to make room, by reason (cap, address-cap, out-of-fds)",
            ("reason",),
            registry=own,
        )
        timed_out = Counter(
            PREFIX + "connections_timed_out",
            "Connections closed by a timeout, by reason (idle, partial, handshake, stalled)",
            ("reason",),
            registry=own,
        )
        self._store_failed = Counter(
            PREFIX + "store_errors",
            "Store failures (StoreUnavailable): a request answered 5012, or a purge skipped",
            registry=own,
        ).inc
        self._throttled = Counter(
            PREFIX + "throttled_responses",
            "Responses answered as wrong without being checked, their user blocked after wrong ones",
            registry=own,
        ).inc
        ha1_given = Counter(
            PREFIX + "ha1_given",
            "Answers handing H(A1)s to a trusted peer (--ha1-peer), by application (rfc4740 Flow B, cx)",
            ("application",),
            registry=own,
        )
        self._ha1_refused = Counter(
            PREFIX + "ha1_refused",
            "Cx MARs from a peer not trusted with H(A1) (no --ha1-peer), answered 5012",
            registry=own,
        ).inc
        # every series but the requests' (their results are open-ended) shows from the start, at 0
        self._latency = {name: latency.labels(name).observe for name in listeners}
        self._opened = {name: connections.labels(name).inc for name in listeners}
        self._closed = {name: connections.labels(name).dec for name in listeners}
        self._cuts = {r: (evicted if r.evicted else timed_out).labels(r.value).inc for r in Reason}
        self._ha1_given = {name: ha1_given.labels(name).inc for name in (RFC4740, CX)}
        self._requests: dict[tuple[str, int], Callable[[], None]] = {}

    def request(self, kind: str, result: int) -> None:
        inc = self._requests.get((kind, result))
        if inc is None:
            inc = self._requests[kind, result] = self._requests_total.labels(kind, str(result)).inc
        inc()

    def answered(self, listener: str, seconds: float) -> None:
        self._latency[listener](seconds)

    def opened(self, listener: str) -> None:
        self._opened[listener]()

    def closed(self, listener: str) -> None:
        self._closed[listener]()

    def refused(self) -> None:
        self._refused()

    def cut(self, reason: Reason) -> None:
        self._cuts[reason]()

    def store_failed(self) -> None:
        self._store_failed()

    def throttled(self) -> None:
        self._throttled()

    def ha1_given(self, application: str) -> None:
        self._ha1_given[application]()

    def ha1_refused(self) -> None:
        self._ha1_refused()


class Exporter:
    """``--metrics-listen`` for one server: made in its main process, so that with
    ``--processes N`` each process forked from it has a copy."""

    def __init__(self, directory: str | None) -> None:
        self.directory = directory  # multiprocess mode's, or None
        self._metrics: PrometheusMetrics | None = None

    def start(self, listeners: tuple[str, ...]) -> PrometheusMetrics:
        """The counts of the process that calls it, after the fork (see :class:`PrometheusMetrics`)."""
        self._metrics = PrometheusMetrics(self.directory, listeners)
        return self._metrics

    async def serve(self, sock: socket.socket, stop: asyncio.Event) -> None:
        """The endpoint, in the process :meth:`start` was called in."""
        assert self._metrics is not None
        await serve(sock, self._metrics.registry, stop)

    def process_gone(self, pid: int) -> None:
        """A process died (the supervisor reaped it): its open connections leave the gauge;
        its counts stay."""
        if self.directory is not None:
            mark_process_dead(pid, self.directory)

    def close(self) -> None:
        """Every process is gone: the files go too."""
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)


async def serve(sock: socket.socket, registry: CollectorRegistry, stop: asyncio.Event) -> None:
    """Answer scrapes on ``sock`` until ``stop``: one request per connection."""
    app = make_wsgi_app(registry)
    scrapers: dict[asyncio.Task, None] = {}  # oldest first

    async def scrape(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        scrapers[task] = None
        if len(scrapers) > MAX_SCRAPERS:
            next(iter(scrapers)).cancel()
        try:
            await asyncio.wait_for(_exchange(reader, writer, app), SCRAPE_TIMEOUT)
        except (TimeoutError, OSError, ValueError, EOFError, asyncio.LimitOverrunError):
            pass  # a scraper that went away, sent no HTTP, or took too long: nothing to say to it
        finally:
            del scrapers[task]
            writer.close()

    server = await asyncio.start_server(scrape, sock=sock, limit=HEAD_LIMIT)
    try:
        await stop.wait()
    finally:
        server.close()
        for task in list(scrapers):
            task.cancel()


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, app: Callable) -> None:
    """Read one request's head, write the application's answer. ValueError: not HTTP.
    (IncompleteReadError, the client closing first, is an EOFError.)"""
    head = await reader.readuntil(b"\r\n\r\n")
    request_line, *lines = head.decode("latin-1").split("\r\n")
    method, target, version = request_line.split(" ")
    if not version.startswith("HTTP/"):
        raise ValueError(f"not an HTTP request line: {request_line[:80]!r}")
    path, _, query = target.partition("?")
    environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": query}
    for line in lines:
        name, _, value = line.partition(":")
        if name.strip().lower() in ("accept", "accept-encoding"):
            environ["HTTP_" + name.strip().upper().replace("-", "_")] = value.strip()
    started: list[tuple[str, list[tuple[str, str]]]] = []

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        started.append((status, headers))

    body = b"".join(app(environ, start_response))
    status, headers = started[0]
    out = [f"HTTP/1.1 {status}", *(f"{k}: {v}" for k, v in headers), f"Content-Length: {len(body)}"]
    writer.write(("\r\n".join([*out, "Connection: close", "", ""])).encode("latin-1") + body)
    await writer.drain()
