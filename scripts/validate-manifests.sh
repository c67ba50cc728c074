#!/usr/bin/env bash
# Renders every knative/ overlay and validates each object strictly (core
# kinds against a pinned Kubernetes, custom kinds against knative/schemas/),
# then proves the checks reject seeded typos. Arguments go to
# scripts/validate_manifests.py (e.g. --render-dir DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
tools="${PARKING_TOOLS_DIR:-$HOME/.cache/parking/tools}"
if [[ ! -x "$tools/venv/bin/kubectl" ]]; then
    echo "validate-manifests: the tools are missing: run scripts/bootstrap.sh --test-servers" >&2
    exit 1
fi
exec "$tools/venv/bin/python" scripts/validate_manifests.py --kubectl "$tools/venv/bin/kubectl" "$@"
