"""What the schemas cannot see: values that must agree between the manifests, the image and the server.

Run by validate.sh after the schema check. Exits 1 with one line per problem.
"""

from __future__ import annotations

import copy
import pathlib
import re
import sys

import kubernetes_validate
import yaml

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent.parent


def load(name: str) -> dict:
    return yaml.safe_load((HERE / name).read_text())


def cpu_cores(quantity: str) -> float:
    return float(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def main(version: str) -> int:
    problems: list[str] = []
    deployment, service, pdb, hpa = (load(f) for f in ("deployment.yaml", "service.yaml", "pdb.yaml", "hpa.yaml"))

    # The validator itself must reject a wrong manifest, or a pass above means nothing.
    broken = copy.deepcopy(deployment)
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["periodSecond"] = 5
    try:
        kubernetes_validate.validate(broken, version, strict=True)
        problems.append("the schema check accepted an unknown field (readinessProbe.periodSecond): it checks nothing")
    except kubernetes_validate.ValidationError:
        pass

    pod = deployment["spec"]["template"]
    [container] = pod["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    # The server refuses a non-loopback bind without a token (or an explicit opt-out).
    if "MECHREWARD_AUTH_TOKEN" not in env and env.get("MECHREWARD_ALLOW_REMOTE_WITHOUT_AUTH") != "true":
        problems.append("no MECHREWARD_AUTH_TOKEN: the server refuses to listen beyond loopback without one")
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    labels = pod["metadata"]["labels"]

    # Drain: preStop sleep, then SIGTERM and up to the grace period, must fit before the kubelet's SIGKILL.
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    sleep_s = int(pre_stop[1]) if pre_stop[0] == "sleep" else 0
    grace_s = int(env["MECHREWARD_SHUTDOWN_GRACE_MS"]) / 1000
    termination = pod["spec"]["terminationGracePeriodSeconds"]
    if termination < sleep_s + grace_s + 1:
        problems.append(f"terminationGracePeriodSeconds {termination} < preStop {sleep_s} s + shutdown grace {grace_s} s + 1")
    live = container["livenessProbe"]
    if live["periodSeconds"] * live["failureThreshold"] <= sleep_s + grace_s:
        problems.append("the liveness window is shorter than a drain: a draining pod would be restarted")

    # Probes ask the server's own health service names on its gRPC port.
    proto = (REPO / "proto" / "mechreward" / "v1" / "reward.proto").read_text()
    service_name = re.search(r"^package (\S+);", proto, re.M).group(1) + "." + re.search(r"^service (\w+)", proto, re.M).group(1)
    for probe in ("startupProbe", "readinessProbe"):
        grpc_probe = container[probe]["grpc"]
        if grpc_probe["port"] != ports["grpc"] or grpc_probe.get("service") != service_name:
            problems.append(f"{probe} must ask {service_name} on port {ports['grpc']}, asks {grpc_probe}")
    if container["livenessProbe"]["grpc"]["port"] != ports["grpc"]:
        problems.append("livenessProbe is not on the gRPC port")

    # The image's user.
    dockerfile = (REPO / "docker" / "Dockerfile").read_text()
    uid = int(re.search(r"^USER (\d+)", dockerfile, re.M).group(1))
    if pod["spec"]["securityContext"]["runAsUser"] != uid:
        problems.append(f"runAsUser {pod['spec']['securityContext']['runAsUser']} is not the image's USER {uid}")

    # onnxruntime threads within the CPU limit (the server checks against the node's cores, not the quota).
    threads = int(env["MECHREWARD_WORKERS"]) * int(env["MECHREWARD_INTRA_OP_THREADS"])
    if threads > cpu_cores(container["resources"]["limits"]["cpu"]):
        problems.append(f"{threads} onnxruntime threads over a CPU limit of {container['resources']['limits']['cpu']}")

    # Selectors and targets point at this Deployment's pods.
    for name, selector in (("Service", service["spec"]["selector"]), ("PodDisruptionBudget", pdb["spec"]["selector"]["matchLabels"])):
        if any(labels.get(k) != v for k, v in selector.items()):
            problems.append(f"the {name} selector {selector} does not match the pod labels {labels}")
    if service["spec"].get("clusterIP") != "None":
        problems.append("the Service must be headless (clusterIP: None) for client-side balancing")
    if hpa["spec"]["scaleTargetRef"]["name"] != deployment["metadata"]["name"]:
        problems.append("the HPA does not scale the Deployment")

    # The HPA's custom metric is one the server exports.
    metrics_ts = (REPO / "src" / "metrics.ts").read_text()
    for metric in hpa["spec"]["metrics"]:
        if metric["type"] == "Pods" and f"name: '{metric['pods']['metric']['name']}'" not in metrics_ts:
            problems.append(f"HPA metric {metric['pods']['metric']['name']} is not in src/metrics.ts")

    for line in problems:
        print(f"check_manifests: {line}", file=sys.stderr)
    if not problems:
        print(f"check_manifests: deploy/kubernetes agrees with the image, the proto and src/metrics.ts (Kubernetes {version})")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
