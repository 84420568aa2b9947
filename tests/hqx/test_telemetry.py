"""Tracing: the OTEL_* switch, W3C context in NATS headers, one upload = one trace everywhere.

The chain runs real `Service`s on a real JetStream with each service's real consumer spec; the
handlers are small stand-ins that publish what the real service publishes next (gateway →
ingest → matcher → bluesky/mastodon adapters → matcher → purger).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from opentelemetry import context, trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from hqx import subjects, telemetry
from hqx.consumer import Delivery
from hqx.messages import (
    ArchiveUnpacked,
    ArchiveUploaded,
    DataPurged,
    FollowDone,
    FollowRequested,
    FollowResult,
    FollowState,
    FollowTarget,
    GraphIngested,
    MigrationCompleted,
)
from hqx.outcomes import Done, Outcome
from hqx.service import Service
from hqx.settings import ServiceSettings
from hqx.subjects import Network
from tests.eventually import eventually

X_ID = "1234567890123456789"
TARGET = FollowTarget(x_account_id="42", account="did:plc:abcdefghijklmnop")


@pytest.fixture(scope="module")
def exporter() -> Iterator[InMemorySpanExporter]:
    """An in-memory exporter on the process's (one and only) SDK tracer provider."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    mem = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(mem))
    yield mem
    mem.shutdown()


def spec(service: str) -> subjects.ConsumerSpec:
    return subjects.CONSUMERS_BY_SERVICE[service][0]


@pytest.fixture
async def chain(settings: ServiceSettings) -> AsyncIterator[dict[str, Service]]:
    svcs = {
        n: Service(n, settings, uses_db=False, uses_redis=False)
        for n in ("gateway", *subjects.CONSUMERS_BY_SERVICE)
    }
    done_networks: set[Network] = set()

    async def ingest(msg: ArchiveUploaded, _: Delivery) -> Outcome:
        u = msg.user_id
        await svcs["ingest"].publish(
            subjects.graph_ingested(u),
            GraphIngested(
                user_id=u,
                owner_x_account_id=X_ID,
                following_count=1,
                follower_count=0,
                graph_version=1,
            ),
        )
        await svcs["ingest"].publish(
            subjects.archive_unpacked(u), ArchiveUnpacked(user_id=u, object_name=msg.object_name)
        )
        return Done()

    async def matcher(msg: GraphIngested | FollowDone, _: Delivery) -> Outcome:
        if isinstance(msg, GraphIngested):
            for net in Network:
                cmd = FollowRequested(user_id=msg.user_id, network=net, targets=(TARGET,))
                await svcs["matcher"].publish(
                    subjects.follow_requested(net, msg.user_id), cmd, msg_id=cmd.msg_id()
                )
        else:
            done_networks.add(msg.network)
            if done_networks == set(Network):
                await svcs["matcher"].publish(
                    subjects.migration_completed(msg.user_id),
                    MigrationCompleted(user_id=msg.user_id),
                )
        return Done()

    def adapter(name: str):
        async def handle(msg: FollowRequested, _: Delivery) -> Outcome:
            with telemetry.client_span(name, "applyWrites", network=msg.network.value):
                pass  # the network call of the real adapter
            result = FollowResult(
                x_account_id=TARGET.x_account_id, account=TARGET.account, state=FollowState.DONE
            )
            await svcs[name].publish(
                subjects.follow_done(msg.network, msg.user_id),
                FollowDone(user_id=msg.user_id, network=msg.network, results=(result,)),
            )
            return Done()

        return handle

    async def purger(
        msg: ArchiveUnpacked | MigrationCompleted | FollowDone, _: Delivery
    ) -> Outcome:
        if isinstance(msg, FollowDone):
            return Done()  # the real purger projects the follow ledger here
        trigger = "archive_unpacked" if isinstance(msg, ArchiveUnpacked) else "migration_completed"
        await svcs["purger"].publish(
            subjects.data_purged(msg.user_id),
            DataPurged(user_id=msg.user_id, kinds={"graph_edges": 1}, trigger=trigger),
        )
        return Done()

    svcs["ingest"].consume(spec("ingest"), (ArchiveUploaded,), ingest)
    svcs["matcher"].consume(spec("matcher"), (GraphIngested, FollowDone), matcher)
    svcs["bluesky_adapter"].consume(
        spec("bluesky_adapter"), (FollowRequested,), adapter("bluesky_adapter")
    )
    svcs["mastodon_adapter"].consume(
        spec("mastodon_adapter"), (FollowRequested,), adapter("mastodon_adapter")
    )
    for purger_spec in subjects.CONSUMERS_BY_SERVICE["purger"]:  # lifecycle and follow-done
        svcs["purger"].consume(
            purger_spec, (ArchiveUnpacked, MigrationCompleted, FollowDone), purger
        )
    for s in svcs.values():
        await s.start()
    yield svcs
    for s in svcs.values():
        await s.stop()


async def test_one_upload_is_one_trace_through_every_service(
    chain: dict[str, Service], exporter: InMemorySpanExporter, user_id: str
) -> None:
    exporter.clear()
    with telemetry.server_span("gateway", "POST /api/uploads") as root:
        await chain["gateway"].publish(
            subjects.archive_uploaded(user_id),
            ArchiveUploaded(user_id=user_id, object_name="a.zip", size=1),
        )
    trace_id = root.get_span_context().trace_id

    def purge_spans() -> list:
        return [
            s
            for s in exporter.get_finished_spans()
            if s.kind == SpanKind.PRODUCER and s.attributes.get(telemetry.SERVICE_ATTR) == "purger"
        ]

    await eventually(lambda: len(purge_spans()) == 2, timeout=30)
    spans = [s for s in exporter.get_finished_spans() if s.context.trace_id == trace_id]
    assert len({s.context.trace_id for s in purge_spans()}) == 1
    assert purge_spans()[0].context.trace_id == trace_id
    services = {s.attributes[telemetry.SERVICE_ATTR] for s in spans}
    assert services == set(subjects.SERVICES)
    consumers = {
        s.attributes["messaging.consumer.group.name"] for s in spans if s.kind == SpanKind.CONSUMER
    }
    # every durable but the late joiners' lanes, which another person's upload feeds
    late = {c.durable for c in subjects.CONSUMERS if ".follow.reconnect." in c.filter_subjects[0]}
    assert consumers == {c.durable for c in subjects.CONSUMERS} - late
    # Every consumer span's parent is a producer span of the same trace; no user id in names.
    by_id = {s.context.span_id: s for s in spans}
    for s in spans:
        assert user_id not in s.name
        if s.kind == SpanKind.CONSUMER:
            assert by_id[s.parent.span_id].kind == SpanKind.PRODUCER
            assert s.attributes[telemetry.OUTCOME_ATTR] == "Done"
    assert {s.name for s in spans if s.kind == SpanKind.CLIENT} == {"applyWrites"}
    # Each service serves its metrics on its own health port (what the PodMonitor scrapes).
    async with httpx.AsyncClient() as client:
        for name, svc in chain.items():
            base = f"http://127.0.0.1:{svc.health_port}"
            assert (await client.get(f"{base}/readyz")).status_code == 200
            text = (await client.get(f"{base}/metrics")).text
            for spec in subjects.CONSUMERS_BY_SERVICE.get(name, ()):
                sample = (
                    f'hqx_messages_consumed_total{{durable="{spec.durable}",'
                    f'outcome="done",service="{name}"}}'
                )
                assert sample in text


def test_context_survives_a_hop_that_does_not_record() -> None:
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    ctx = telemetry.extract({"traceparent": parent})
    token = context.attach(ctx)
    try:
        headers = telemetry.inject({"Nats-Msg-Id": "m1"})
    finally:
        context.detach(token)
    assert headers["Nats-Msg-Id"] == "m1"
    assert headers["traceparent"].split("-")[1] == "0af7651916cd43dd8448eb211c80319c"


@pytest.mark.parametrize(
    ("env", "on"),
    [
        ({}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
        ({"OTEL_TRACES_EXPORTER": "console"}, True),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, False),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}, False),
    ],
)
def test_tracing_is_off_unless_the_standard_variables_ask(env: dict[str, str], on: bool) -> None:
    assert telemetry.enabled(env) is on
    if not on:
        assert telemetry.setup("ingest", env) is None


def test_standard_variables_configure_the_exporter_in_a_fresh_process() -> None:
    code = (
        "from hqx import telemetry\n"
        "assert telemetry.setup('bluesky_adapter') is not None\n"
        "assert telemetry.setup('other') is telemetry._provider\n"
        "with telemetry.client_span('bluesky_adapter', 'applyWrites'):\n"
        "    pass\n"
        "telemetry.flush()\n"
    )
    env = {**os.environ, "OTEL_TRACES_EXPORTER": "console", "OTEL_RESOURCE_ATTRIBUTES": "a=b"}
    env.pop("OTEL_SERVICE_NAME", None)
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert '"name": "applyWrites"' in out.stdout
    assert '"service.name": "hqx-bluesky-adapter"' in out.stdout
    assert '"a": "b"' in out.stdout


async def test_http_middleware_opens_a_root_span_and_counts_by_route(
    exporter: InMemorySpanExporter,
) -> None:
    from prometheus_client import REGISTRY
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def thing(request):  # type: ignore[no-untyped-def]
        if request.path_params["tid"] == "boom":
            return PlainTextResponse("no", status_code=503)
        return PlainTextResponse("ok")

    app = telemetry.HttpTelemetry(Starlette(routes=[Route("/api/things/{tid}", thing)]))
    route = "/api/things/{tid}"

    def count(status: str) -> float:
        labels = {"route": route, "method": "GET", "status": status}
        return REGISTRY.get_sample_value("hqx_http_requests_total", labels) or 0.0

    before_ok, before_err = count("200"), count("503")
    exporter.clear()
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://gw"
    ) as client:
        assert (await client.get("/api/things/u123", headers={"traceparent": parent})).text == "ok"
        assert (await client.get("/api/things/boom")).status_code == 503
        assert (await client.get("/nowhere")).status_code == 404
    assert (count("200"), count("503")) == (before_ok + 1, before_err + 1)
    spans = [s for s in exporter.get_finished_spans() if s.kind == SpanKind.SERVER]
    assert [s.name for s in spans] == [f"GET {route}", f"GET {route}", "GET unmatched"]
    assert all("u123" not in s.name for s in spans)
    # The edge starts its own trace: a client's traceparent does not choose our trace ids.
    assert spans[0].parent is None
    assert f"{spans[0].context.trace_id:032x}" != parent.split("-")[1]
    assert spans[1].attributes["http.response.status_code"] == 503


def test_calls_to_networks_get_client_spans_without_their_query() -> None:
    code = (
        "import http.server, threading, asyncio, httpx, requests\n"
        "from hqx import telemetry\n"
        "class H(http.server.BaseHTTPRequestHandler):\n"
        "    def do_GET(self):\n"
        "        self.send_response(200); self.end_headers(); self.wfile.write(b'ok')\n"
        "    def log_message(self, *a): pass\n"
        "srv = http.server.HTTPServer(('127.0.0.1', 0), H)\n"
        "threading.Thread(target=srv.serve_forever, daemon=True).start()\n"
        "base = f'http://127.0.0.1:{srv.server_port}'\n"
        "telemetry.setup('mastodon_adapter')\n"
        "requests.get(base + '/api/v2/search?q=%40someone%40example.org&resolve=true')\n"
        "async def main():\n"
        "    async with httpx.AsyncClient() as c:\n"
        "        await c.get(base + '/xrpc/com.atproto.repo.listRecords?repo=did:plc:x')\n"
        "asyncio.run(main())\n"
        "telemetry.flush()\n"
        "srv.shutdown()\n"
    )
    env = {**os.environ, "OTEL_TRACES_EXPORTER": "console"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.count('"kind": "SpanKind.CLIENT"') == 2
    assert "/api/v2/search" in out.stdout and "/xrpc/com.atproto.repo.listRecords" in out.stdout
    assert "someone" not in out.stdout and "did:plc:x" not in out.stdout
