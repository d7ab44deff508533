//! What the integration tests share, one module per concern; a test file
//! takes its helpers and fixtures from here, never from another test file.

pub mod digest;
pub mod docker_archive;
pub mod http;
pub mod nix;
pub mod oci_layout;
pub mod podman;
pub mod process;
pub mod proxy;
pub mod qemu;
pub mod registry;
pub mod spec;
pub mod store;
pub mod tar;
