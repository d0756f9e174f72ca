"""Structure of the server image and Kubernetes manifests (no cluster or Docker daemon here).

What is checked: every manifest parses, carries the fields Kubernetes requires,
and the pieces fit together (selectors match the pod labels, probes hit
/healthz on a declared port, every Secret referenced is declared, limits are
set, pods run as non-root). What is NOT run: applying them to a cluster and
building the image (see docs/deployment.md).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "packaging" / "k8s"


def _documents(directory: Path) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted(directory.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    return docs


@pytest.fixture(scope="module")
def manifests() -> dict[tuple[str, str], dict[str, Any]]:
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for doc in _documents(K8S) + _documents(K8S / "postgres"):
        assert {"apiVersion", "kind", "metadata"} <= set(doc), doc
        key = (doc["kind"], doc["metadata"]["name"])
        assert key not in found, f"duplicate {key}"
        found[key] = doc
    return found


def _pod_spec(manifest: dict[str, Any]) -> dict[str, Any]:
    return manifest["spec"]["template"]["spec"]


def test_kustomizations_list_every_manifest() -> None:
    for directory in (K8S, K8S / "postgres"):
        listed = set(yaml.safe_load((directory / "kustomization.yaml").read_text())["resources"])
        present = {p.name for p in directory.glob("*.yaml")} - {"kustomization.yaml"}
        examples = {
            name for name in present if ".example." in name and name != "secrets.example.yaml"
        }
        assert listed == present - examples, directory


def test_deployment_is_replicated_probed_limited_and_non_root(manifests) -> None:
    deployment = manifests[("Deployment", "ehr-server")]
    assert deployment["spec"]["replicas"] >= 2
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    spec = _pod_spec(deployment)
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] != 0
    (container,) = spec["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    for probe in ("readinessProbe", "livenessProbe"):
        http = container[probe]["httpGet"]
        assert http["path"] == "/healthz"
        assert http["port"] in ports
        assert http["scheme"] == "HTTPS"
    assert {"cpu", "memory"} <= set(container["resources"]["limits"])
    assert {"cpu", "memory"} <= set(container["resources"]["requests"])
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    args = container["args"]
    assert args[0] == "serve"
    assert any(a.startswith("--tls-cert=") for a in args)
    assert any(a.startswith("--workers=") and int(a.split("=")[1]) >= 2 for a in args)
    mounts = {m["name"] for m in container["volumeMounts"]}
    assert mounts == {v["name"] for v in spec["volumes"]}


def test_pdb_hpa_and_service_target_the_deployment(manifests) -> None:
    deployment = manifests[("Deployment", "ehr-server")]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    pdb = manifests[("PodDisruptionBudget", "ehr-server")]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["spec"]["minAvailable"] < deployment["spec"]["replicas"]
    hpa = manifests[("HorizontalPodAutoscaler", "ehr-server")]
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "ehr-server",
    }
    assert 2 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
    service = manifests[("Service", "ehr-server")]
    assert service["spec"]["selector"].items() <= labels.items()
    container = _pod_spec(deployment)["containers"][0]
    port_names = {p["name"] for p in container["ports"]}
    assert all(p["targetPort"] in port_names for p in service["spec"]["ports"])


def test_migration_job_runs_migrate_with_the_database_secret(manifests) -> None:
    jobs = [m for (kind, _), m in manifests.items() if kind == "Job"]
    (job,) = jobs
    spec = _pod_spec(job)
    (container,) = spec["containers"]
    assert container["args"] == ["migrate"]
    assert spec["restartPolicy"] == "Never"
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert "limits" in container["resources"]
    secrets = {s["secretRef"]["name"] for s in container["envFrom"]}
    assert "ehr-database" in secrets


def test_every_referenced_secret_is_declared_and_holds_no_real_value(manifests) -> None:
    declared = {name for (kind, name) in manifests if kind == "Secret"}
    assert {"ehr-database", "ehr-signing-keys", "ehr-server-secret"} <= declared
    referenced: set[str] = set()
    for (kind, _), manifest in manifests.items():
        if kind not in ("Deployment", "Job"):
            continue
        spec = _pod_spec(manifest)
        for container in spec["containers"]:
            referenced |= {s["secretRef"]["name"] for s in container.get("envFrom", [])}
        referenced |= {v["secret"]["secretName"] for v in spec["volumes"] if "secret" in v}
    assert referenced <= declared
    for (kind, _), manifest in manifests.items():
        if kind == "Secret":
            assert all("REPLACE_ME" in value for value in manifest["stringData"].values())
    assert not list(ROOT.glob("packaging/**/*.pem")), "no key file may be committed"


def test_network_policies_deny_by_default_and_admit_the_database(manifests) -> None:
    deny = manifests[("NetworkPolicy", "default-deny")]
    assert deny["spec"]["podSelector"] == {}
    assert set(deny["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    server = manifests[("NetworkPolicy", "ehr-server")]
    assert server["spec"]["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "ehr-server"}
    egress_ports = {p["port"] for rule in server["spec"]["egress"] for p in rule["ports"]}
    assert egress_ports == {5432, 53}
    database = manifests[("NetworkPolicy", "ehr-db")]
    sources = [f["podSelector"]["matchLabels"] for f in database["spec"]["ingress"][0]["from"]]
    assert {"app.kubernetes.io/name": "ehr-server"} in sources


def test_postgres_cluster_is_ha_with_wal_archiving(manifests) -> None:
    cluster = manifests[("Cluster", "ehr-db")]
    assert cluster["apiVersion"] == "postgresql.cnpg.io/v1"
    assert cluster["spec"]["instances"] >= 3
    assert cluster["spec"]["minSyncReplicas"] >= 1
    assert cluster["spec"]["backup"]["barmanObjectStore"]["wal"]
    scheduled = manifests[("ScheduledBackup", "ehr-db-nightly")]
    assert scheduled["spec"]["cluster"]["name"] == "ehr-db"
    restore = manifests[("Cluster", "ehr-db-restore")]
    assert "targetTime" in restore["spec"]["bootstrap"]["recovery"]["recoveryTarget"]


def test_kubectl_kustomize_renders_both_bundles() -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed: the YAML checks above still ran")
    for directory in (K8S, K8S / "postgres"):
        result = subprocess.run(
            [kubectl, "kustomize", str(directory)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        rendered = list(yaml.safe_load_all(result.stdout))
        assert all(
            d["metadata"].get("namespace") == "ehr" for d in rendered if d["kind"] != "Namespace"
        )


def _stages(dockerfile: str) -> list[list[str]]:
    text = re.sub(r"\\\n", " ", dockerfile)
    stages: list[list[str]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            stages.append([])
        if stages:
            stages[-1].append(line)
    return stages


def test_dockerfile_is_multi_stage_slim_non_root_with_healthcheck() -> None:
    stages = _stages((ROOT / "packaging" / "Dockerfile").read_text())
    assert len(stages) >= 2
    final = stages[-1]
    assert "slim" in (ROOT / "packaging" / "Dockerfile").read_text().split("PYTHON_IMAGE=")[1]
    final_text = "\n".join(final)
    assert "build-essential" not in final_text and "gcc" not in final_text
    assert "apt-get install" not in final_text
    assert re.search(r"^COPY --from=build ", final_text, re.M)
    (user,) = [line for line in final if line.startswith("USER ")]
    assert user.split()[1].split(":")[0] not in ("root", "0")
    assert any(line.startswith("HEALTHCHECK ") and " CMD " in line for line in final)
    assert re.search(
        r"^ENV EHR_HEALTHCHECK_URL=http://127\.0\.0\.1:8000/healthz$", final_text, re.M
    )


def test_server_requirements_agree_with_pyproject() -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    lines = (ROOT / "packaging" / "requirements-server.txt").read_text().splitlines()
    required = [line for line in lines if line and not line.startswith("#")]
    assert set(required) <= set(declared), set(required) - set(declared)
    assert not {
        r
        for r in required
        if r.split(">")[0].split("[")[0].lower()
        in {"pyside6-essentials", "sqlcipher3", "keyring", "keyrings.alt"}
    }
