//! Store paths the tests build images of: trees added to the host's Nix
//! store, the static busybox, and files of bytes that do not compress.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::process::{run, tempdir};

/// Adds a directory tree to the Nix store (`nix-store --add`) and returns
/// the store path. Nix canonicalises it: modes 0444/0555, mtime 1, root.
pub fn nix_add(dir: &Path) -> PathBuf {
    let out = run(Command::new("nix-store").arg("--add").arg(dir));
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

/// A store path holding the static busybox as `bin/busybox`, with
/// `bin/sh` and `bin/echo` as symlinks to it.
pub fn busybox_store_path() -> PathBuf {
    let dir = tempdir();
    let root = dir.path().join("busybox-static");
    fs::create_dir_all(root.join("bin")).unwrap();
    fs::copy("/bin/busybox", root.join("bin/busybox")).expect("/bin/busybox from busybox-static");
    for applet in ["sh", "echo", "cat", "ls", "id", "stat"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
    nix_add(&root)
}

/// A store path holding `files`.
pub fn store_path_with(name: &str, files: &[(&str, Vec<u8>)]) -> PathBuf {
    let dir = tempdir();
    let root = dir.path().join(name);
    fs::create_dir(&root).unwrap();
    for (file, bytes) in files {
        fs::write(root.join(file), bytes).unwrap();
    }
    nix_add(&root)
}

/// Bytes that do not compress: a layer of `len` of them is about that big.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}
