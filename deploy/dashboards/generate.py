"""Grafana dashboards generated from code: one per service plus the exodus-day overview.

Every query is built from a metric object of `hqx/metrics.py` (its real name and type) and every
durable from `hqx/subjects.py`, so a renamed metric or consumer fails here, not on a blank panel.
`python deploy/dashboards/generate.py` writes `deploy/dashboards/*.json`; `--check` exits 1 when
a committed file differs from what the code generates (tests/deploy runs it).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from prometheus_client import Counter, Gauge, Histogram  # noqa: E402

from hqx import metrics as m  # noqa: E402
from hqx.subjects import CONSUMERS_BY_SERVICE, SERVICES, Network  # noqa: E402

OUT = Path(__file__).resolve().parent
DS = {"type": "prometheus", "uid": "${datasource}"}
WINDOW = "$__rate_interval"


# --- PromQL built from metric objects --------------------------------------------------------


def _sel(metric: Counter | Gauge | Histogram, suffix: str = "", **labels: str) -> str:
    name = metric._name + suffix
    if isinstance(metric, Counter):
        name = metric._name + "_total"
    matchers = ",".join(
        f'{k}=~"{v[1:]}"' if v.startswith("~") else f'{k}="{v}"' for k, v in labels.items()
    )
    return f"{name}{{{matchers}}}" if matchers else name


def rate(metric: Counter, by: str = "", per: str = "s", **labels: str) -> str:
    scale = " * 60" if per == "min" else ""
    grouping = f" by ({by})" if by else ""
    return f"sum{grouping} (rate({_sel(metric, **labels)}[{WINDOW}])){scale}"


def gauge(metric: Gauge, by: str = "", agg: str = "sum", **labels: str) -> str:
    grouping = f" by ({by})" if by else ""
    return f"{agg}{grouping} ({_sel(metric, **labels)})"


def quantile(metric: Histogram, q: float, by: str = "", **labels: str) -> str:
    grouping = ",".join(x for x in ("le", by) if x)
    inner = f"sum by ({grouping}) (rate({_sel(metric, '_bucket', **labels)}[{WINDOW}]))"
    return f"histogram_quantile({q}, {inner})"


# --- Grafana JSON model --------------------------------------------------------------------------


class Board:
    """Panels laid out two per row, 12 columns wide each."""

    def __init__(self, uid: str, title: str, description: str, tags: list[str]) -> None:
        self.uid, self.title, self.description, self.tags = uid, title, description, tags
        self.panels: list[dict[str, Any]] = []
        self._y = 0
        self._col = 0

    def row(self, title: str) -> None:
        if self._col:
            self._y += 8
            self._col = 0
        self.panels.append(
            {
                "id": len(self.panels) + 1,
                "type": "row",
                "title": title,
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": self._y},
                "panels": [],
            }
        )
        self._y += 1

    def panel(
        self, title: str, targets: list[tuple[str, str]], *, unit: str = "short", desc: str = ""
    ) -> None:
        self.panels.append(
            {
                "id": len(self.panels) + 1,
                "type": "timeseries",
                "title": title,
                "description": desc,
                "datasource": DS,
                "gridPos": {"h": 8, "w": 12, "x": self._col * 12, "y": self._y},
                "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
                "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
                "targets": [
                    {"refId": chr(ord("A") + i), "datasource": DS, "expr": e, "legendFormat": lg}
                    for i, (e, lg) in enumerate(targets)
                ],
            }
        )
        self._col = (self._col + 1) % 2
        if self._col == 0:
            self._y += 8

    def to_json(self) -> dict[str, Any]:
        return {
            "uid": self.uid,
            "title": self.title,
            "description": self.description,
            "tags": ["helloquittex", *self.tags],
            "editable": False,
            "schemaVersion": 39,
            "version": 1,
            "time": {"from": "now-6h", "to": "now"},
            "refresh": "30s",
            "timezone": "utc",
            "templating": {
                "list": [
                    {
                        "name": "datasource",
                        "label": "Prometheus",
                        "type": "datasource",
                        "query": "prometheus",
                        "current": {},
                        "hide": 0,
                    }
                ]
            },
            "annotations": {"list": []},
            "panels": self.panels,
        }


# --- dashboards ---------------------------------------------------------------------------------


def _kebab(service: str) -> str:
    return service.replace("_", "-")


def consumer_rows(b: Board, service: str) -> None:
    """The golden signals of a bus consumer: traffic, errors, latency, saturation (lag)."""
    durables = "|".join(c.durable for c in CONSUMERS_BY_SERVICE.get(service, ()))
    if not durables:
        return
    sv = {"service": service, "durable": f"~{durables}"}
    b.row("Bus consumer: traffic, errors, latency, lag")
    b.panel(
        "Messages handled / s by outcome",
        [(rate(m.MESSAGES_CONSUMED, "outcome", **sv), "{{outcome}}")],
        unit="ops",
        desc="done / skipped / retry_later / failed / dead_lettered, per hqx.consumer.",
    )
    b.panel(
        "Failures and dead letters / s",
        [
            (rate(m.MESSAGES_CONSUMED, "durable", outcome="failed", **sv), "failed {{durable}}"),
            (rate(m.MESSAGES_DEAD_LETTERED, "reason", service=service), "DLQ {{reason}}"),
        ],
        unit="ops",
        desc="Any sustained dead-letter rate is a bug signal (alert HqxDeadLetters).",
    )
    b.panel(
        "Handler latency",
        [
            (quantile(m.HANDLER_SECONDS, q, "durable", **sv), f"p{int(q * 100)} {{{{durable}}}}")
            for q in (0.5, 0.95, 0.99)
        ],
        unit="s",
    )
    b.panel(
        "Consumer lag (pending) and in flight (ack pending)",
        [
            (gauge(m.CONSUMER_PENDING, "durable", "max", **sv), "pending {{durable}}"),
            (gauge(m.CONSUMER_ACK_PENDING, "durable", "max", **sv), "ack pending {{durable}}"),
        ],
        desc="What KEDA scales on (components/keda).",
    )


def process_rows(b: Board, service: str) -> None:
    app = f'app="{_kebab(service)}"'  # the pod label PodMonitor copies (components/monitoring)
    b.row("Process and dependencies")
    b.panel(
        "Dependencies reachable (readiness)",
        [(gauge(m.DEPENDENCY_UP, "dependency", "min", service=service), "{{dependency}}")],
    )
    b.panel(
        "CPU and memory per pod",
        [
            (f"rate(process_cpu_seconds_total{{{app}}}[{WINDOW}])", "cpu {{pod}}"),
            (f"process_resident_memory_bytes{{{app}}} / 2^20", "MiB {{pod}}"),
        ],
    )


def follows_rows(b: Board, network: str) -> None:
    net = {"network": network}
    b.row(f"Follows on {network}")
    b.panel(
        "Follows / min: made vs allowed",
        [
            (rate(m.FOLLOWS_MADE, per="min", **net), "made"),
            (gauge(m.FOLLOWS_ALLOWED_PER_MINUTE, **net), "allowed by budgets"),
        ],
    )
    b.panel(
        "Skipped and failed / min by reason",
        [
            (rate(m.FOLLOWS_SKIPPED, "reason", per="min", **net), "skipped {{reason}}"),
            (rate(m.FOLLOWS_FAILED, "reason", per="min", **net), "failed {{reason}}"),
        ],
    )
    b.panel(
        "Batches deferred / min and budget waits",
        [
            (rate(m.FOLLOWS_DEFERRED, "reason", per="min", **net), "deferred {{reason}}"),
            (rate(m.BUDGET_WAITS, "budget", per="min", **net), "budget {{budget}}"),
        ],
    )
    b.panel(
        "Wait asked by budgets (s per s)",
        [(rate(m.BUDGET_WAIT_SECONDS, "budget", **net), "{{budget}}")],
        desc="Seconds of nak delay asked per second: how far behind the budgets run.",
    )
    b.panel(
        "Requests to the network / s by outcome",
        [(rate(m.NETWORK_REQUESTS, "outcome", **net), "{{outcome}}")],
        unit="reqps",
    )
    b.panel(
        "Network request latency",
        [(quantile(m.NETWORK_REQUEST_SECONDS, q, **net), f"p{int(q * 100)}") for q in (0.5, 0.99)],
        unit="s",
    )


def service_board(service: str) -> Board:
    kebab = _kebab(service)
    b = Board(f"hqx-{kebab}", f"HelloQuitteX / {kebab}", f"Golden signals of {kebab}.", [kebab])
    if service == "gateway":
        b.row("HTTP")
        b.panel(
            "Requests / s by status",
            [(rate(m.HTTP_REQUESTS, "status"), "{{status}}")],
            unit="reqps",
        )
        b.panel(
            "Latency by route (p95)",
            [(quantile(m.HTTP_REQUEST_SECONDS, 0.95, "route"), "{{route}}")],
            unit="s",
        )
        b.panel(
            "Uploads / min and open progress streams",
            [
                (rate(m.ARCHIVES_UPLOADED, "slimmed", per="min"), "uploads slimmed={{slimmed}}"),
                (gauge(m.SSE_STREAMS_OPEN), "SSE streams open"),
            ],
        )
        b.panel(
            "Business events / min",
            [(rate(m.GATEWAY_EVENTS, "event, detail", per="min"), "{{event}} {{detail}}")],
        )
    consumer_rows(b, service)
    if service == "ingest":
        b.row("Archives")
        b.panel(
            "Archive bytes read and inflated / s",
            [
                (rate(m.ARCHIVE_BYTES_READ), "read (compressed)"),
                (rate(m.ARCHIVE_BYTES_INFLATED), "inflated"),
            ],
            unit="Bps",
        )
        b.panel(
            "Records parsed / s by kind",
            [(rate(m.ARCHIVE_RECORDS_PARSED, "kind"), "{{kind}}")],
        )
        b.panel(
            "Archives processed / min by outcome",
            [(rate(m.ARCHIVES_PROCESSED, "outcome, reason", per="min"), "{{outcome}} {{reason}}")],
        )
    if service == "matcher":
        b.row("Matching")
        b.panel(
            "Follows planned / min by network and origin",
            [(rate(m.FOLLOWS_PLANNED, "network, origin", per="min"), "{{network}} {{origin}}")],
        )
        b.panel(
            "Follow batches published / min",
            [(rate(m.FOLLOW_BATCHES_PUBLISHED, "network", per="min"), "{{network}}")],
        )
        b.panel(
            "Directory changes and quarantined claims / min",
            [
                (rate(m.DIRECTORY_CHANGES, "network, change", per="min"), "{{network}} {{change}}"),
                (rate(m.DIRECTORY_QUARANTINED, "network, reason", per="min"), "quarantined"),
            ],
        )
    for network in Network:
        if service == f"{network.value}_adapter":
            follows_rows(b, network.value)
    if service == "purger":
        b.row("Purges")
        b.panel(
            "Items purged / min by trigger and kind",
            [(rate(m.DATA_PURGED, "trigger, kind", per="min"), "{{trigger}} {{kind}}")],
        )
        b.panel(
            "Oldest raw archive age and migrations completed / min",
            [
                (gauge(m.ARCHIVE_OLDEST_AGE_SECONDS, agg="max"), "oldest archive (s)"),
                (rate(m.MIGRATIONS_COMPLETED, per="min"), "migrations completed / min"),
            ],
        )
    process_rows(b, service)
    return b


def overview() -> Board:
    b = Board(
        "hqx-exodus",
        "HelloQuitteX / exodus-day overview",
        "Uploads, lag of each stage, follows per network against what the budgets allow.",
        ["overview"],
    )
    b.row("Flow")
    b.panel("Uploads / min", [(rate(m.ARCHIVES_UPLOADED, per="min"), "uploads")])
    b.panel(
        "Lag per stage (pending messages)",
        [(gauge(m.CONSUMER_PENDING, "durable", "max"), "{{durable}}")],
    )
    b.panel(
        "Archives ingested / min by outcome",
        [(rate(m.ARCHIVES_PROCESSED, "outcome", per="min"), "{{outcome}}")],
    )
    b.panel(
        "Follows planned / min by network",
        [(rate(m.FOLLOWS_PLANNED, "network", per="min"), "{{network}}")],
    )
    b.row("Follows per network")
    for network in Network:
        net = {"network": network.value}
        b.panel(
            f"{network.value}: follows / min, made vs allowed",
            [
                (rate(m.FOLLOWS_MADE, per="min", **net), "made"),
                (gauge(m.FOLLOWS_ALLOWED_PER_MINUTE, **net), "allowed"),
                (rate(m.FOLLOWS_DEFERRED, per="min", **net), "batches deferred"),
            ],
        )
    b.row("Health")
    b.panel(
        "Dead letters / min by service",
        [(rate(m.MESSAGES_DEAD_LETTERED, "service", per="min"), "{{service}}")],
    )
    b.panel(
        "Data purged / min and migrations completed / min",
        [
            (rate(m.DATA_PURGED, "trigger", per="min"), "purged by {{trigger}}"),
            (rate(m.MIGRATIONS_COMPLETED, per="min"), "migrations completed"),
        ],
    )
    return b


def dashboards() -> dict[str, dict[str, Any]]:
    """File name → dashboard JSON, for every service and the overview."""
    boards = [service_board(s) for s in SERVICES] + [overview()]
    return {f"{b.uid}.json": b.to_json() for b in boards}


def render(board: dict[str, Any]) -> str:
    return json.dumps(board, indent=2, sort_keys=True) + "\n"


KUSTOMIZATION_HEAD = """\
# The generated dashboards as ConfigMaps for the Grafana sidecar (label grafana_dashboard=1).
# Written by deploy/dashboards/generate.py with the JSON files: never edit by hand.
apiVersion: kustomize.config.k8s.io/v1alpha1
kind: Component
generatorOptions:
  disableNameSuffixHash: true
  labels:
    grafana_dashboard: "1"
  annotations:
    grafana_folder: HelloQuitteX
configMapGenerator:
"""


def kustomization(names: list[str]) -> str:
    """The Component that turns each dashboard file into a ConfigMap."""
    items = "".join(
        f"  - name: dashboard-{n.removesuffix('.json')}\n    files:\n      - {n}\n"
        for n in sorted(names)
    )
    return KUSTOMIZATION_HEAD + items


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="fail if a committed file is stale")
    args = ap.parse_args(argv)
    boards = dashboards()
    files = {name: render(board) for name, board in boards.items()}
    files["kustomization.yaml"] = kustomization(list(boards))
    stale = []
    for name, text in files.items():
        path = OUT / name
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            path.write_text(text)
    if stale:
        print(f"stale dashboards (run {Path(__file__).name}): {', '.join(stale)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
