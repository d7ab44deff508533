#!/usr/bin/env bash
# A current Nix with its build sandbox on, for stevedore's tests and for
# trying the library as its users build: Debian sid's nix-bin in a tree of
# its own, run in a private mount namespace that pivot_roots into it.
#
#   scripts/sandbox-nix.sh setup                 # once: debootstrap + nix-bin
#   scripts/sandbox-nix.sh run nix-build ...     # any command, in the tree
#
# The tree is $STEVEDORE_SANDBOX_NIX (default: target/sandbox-nix of this
# checkout), with its own /nix store. In `run`, the checkout and the
# temporary directory are the same paths inside as outside, so paths to
# examples, to the static helper and to out links work unchanged; a store
# path /nix/store/X of the tree is DIR/root/nix/store/X outside.
#
# Why not chroot: the kernel refuses a user namespace to a chrooted
# process, so Nix could not start its sandbox there. pivot_root in a new
# mount namespace gives the tree as / with no such limit, and every mount
# made for it ends with the namespace. Needs root (or CAP_SYS_ADMIN).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
dir=${STEVEDORE_SANDBOX_NIX:-$repo/target/sandbox-nix}
root=$dir/root
suite=${STEVEDORE_SANDBOX_SUITE:-sid}

# The Debian mirror this machine's apt uses.
mirror() {
  local uri
  uri=$(grep -hoE '^URIs:[[:space:]]*[^[:space:]]+' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1 | awk '{print $2}' || true)
  [ -n "$uri" ] || uri=$(grep -hoE '^deb[[:space:]]+(\[[^]]*\][[:space:]]+)?[^[:space:]]+' /etc/apt/sources.list 2>/dev/null | head -n1 | awk '{print $NF}' || true)
  echo "${uri:-http://deb.debian.org/debian}"
}

setup() {
  if [ -e "$dir/ready" ]; then
    return 0
  fi
  command -v debootstrap >/dev/null || {
    echo "sandbox-nix: debootstrap is missing (scripts/setup.sh installs it)" >&2
    exit 1
  }
  rm -rf "$root"
  mkdir -p "$dir"
  echo "sandbox-nix: debootstrap $suite into $root" >&2
  debootstrap --variant=minbase "$suite" "$root" "$(mirror)" >"$dir/debootstrap.log" 2>&1 || {
    tail -n 20 "$dir/debootstrap.log" >&2
    exit 1
  }
  chroot "$root" sh -c 'apt-get -o Acquire::Check-Valid-Until=false update -qq &&
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nix-bin busybox-static ca-certificates' \
    >"$dir/apt.log" 2>&1 || {
    tail -n 20 "$dir/apt.log" >&2
    exit 1
  }
  mkdir -p "$root/etc/nix"
  cat >"$root/etc/nix/nix.conf" <<'EOF'
# Builds in the sandbox or not at all: a sandbox that cannot start is an
# error, not a silent unsandboxed build.
sandbox = true
sandbox-fallback = false
substituters =
build-users-group =
experimental-features = nix-command flakes
EOF
  # busybox with every applet as a link: a shell and PATH from the store
  # for the examples (examples/default.nix, argument `busybox`).
  mkdir -p "$root/opt/busybox/bin"
  cp "$root/bin/busybox" "$root/opt/busybox/bin/busybox"
  for applet in $(chroot "$root" /bin/busybox --list); do
    [ "$applet" = busybox ] || ln -sf busybox "$root/opt/busybox/bin/$applet"
  done
  touch "$dir/ready"
  # The store's database, made once: Nix creates its schema without
  # retrying, so the tests' first concurrent builds must not race to do it.
  "$0" run nix-store --init || {
    rm -f "$dir/ready"
    exit 1
  }
}

run() {
  [ -e "$dir/ready" ] || {
    echo "sandbox-nix: no tree at $root; run: $0 setup" >&2
    exit 1
  }
  local tmp=${TMPDIR:-/tmp}
  # The mounts exist only in the new namespace; the host sees none.
  exec unshare --mount --fork -- /bin/sh -c '
    set -e
    root=$1 repo=$2 tmp=$3 cwd=$4
    shift 4
    mount --make-rprivate /
    mount --bind "$root" "$root"
    mount -t proc proc "$root/proc"
    mount --rbind /dev "$root/dev"
    mount --rbind /sys "$root/sys"
    for d in "$repo" "$tmp"; do
      mkdir -p "$root$d"
      mount --bind "$d" "$root$d"
    done
    cd "$root"
    mkdir -p .old-root
    pivot_root . .old-root
    cd /
    umount -l /.old-root
    cd "$cwd" 2>/dev/null || cd /
    export PATH=/usr/bin:/bin:/usr/sbin:/sbin HOME=/root
    exec "$@"
  ' sandbox-nix "$root" "$repo" "$tmp" "$PWD" "$@"
}

case "${1:-}" in
  setup) setup ;;
  run)
    shift
    run "$@"
    ;;
  root) echo "$root" ;;
  *)
    echo "usage: $0 setup | run COMMAND [ARG...] | root" >&2
    exit 2
    ;;
esac
