"""deploy/k8s validates against the Kubernetes and KEDA schemas and hangs together.

Kubernetes kinds: the OpenAPI-derived JSON Schemas that kubernetes-validate bundles
(strict: unknown fields are errors). The KEDA ScaledObject: the CRD schema vendored under
tests/deploy/schemas (its source is noted in the file).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest

from tests.deploy.conftest import DEPLOY, K8S, SCHEMAS, check_deployed_config, load_yaml

CONFIG = DEPLOY / "config" / "k8s.yaml"
TARGET_RSS = "300Mi"  # the documented per-process memory target (docs/scaling.md)


def container(manifests: dict[str, dict[str, Any]], kind: str) -> dict[str, Any]:
    spec: dict[str, Any] = manifests[kind]["spec"]["template"]["spec"]
    assert len(spec["containers"]) == 1
    return spec["containers"][0]  # type: ignore[no-any-return]


@pytest.mark.parametrize("path", sorted(K8S.glob("*.yaml")), ids=lambda p: p.name)
def test_manifest_validates(path: Path) -> None:
    doc = load_yaml(path)
    if doc["kind"] == "Kustomization":
        return  # checked below: it lists every manifest
    if doc["kind"] == "ScaledObject":
        schema = json.loads((SCHEMAS / "keda-scaledobject-v1alpha1.json").read_text())
        jsonschema.validate(doc, schema)
    else:
        kubernetes_validate.validate(doc, kubernetes_validate.utils.latest_version(), strict=True)


def test_strict_validation_catches_a_typo(manifests: dict[str, dict[str, Any]]) -> None:
    # Guards the guard: a misspelt field must fail, or the test above proves nothing.
    bad = json.loads(json.dumps(manifests["StatefulSet"]))
    bad["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, kubernetes_validate.utils.latest_version(), strict=True)


def test_kustomization_lists_every_manifest() -> None:
    listed = set(load_yaml(K8S / "kustomization.yaml")["resources"])
    assert listed == {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}


def test_configmap_carries_the_checked_config(
    manifests: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    assert manifests["ConfigMap"]["data"]["weir.yaml"] == CONFIG.read_text()
    result = check_deployed_config(CONFIG, tmp_path)
    assert result.returncode == 0, result.stderr


def test_probes_hit_healthz_and_readyz_on_the_metrics_port(
    manifests: dict[str, dict[str, Any]],
) -> None:
    weir = container(manifests, "StatefulSet")
    port = {p["name"]: p["containerPort"] for p in weir["ports"]}["metrics"]
    assert port == load_yaml(CONFIG)["metrics"]["port"]
    assert weir["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert weir["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}


def test_resources_match_the_memory_target(manifests: dict[str, dict[str, Any]]) -> None:
    resources = container(manifests, "StatefulSet")["resources"]
    assert resources["requests"]["memory"] == TARGET_RSS
    assert resources["limits"]["memory"].endswith("Mi")
    assert int(resources["limits"]["memory"][:-2]) > int(TARGET_RSS[:-2])


def test_runs_as_non_root_read_only(manifests: dict[str, dict[str, Any]]) -> None:
    for kind in ("StatefulSet", "Job"):
        pod = manifests[kind]["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] != 0
        box = pod["containers"][0]["securityContext"]
        assert box["readOnlyRootFilesystem"] is True
        assert box["allowPrivilegeEscalation"] is False


def test_password_comes_from_a_secret(manifests: dict[str, dict[str, Any]]) -> None:
    password_file = Path(load_yaml(CONFIG)["postgres"]["password_file"])
    for kind in ("StatefulSet", "Job"):
        pod = manifests[kind]["spec"]["template"]["spec"]
        secrets = {v["name"]: v["secret"] for v in pod["volumes"] if "secret" in v}
        box = pod["containers"][0]
        mounted = {m["mountPath"]: m["name"] for m in box["volumeMounts"]}
        volume = secrets[mounted[str(password_file.parent)]]
        assert [item["path"] for item in volume["items"]] == [password_file.name]
        assert not [e for e in box.get("env", []) if "PASSWORD" in e["name"] and "value" in e]
        assert {m["mountPath"] for m in box["volumeMounts"]} >= {"/app/deploy/config"}
        assert {e["name"]: e.get("value") for e in box["env"]}["WEIR_CONFIG"] == (
            "/app/deploy/config/weir.yaml")


def test_migrate_job_and_statefulset_share_image_and_config(
    manifests: dict[str, dict[str, Any]],
) -> None:
    job, statefulset = container(manifests, "Job"), container(manifests, "StatefulSet")
    assert job["args"] == ["migrate"]
    assert statefulset["args"] == ["run"]
    assert job["image"] == statefulset["image"]


def test_grace_period_outlasts_the_drain(manifests: dict[str, dict[str, Any]]) -> None:
    pod = manifests["StatefulSet"]["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] > load_yaml(CONFIG)["pipeline"][
        "shutdown_timeout_s"]


def test_pdb_and_service_select_the_pods(manifests: dict[str, dict[str, Any]]) -> None:
    labels = manifests["StatefulSet"]["spec"]["template"]["metadata"]["labels"]
    for selector in (manifests["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"],
                     manifests["Service"]["spec"]["selector"]):
        assert selector.items() <= labels.items()


def test_scaledobject_scales_on_lag_capped_at_the_partitions(
    manifests: dict[str, dict[str, Any]],
) -> None:
    config = load_yaml(CONFIG)
    spec = manifests["ScaledObject"]["spec"]
    assert spec["scaleTargetRef"]["name"] == manifests["StatefulSet"]["metadata"]["name"]
    assert spec["maxReplicaCount"] == config["kafka"]["topic_partitions"]
    assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "kafka"
    meta = trigger["metadata"]
    assert meta["consumerGroup"] == config["kafka"]["group_id"]
    assert meta["bootstrapServers"] == config["kafka"]["bootstrap_servers"]
    assert meta["allowIdleConsumers"] == "false"
    assert int(meta["lagThreshold"]) > 0


def test_each_replica_is_a_static_member_named_by_its_stable_pod_name(
        manifests: dict[str, dict[str, Any]]) -> None:
    env = {e["name"]: e for e in container(manifests, "StatefulSet")["env"]}
    assert env["WEIR_KAFKA__GROUP_INSTANCE_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == (
        "metadata.name")
    spec = manifests["StatefulSet"]["spec"]
    assert spec["serviceName"] == manifests["Service"]["metadata"]["name"]
    assert manifests["Service"]["spec"]["clusterIP"] == "None"  # headless, as it must be
