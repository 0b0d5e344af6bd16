"""What the server counts, as calls on one small facade; no prometheus_client here.

The asyncio shells (:mod:`.app`, :mod:`.diameter`, :mod:`.listener`) and the decisions'
events (:class:`~.auth.AuthEvents`: a store failure, a throttled response) call a
:class:`Metrics`. This base class counts nothing, so a server without
``--metrics-listen`` pays a method call per event and never imports prometheus_client;
:class:`~.exporter.PrometheusMetrics` counts into prometheus_client's metrics and serves them.

``--processes N``: prometheus_client's multiprocess mode, one endpoint for all. Each
process writes its values to files of its own in one directory; whichever process the
kernel hands a scrape (the endpoint's socket is shared with ``SO_REUSEPORT``, like the
listeners') reads them all and answers the sums. The counts of a process that died stay
(a counter never goes back), and its open connections leave the gauge when the
supervisor reaps it (:meth:`~.exporter.Exporter.process_gone`). prometheus_client
chooses between values in memory and values in files when it is first imported, from
``PROMETHEUS_MULTIPROC_DIR``: :func:`multiprocess_directory` sets that first, and the
server imports :mod:`.exporter` only after it.
"""

from __future__ import annotations

import os
import tempfile

from .limits import Reason

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# the type label of each request the server answers (requests_total{type=...})
LEGACY_AUTH = "legacy_auth"  # service '6', a digest check
LEGACY_GROUP = "legacy_group"  # service '8', a group check
LEGACY_OTHER = "legacy_other"  # any other service, answered 5012
MAR = "mar"  # RFC 4740 Multimedia-Auth-Request (application 6)
SAR = "sar"  # RFC 4740 Server-Assignment-Request: our group check
CX_MAR = "cx_mar"  # 3GPP Cx Multimedia-Auth-Request
CER = "cer"
DWR = "dwr"
DPR = "dpr"
OTHER = "other"  # a command or application not served, answered 3001 or 3007

# the application label of an H(A1) hand-over
RFC4740 = "rfc4740"
CX = "cx"


class Metrics:
    """One server process's counts; this base counts nothing. Every method is called
    on the request path, after the answer is decided: it must be cheap and never raise."""

    def request(self, kind: str, result: int) -> None:
        """A request of type ``kind`` (the constants above) answered with ``result``
        (its Result-Code, or the code of its Experimental-Result)."""

    def answered(self, listener: str, seconds: float) -> None:
        """An answer written on a ``listener`` connection ``seconds`` after the read that
        brought its request."""

    def opened(self, listener: str) -> None:
        """A connection is open (accepted, and past its TLS handshake if any)."""

    def closed(self, listener: str) -> None:
        """A connection :meth:`opened` is gone, whoever closed it."""

    def refused(self) -> None:
        """A connection refused at accept: its address is not in ``--allow``."""

    def cut(self, reason: Reason) -> None:
        """A connection closed by the limits: to make room (``reason.evicted``), else for a timeout."""

    def store_failed(self) -> None:
        """The store could not answer (StoreUnavailable): a request answered 5012, or a purge skipped."""

    def throttled(self) -> None:
        """A user's response answered as wrong without being checked: the user is blocked."""

    def ha1_given(self, application: str) -> None:
        """H(A1)s handed to a trusted peer (RFC 4740 Flow B, or Cx)."""

    def ha1_refused(self) -> None:
        """A Cx MAR from a peer not trusted with H(A1) (no ``--ha1-peer`` matches), answered 5012."""


def multiprocess_directory(processes: int) -> str | None:
    """Before prometheus_client is imported: with several processes, a fresh directory
    only this user may read, named in ``PROMETHEUS_MULTIPROC_DIR`` for every process;
    with one, no such variable (values in memory, whatever the environment said)."""
    if processes == 1:
        os.environ.pop(MULTIPROC_ENV, None)
        return None
    directory = tempfile.mkdtemp(prefix="kamailio-auth-diameter-metrics.")
    os.environ[MULTIPROC_ENV] = directory
    return directory
