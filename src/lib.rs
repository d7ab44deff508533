//! stevedore builds container images from Nix store closures: layer tars
//! that are the same bytes on every machine, in docker-archive and OCI
//! formats, with no daemon and no VM.
//!
//! Data flows one way: the Nix library's jobs ([`builder`]) and the
//! command line ([`cli`]) hand a [`spec`] to [`source`], which opens any
//! base ([`stored`] reads images on disk, [`base`] checks their layers)
//! and makes an [`image::Image`]; [`archive`] plans and writes its layers,
//! [`image`] writes the documents and formats, and [`push`], [`pull`],
//! [`load`], [`export`] and [`merge`] take images where they go, over
//! [`registry`]'s transport. docs/architecture.md gives every module's
//! layer, and a test keeps the imports to it.

pub mod archive;
pub mod base;
pub mod builder;
pub mod cli;
pub mod closure;
pub mod compress;
pub mod contents;
pub mod digest;
pub mod entry;
pub mod export;
pub mod image;
pub mod image_index;
pub mod layering;
pub mod load;
pub mod merge;
pub mod nixdb;
pub mod oci;
pub mod output;
pub mod pool;
pub mod pull;
pub mod push;
pub mod registry;
pub mod rootfs;
pub mod source;
pub mod spec;
pub mod stored;
pub mod terminal;
