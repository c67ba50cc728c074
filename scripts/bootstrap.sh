#!/usr/bin/env bash
# Installs what building and testing need on a fresh machine: the pinned Rust
# toolchain with its wasm32-wasip2 target (a plain `cargo` does not add
# targets listed in rust-toolchain.toml), and, for the tests, PostgreSQL.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
    echo "bootstrap: installing the toolchain from rust-toolchain.toml (with wasm32-wasip2)" >&2
    rustup toolchain install
fi

if [[ "${1:-}" == "--test-servers" ]]; then
    if ! command -v initdb >/dev/null && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
        echo "bootstrap: installing PostgreSQL (Debian package postgresql)" >&2
        if [[ $(id -u) -ne 0 ]]; then
            echo "bootstrap: PostgreSQL is missing and this is not root: install the Debian package postgresql" >&2
            exit 1
        fi
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    fi
fi
