"""Dashboards and alerts name only metrics (and labels) the code really exports."""

from __future__ import annotations

import importlib
import json
import pkgutil
import subprocess
import sys
from typing import Any

import promql_parser as pq
import pytest
from prometheus_client import REGISTRY

import services
from tests.deploy.manifests import DEPLOY, ROOT, of_kind, render

# Labels Prometheus adds at scrape time (target labels and PodMonitor relabelings).
TARGET_LABELS = {"job", "instance", "namespace", "pod", "container", "app", "endpoint"}
# Series Prometheus makes itself, not the code.
SYNTHETIC = {"up"}
IMPORT_ERRORS: list[str] = []


def exported() -> dict[str, tuple[str, ...] | None]:
    """Series name -> label names, for every metric registered once hqx and services import."""
    importlib.import_module("hqx.metrics")
    for mod in pkgutil.walk_packages(services.__path__, "services.", onerror=IMPORT_ERRORS.append):
        if mod.name.rsplit(".", 1)[-1] != "__main__":
            try:
                importlib.import_module(mod.name)
            except Exception as e:
                IMPORT_ERRORS.append(f"{mod.name}: {type(e).__name__}: {e}")
    names = REGISTRY._names_to_collectors  # series name (with _total/_bucket...) -> collector
    out: dict[str, tuple[str, ...] | None] = {}
    for name, collector in names.items():
        labels = getattr(collector, "_labelnames", None)
        out[name] = (
            None if labels is None else (*labels, *(("le",) if name.endswith("_bucket") else ()))
        )
    return out


def selectors(expr: Any) -> list[Any]:
    """Every vector selector of a parsed PromQL expression."""
    if isinstance(expr, pq.VectorSelector):
        return [expr]
    if isinstance(expr, pq.MatrixSelector):
        return [expr.vector_selector]
    if isinstance(expr, pq.BinaryExpr):
        return selectors(expr.lhs) + selectors(expr.rhs)
    if isinstance(expr, pq.Call):
        return [s for a in expr.args for s in selectors(a)]
    if isinstance(expr, pq.AggregateExpr):
        return selectors(expr.expr) + (selectors(expr.param) if expr.param else [])
    if isinstance(expr, pq.ParenExpr | pq.UnaryExpr | pq.SubqueryExpr):
        return selectors(expr.expr)
    return []


def check_query(query: str, metrics: dict[str, tuple[str, ...] | None]) -> list[str]:
    """Problems of one query: unparsable, unknown metric, or a label the metric does not have."""
    try:
        expr = pq.parse(query.replace("$__rate_interval", "5m"))
    except Exception as e:
        return [f"unparsable: {query!r}: {e}"]
    problems = []
    found = selectors(expr)
    if not found:
        problems.append(f"no metric in {query!r}")
    for vs in found:
        if vs.name in SYNTHETIC:
            continue
        if vs.name not in metrics:
            problems.append(
                f"{vs.name} is not exported by the code ({query!r}); import errors: {IMPORT_ERRORS}"
            )
            continue
        labels = metrics[vs.name]
        for m in vs.matchers.matchers:
            if labels is not None and m.name not in (*labels, *TARGET_LABELS):
                problems.append(f"{vs.name} has no label {m.name!r} ({query!r})")
    return problems


def dashboard_queries() -> dict[str, list[str]]:
    out = {}
    for path in sorted((DEPLOY / "dashboards").glob("*.json")):
        board = json.loads(path.read_text())
        out[path.name] = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    return out


def alert_rules() -> list[dict[str, Any]]:
    (rule,) = of_kind(render("overlays/prod"), "PrometheusRule").values()
    return [r for g in rule["spec"]["groups"] for r in g["rules"]]


def test_dashboards_are_generated_from_the_current_code() -> None:
    out = subprocess.run(
        [sys.executable, str(DEPLOY / "dashboards" / "generate.py"), "--check"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert out.returncode == 0, out.stderr


def test_one_dashboard_per_service_and_an_overview() -> None:
    from hqx.subjects import SERVICES

    boards = {p.stem: json.loads(p.read_text()) for p in (DEPLOY / "dashboards").glob("*.json")}
    assert set(boards) == {f"hqx-{s.replace('_', '-')}" for s in SERVICES} | {"hqx-exodus"}
    for name, board in boards.items():
        assert board["uid"] == name
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids))
        assert any(p["type"] == "timeseries" for p in board["panels"])
    overview = json.dumps(boards["hqx-exodus"])
    for metric in (
        "hqx_archives_uploaded_total",
        "hqx_consumer_pending_messages",
        "hqx_follows_made_total",
        "hqx_follows_allowed_per_minute",
    ):
        assert metric in overview


@pytest.mark.parametrize("name", sorted(dashboard_queries()))
def test_every_dashboard_query_names_exported_metrics(name: str) -> None:
    metrics = exported()
    queries = dashboard_queries()[name]
    assert queries
    problems = [p for q in queries for p in check_query(q, metrics)]
    assert not problems, "\n".join(problems)


def test_every_alert_names_exported_metrics_and_has_a_runbook_entry() -> None:
    metrics = exported()
    runbook = (DEPLOY / "README.md").read_text().lower()
    rules = alert_rules()
    assert len(rules) >= 8
    for rule in rules:
        assert not check_query(rule["expr"], metrics), check_query(rule["expr"], metrics)
        anchor = rule["annotations"]["runbook"].split("#", 1)[1]
        assert f"### {anchor}" in runbook, f"deploy/README.md has no '### {rule['alert']}'"
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}


def test_the_cross_check_catches_a_wrong_name_or_label() -> None:
    metrics = exported()
    assert check_query('sum(rate(hqx_follows_made_total{network="bluesky"}[5m]))', metrics) == []
    assert check_query("rate(hqx_follows_madee_total[5m])", metrics)
    assert check_query('rate(hqx_follows_made_total{user_id="u1"}[5m])', metrics)
    assert check_query("sum(rate(hqx_follows_made_total[5m]", metrics)
