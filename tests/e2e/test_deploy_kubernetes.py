"""deploy/kubernetes/: every manifest parsed and validated against the Kubernetes schemas
bundled with kubernetes-validate (offline), and kept consistent with each other, with
deploy/Containerfile and with deploy/container.toml: labels and selectors, port names and
numbers, probes, the grace-period sum, the ConfigMap's TOML (loaded by wsgiserve's own
loader), workers against the CPU limit and memory against the memory limit."""
from __future__ import annotations

import math
import re
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
from container_helpers import (
    CONTAINER_CONFIG,
    KUBERNETES,
    container_toml,
    port_of,
    read_containerfile,
)

from wsgiserve.config import parse_command_line, resolve, unknown_environment

yaml = pytest.importorskip("yaml")
kubernetes_validate = pytest.importorskip("kubernetes_validate.utils")

# The oldest Kubernetes the manifests are written for (docs/kubernetes.md says so; every
# API used is GA there) and the newest that kubernetes-validate bundles schemas for.
KUBERNETES_VERSIONS = ("1.30", "1.37")
KINDS = {"ConfigMap", "Deployment", "Service", "PodDisruptionBudget",
         "HorizontalPodAutoscaler"}
# Settings the Deployment sets that are merged separately (the lead's branch): their
# variable may name no setting yet while this flag is not in `wsgiserve --help`.
# After graceful_timeout the master SIGKILLs what is left and waits up to 2 s to reap it;
# a little more for the interpreter to exit.
MASTER_EXIT_MARGIN_S = 5
# The master and its imports, without TLS (README: idle RSS of a master ~20 MiB).
MASTER_MIB = 25


def _documents() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in sorted(KUBERNETES.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document is not None:
                found.append((path.name, document))
    return found


def _one(kind: str) -> dict[str, Any]:
    matching = [document for _, document in _documents() if document["kind"] == kind]
    assert len(matching) == 1, f"{len(matching)} {kind} manifests"
    return matching[0]


def _container() -> dict[str, Any]:
    containers = _one("Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    container: dict[str, Any] = containers[0]
    return container


def _container_ports() -> dict[str, int]:
    return {port["name"]: port["containerPort"] for port in _container()["ports"]}


def _matches(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return bool(selector) and all(labels.get(key) == value for key, value in selector.items())


def _cpu(quantity: str) -> float:
    return int(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def _mebibytes(quantity: str) -> float:
    units = {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024}
    match = re.fullmatch(r"(\d+)(Ki|Mi|Gi)", quantity)
    assert match, f"use a binary unit for {quantity!r}"
    return int(match[1]) * units[match[2]]


def _environment() -> dict[str, str]:
    """The container's environment as the kubelet would set it (a resourceFieldRef for a
    CPU limit with divisor 1 is the limit rounded up)."""
    environment = {}
    limits = _container()["resources"]["limits"]
    for variable in _container()["env"]:
        if "value" in variable:
            environment[variable["name"]] = variable["value"]
            continue
        field = variable["valueFrom"]["resourceFieldRef"]
        assert field["resource"] == "limits.cpu", field
        divisor = _cpu(str(field.get("divisor", "1")))
        environment[variable["name"]] = str(math.ceil(_cpu(limits["cpu"]) / divisor))
    return environment


# --- every document -------------------------------------------------------------------------


def test_every_manifest_parses_and_there_is_one_of_each_kind() -> None:
    documents = _documents()
    assert sorted(document["kind"] for _, document in documents) == sorted(KINDS)
    for name, document in documents:
        assert document["apiVersion"] and document["metadata"]["name"], name
        assert document["metadata"]["labels"]["app.kubernetes.io/name"] == "myproject", name


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_manifests_validate_against_the_kubernetes_schemas(version: str) -> None:
    for name, document in _documents():
        try:
            kubernetes_validate.validate(document, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(map(str, exc.path))
            raise AssertionError(f"{name}: {path}: {exc.message}") from None


# --- cross-references ---------------------------------------------------------------------------


def test_selectors_match_the_pod_labels() -> None:
    deployment = _one("Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert _matches(deployment["spec"]["selector"]["matchLabels"], pod_labels)
    assert _matches(_one("Service")["spec"]["selector"], pod_labels)
    assert _matches(_one("PodDisruptionBudget")["spec"]["selector"]["matchLabels"], pod_labels)
    for constraint in deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]:
        assert _matches(constraint["labelSelector"]["matchLabels"], pod_labels)
    target = _one("HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"], target["name"]) == \
        (deployment["apiVersion"], "Deployment", deployment["metadata"]["name"])


def test_ports_agree_across_config_image_probes_service_and_scrape_annotations() -> None:
    ports = _container_ports()
    settings = container_toml()
    assert ports == {"http": port_of(settings["server"]["bind"][0]),
                     "metrics": port_of(settings["metrics"]["metrics_bind"])}
    assert sorted(read_containerfile().expose) == sorted(ports.values())
    service_port = _one("Service")["spec"]["ports"][0]
    assert service_port["targetPort"] == "http"
    container = _container()
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["port"] == "metrics", probe
    annotations = _one("Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == ports["metrics"]
    assert annotations["prometheus.io/path"] == "/metrics"


def test_probes_use_the_master_endpoints() -> None:
    container = _container()
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    # The startup probe covers the app's import; liveness only starts after it passes.
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 30


def _pre_stop_sleep_s() -> float:
    command = _container()["lifecycle"]["preStop"]["exec"]["command"]
    assert command[:2] == ["python", "-c"], command  # the image has Python, maybe no sleep
    match = re.fullmatch(r"import time; time\.sleep\((\d+(?:\.\d+)?)\)", command[2])
    assert match, command
    # It runs: the same code with no wait.
    quick = command[2].replace(match[1], "0")
    subprocess.run([sys.executable, "-c", quick], check=True, timeout=30)
    return float(match[1])


def test_grace_period_covers_pre_stop_graceful_timeout_and_the_master_exit() -> None:
    grace_s = _one("Deployment")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    graceful_s = container_toml()["workers"]["graceful_timeout"]
    sleep_s = _pre_stop_sleep_s()
    # The kubelet counts the grace period from the preStop hook's start, and SIGKILLs
    # whatever is left at its end.
    needed_s = sleep_s + graceful_s + MASTER_EXIT_MARGIN_S
    assert needed_s <= grace_s <= needed_s + 10, (grace_s, sleep_s, graceful_s)
    assert 0 < sleep_s < graceful_s < 30  # 30 s: Kubernetes' default grace period


def test_configmap_is_the_image_config_and_mounted_where_cmd_reads_it() -> None:
    configmap = _one("ConfigMap")
    command = read_containerfile().command
    config_path = PurePosixPath(command[command.index("--config") + 1])
    assert configmap["data"] == {config_path.name: CONTAINER_CONFIG.read_text()}
    spec = _one("Deployment")["spec"]["template"]["spec"]
    volumes = {volume["name"]: volume for volume in spec["volumes"]}
    mounts = {mount["mountPath"]: mount for mount in _container()["volumeMounts"]}
    mount = mounts[str(config_path.parent)]
    assert mount.get("readOnly") is True
    assert volumes[mount["name"]]["configMap"]["name"] == configmap["metadata"]["name"]
    # Neither command nor args: the image's ENTRYPOINT and CMD run, as tested there.
    assert "command" not in _container() and "args" not in _container()


def test_configmap_toml_loads_with_the_deployment_environment(tmp_path: Path) -> None:
    toml_file = tmp_path / "wsgiserve.toml"
    toml_file.write_text(_one("ConfigMap")["data"]["wsgiserve.toml"])
    environment = {**read_containerfile().env, **_environment()}
    assert unknown_environment(environment) == [], "variables that name no setting"
    config = resolve(parse_command_line(["--config", str(toml_file)]), environment)
    assert config.workers.workers == int(_environment()["WSGISERVE_WORKERS"])
    assert config.workers.threads == int(_environment()["WSGISERVE_THREADS"])


def test_workers_follow_the_cpu_limit_and_fit_the_memory_limit() -> None:
    resources = _container()["resources"]
    cpu_limit = _cpu(resources["limits"]["cpu"])
    workers = int(_environment()["WSGISERVE_WORKERS"])
    # 1 to 2 workers per CPU of the limit; more only queue for the CPU quota.
    assert cpu_limit <= workers <= 2 * math.ceil(cpu_limit)
    assert _cpu(resources["requests"]["cpu"]) <= cpu_limit
    memory_mib = _mebibytes(resources["limits"]["memory"])
    assert _mebibytes(resources["requests"]["memory"]) == memory_mib
    # Every worker at its recycling threshold, one more booting beside a retiring one,
    # and the master.
    worker_mib = float(_environment()["WSGISERVE_MAX_WORKER_MEMORY"])
    assert (workers + 1) * worker_mib + MASTER_MIB <= memory_mib


def test_security_context_non_root_read_only_with_a_writable_tmp() -> None:
    spec = _one("Deployment")["spec"]["template"]["spec"]
    uid = int(read_containerfile().user.split(":")[0])
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] == uid
    assert spec["automountServiceAccountToken"] is False
    context = _container()["securityContext"]
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"]["drop"] == ["ALL"]
    volumes = {volume["name"]: volume for volume in spec["volumes"]}
    tmp = [mount for mount in _container()["volumeMounts"] if mount["mountPath"] == "/tmp"]
    assert len(tmp) == 1 and "emptyDir" in volumes[tmp[0]["name"]]
    image = _container()["image"]
    assert ":" in image and not image.endswith(":latest"), image


def test_rollouts_and_disruptions_keep_pods_serving() -> None:
    deployment = _one("Deployment")["spec"]
    strategy = deployment["strategy"]["rollingUpdate"]
    assert strategy["maxUnavailable"] == 0 and strategy["maxSurge"] >= 1
    assert "replicas" not in deployment  # the HorizontalPodAutoscaler owns the count
    autoscaler = _one("HorizontalPodAutoscaler")["spec"]
    assert autoscaler["minReplicas"] >= 2
    assert _one("PodDisruptionBudget")["spec"]["maxUnavailable"] < autoscaler["minReplicas"]
    assert [metric["resource"]["name"] for metric in autoscaler["metrics"]] == ["cpu"]
    # Utilization is a share of the request: there must be one.
    assert _container()["resources"]["requests"]["cpu"]
