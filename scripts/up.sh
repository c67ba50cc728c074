#!/usr/bin/env bash
# Runs the whole system from a fresh clone: builds the components and parkd,
# then `parkd up` (arguments are passed on, e.g. --demo or --database URL).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build-components.sh
exec cargo run --quiet -p parkd -- up "$@"
