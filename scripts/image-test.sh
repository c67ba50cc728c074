#!/usr/bin/env bash
# Builds the parkd image as CI can, with no registry reachable, and runs it:
#  1. the base: Debian bookworm (the release the image uses), minbase, made
#     by mmdebstrap and imported with `podman import` (cached);
#  2. the Containerfile built with that base (--build-arg BASE) and the
#     `prebuilt` stage taking the parkd and .wasm files scripts/build.sh and
#     scripts/build-components.sh made for the tests (no second wasmtime
#     build; a real forge builds the full multi-stage file);
#  3. the image's entrypoint run from its own root filesystem as its own
#     user (podman mount + chroot --userspec; `podman run` does not work
#     here): `parkd serve --component sensor-event` must answer a CloudEvent
#     on $PORT, and /app must hold exactly the .wasm files spin.toml names.
# Skips, saying why, where podman or mmdebstrap is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

for tool in podman mmdebstrap; do
    if ! command -v "$tool" >/dev/null; then
        echo "image: SKIPPED: $tool is not installed (Debian packages podman and mmdebstrap)" >&2
        exit 0
    fi
done

cache="${PARKING_IMAGE_CACHE:-$HOME/.cache/parking/image}"
base_tar="$cache/bookworm-minbase.tar"
base=localhost/parking-base:bookworm
image=localhost/parking/parkd:ci
mkdir -p "$cache"
if [[ ! -s "$base_tar" ]]; then
    echo "image: building the base (mmdebstrap --variant=minbase bookworm; cached in $cache)" >&2
    # The name's .tar makes mmdebstrap write a tarball.
    mmdebstrap --quiet --variant=minbase --include=ca-certificates bookworm "$cache/partial.tar"
    mv "$cache/partial.tar" "$base_tar"
fi
podman import --quiet "$base_tar" "$base" >/dev/null

echo "image: the prebuilt parkd and components into .image/out" >&2
target="${CARGO_TARGET_DIR:-target}"
rm -rf .image
mkdir -p .image/out/app
cp "$target/debug/parkd" .image/out/parkd
cp spin.toml .image/out/app/
for source in $(sed -n 's/^source = "\(.*\.wasm\)"$/\1/p' spin.toml); do
    mkdir -p ".image/out/app/$(dirname "$source")"
    cp "$source" ".image/out/app/$source"
done

echo "image: podman build --isolation chroot" >&2
podman build --quiet --isolation chroot --build-arg "BASE=$base" --build-arg APP_FROM=prebuilt \
    -f Containerfile -t "$image" . >/dev/null
rm -rf .image

container=$(podman create "$image")
root=$(podman mount "$container")
pid=""
# Never changes the script's status: a passed test stays passed (under
# `set -e` a failing `wait` in the trap would have made it fail).
cleanup() {
    if [[ -n "$pid" ]]; then
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    podman umount "$container" >/dev/null 2>&1 || true
    podman rm "$container" >/dev/null 2>&1 || true
}
trap cleanup EXIT

# Exactly the .wasm files spin.toml names.
want=$(sed -n 's/^source = "\(.*\.wasm\)"$/\1/p' spin.toml | sort)
have=$(cd "$root/app" && find . -name '*.wasm' | sed 's|^\./||' | sort)
if [[ "$want" != "$have" ]]; then
    echo "image: FAILED: /app holds other .wasm files than spin.toml names:" >&2
    diff <(echo "$want") <(echo "$have") >&2 || true
    exit 1
fi

# The entrypoint, as its user, in its working directory, with its environment.
user=$(podman image inspect -f '{{.Config.User}}' "$image")
workdir=$(podman image inspect -f '{{.Config.WorkingDir}}' "$image")
entrypoint=$(podman image inspect -f '{{join .Config.Entrypoint " "}}' "$image")
mapfile -t image_env < <(podman image inspect -f '{{range .Config.Env}}{{println .}}{{end}}' "$image" | sed '/^$/d')
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
log="$cache/serve.log"
# With an ingest token, as any listener beyond loopback must have one.
token="image-test-$RANDOM$RANDOM"
env -i "${image_env[@]}" PORT="$port" PARKING_INGEST_TOKEN="$token" \
    chroot --userspec="$user" "$root" /bin/sh -c "cd '$workdir' && exec $entrypoint serve --component sensor-event" \
    >"$log" 2>&1 &
pid=$!
for _ in $(seq 1 300); do
    curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
    kill -0 "$pid" 2>/dev/null || { echo "image: FAILED: parkd exited:" >&2; tail -20 "$log" >&2; exit 1; }
    sleep 0.2
done
post() {
    curl -sS -o - -w ' %{http_code}' -X POST "http://127.0.0.1:$port/" "$@" \
        -H 'ce-specversion: 1.0' -H 'ce-id: image-1' -H 'ce-source: /image-test' \
        -H 'ce-type: io.parking.sensor.uplink.v1' -H 'ce-format: parking-json' -H 'content-type: application/json' \
        -d '{"device": "IMAGE-TEST", "occupied": true, "observedAt": "2026-01-01T00:00:00Z"}'
}
# Without the token: refused.
answer=$(post)
if [[ "$answer" != *" 401" ]]; then
    echo "image: FAILED: a CloudEvent without the ingest token got: $answer" >&2
    exit 1
fi
answer=$(post -H "Authorization: Bearer $token")
# No lot knows the device: the component answers 400 naming it.
if [[ "$answer" != *IMAGE-TEST*" 400" ]]; then
    echo "image: FAILED: the CloudEvent got: $answer" >&2
    tail -20 "$log" >&2
    exit 1
fi
# SIGTERM (what Kubernetes sends) drains and exits 0, within a few seconds
# when nothing is in flight.
kill -TERM "$pid"
for _ in $(seq 1 50); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
done
if kill -0 "$pid" 2>/dev/null; then
    echo "image: FAILED: parkd still running 5 s after SIGTERM:" >&2
    tail -20 "$log" >&2
    exit 1
fi
status=0
wait "$pid" || status=$?
pid=""
if [[ "$status" != 0 ]]; then
    echo "image: FAILED: parkd exited with status $status after SIGTERM (a drain exits 0):" >&2
    tail -20 "$log" >&2
    exit 1
fi
echo "image: ok: $image runs 'parkd serve' as user $user from its own root filesystem, answers CloudEvents (with the ingest token only) and exits 0 on SIGTERM" >&2
