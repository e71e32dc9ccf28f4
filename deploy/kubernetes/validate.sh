#!/usr/bin/env bash
# Validates the manifests in deploy/kubernetes/ against the Kubernetes API schemas, offline, strictly (an
# unknown field fails, not only a wrong type), then checks the values that must agree across files and with
# the image (deploy/kubernetes/check_manifests.py). The environment, made once, is deploy/.venv-k8s.
#
#   bash deploy/kubernetes/validate.sh
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="$HERE/../.venv-k8s"
K8S_VERSION=1.37.0

if [[ ! -x "$VENV/bin/kubernetes-validate" ]] || ! cmp -s "$HERE/requirements.txt" "$VENV/requirements.txt"; then
  python3 -m venv --clear "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$HERE/requirements.txt" 2>"$VENV/pip.log" || {
    cat "$VENV/pip.log" >&2
    exit 1
  }
  cp "$HERE/requirements.txt" "$VENV/requirements.txt"
fi

"$VENV/bin/kubernetes-validate" --strict --kubernetes-version "$K8S_VERSION" "$HERE"/*.yaml
"$VENV/bin/python" "$HERE/check_manifests.py" "$K8S_VERSION"
