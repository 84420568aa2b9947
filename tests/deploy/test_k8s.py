"""Every overlay renders offline to objects valid for current Kubernetes, KEDA and Prometheus
Operator schemas, and agrees with the code: durables, entry points, settings, ports."""

from __future__ import annotations

import base64
import copy
import importlib
import ipaddress
import secrets
from typing import Any

import kubernetes_validate
import pytest
from cloudcoil.models.keda.v1alpha1 import ScaledObject
from cloudcoil.models.prometheus_operator.v1 import PodMonitor, PrometheusRule
from cryptography.fernet import Fernet
from kubernetes_validate.utils import latest_version
from pydantic import ValidationError

from hqx.settings import DEV_TOKEN_KEY, ServiceSettings
from hqx.subjects import CONSUMERS_BY_SERVICE, SERVICES
from tests.deploy.manifests import OVERLAYS, ROOT, container, kebab, of_kind, render

K8S_VERSIONS = ("1.31.0", latest_version())
CRDS: dict[tuple[str, str], Any] = {
    ("keda.sh/v1alpha1", "ScaledObject"): ScaledObject,
    ("monitoring.coreos.com/v1", "PodMonitor"): PodMonitor,
    ("monitoring.coreos.com/v1", "PrometheusRule"): PrometheusRule,
}
HEALTH_PORT = 9090


def validate_crd(obj: dict[str, Any]) -> None:
    """Validate against the CRD's schema (pydantic models generated from it); unknown fields,
    which the models drop silently, fail too."""
    model = CRDS[(obj["apiVersion"], obj["kind"])]
    back = model.model_validate(obj).model_dump(by_alias=True, exclude_unset=True, mode="json")
    assert back == obj, f"{obj['kind']} {obj['metadata']['name']}: fields outside the schema"


def validate(obj: dict[str, Any], version: str) -> None:
    if (obj["apiVersion"], obj["kind"]) in CRDS:
        validate_crd(obj)
    else:
        kubernetes_validate.validate(obj, version, strict=True)


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_objects_are_valid(overlay: str, version: str) -> None:
    objs = render(f"overlays/{overlay}")
    assert objs
    for obj in objs:
        validate(obj, version)


def test_the_validators_reject_broken_objects() -> None:
    objs = render("overlays/prod")
    dep = copy.deepcopy(of_kind(objs, "Deployment")["ingest"])
    container(dep)["livenessProbe"]["httpGet"]["prot"] = "health"
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(dep, latest_version())
    so = copy.deepcopy(of_kind(objs, "ScaledObject")["ingest"])
    so["spec"]["maxReplicaCount"] = "many"
    with pytest.raises(ValidationError):
        validate(so, latest_version())
    so = copy.deepcopy(of_kind(objs, "ScaledObject")["ingest"])
    so["spec"]["triggers"][0]["metdata"] = so["spec"]["triggers"][0].pop("metadata")
    with pytest.raises((AssertionError, ValidationError)):
        validate(so, latest_version())


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_one_hardened_deployment_per_service(overlay: str) -> None:
    deployments = of_kind(render(f"overlays/{overlay}"), "Deployment")
    assert set(deployments) == {kebab(s) for s in SERVICES}
    for service in SERVICES:
        dep = deployments[kebab(service)]
        pod = dep["spec"]["template"]["spec"]
        c = container(dep)
        assert c["command"] == ["python", "-m", f"services.{service}"]
        folder = ROOT / "services" / service
        if (folder / "app.py").exists():  # NOTE: a service still being written has no app yet
            assert (folder / "__main__.py").exists()
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] > 0
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        assert pod["automountServiceAccountToken"] is False
        assert pod["serviceAccountName"] == kebab(service)
        sc = c["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"]["drop"] == ["ALL"]
        assert {"cpu", "memory"} <= set(c["resources"]["requests"])
        assert {"cpu", "memory"} <= set(c["resources"]["limits"])
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        assert ports["health"] == HEALTH_PORT
        for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
            assert c[probe]["httpGet"] == {"path": path, "port": "health"}
        # Longer than the longest ack_wait: a stopping pod finishes (or gives back) its work.
        waits = [spec.ack_wait_s for spec in CONSUMERS_BY_SERVICE.get(service, ())]
        assert pod["terminationGracePeriodSeconds"] >= max(waits, default=0) + 10


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_health_port_and_gateway_port_come_from_settings(overlay: str) -> None:
    objs = render(f"overlays/{overlay}")
    (config,) = [o for o in objs if o["kind"] == "ConfigMap" and "HQX_ENV" in o.get("data", {})]
    assert int(config["data"]["HQX_HEALTH_PORT"]) == HEALTH_PORT
    gateway = container(of_kind(objs, "Deployment")["gateway"])
    env = {e["name"]: e.get("value") for e in gateway["env"]}
    assert env["HQX_GATEWAY_HOST"] == "0.0.0.0"
    http = next(p for p in gateway["ports"] if p["name"] == "http")
    assert int(env["HQX_GATEWAY_PORT"]) == http["containerPort"]
    svc = of_kind(objs, "Service")["gateway"]
    assert svc["spec"]["ports"][0]["targetPort"] == "http"


def test_keda_scales_each_consumer_on_its_durable_from_subjects() -> None:
    objs = render("overlays/prod")
    scaled = of_kind(objs, "ScaledObject")
    deployments = of_kind(objs, "Deployment")
    assert set(scaled) == {kebab(s) for s in CONSUMERS_BY_SERVICE}
    for service, specs in CONSUMERS_BY_SERVICE.items():
        so = scaled[kebab(service)]["spec"]
        assert so["scaleTargetRef"]["name"] in deployments
        triggers = {(t["metadata"]["stream"], t["metadata"]["consumer"]) for t in so["triggers"]}
        assert triggers == {(spec.stream.value, spec.durable) for spec in specs}
        assert all(t["type"] == "nats-jetstream" for t in so["triggers"])
        assert 1 <= so["minReplicaCount"] <= so["maxReplicaCount"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policies_deny_all_then_allow_each_service(overlay: str) -> None:
    objs = render(f"overlays/{overlay}")
    policies = of_kind(objs, "NetworkPolicy")
    assert policies["deny-all"]["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    private = [ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")]
    for name, dep in of_kind(objs, "Deployment").items():
        pol = policies[name]["spec"]
        assert (
            pol["podSelector"]["matchLabels"].items()
            <= dep["spec"]["template"]["metadata"]["labels"].items()
        )
        public = [
            rule
            for rule in pol["egress"]
            for to in rule.get("to", [])
            if to.get("ipBlock", {}).get("cidr") == "0.0.0.0/0"
        ]
        # Only services that talk to X / Bluesky / Mastodon reach the internet, on 443 only,
        # and never the private ranges (cloud metadata, the cluster).
        assert bool(public) == (name in {"gateway", "bluesky-adapter", "mastodon-adapter"})
        for rule in public:
            assert [p["port"] for p in rule["ports"]] == [443]
            excepted = [ipaddress.ip_network(n) for n in rule["to"][0]["ipBlock"]["except"]]
            assert all(n in excepted for n in private)
        assert ("ingress" in pol) == (name == "gateway")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pdb_per_service_and_hpa_for_the_gateway(overlay: str) -> None:
    objs = render(f"overlays/{overlay}")
    deployments = of_kind(objs, "Deployment")
    pdbs = of_kind(objs, "PodDisruptionBudget")
    assert set(pdbs) == set(deployments)
    for name, pdb in pdbs.items():
        assert (
            pdb["spec"]["selector"]["matchLabels"].items()
            <= deployments[name]["spec"]["selector"]["matchLabels"].items()
        )
    (hpa,) = of_kind(objs, "HorizontalPodAutoscaler").values()
    assert hpa["spec"]["scaleTargetRef"]["name"] == "gateway"
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]


def known_env_names() -> set[str]:
    """Every variable some Settings class of the code reads."""
    names = {
        f.validation_alias.upper()
        for f in ServiceSettings.model_fields.values()
        if isinstance(f.validation_alias, str)
    }
    for service in SERVICES:
        try:
            cls = importlib.import_module(f"services.{service}.settings").Settings
        except ModuleNotFoundError:
            continue
        prefix = cls.model_config.get("env_prefix", "")
        for name, field in cls.model_fields.items():
            if name not in ServiceSettings.model_fields:
                alias = field.validation_alias
                names.add(alias.upper() if isinstance(alias, str) else f"{prefix}{name}".upper())
    return names


def pod_env(objs: tuple[dict[str, Any], ...], dep: dict[str, Any], secret: dict[str, str]) -> dict:
    """The environment a pod of `dep` gets: envFrom ConfigMap/Secret, then its own env."""
    env: dict[str, str] = {}
    c = container(dep)
    maps = of_kind(objs, "ConfigMap")
    for src in c["envFrom"]:
        if "configMapRef" in src:
            env.update(maps[src["configMapRef"]["name"]]["data"])
        else:
            env.update(secret)
    env.update({e["name"]: e["value"] for e in c.get("env", [])})
    return env


def secret_of(objs: tuple[dict[str, Any], ...], dep: dict[str, Any]) -> dict[str, str] | None:
    name = next(s["secretRef"]["name"] for s in container(dep)["envFrom"] if "secretRef" in s)
    found = of_kind(objs, "Secret").get(name)
    if found is None:
        return None
    return {k: base64.b64decode(v).decode() for k, v in found["data"].items()}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_setting_is_read_by_the_code_and_validates(
    overlay: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    objs = render(f"overlays/{overlay}")
    known = known_env_names()
    out_of_band = {  # what production's `hqx-secrets` holds (deploy/README.md)
        "DATABASE_URL": "postgresql://hqx:pw@postgres:5432/hqx",
        "REDIS_URL": "redis://:pw@redis:6379/0",
        "HQX_TOKEN_KEYS": Fernet.generate_key().decode(),
        "HQX_GATEWAY_SESSION_SECRET": secrets.token_urlsafe(32),
    }
    for service in SERVICES:
        dep = of_kind(objs, "Deployment")[kebab(service)]
        secret = secret_of(objs, dep)
        if overlay == "prod":
            assert secret is None, "production secrets never live in the repository"
        env = pod_env(objs, dep, secret if secret is not None else out_of_band)
        unknown = {k for k in env if k.upper() not in known and not k.startswith("OTEL_")}
        assert not unknown, f"{service}: variables no Settings reads: {sorted(unknown)}"
        try:
            cls = importlib.import_module(f"services.{service}.settings").Settings
        except ModuleNotFoundError:
            cls = ServiceSettings
        for k in known | set(env):
            monkeypatch.delenv(k, raising=False)
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        settings = cls()
        assert settings.health_port == HEALTH_PORT
        if overlay == "prod":
            assert settings.env == "production"
            monkeypatch.setenv("HQX_TOKEN_KEYS", DEV_TOKEN_KEY)
            with pytest.raises(ValidationError):
                cls()


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_autoscaled_deployments_leave_replicas_to_the_autoscaler(overlay: str) -> None:
    objs = render(f"overlays/{overlay}")
    targets = {
        h["spec"]["scaleTargetRef"]["name"]
        for h in of_kind(objs, "HorizontalPodAutoscaler").values()
    }
    targets |= {s["spec"]["scaleTargetRef"]["name"] for s in of_kind(objs, "ScaledObject").values()}
    assert "gateway" in targets
    for name in targets:
        # An apply would otherwise reset what KEDA / the HPA decided.
        assert "replicas" not in of_kind(objs, "Deployment")[name]["spec"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_ingress_routes_to_the_gateway_service_admitted_by_its_policy(overlay: str) -> None:
    objs = render(f"overlays/{overlay}")
    services = of_kind(objs, "Service")
    for ingress in of_kind(objs, "Ingress").values():
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                backend = path["backend"]["service"]
                svc = services[backend["name"]]
                assert backend["port"]["name"] in {p["name"] for p in svc["spec"]["ports"]}
    if of_kind(objs, "Ingress"):
        policy = of_kind(objs, "NetworkPolicy")["gateway"]["spec"]
        assert policy["ingress"][0]["ports"] == [{"port": "http", "protocol": "TCP"}]
