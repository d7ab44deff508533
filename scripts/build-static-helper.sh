#!/usr/bin/env bash
# Builds the stevedore helper as one static binary, which runs in any Nix
# sandbox: it needs no C library or loader from the store. Prints its path.
#
#   nix-build examples -A hello --arg helper "$(scripts/build-static-helper.sh)"
#
# The flake's and package.nix's helper is linked against nixpkgs' C library
# and runs in the sandbox too; a plain `cargo build` binary loads the host's
# C library and runs only in builds without a sandbox.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
target=$(rustc -vV | sed -n 's/^host: //p')
# --target keeps the flag off build scripts and proc macros, which must
# stay dynamic.
RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
  cargo build --release --locked --target "$target" >&2
echo "$PWD/target/$target/release/stevedore"
