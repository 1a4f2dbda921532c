"""The daemon's small HTTP side: ``/healthz`` for probes, ``/metrics`` for Prometheus,
and, when the daemon hands one in, the operator's page (``/``, ``/feeds/<id>``,
``/posts``, ``/api/...``; :mod:`aggregator.service.web`).

Design choices, and why:

* It listens on 127.0.0.1 unless the operator names another address.  The
  endpoints are unauthenticated and ``/metrics`` lists every feed URL (some
  carry tokens in their query), so exposing them is an explicit decision:
  ``--http 0.0.0.0:8080`` in a container, behind whatever the platform puts
  in front of it.
* It runs on the caller's asyncio loop (aiohttp's ``AppRunner``/``TCPSite``,
  never ``web.run_app``, which would take over the loop and the signals): the
  daemon owns the loop, the signal handlers and the shutdown order.
* ``/healthz`` awaits the daemon's own check under a timeout: a check that
  hangs (a database that stopped answering) must read as unhealthy to the
  probe, not as a probe timeout that looks like a dead process.  Anything the
  check raises is unhealthy too, never a 500 with a traceback.
* Requests are logged at DEBUG only: probes and scrapes arrive every few
  seconds and would bury the feed log at INFO.  Health *changes* are logged.
* The operator's page is mounted on the same application (same address,
  same loop); its pages read the database in threads, and it stays
  read-only unless a token is configured (see :mod:`aggregator.service.web.site`).
  The page shows feed URLs with their credentials redacted, but it is still
  for the operator: the 127.0.0.1 default above matters as much for it.
* A failure to listen raises :class:`BindError`, an :class:`OSError` whose
  message names the address (``cannot listen on 127.0.0.1:8080: address in
  use``), so the command line can print it as it is.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import re
import socket
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import TYPE_CHECKING, Final, Self

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from aggregator.errors import AggregatorError
from aggregator.service.metrics import Metrics

if TYPE_CHECKING:
    from aggregator.service.web.site import OperatorSite

__all__ = [
    "DEFAULT_HOST",
    "HEALTH_TIMEOUT",
    "BindError",
    "HealthCheck",
    "HttpServer",
    "format_bind",
    "parse_bind",
    "start_http_server",
]

logger = logging.getLogger(__name__)

#: Where ``:PORT`` listens: loopback only, see the module docstring.
DEFAULT_HOST: Final = "127.0.0.1"
#: Seconds ``/healthz`` waits for the health check.  Kubernetes' default probe
#: timeout is 1 s and most others allow 5-10 s; 3 s leaves a slow database
#: room to answer without letting a stuck one hold probes open.
HEALTH_TIMEOUT: Final = 3.0
#: Seconds :meth:`HttpServer.stop` lets in-flight requests finish.  Longer
#: than a health check, short enough not to hold up the daemon's shutdown.
SHUTDOWN_TIMEOUT: Final = 5.0

#: ``(healthy, one-line reason)``; the reason is shown only when unhealthy.
HealthCheck = Callable[[], Awaitable[tuple[bool, str]]]

_USAGE = "use HOST:PORT, :PORT or [IPv6]:PORT, e.g. 127.0.0.1:8080"
_PORT_RE = re.compile(r"[0-9]{1,5}")
_HOSTNAME_RE = re.compile(
    r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?"
)


# --------------------------------------------------------------------------
# Addresses


def parse_bind(text: str) -> tuple[str, int]:
    """``HOST:PORT`` -> ``(host, port)``; an empty host means 127.0.0.1.

    Accepts ``127.0.0.1:8080``, ``:8080``, ``0.0.0.0:8080``, ``[::1]:8080``
    and host names.  Port 0 is allowed (the OS picks one; tests use it).
    Raises :class:`ValueError` naming the input and the problem.
    """
    spec = text.strip()
    if not spec:
        raise ValueError(f"empty listen address: {_USAGE}")
    if spec.startswith("["):
        end = spec.find("]")
        if end == -1:
            raise ValueError(f"bad listen address {text!r}: missing ']' after the IPv6 address")
        host, rest = spec[1:end], spec[end + 1 :]
        if not rest.startswith(":"):
            raise ValueError(f"bad listen address {text!r}: missing port after ']' ({_USAGE})")
        port_text = rest[1:]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(
                f"bad listen address {text!r}: {host!r} is not an IPv6 address"
            ) from None
    else:
        host, colon, port_text = spec.rpartition(":")
        if not colon:
            raise ValueError(f"bad listen address {text!r}: missing port ({_USAGE})")
        if ":" in host:
            raise ValueError(
                f"bad listen address {text!r}: put an IPv6 address in brackets, e.g. [::1]:8080"
            )
        host = host or DEFAULT_HOST
        _check_host(text, host)
    if not port_text:
        raise ValueError(f"bad listen address {text!r}: missing port ({_USAGE})")
    if not _PORT_RE.fullmatch(port_text) or int(port_text) > 65535:
        raise ValueError(
            f"bad listen address {text!r}: port {port_text!r} is not a number from 0 to 65535"
        )
    return host, int(port_text)


def _check_host(text: str, host: str) -> None:
    if re.fullmatch(r"[0-9.]+", host):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise ValueError(
                f"bad listen address {text!r}: {host!r} is not an IPv4 address"
            ) from None
    elif not _HOSTNAME_RE.fullmatch(host) or len(host) > 253:
        raise ValueError(f"bad listen address {text!r}: {host!r} is not a host name or address")


def format_bind(host: str, port: int) -> str:
    """The inverse of :func:`parse_bind`: ``[::1]:8080`` for IPv6 hosts."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class BindError(AggregatorError, OSError):
    """The server could not listen; ``str()`` is ready for the operator.

    ``errno`` is kept from the underlying error (``errno.EADDRINUSE`` ...) for
    callers that branch on it; ``address`` is what was asked for.
    """

    def __init__(self, address: str, cause: OSError) -> None:
        super().__init__(f"cannot listen on {address}: {_bind_reason(address, cause)}")
        self.errno = cause.errno
        self.address = address


def _bind_reason(address: str, cause: OSError) -> str:
    if isinstance(cause, socket.gaierror):
        return f"cannot resolve the host ({cause.strerror or cause})"
    if cause.errno == errno.EADDRINUSE:
        return "address in use"
    if cause.errno == errno.EADDRNOTAVAIL:
        return "address not available on this machine"
    if cause.errno == errno.EACCES:
        port = int(address.rpartition(":")[2])
        return "permission denied" + (" (ports below 1024 need privileges)" if port < 1024 else "")
    return cause.strerror or str(cause)


# --------------------------------------------------------------------------
# The server


class _DebugAccessLogger(AbstractAccessLogger):
    """One DEBUG line per request; nothing at INFO (see the module docstring)."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.debug(
            "%s %s -> %d in %.1f ms", request.method, request.path, response.status, time * 1000
        )

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.DEBUG)


class HttpServer:
    """``/healthz`` and ``/metrics`` on ``host:port``, on the running loop.

    Usable as ``async with HttpServer(...) as server:`` or with explicit
    :meth:`start` / :meth:`stop`.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        metrics: Metrics,
        health: HealthCheck,
        health_timeout: float = HEALTH_TIMEOUT,
        site: OperatorSite | None = None,
    ) -> None:
        self.host = host
        self._site = site
        self._requested_port = port
        self._metrics = metrics
        self._health = health
        self._health_timeout = health_timeout
        self._runner: web.AppRunner | None = None
        self._last_healthy = True  # log only changes, the first being to unhealthy

    async def start(self) -> None:
        """Start listening; :class:`BindError` if the address cannot be had."""
        if self._runner is not None:
            raise RuntimeError(f"HTTP server on {self.address} is already started")
        app = web.Application()
        app.router.add_get("/healthz", self._handle_healthz)  # HEAD too (allow_head)
        app.router.add_get("/metrics", self._handle_metrics)
        if self._site is not None:
            self._site.add_routes(app)
        runner = web.AppRunner(
            app,
            handle_signals=False,  # the daemon owns SIGINT/SIGTERM
            shutdown_timeout=SHUTDOWN_TIMEOUT,
            access_log_class=_DebugAccessLogger,
            access_log=logger,
        )
        await runner.setup()
        site = web.TCPSite(runner, self.host, self._requested_port)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise BindError(format_bind(self.host, self._requested_port), exc) from exc
        self._runner = runner
        logger.info(
            "HTTP endpoints /healthz and /metrics%s on http://%s/",
            "" if self._site is None else ", the operator's page at /",
            self.address,
        )

    async def stop(self) -> None:
        """Stop listening and close connections; a no-op if not started."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        """The port actually bound (the OS's pick when 0 was asked for)."""
        if self._runner is None or not self._runner.addresses:
            raise RuntimeError("HTTP server is not started")
        return int(self._runner.addresses[0][1])

    @property
    def address(self) -> str:
        """``host:port`` as listened on, for log lines and messages."""
        port = self.port if self._runner is not None else self._requested_port
        return format_bind(self.host, port)

    # ---------------------------------------------------------------- handlers

    async def _handle_healthz(self, request: web.Request) -> web.Response:
        healthy, reason = await self._check_health()
        if healthy != self._last_healthy:
            if healthy:
                logger.info("health: ok")
            else:
                logger.warning("health: unhealthy: %s", reason)
            self._last_healthy = healthy
        return web.Response(
            status=200 if healthy else 503,
            text="ok\n" if healthy else f"unhealthy: {reason}\n",
            content_type="text/plain",
            charset="utf-8",
            headers={"Cache-Control": "no-store"},
        )

    async def _check_health(self) -> tuple[bool, str]:
        timeout = asyncio.timeout(self._health_timeout)
        try:
            async with timeout:
                healthy, reason = await self._health()
        except TimeoutError:
            if not timeout.expired():
                return False, "health check failed: TimeoutError"
            return False, f"health check did not answer within {self._health_timeout:g} s"
        except Exception as exc:  # whatever the check raises means "unhealthy", not a 500
            logger.debug("health check raised", exc_info=True)
            return False, _one_line(f"health check failed: {type(exc).__name__}: {exc}")
        return bool(healthy), _one_line(reason) or "no reason given"

    async def _handle_metrics(self, request: web.Request) -> web.Response:
        # Rendering is synchronous but takes well under a millisecond for our
        # bounded series, so it is not worth a thread.
        body, content_type = self._metrics.render()
        return web.Response(body=body, headers={"Content-Type": content_type})


def _one_line(text: str) -> str:
    """Collapse whitespace so a reason is one line of the response."""
    return " ".join(str(text).split())


async def start_http_server(
    bind: str,
    *,
    metrics: Metrics,
    health: HealthCheck,
    health_timeout: float = HEALTH_TIMEOUT,
    site: OperatorSite | None = None,
) -> HttpServer:
    """Parse ``bind`` (see :func:`parse_bind`), listen, return the running server.

    Raises :class:`ValueError` for a malformed address and :class:`BindError`
    when it cannot be listened on.
    """
    host, port = parse_bind(bind)
    server = HttpServer(
        host, port, metrics=metrics, health=health, health_timeout=health_timeout, site=site
    )
    await server.start()
    return server
