#!/usr/bin/env bash
# Builds the Wasm components (wasm32-wasip2, release) to the paths spin.toml
# names, so `parkd up` and `spin up` load the same files.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh

# The last two are test fixtures (tests/fixtures): small, and the e2e tests need them.
components=(sensor-event availability-query lot-admin retention-sweep terminal-push event-recorder fault-injector)
args=()
for c in "${components[@]}"; do args+=(-p "$c"); done
echo "build: components (${components[*]})" >&2
cargo build --quiet --target wasm32-wasip2 --release "${args[@]}"

# With CARGO_TARGET_DIR elsewhere, copy the .wasm files to where spin.toml expects them.
target="${CARGO_TARGET_DIR:-target}"
if [[ "$(realpath -m "$target")" != "$(realpath -m target)" ]]; then
    mkdir -p target/wasm32-wasip2/release
    for c in "${components[@]}"; do
        cp "$target/wasm32-wasip2/release/${c//-/_}.wasm" target/wasm32-wasip2/release/
    done
fi
ls -l target/wasm32-wasip2/release/*.wasm | awk '{ printf "build: %s (%d KiB)\n", $NF, $5 / 1024 }' >&2
