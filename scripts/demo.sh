#!/usr/bin/env bash
# Builds the helper, puts a static busybox into the Nix store, builds an
# image of it with stevedore, then loads and runs it with podman.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release --locked
stevedore=$PWD/target/release/stevedore

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/busybox/bin"
cp /bin/busybox "$work/busybox/bin/busybox"
ln -s busybox "$work/busybox/bin/sh"
busybox=$(nix-store --add "$work/busybox")

cat > "$work/spec.json" <<JSON
{
  "version": 1,
  "name": "stevedore-demo",
  "tag": "latest",
  "layers": [ { "paths": [ "$busybox" ] } ],
  "config": {
    "Entrypoint": [ "$busybox/bin/sh", "-c" ],
    "Cmd": [ "echo \"hello from a stevedore image: \$(ls /nix/store)\"" ],
    "Env": [ "PATH=$busybox/bin" ]
  }
}
JSON
"$stevedore" build "$work/spec.json" --format docker-archive --compress zstd --out "$work/image.tar"
echo "demo: built $(du -h "$work/image.tar" | cut -f1) image; loading into podman" >&2

# This machine refuses podman's default rlimits; run with runc and none.
printf '[containers]\ndefault_ulimits = []\n[engine]\nruntime = "runc"\n' > "$work/containers.conf"
export CONTAINERS_CONF=$work/containers.conf
podman load -i "$work/image.tar"
podman run --rm --network none localhost/stevedore-demo:latest
