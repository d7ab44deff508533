//! Integration tests: one binary, run by `cargo test`. They drive the
//! `stevedore` binary as a user would and check its output with real
//! consumers (podman, skopeo, a docker-registry, umoci, GNU tar) and an
//! independent tar reader.

mod architecture;
mod bad_input;
mod consumers;
mod export;
mod from_image;
mod hostile;
mod hostile_registry;
mod inspect;
mod layers;
mod layers_cli;
mod merge;
mod multi_platform;
mod nix2container;
mod nix_args;
mod nix_examples;
mod nix_functions;
mod nix_layering;
mod nix_library;
mod nix_pipeline;
mod nixdb;
mod oci_index;
mod peer;
mod registry;
mod reproducible;
mod run_as_root;
mod sbom;
mod shared_tmp;
mod support;
