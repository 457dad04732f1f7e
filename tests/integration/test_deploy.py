"""`deploy/`: every file parses, the Kubernetes manifests validate against the schemas the API
server would use (core objects with `kubernetes-validate`, KubeRay's `RayCluster`/`RayJob`
against KubeRay's own CRDs), and every evgrid command they run exists with those options."""

from __future__ import annotations

import functools
import gzip
import re
import shlex
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from typer.main import get_command

from evgrid.cli import app

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
CRDS = ROOT / "tests" / "data" / "kuberay"
K8S_VERSION = "1.30.0"


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


@functools.cache
def _crd_schema(kind: str) -> jsonschema.Draft7Validator:
    """A validator of KubeRay's v1 schema of ``kind``, unknown fields refused (read once: 1 MB
    of YAML; the schema is the operator's, so it is not checked against the metaschema)."""
    text = gzip.decompress((CRDS / f"ray.io_{kind.lower()}s.yaml.gz").read_bytes())
    crd = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    [v1] = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    return jsonschema.Draft7Validator(_no_unknown_fields(v1["schema"]["openAPIV3Schema"]))


def _no_unknown_fields(schema: Any) -> Any:
    """The CRD's schema with unknown fields refused (the API server prunes them silently; a
    typo in a manifest would be dropped, not reported)."""
    if isinstance(schema, dict):
        out = {k: _no_unknown_fields(v) for k, v in schema.items()}
        if "properties" in out and "additionalProperties" not in out and not out.get(
                "x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_no_unknown_fields(v) for v in schema]
    return schema


MANIFESTS = sorted((DEPLOY / "k8s").glob("*.yaml"))


@pytest.mark.parametrize("path", MANIFESTS, ids=[p.name for p in MANIFESTS])
def test_kubernetes_manifests_validate(path: Path) -> None:
    for doc in _docs(path):
        if doc["apiVersion"].startswith("ray.io/"):
            _crd_schema(doc["kind"]).validate(doc)
            for cmd in _containers(doc):
                assert cmd["image"].startswith("ghcr.io/evgrid/evgrid:")
        else:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def _containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    spec = doc["spec"].get("rayClusterSpec", doc["spec"])
    if "headGroupSpec" not in spec:
        return []
    groups = [spec["headGroupSpec"], *spec.get("workerGroupSpecs", [])]
    return [c for g in groups for c in g["template"]["spec"]["containers"]]


def test_a_typo_in_a_manifest_is_caught() -> None:
    """The checks can fail: an unknown field and a wrong type are both refused."""
    dep = _docs(DEPLOY / "k8s" / "coordinator.yaml")[0]
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate({**dep, "spec": {**dep["spec"], "replica": 1}},
                                     K8S_VERSION, strict=True)
    doc = _docs(DEPLOY / "k8s" / "raycluster.yaml")[0]
    schema = _crd_schema("RayCluster")
    bad = {**doc, "spec": {**doc["spec"], "workerGroupSpec": []}}
    with pytest.raises(jsonschema.ValidationError):
        schema.validate(bad)
    bad = {**doc, "spec": {**doc["spec"], "workerGroupSpecs": [
        {**doc["spec"]["workerGroupSpecs"][0], "replicas": "two"}]}}
    with pytest.raises(jsonschema.ValidationError):
        schema.validate(bad)


def _evgrid_commands() -> list[list[str]]:
    """Every `evgrid ...` command line the deploy files run."""
    lines: list[list[str]] = []
    for path in [*MANIFESTS, DEPLOY / "edge" / "evgrid-station.service"]:
        if path.suffix == ".yaml":
            for doc in _docs(path):
                spec = doc.get("spec", {})
                if "entrypoint" in spec:
                    lines.append(shlex.split(spec["entrypoint"]))
                for c in doc.get("spec", {}).get("template", {}).get("spec", {}).get(
                        "containers", []):
                    if c.get("args", [None])[0] == "evgrid":
                        lines.append(c["args"])
        else:
            text = path.read_text().replace("\\\n", " ")
            [exec_start] = re.findall(r"^ExecStart=(.*)$", text, re.M)
            argv = shlex.split(exec_start)
            lines.append(["evgrid", *argv[1:]])
    return lines


def test_every_command_and_option_the_deploy_files_run_exists() -> None:
    root = get_command(app)
    cmds = _evgrid_commands()
    assert {c[1] for c in cmds} >= {"run", "train", "coordinator", "station"}
    for argv in cmds:
        sub = root.commands[argv[1]]  # type: ignore[attr-defined]
        known = {o for p in sub.params for o in p.opts}
        for arg in argv[2:]:
            if arg.startswith("--"):
                assert arg.split("=", 1)[0] in known, f"evgrid {argv[1]}: unknown {arg}"


def test_containerfiles_and_the_unit_say_what_they_must() -> None:
    root = (ROOT / "Containerfile").read_text()
    assert re.search(r"^FROM python:3\.11", root, re.M)
    assert "constraints.txt" in root and "torch==2.13.0" in root and "USER evgrid" in root
    edge = (DEPLOY / "edge" / "Containerfile").read_text()
    assert re.search(r"^FROM evgrid:", edge, re.M) and '"station"' in edge
    for cert in ("ca.pem", "station.pem", "station.key"):
        assert f"/etc/evgrid/{cert}" in edge
    unit = (DEPLOY / "edge" / "evgrid-station.service").read_text()
    sections = re.findall(r"^\[(\w+)\]$", unit, re.M)
    assert sections == ["Unit", "Service", "Install"]
    assert "EnvironmentFile=/etc/evgrid/station.env" in unit and "Restart=on-failure" in unit
    env = (DEPLOY / "edge" / "station.env.example").read_text()
    for var in re.findall(r"\$\{(\w+)\}", unit):
        assert re.search(rf"^{var}=", env, re.M), f"{var} is not in station.env.example"


def test_the_ray_cluster_launcher_config_has_what_ray_up_needs() -> None:
    cfg = yaml.safe_load((DEPLOY / "ray" / "cluster.yaml").read_text())
    assert cfg["provider"]["type"] == "local" and cfg["provider"]["head_ip"]
    assert cfg["max_workers"] >= cfg["min_workers"] == len(cfg["provider"]["worker_ips"])
    for key in ("auth", "setup_commands", "head_start_ray_commands",
                "worker_start_ray_commands", "file_mounts"):
        assert cfg[key], key
    assert any("evgrid_stations" in c for c in cfg["worker_start_ray_commands"])
    for local in cfg["file_mounts"].values():
        assert (ROOT / local).exists(), local
