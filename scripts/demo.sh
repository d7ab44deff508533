#!/usr/bin/env bash
# Builds the helper, then the example image `hello` with the Nix library
# (busybox from the host's busybox-static, added to the store), and loads
# and runs it with podman.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release --locked

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
nix-build examples -A hello --arg helper "$PWD/target/release/stevedore" -o "$work/result"
echo "demo: $work/result is an executable that streams the image" >&2

# This machine kind refuses podman's default rlimits; run with runc and none.
printf '[containers]\ndefault_ulimits = []\n[engine]\nruntime = "runc"\n' > "$work/containers.conf"
export CONTAINERS_CONF=$work/containers.conf
"$work/result" | podman load
podman run --rm --network none localhost/stevedore-example-hello:latest
