"""``plmon serve``'s HTTP side: a thin Starlette adapter over :class:`plmon.monitor.service.daemon.Daemon`.

Routes are wired in one explicit list (:func:`create_app`); the lifespan owns the store, the intake
queue, the daemon's threads and scheduler, and closes them in order on shutdown. Every answer a sender
can provoke is a 2xx or 4xx with a one-line reason; a 5xx only means the daemon itself cannot queue
(503: Event Grid retries later), never bad input.

Authentication: the configured ``server.secret`` in the ``code`` query parameter (how Event Grid
webhook URLs usually carry it) or in an ``X-Plmon-Secret`` / ``aeg-sas-key`` header (delivery
attributes), compared in constant time before the body is read; without it, 401 and nothing is read
or queued. With ``server.entra`` configured, an ``Authorization: Bearer`` Microsoft Entra token is
required too, validated offline against the configured keys (:mod:`plmon.monitor.service.entra`); when both are
configured a delivery needs both, so adding Entra never weakens a deployment that had a secret (Event
Grid sends both: the ``code`` in the endpoint URL and the token). The CloudEvents ``OPTIONS``
handshake is answered without either: it processes nothing, and Event Grid does not send delivery
headers on it.
"""

from __future__ import annotations

import hmac
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import anyio
import h11
import structlog
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from plmon.monitor.config import Config
from plmon.monitor.events.parse import BadEventBody, validation_response
from plmon.monitor.service.daemon import Daemon
from plmon.monitor.service.entra import BadToken, EntraVerifier
from plmon.monitor.service.metrics import CONTENT_TYPE, Metrics
from plmon.monitor.service.runtime import Runtime

__all__ = ["SECRET_HEADERS", "create_app"]

log = structlog.get_logger(__name__)

SECRET_HEADERS = ("x-plmon-secret", "aeg-sas-key")


class _TooLarge(Exception):
    pass


class _AnswerAfterServerGaveUp(Exception):
    pass


class _ClientBrokeFraming:
    """A request whose framing breaks mid-body (bad chunked encoding) is answered by the HTTP server itself
    (400) and the connection closed; the route's own answer then cannot be sent. That is what the client
    sent, not a fault of plmon: one log line with the reason, instead of an "Exception in ASGI application"
    traceback anyone who can reach the port could repeat to flood the log."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def guarded(message: Message) -> None:
            try:
                await send(message)
            except h11.LocalProtocolError as err:
                raise _AnswerAfterServerGaveUp(str(err)) from None

        try:
            await self.app(scope, receive, guarded)
        except _AnswerAfterServerGaveUp as err:
            # Wait (briefly) for the server to notice the closed connection, so that it does not also log
            # an unfinished response as its own error.
            with anyio.move_on_after(2):
                while (await receive())["type"] != "http.disconnect":
                    pass
            log.info("response_not_sent", path=scope.get("path"), reason="the server already answered a "
                     f"malformed request and closed the connection ({err})")


def _error(status: int, reason: str) -> JSONResponse:
    return JSONResponse({"error": reason}, status_code=status)


def _authorised(request: Request, secret: bytes | None) -> bool:
    if secret is None:
        return True
    offered = [request.query_params.get("code")] + [request.headers.get(h) for h in SECRET_HEADERS]
    ok = False
    for value in offered:
        if value is not None:
            # Evaluate every candidate, so timing does not tell which position carried a near match.
            ok |= hmac.compare_digest(value.encode("utf-8", "surrogateescape"), secret)
    return ok


async def _read_limited(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise _TooLarge
        except ValueError:
            pass  # the server rejects a garbled Content-Length itself
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


class _Webhook:
    """``/api/eventgrid``: the CloudEvents handshake, then a delivery's refusals in the order they cost
    nothing (shutting down, shared secret, Entra token) before the body is read, then its intake.

    Each step answers (and counts its status) or passes: a refusal never reads the body or queues anything.
    """

    def __init__(self, config: Config) -> None:
        self.secret = config.server.secret.get_secret_value().encode() if config.server.secret else None
        self.entra = EntraVerifier.from_config(config.server.entra) if config.server.entra else None
        self.limit = config.server.max_body_bytes

    async def handle(self, request: Request) -> Response:
        daemon: Daemon = request.app.state.daemon
        with structlog.contextvars.bound_contextvars(request_id=request.headers.get("aeg-delivery-id")
                                                     or str(uuid.uuid4())):
            if request.method == "OPTIONS":
                return _handshake(request, daemon.metrics)
            refused = self._refusal(request, daemon.metrics)
            if refused is not None:
                return refused
            body = await self._body(request, daemon.metrics)
            if isinstance(body, Response):
                return body
            return await _intake(daemon, body, request.headers.get("content-type"))

    def _refusal(self, request: Request, metrics: Metrics) -> Response | None:
        """The answer to a delivery refused before its body is read, or None to read it."""
        if request.app.state.stopping:
            metrics.requests.labels("503").inc()
            return _error(503, "shutting down; retry later")
        if not _authorised(request, self.secret):
            metrics.requests.labels("401").inc()
            log.warning("webhook_unauthorised", client=request.client.host if request.client else None)
            return _error(401, "missing or wrong shared secret (query parameter 'code' or X-Plmon-Secret)")
        if self.entra is not None:
            try:
                self.entra.verify(request.headers.get("authorization"))
            except BadToken as err:
                metrics.requests.labels("401").inc()
                log.warning("webhook_unauthorised", reason=err.reason,
                            client=request.client.host if request.client else None)
                response = _error(401, err.reason)
                response.headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
                return response
        return None

    async def _body(self, request: Request, metrics: Metrics) -> bytes | Response:
        """The body, at most ``server.max_body_bytes``; or the answer to one too large or cut short."""
        try:
            return await _read_limited(request, self.limit)
        except _TooLarge:
            metrics.requests.labels("413").inc()
            return _error(413, f"body larger than server.max_body_bytes ({self.limit} bytes)")
        except ClientDisconnect:
            metrics.requests.labels("400").inc()
            return _error(400, "client disconnected before the body was complete")


def _handshake(request: Request, metrics: Metrics) -> Response:
    """The CloudEvents webhook validation (``OPTIONS``): it processes nothing, so it needs no secret."""
    origin = request.headers.get("webhook-request-origin")
    if not origin:
        metrics.requests.labels("400").inc()
        return _error(400, "OPTIONS needs a WebHook-Request-Origin header (CloudEvents handshake)")
    metrics.requests.labels("200").inc()
    return Response(status_code=200, headers={"WebHook-Allowed-Origin": origin,
                                              "WebHook-Allowed-Rate": "*", "Allow": "POST, OPTIONS"})


async def _intake(daemon: Daemon, body: bytes, content_type: str | None) -> Response:
    """Queue an authorised delivery's events: 400 for a body that is not events, 503 when the daemon cannot
    queue (Event Grid retries), otherwise 200 with the counts or the subscription validation answer."""
    metrics = daemon.metrics
    try:
        accepted = await run_in_threadpool(daemon.accept, body, content_type)
    except BadEventBody as err:
        metrics.requests.labels("400").inc()
        log.info("webhook_bad_body", reason=err.reason)
        return _error(400, err.reason)
    except Exception:
        metrics.requests.labels("503").inc()
        log.exception("webhook_intake_failed")
        return _error(503, "could not queue the events; retry later")
    metrics.requests.labels("200").inc()
    if accepted.validation_code is not None:
        log.info("subscription_validated")
        return JSONResponse(validation_response(accepted.validation_code))
    log.debug("webhook_accepted", received=accepted.received, queued=accepted.queued.accepted,
             duplicates=accepted.queued.duplicates, rejected=accepted.rejected)
    return JSONResponse({"received": accepted.received, "queued": accepted.queued.accepted,
                         "duplicates": accepted.queued.duplicates, "rejected": accepted.rejected})


async def _healthz(_: Request) -> Response:
    return PlainTextResponse("ok")


async def _metrics(request: Request) -> Response:
    daemon: Daemon = request.app.state.daemon
    return Response(daemon.metrics.render(), media_type=CONTENT_TYPE)


def _lifespan(make_daemon: Callable[[], Daemon], collect_at_start: bool,
              flush_timeout: float) -> Callable[[Starlette], AbstractAsyncContextManager[dict[str, Any]]]:
    """Startup opens the daemon (store, queue) and starts its runtime; shutdown refuses new deliveries
    first, then stops the runtime (flushing up to ``flush_timeout``), then closes the queue and the store."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        daemon = await run_in_threadpool(make_daemon)
        runtime = Runtime(daemon, collect_at_start=collect_at_start)
        app.state.daemon, app.state.runtime, app.state.stopping = daemon, runtime, False
        runtime.start()
        try:
            yield {}
        finally:
            app.state.stopping = True
            await run_in_threadpool(runtime.stop, flush_timeout)
            await run_in_threadpool(daemon.intake.close)
            await run_in_threadpool(daemon.store.close)
            if daemon.scale is not None:
                await run_in_threadpool(daemon.scale.close)
    return lifespan


def create_app(config: Config, make_daemon: Callable[[], Daemon], *, collect_at_start: bool = True,
               flush_timeout: float = 10.0) -> Starlette:
    """The ASGI app. ``make_daemon`` opens the store and queue at startup (inside the lifespan)."""
    max_age = 2 * config.schedule.full_collection.total_seconds() + 60

    async def readyz(request: Request) -> Response:
        daemon: Daemon = request.app.state.daemon
        ok, detail = await run_in_threadpool(daemon.readiness, max_age)
        detail["ready"] = ok
        return JSONResponse(detail, status_code=200 if ok else 503)

    routes = [
        Route("/api/eventgrid", _Webhook(config).handle, methods=["POST", "OPTIONS"]),
        Route("/healthz", _healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", _metrics, methods=["GET"]),
    ]
    return Starlette(routes=routes, lifespan=_lifespan(make_daemon, collect_at_start, flush_timeout),
                     middleware=[Middleware(_ClientBrokeFraming)])
