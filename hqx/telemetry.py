"""OpenTelemetry: SDK set up from the standard `OTEL_*` variables, W3C context in NATS headers.

Tracing is off unless `OTEL_TRACES_EXPORTER` (other than `none`) or an OTLP endpoint
(`OTEL_EXPORTER_OTLP_ENDPOINT` / `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, or
`OTEL_SDK_DISABLED=true` turns it off. Even when off, `inject`/`extract` still carry an upstream
`traceparent` through a service, so a trace survives a hop that does not record.

One upload is one trace: `Service.publish` opens a PRODUCER span and injects its context into the
message headers; the consumer wrapper extracts it and runs the handler inside a CONSUMER span, so
whatever the handler publishes is a child of the message it handles.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, MutableMapping
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from hqx import metrics

log = logging.getLogger(__name__)
_tracer = trace.get_tracer("hqx")
_provider: Any | None = None  # the provider `setup` installed (once per process)

# Span attribute naming the hqx service that made the span (one process can run several in tests;
# in a cluster the resource's `service.name` says the same).
SERVICE_ATTR = "hqx.service"
OUTCOME_ATTR = "hqx.outcome"


def enabled(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the standard variables ask for traces to be exported."""
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter:
        return exporter != "none"
    return bool(
        env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def setup(service: str, environ: Mapping[str, str] | None = None) -> Any | None:
    """Install a TracerProvider exporting as the `OTEL_*` variables say; None when tracing is off.

    Idempotent: the first call of the process wins (several services may share one process).

    The OTLP exporter reads its own variables (endpoint, headers, timeout, protocol http/protobuf);
    `OTEL_TRACES_EXPORTER` may list `otlp` and/or `console`. Sampling follows
    `OTEL_TRACES_SAMPLER` (the SDK default: parent-based, always on).
    """
    global _provider
    env = os.environ if environ is None else environ
    if _provider is not None or not enabled(env):
        return _provider
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    resource = Resource.create(
        {
            "service.name": env.get("OTEL_SERVICE_NAME") or f"hqx-{service.replace('_', '-')}",
            "service.namespace": "hqx",
        }
    )
    provider = TracerProvider(resource=resource)
    names = [n.strip() for n in env.get("OTEL_TRACES_EXPORTER", "otlp").split(",") if n.strip()]
    for name in names:
        if name == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        elif name == "console":
            provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
        else:
            log.warning("unknown traces exporter ignored", extra={"exporter": name})
    trace.set_tracer_provider(provider)
    _provider = provider
    _instrument_http_clients()
    log.info("tracing on", extra={"exporters": ",".join(names)})
    return provider


def _scrub_url(span: Span, url: Any) -> None:
    """Keep a URL's query out of spans: it can name people (`/api/v2/search?q=@someone`)."""
    attributes = getattr(span, "attributes", None) or {}
    for key in ("url.full", "http.url"):
        if key in attributes:
            span.set_attribute(key, str(url).split("?", 1)[0].split("#", 1)[0])


def _instrument_http_clients() -> None:
    """CLIENT spans around every call to a network (httpx: atproto, OAuth; requests: Mastodon.py).

    They carry `traceparent` to the peer too, as W3C intends: random ids, no user data.
    """
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.requests import RequestsInstrumentor

    async def async_scrub(span: Span, request: Any) -> None:
        _scrub_url(span, request[1])

    HTTPXClientInstrumentor().instrument(
        request_hook=lambda span, request: _scrub_url(span, request[1]),
        async_request_hook=async_scrub,
    )
    RequestsInstrumentor().instrument(
        request_hook=lambda span, request: _scrub_url(span, request.url)
    )


def flush(timeout_s: float = 5.0) -> None:
    """Export spans still buffered (a stopping service; the provider stays usable)."""
    provider = trace.get_tracer_provider()
    force_flush = getattr(provider, "force_flush", None)
    if force_flush is not None:
        with contextlib.suppress(Exception):
            force_flush(int(timeout_s * 1000))


# --- context in NATS headers -------------------------------------------------------------------


def inject(headers: Mapping[str, str] | None = None) -> dict[str, str]:
    """`headers` plus the current W3C trace context (`traceparent`, `tracestate`)."""
    carrier = dict(headers or {})
    propagate.inject(carrier)
    return carrier


def extract(headers: Mapping[str, str] | None) -> Context:
    """The trace context a message carried (an empty context when it carried none)."""
    return propagate.extract(dict(headers or {}))


def _subject_name(subject: str) -> str:
    # NOTE: the last token is the user id: keep it out of span names (they are aggregated).
    return subject.rsplit(".", 1)[0] if subject.count(".") >= 3 else subject


@contextlib.contextmanager
def publish_span(service: str, subject: str) -> Iterator[Span]:
    """PRODUCER span around one publish; inject inside it so consumers become its children."""
    name = _subject_name(subject)
    with _tracer.start_as_current_span(
        f"{name} publish",
        kind=SpanKind.PRODUCER,
        attributes={
            SERVICE_ATTR: service,
            "messaging.system": "nats",
            "messaging.operation.type": "send",
            "messaging.destination.name": name,
        },
    ) as span:
        yield span


@contextlib.contextmanager
def consume_span(
    service: str, durable: str, subject: str, headers: Mapping[str, str] | None
) -> Iterator[Span]:
    """CONSUMER span around one handler call, child of the publisher's span."""
    with _tracer.start_as_current_span(
        f"{durable} process",
        context=extract(headers),
        kind=SpanKind.CONSUMER,
        attributes={
            SERVICE_ATTR: service,
            "messaging.system": "nats",
            "messaging.operation.type": "process",
            "messaging.destination.name": _subject_name(subject),
            "messaging.consumer.group.name": durable,
        },
    ) as span:
        yield span


@contextlib.contextmanager
def client_span(service: str, name: str, **attributes: str | int | bool) -> Iterator[Span]:
    """CLIENT span around one network call (PDS `applyWrites`, Mastodon follow, ...)."""
    with _tracer.start_as_current_span(
        name, kind=SpanKind.CLIENT, attributes={SERVICE_ATTR: service, **attributes}
    ) as span:
        yield span


@contextlib.contextmanager
def server_span(service: str, name: str, **attributes: str | int | bool) -> Iterator[Span]:
    """SERVER span for an incoming request (the gateway's routes), a trace's usual root."""
    with _tracer.start_as_current_span(
        name, kind=SpanKind.SERVER, attributes={SERVICE_ATTR: service, **attributes}
    ) as span:
        yield span


# --- HTTP (the gateway) --------------------------------------------------------------------------

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}


def _route(scope: Scope) -> str:
    """The matched route's template (`/api/uploads/{upload_id}`), never the raw path."""
    route = scope.get("route")
    path = getattr(route, "path_format", None) or getattr(route, "path", None)
    return str(path) if path else "unmatched"


class HttpTelemetry:
    """ASGI middleware: one SERVER span per request (the root of an upload's trace) and the
    `hqx_http_requests_total` / `hqx_http_request_seconds` metrics, by route template.

    `trust_incoming`: continue a `traceparent` the client sent. Off by default: the gateway is
    the edge, and a browser's header must not choose our trace ids.
    """

    def __init__(self, app: ASGIApp, service: str = "gateway", trust_incoming: bool = False):
        self.app = app
        self.service = service
        self.trust_incoming = trust_incoming

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope["method"] if scope["method"] in _METHODS else "OTHER"
        parent = None
        if self.trust_incoming:
            parent = extract(
                {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
            )
        status = 500
        started = time.perf_counter()
        with _tracer.start_as_current_span(
            method,
            context=parent,
            kind=SpanKind.SERVER,
            attributes={SERVICE_ATTR: self.service, "http.request.method": method},
        ) as span:

            async def send_status(message: MutableMapping[str, Any]) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = int(message["status"])
                    # NOTE: latency is time to first byte, so an SSE stream counts its start,
                    # not its whole life.
                    metrics.HTTP_REQUEST_SECONDS.labels(_route(scope), method).observe(
                        time.perf_counter() - started
                    )
                await send(message)

            try:
                await self.app(scope, receive, send_status)
            finally:
                route = _route(scope)
                span.update_name(f"{method} {route}")
                span.set_attribute("http.route", route)
                span.set_attribute("http.response.status_code", status)
                if status >= 500:
                    span.set_status(Status(StatusCode.ERROR))
                metrics.HTTP_REQUESTS.labels(route, method, str(status)).inc()
