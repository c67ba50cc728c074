#!/usr/bin/env bash
# Installs what building and testing need on a fresh machine: the pinned Rust
# toolchain with its wasm32-wasip2 target (a plain `cargo` does not add
# targets listed in rust-toolchain.toml), and, for the tests, PostgreSQL,
# Mosquitto and headless Chromium with chromedriver.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
    echo "bootstrap: installing the toolchain from rust-toolchain.toml (with wasm32-wasip2)" >&2
    rustup toolchain install
fi

if [[ "${1:-}" == "--test-servers" ]]; then
    # The tests run real servers on loopback: PostgreSQL, Mosquitto, headless Chromium.
    missing=()
    if ! command -v initdb >/dev/null && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
        missing+=(postgresql)
    fi
    if ! command -v mosquitto >/dev/null && [[ ! -x /usr/sbin/mosquitto ]]; then
        missing+=(mosquitto)
    fi
    # The kiosk page's browser test drives Debian's Chromium through chromedriver.
    if ! command -v chromium >/dev/null; then
        missing+=(chromium)
    fi
    if ! command -v chromedriver >/dev/null; then
        missing+=(chromium-driver)
    fi
    if ((${#missing[@]})); then
        echo "bootstrap: installing ${missing[*]} (Debian packages)" >&2
        if [[ $(id -u) -ne 0 ]]; then
            echo "bootstrap: ${missing[*]} missing and this is not root: install the Debian packages ${missing[*]}" >&2
            exit 1
        fi
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
        # Debian starts the packaged services: the tests run their own.
        systemctl disable --now mosquitto postgresql >/dev/null 2>&1 || true
    fi
fi
