"""Checks one rendering of the nvshare chart against the values it was made
from: what the Kubernetes schemas cannot know. Usage: check_rendered.py
VALUES RENDERED. Exits 1 with one line per problem."""

import json
import sys

import yaml

CHART_DEFAULTS = "deploy/helm/nvshare/values.yaml"


def merged(defaults, override):
    if isinstance(defaults, dict) and isinstance(override, dict):
        out = dict(defaults)
        for key, value in override.items():
            out[key] = merged(defaults.get(key), value)
        return out
    return defaults if override is None else override


def main(values_path, rendered_path):
    with open(CHART_DEFAULTS) as f:
        values = yaml.safe_load(f)
    with open(values_path) as f:
        values = merged(values, yaml.safe_load(f) or {})
    with open(rendered_path) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    problems = []

    def need(ok, what):
        if not ok:
            problems.append(what)

    by_kind = {}
    for doc in docs:
        by_kind.setdefault(doc["kind"], []).append(doc)
        need(doc["metadata"].get("namespace") == "nvshare", f"{doc['kind']} is in the release namespace")

    (ds,) = by_kind["DaemonSet"]
    pod = ds["spec"]["template"]["spec"]
    containers = {c["name"]: c for c in pod["containers"]}
    image = f"{values['image']['repository']}:{values['image']['tag'] or '0.1.0'}"
    socket = f"{values['hostPaths']['socketDir']}/scheduler.sock"
    for name in ("nvshare-scheduler", "nvshare-device-plugin"):
        c = containers[name]
        need(c["image"] == image, f"{name} runs {image}, not {c['image']}")
        need(c["imagePullPolicy"] == values["image"]["pullPolicy"], f"{name} pull policy")
        for probe in ("readinessProbe", "livenessProbe"):
            need(probe in c, f"{name} has a {probe}")
    need(pod.get("nodeSelector") == (values["nodeSelector"] or None), "node selection is the values'")
    need(pod.get("runtimeClassName") == (values["runtimeClassName"] or None), "runtime class")
    scheduler = containers["nvshare-scheduler"]
    command = scheduler["command"]
    need(command[command.index("--socket") + 1] == socket, "the scheduler listens on the socket")
    probe = scheduler["readinessProbe"]["exec"]["command"]
    need(probe[probe.index("--socket") + 1] == socket, "the scheduler's probe asks that socket")
    s = values["scheduler"]
    for flag, key in (("--quantum", "quantum"), ("--policy", "policy"), ("--memory-reserve", "memoryReserve"),
                      ("--drain-timeout", "drainTimeout")):
        need(command[command.index(flag) + 1] == str(s[key]), f"scheduler {flag} is {s[key]}")
    if s["memoryCapacity"]:
        need(command[command.index("--memory-capacity") + 1] == s["memoryCapacity"], "memory capacity")
    else:
        need("--memory-capacity" not in command, "no capacity unless one is set")
    for arg in s["extraArgs"]:
        need(arg in command, f"scheduler extra argument {arg}")
    env = {e["name"]: e.get("value") for e in scheduler.get("env", [])}
    if s["socketGroup"]:
        need(env.get("NVSHARE_SOCK_GROUP") == str(s["socketGroup"]), "socket group")
        need("CHOWN" in scheduler["securityContext"]["capabilities"].get("add", []), "CHOWN for the socket group")
    plugin = containers["nvshare-device-plugin"]
    pcommand = plugin["command"]
    need(pcommand[pcommand.index("--scheduler-socket") + 1] == socket, "the plugin hands out the socket")
    penv = {e["name"]: e.get("value") for e in plugin.get("env", [])}
    need(penv.get("NVSHARE_REPLICAS") == str(values["devicePlugin"]["replicas"]), "replicas")
    need(penv.get("NVIDIA_VISIBLE_DEVICES") == values["devicePlugin"]["visibleDevices"],
         "the plugin sees the GPUs nvshare manages")
    mounts = {v["name"]: v["hostPath"]["path"] for v in pod["volumes"]}
    need(mounts["nvshare-run"] == values["hostPaths"]["socketDir"], "the socket directory is the node's")

    metrics = values["metrics"]
    need(("Service" in by_kind) == metrics["service"]["enabled"], "the metrics Service as enabled")
    need(("ServiceMonitor" in by_kind) == metrics["serviceMonitor"]["enabled"], "the ServiceMonitor as enabled")
    if "ServiceMonitor" in by_kind:
        (monitor,) = by_kind["ServiceMonitor"]
        (service,) = by_kind["Service"]
        selector = monitor["spec"]["selector"]["matchLabels"]
        need(all(service["metadata"]["labels"].get(k) == v for k, v in selector.items()),
             "the ServiceMonitor selects the metrics Service")
        ports = {p["name"] for p in service["spec"]["ports"]}
        need(all(e["port"] in ports for e in monitor["spec"]["endpoints"]), "it scrapes a port of the Service")
        for key, value in metrics["serviceMonitor"]["labels"].items():
            need(monitor["metadata"]["labels"].get(key) == value, f"ServiceMonitor label {key}")
    need(("PrometheusRule" in by_kind) == metrics["prometheusRule"]["enabled"], "the PrometheusRule as enabled")
    for rule_doc in by_kind.get("PrometheusRule", []):
        templated = 0
        for group in rule_doc["spec"]["groups"]:
            for rule in group["rules"]:
                need(rule.get("alert") and rule.get("expr"), f"rule {rule} has an alert and an expression")
                need("nvshare" in rule["expr"], f"rule {rule['alert']} queries nvshare's series")
                for text in rule.get("annotations", {}).values():
                    # Prometheus' own templates must come out of Helm intact:
                    # balanced, and none of Helm's escaping left behind.
                    need(text.count("{{") == text.count("}}") and '{{ "' not in text,
                         f"rule {rule['alert']}: annotation {text!r} is a valid alert template")
                    templated += "{{ $labels." in text
        need(templated > 0, "the alerts name the node or GPU they are about ({{ $labels.* }})")
    dashboards = [d for d in by_kind.get("ConfigMap", []) if "nvshare.json" in d.get("data", {})]
    need(bool(dashboards) == metrics["grafanaDashboard"]["enabled"], "the dashboard as enabled")
    for d in dashboards:
        dashboard = json.loads(d["data"]["nvshare.json"])
        need(len(dashboard["panels"]) >= 8, "the dashboard has its panels")
        for key, value in metrics["grafanaDashboard"]["labels"].items():
            need(d["metadata"]["labels"].get(key) == value, f"dashboard label {key}")
        exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
        need(all("nvshare_" in e for e in exprs), "every panel queries nvshare's metrics")

    for problem in problems:
        print(f"{rendered_path} (from {values_path}): wrong: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
