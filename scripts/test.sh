#!/usr/bin/env bash
# Runs every check and test of stevedore, after installing what they need:
# the whole suite on the host's Nix (Debian 12's 2.8, no sandbox), then
# the Nix library's tests again on a current Nix with the sandbox on
# (Debian sid's, scripts/sandbox-nix.sh) with a static helper.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"
cargo fmt --all -- --check
cargo clippy --locked --all-targets -- -D warnings
./scripts/sandbox-nix.sh setup
./scripts/build-static-helper.sh >/dev/null
cargo test --locked
STEVEDORE_TEST_NIX=sandbox cargo test --locked --test it -- nix_examples:: nix_library:: nix_pipeline:: nix_layering:: nix_functions:: nix_args:: multi_platform:: peer:: sbom:: nix2container::
