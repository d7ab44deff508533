#!/usr/bin/env bash
# Installs what stevedore's demo and tests need on a Debian or Ubuntu
# machine, and configures Nix for builds without a binary cache. Safe to
# run again: it only installs what is missing.
set -euo pipefail

packages=(nix-bin podman runc uidmap skopeo umoci docker-registry
  busybox-static pigz zstd tar gzip openssl ca-certificates curl gcc debootstrap python3
  python3-venv qemu-user-static binfmt-support)
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

# The multi-platform tests: Debian's arm64 busybox-static, kept outside
# the checkout, and qemu-aarch64 registered in binfmt_misc with the F
# flag (the interpreter opened now, so it runs inside containers too).
arm64_deb=/var/cache/stevedore/busybox-static_arm64.deb
if [ ! -s "$arm64_deb" ]; then
  if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    "${sudo[@]}" dpkg --add-architecture arm64
    "${sudo[@]}" apt-get update -qq
  fi
  download=$(mktemp -d)
  chmod 0777 "$download" # apt downloads as its own user
  (cd "$download" && apt-get download -qq busybox-static:arm64)
  "${sudo[@]}" mkdir -p "$(dirname "$arm64_deb")"
  "${sudo[@]}" mv "$download"/busybox-static_*_arm64.deb "$arm64_deb"
  rm -rf "$download"
fi
binfmt=/proc/sys/fs/binfmt_misc
{ [ -e "$binfmt/register" ] || "${sudo[@]}" mount -t binfmt_misc binfmt_misc "$binfmt"; } &&
  { grep -qx enabled "$binfmt/qemu-aarch64" 2>/dev/null || "${sudo[@]}" update-binfmts --enable qemu-aarch64; } ||
  echo "setup: could not register qemu-aarch64 in binfmt_misc; the multi-platform tests need it" >&2

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
