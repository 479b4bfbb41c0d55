#!/usr/bin/env bash
# Validates the Kubernetes manifests in k8s/ offline (no cluster): every resource against the
# JSON schemas of a pinned Kubernetes version, strictly (unknown fields are errors), using the
# PyPI package kubernetes-validate (it ships the schemas), installed into a venv under target/.
# Then checks what schemas cannot: the kustomization lists exactly the manifests, and the pod's
# termination grace period covers the drain deadline.
set -euo pipefail
cd "$(dirname "$0")/.."

K8S_VERSION="1.35.0"           # Kubernetes version validated against
KV_VERSION="1.37.0"            # kubernetes-validate release (its schemas cover 1.x up to 1.37)
VENV="target/k8s-validate-venv"

if ! "$VENV/bin/python" -c "import kubernetes_validate, yaml, sys; from importlib.metadata import version; sys.exit(version('kubernetes-validate') != '$KV_VERSION')" 2>/dev/null; then
  echo "== installing kubernetes-validate $KV_VERSION into $VENV"
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "kubernetes-validate==$KV_VERSION"
fi

mapfile -t manifests < <(find k8s -maxdepth 1 -name '*.yaml' ! -name kustomization.yaml | sort)
echo "== kubernetes-validate --strict (Kubernetes $K8S_VERSION): ${manifests[*]}"
"$VENV/bin/kubernetes-validate" --strict --kubernetes-version "$K8S_VERSION" --quiet "${manifests[@]}"

"$VENV/bin/python" - "${manifests[@]}" <<'PY'
import re, sys, yaml
manifests = sorted(sys.argv[1:])
errors = []

kust = yaml.safe_load(open("k8s/kustomization.yaml"))
if kust.get("apiVersion") != "kustomize.config.k8s.io/v1beta1" or kust.get("kind") != "Kustomization":
    errors.append("k8s/kustomization.yaml: not a kustomize.config.k8s.io/v1beta1 Kustomization")
listed = sorted("k8s/" + r for r in kust.get("resources", []))
if listed != manifests:
    errors.append(f"k8s/kustomization.yaml resources {listed} != manifests {manifests}")
known = {"apiVersion", "kind", "resources", "images", "labels", "namespace", "namePrefix", "nameSuffix", "patches", "configMapGenerator", "secretGenerator"}
if set(kust) - known:
    errors.append(f"k8s/kustomization.yaml: unexpected fields {sorted(set(kust) - known)}")

docs = {}
for m in manifests:
    for d in yaml.safe_load_all(open(m)):
        docs[(d["kind"], d["metadata"]["name"])] = d

def seconds(text):
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    parts = re.findall(r"(\d+)\s*([smhd])", text)
    if not parts or "".join(n + u for n, u in parts) != text.replace(" ", ""):
        raise ValueError(f"unsupported duration {text!r}")
    return sum(int(n) * units[u] for n, u in parts)

deadline = seconds(docs[("ConfigMap", "sfu-config")]["data"]["SFU_DRAIN_DEADLINE"])
pod = docs[("Deployment", "sfu")]["spec"]["template"]["spec"]
grace = pod["terminationGracePeriodSeconds"]
EVACUATE_GRACE = 10  # signaling::drain::EVACUATE_GRACE
if grace < deadline + EVACUATE_GRACE + 30:
    errors.append(f"terminationGracePeriodSeconds {grace} does not cover the drain deadline {deadline}s + {EVACUATE_GRACE}s + 30s margin")
c = pod["containers"][0]
if c["readinessProbe"]["httpGet"]["path"] != "/readyz" or c["livenessProbe"]["httpGet"]["path"] != "/healthz":
    errors.append("probes must be readiness /readyz and liveness /healthz")
strategy = docs[("Deployment", "sfu")]["spec"]["strategy"]
if strategy.get("rollingUpdate", {}).get("maxUnavailable") != 0:
    errors.append("RollingUpdate must have maxUnavailable 0")
if not pod.get("hostNetwork") or not any(p.get("hostPort") == 7882 and p.get("protocol") == "UDP" for p in c["ports"]):
    errors.append("the pod must use hostNetwork with the fixed media port 7882/UDP")

env = {e["name"]: e for e in c.get("env", [])}
redis = env.get("SFU_REDIS", {}).get("valueFrom", {}).get("secretKeyRef", {})
if ("Secret", redis.get("name")) not in docs or redis.get("key") not in docs[("Secret", redis.get("name"))].get("stringData", {}):
    errors.append("SFU_REDIS must come from a Secret in the manifests (the fleet directory)")
if ("Service", "sfu-nodes") not in docs or docs[("Service", "sfu-nodes")]["spec"].get("clusterIP") != "None":
    errors.append("the headless Service sfu-nodes (node to node) is missing")

for e in errors:
    print("ERROR", e)
if errors:
    sys.exit(1)
print(f"k8s: {len(manifests)} manifests valid; kustomization complete; grace {grace}s covers drain deadline {deadline}s")
PY
