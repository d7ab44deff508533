#!/usr/bin/env bash
# Installs what stevedore's demo and tests need on a Debian or Ubuntu
# machine, and configures Nix for builds without a binary cache. Safe to
# run again: it only installs what is missing.
set -euo pipefail

packages=(nix-bin podman runc uidmap skopeo umoci docker-registry
  busybox-static pigz zstd tar gzip openssl ca-certificates curl gcc debootstrap python3 python3-venv)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
sudo=()
[ "$(id -u)" = 0 ] || sudo=(sudo)
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
  [ -x "$HOME/.cargo/bin/cargo" ] || {
    echo "setup: installing the Rust toolchain with rustup" >&2
    curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --component clippy,rustfmt
  }
  export PATH="$HOME/.cargo/bin:$PATH"
fi

# Nix without a binary cache: builds run locally, outside a sandbox
# (Debian's Nix has none), as root without build users.
conf=/etc/nix/nix.conf
"${sudo[@]}" mkdir -p /etc/nix
"${sudo[@]}" touch "$conf"
set_nix() {
  if grep -qE "^[[:space:]]*$1[[:space:]]*=" "$conf"; then
    "${sudo[@]}" sed -i -E "s|^[[:space:]]*$1[[:space:]]*=.*|$1 = $2|" "$conf"
  else
    echo "$1 = $2" | "${sudo[@]}" tee -a "$conf" >/dev/null
  fi
}
set_nix sandbox false
set_nix substituters ""
[ "$(id -u)" = 0 ] && set_nix build-users-group ""

# The SBOM validators the tests run (tests/it/sbom.rs): CycloneDX's and
# SPDX's own, from PyPI, in a virtual environment under target/.
validators="$(cd "$(dirname "$0")/.." && pwd)/target/sbom-validators"
if [ ! -x "$validators/bin/pyspdxtools" ]; then
  echo "setup: installing cyclonedx-python-lib and spdx-tools into $validators" >&2
  python3 -m venv "$validators"
  "$validators/bin/pip" install -q 'cyclonedx-python-lib[json-validation]' spdx-tools
fi
exit 0
