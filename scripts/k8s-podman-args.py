#!/usr/bin/env python3
"""Turns one container of docker/kubernetes/statefulset.yaml into `podman run` arguments, so the
image test runs the manifest's exact command, arguments, environment, mounts and security
settings on this machine. Prints the arguments NUL-separated.

    k8s-podman-args.py DIR CONTAINER IMAGE VOLUME=HOSTDIR... [--secret KEY=VALUE]... [--env NAME=VALUE]...

DIR holds the manifests. VOLUME=HOSTDIR binds a pod volume (a volumeClaimTemplate or a ConfigMap,
whose files the caller has written into HOSTDIR) at the container's mountPath; emptyDir volumes
become tmpfs mounts. --secret gives the Secret's values (an optional key not given is left out),
ConfigMap references read the manifests' ConfigMap; --env overrides any environment
value (the listen addresses, so parallel tests get free ports). Host networking stands in for the
pod's network.
"""
import glob
import json
import os
import sys

import yaml


def main():
    directory, name, image, *rest = sys.argv[1:]
    volumes, secrets, env_over = {}, {}, {}
    it = iter(rest)
    for arg in it:
        if arg == "--secret":
            k, v = next(it).split("=", 1)
            secrets[k] = v
        elif arg == "--env":
            k, v = next(it).split("=", 1)
            env_over[k] = v
        else:
            k, v = arg.split("=", 1)
            volumes[k] = v
    docs = []
    for path in sorted(glob.glob(os.path.join(directory, "*.yaml"))):
        docs += [d for d in yaml.safe_load_all(open(path)) if d]
    sts = next(d for d in docs if d["kind"] == "StatefulSet")
    pod = sts["spec"]["template"]["spec"]
    containers = pod.get("initContainers", []) + pod["containers"]
    c = next(c for c in containers if c["name"] == name)
    pod_volumes = {v["name"]: v for v in pod.get("volumes", [])}
    claims = {t["metadata"]["name"] for t in sts["spec"].get("volumeClaimTemplates", [])}

    args = ["--network", "host"]
    sc = dict(pod.get("securityContext", {}))
    sc.update(c.get("securityContext", {}))
    if "runAsUser" in sc:
        args += ["--user", f"{sc['runAsUser']}:{sc.get('runAsGroup', sc['runAsUser'])}"]
    if sc.get("readOnlyRootFilesystem"):
        args += ["--read-only"]
    if sc.get("allowPrivilegeEscalation") is False:
        args += ["--security-opt", "no-new-privileges"]
    for cap in sc.get("capabilities", {}).get("drop", []):
        args += ["--cap-drop", cap]
    config_maps = {d["metadata"]["name"]: d.get("data", {}) for d in docs if d["kind"] == "ConfigMap"}
    for e in c.get("env", []):
        if e["name"] in env_over:
            value = env_over[e["name"]]
        elif "value" in e:
            value = e["value"]
        elif "secretKeyRef" in e["valueFrom"]:
            ref = e["valueFrom"]["secretKeyRef"]
            if ref["key"] not in secrets and ref.get("optional"):
                continue
            value = secrets[ref["key"]]
        else:
            ref = e["valueFrom"]["configMapKeyRef"]
            data = config_maps[ref["name"]]
            if ref["key"] not in data and ref.get("optional"):
                continue
            value = data[ref["key"]]
        args += ["-e", f"{e['name']}={value}"]
    for m in c.get("volumeMounts", []):
        vol = m["name"]
        if vol in pod_volumes and "emptyDir" in pod_volumes[vol]:
            args += ["--tmpfs", m["mountPath"]]
            continue
        if vol not in claims and vol not in pod_volumes:
            sys.exit(f"{name}: mount of unknown volume {vol}")
        spec = f"{volumes[vol]}:{m['mountPath']}"
        if m.get("readOnly"):
            spec += ":ro"
        args += ["-v", spec]
    command = c.get("command")
    if command:
        args += ["--entrypoint", json.dumps(command)]
    args.append(image)
    args += c.get("args", [])
    sys.stdout.write("\0".join(args) + "\0")


if __name__ == "__main__":
    main()
