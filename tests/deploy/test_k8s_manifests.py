"""Offline checks of the Kubernetes manifests (deploy/k8s) and the KServe InferenceService
(deploy/kserve): every object against the Kubernetes OpenAPI schemas that kubernetes-validate
carries (strict: unknown fields are errors), broken copies refused, and the app's contract
(probes on /readyz and /healthz, the serve and finetune commands, settings that exist)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from app.main import create_app
from app.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
KSERVE = ROOT / "deploy" / "kserve" / "inferenceservice.yaml"
VERSION = "1.30.0"  # the oldest Kubernetes still supported upstream when this was written


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def manifests() -> list[dict[str, Any]]:
    listed = documents(K8S / "kustomization.yaml")[0]["resources"]
    return [doc for name in listed for doc in documents(K8S / name)]


def by_kind(kind: str) -> dict[str, Any]:
    found = [d for d in manifests() if d["kind"] == kind]
    assert len(found) == 1, kind
    return found[0]


def validate(doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, VERSION, strict=True)


def test_kustomization_lists_every_manifest() -> None:
    listed = set(documents(K8S / "kustomization.yaml")[0]["resources"])
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk


@pytest.mark.parametrize("doc", manifests(), ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")
def test_every_manifest_is_valid_kubernetes(doc: dict[str, Any]) -> None:
    validate(doc)


@pytest.mark.parametrize("damage", ["unknown field", "port as text", "no containers"])
def test_a_broken_deployment_is_refused(damage: str) -> None:
    doc = copy.deepcopy(by_kind("Deployment"))
    container = doc["spec"]["template"]["spec"]["containers"][0]
    if damage == "unknown field":
        container["readinessProbe"]["httpGett"] = container["readinessProbe"].pop("httpGet")
    elif damage == "port as text":
        container["ports"][0]["containerPort"] = "eight thousand"
    else:
        del doc["spec"]["template"]["spec"]["containers"]
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(doc)


def app_paths() -> set[str]:
    return set(create_app(Settings()).openapi()["paths"])


def test_deployment_probes_and_command_match_the_app() -> None:
    container = by_kind("Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert {"/readyz", "/healthz"} <= app_paths()
    assert container["command"][:2] == ["mnist-canvas", "serve"]
    port = container["command"][container["command"].index("--port") + 1]
    assert int(port) == container["ports"][0]["containerPort"]


def test_hpa_scales_the_deployment_and_the_cronjob_runs_finetune() -> None:
    hpa = by_kind("HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == by_kind("Deployment")["metadata"]["name"]
    job = by_kind("CronJob")["spec"]["jobTemplate"]["spec"]
    assert job["template"]["spec"]["containers"][0]["command"] == ["mnist-canvas", "finetune"]
    assert job["backoffLimit"] == 0  # a refusal by the gate is an answer, not a failure


def test_every_setting_named_is_a_real_setting() -> None:
    known = {f"MNIST_CANVAS_{name.upper()}" for name in Settings.model_fields}
    names = set(by_kind("ConfigMap")["data"])
    names |= {k for k in by_kind("Secret")["stringData"] if k.startswith("MNIST_CANVAS_")}
    assert names <= known, names - known


def test_kserve_inference_service_runs_the_image_over_v2() -> None:
    (service,) = documents(KSERVE)
    assert service["apiVersion"] == "serving.kserve.io/v1beta1"
    assert service["kind"] == "InferenceService"
    predictor = service["spec"]["predictor"]
    assert set(predictor) <= {"minReplicas", "maxReplicas", "containers", "scaleTarget",
                              "scaleMetric", "serviceAccountName", "timeout"}
    (container,) = predictor["containers"]
    assert container["name"] == "kserve-container"  # KServe's name for a custom predictor
    assert container["image"] == by_kind("Deployment")["spec"]["template"]["spec"][
        "containers"][0]["image"]
    assert {"name": "PROTOCOL", "value": "v2"} in container["env"]
    # The container itself is a core/v1 Container: check it as one, inside a Pod.
    validate({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "check"},
              "spec": {"containers": [container]}})
    paths = app_paths()
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["path"] in paths
    assert container[probe]["httpGet"]["port"] == container["ports"][0]["containerPort"]
    assert "/v2/models/{name}/infer" in paths
