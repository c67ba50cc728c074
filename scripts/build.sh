#!/usr/bin/env bash
# The one native build that scripts/up.sh and scripts/test.sh share: parkd
# and every test of the default members, with their dev-dependencies. Built
# by one command, cargo resolves one feature set, so wasmtime is compiled
# once for both (`cargo run -p parkd` alone resolves other features and would
# compile it again). Cargo's progress shows on a terminal, "Compiling ..."
# lines otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "build: parkd and the tests (a cold build compiles wasmtime: minutes, once)" >&2
cargo build --bins --tests
