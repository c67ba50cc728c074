#!/usr/bin/env bash
# Runs the whole system from a fresh clone: builds the components and parkd
# (the same build scripts/test.sh uses), then `parkd up` (arguments are passed
# on, e.g. --demo or --database URL).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build-components.sh
bash scripts/build.sh
exec "${CARGO_TARGET_DIR:-target}/debug/parkd" up "$@"
