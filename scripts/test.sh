#!/usr/bin/env bash
# Runs every test against real servers: builds the components, starts a
# throwaway PostgreSQL on a free loopback port, runs the tests, stops it.
# Arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh --test-servers
bash scripts/build-components.sh
# parkd and the test binaries, by the same command scripts/up.sh uses (one
# feature set: wasmtime is compiled once for both).
bash scripts/build.sh
# The cluster manifests, strictly, with the pinned tools bootstrap installed;
# knative/check's Rust tests render them with the same kubectl.
bash scripts/validate-manifests.sh
export PARKING_KUBECTL="${PARKING_TOOLS_DIR:-$HOME/.cache/parking/tools}/venv/bin/kubectl"

export PARKD_CACHE_DIR="${PARKD_CACHE_DIR:-${CARGO_TARGET_DIR:-$PWD/target}/parkd-components}"
log=$(mktemp /tmp/parking-test.XXXXXX)
trap 'rm -f "$log"' EXIT
set +e
bash scripts/with-postgres.sh cargo test "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
# The image, built as CI can and run from its own root filesystem
# (skipped, saying why, without podman and mmdebstrap).
if ! bash scripts/image-test.sh; then
    status=1
    # To stderr (the CI log), and to the log the summary is counted from.
    echo "test failed: scripts/image-test.sh" | tee -a "$log" >&2
fi
set -e
# One closing line for the whole run (cargo prints one per test binary).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "%d passed, %d failed\n", p, f }' "$log"
exit "$status"
