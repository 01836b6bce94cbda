#!/usr/bin/env python3
"""Validates deploy/kubernetes/*.yaml against the Kubernetes API schemas (kubernetes-validate,
strict: unknown fields are errors) and prints, as JSON, what the raftkv containers use: their
command-line arguments and flags, probe paths and the ports those name, for tests/kubernetes.rs to check
against the real binary.

Usage: check-kubernetes.py FILE..."""

import json
import sys

import kubernetes_validate
import yaml


def main(paths):
    used = {"args": [], "flags": [], "probes": [], "ports": {}}
    for path in paths:
        with open(path) as f:
            docs = [d for d in yaml.safe_load_all(f) if d]
        for doc in docs:
            try:
                kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)
            except kubernetes_validate.ValidationError as e:
                sys.exit(f"{path}: {doc['kind']} {doc['metadata']['name']}: {e.message} at {list(e.path)}")
            if doc["kind"] != "StatefulSet":
                continue
            for container in doc["spec"]["template"]["spec"]["containers"]:
                ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
                used["ports"].update(ports)
                for arg in container.get("args", []):
                    used["args"].append(arg)
                    if arg.startswith("--"):
                        used["flags"].append(arg.split("=", 1)[0])
                for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
                    probe = container.get(kind, {}).get("httpGet")
                    if probe:
                        port = probe["port"]
                        if isinstance(port, str):
                            if port not in ports:
                                sys.exit(f"{path}: {kind} names port {port!r}, which the container does not declare")
                            port = ports[port]
                        used["probes"].append({"kind": kind, "path": probe["path"], "port": port})
    print(json.dumps(used))


if __name__ == "__main__":
    main(sys.argv[1:])
