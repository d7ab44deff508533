//! nixpkgs' own dockerTools tests, ported: one test for each subtest of
//! `nixos/tests/docker-tools.nix` and `docker-tools-nix-shell.nix` that
//! can run here, named after it and asserting what it asserts, on the
//! images of `tests/peer/images.nix`, which keep the peer's expressions
//! (function names and arguments) with stand-in packages. podman (runc)
//! takes the place of Docker in a VM, docker-registry on 127.0.0.1 that of
//! Docker Hub. docs/API.md ("nixpkgs' dockerTools tests") lists the
//! subtests that cannot run here and why.
//!
//! `scripts/test.sh` runs this module on the host's Nix 2.8 and, with
//! `STEVEDORE_TEST_NIX=sandbox`, on Nix 2.34 with the sandbox on.

mod fake_root;
mod include_store_path;
mod layered;
mod merge_export;
mod nix_db;
mod nix_shell;
mod pull;
mod support;
mod tags_and_dates;
