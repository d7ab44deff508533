#!/usr/bin/env bash
# Builds the benchmark closure (../shared/bench/fixture.nix, `app`: 1.57 GiB,
# 201 store paths) and the release helper, then runs bench/layers.py (the
# helper's commands), or with --nix first, bench/nix_images.py (the Nix
# library), with --push first, bench/push.py (push against skopeo), or with
# --base first, bench/base.py (images on a base, export), with --rebuild
# first, bench/rebuild.py (a rebuild and push after a one-file change), or with
# --run-as-root first, bench/run_as_root.py (no fixture needed).
# Other arguments go to the script (e.g. --runs 3).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = --run-as-root ]; then
  shift
  cargo build --release --locked
  exec python3 bench/run_as_root.py "$@"
fi
fixture=${FIXTURE:-../shared/bench/fixture.nix}
app=$(nix-build "$fixture" -A "${ATTR:-app}" --no-out-link \
  --argstr pythonPrefix "$(python3 -c 'import sys; print(sys.base_prefix)')" \
  --argstr libDir "$(dirname "$(realpath "$(gcc -print-file-name=libc.so.6)")")" \
  --option build-users-group '')
cargo build --release --locked
if [ "${1:-}" = --push ]; then
  shift
  exec python3 bench/push.py --closure "$app" "$@"
fi
if [ "${1:-}" = --base ]; then
  shift
  exec python3 bench/base.py --closure "$app" "$@"
fi
if [ "${1:-}" = --rebuild ]; then
  shift
  exec python3 bench/rebuild.py --closure "$app" "$@"
fi
if [ "${1:-}" = --nix ]; then
  shift
  exec python3 bench/nix_images.py --closure "$app" "$@"
fi
exec python3 bench/layers.py --closure "$app" "$@"
