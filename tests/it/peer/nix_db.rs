//! The peer's subtests of images with a Nix database. The peer runs
//! nixpkgs' Nix in its containers; no stand-in can be that, so the
//! host's `nix-store` is run on the image's file system instead, as the
//! container's own would see it.

use super::support::{
    both, build, build_closure, claim, docker_run, docker_succeed, eval_string, export_rootfs,
    load, nix_store_in, resolve_in,
};
use std::collections::BTreeSet;

fn lines(s: &str) -> BTreeSet<String> {
    s.lines().map(str::to_owned).collect()
}

#[test]
fn check_if_the_nix_store_is_correctly_initialized_by_listing_dependencies_of_the_installed_nix_binary()
 {
    let _claim = claim(&["nix"]);
    let nix_pkg = eval_string("pkgs.nix.outPath");
    let _image = load(&build("nix"), &["nix:latest"]);
    let rootfs = export_rootfs("nix");
    let listed = nix_store_in(&rootfs.root, &["-qR", &nix_pkg]);
    assert_eq!(
        lines(&listed),
        build_closure(&nix_pkg),
        "nix-store -qR {nix_pkg}"
    );
}

fn symlinks_intact(attr: &str, name: &str) {
    let _claim = claim(&[name]);
    let nix_pkg = eval_string("pkgs.nix.outPath");
    let bash = eval_string("pkgs.bash.outPath");
    let _image = load(&build(attr), &[&format!("{name}:latest")]);
    docker_succeed(
        name,
        &[
            &format!("{bash}/bin/bash"),
            "-c",
            &format!("test nix == $(readlink {nix_pkg}/bin/nix-daemon)"),
        ],
    );
}

#[test]
fn the_nix_binary_symlinks_are_intact() {
    symlinks_intact("nix", "nix");
}

#[test]
fn the_nix_binary_symlinks_are_intact_when_the_image_is_layered() {
    symlinks_intact("nixLayered", "nix-layered");
}

#[test]
fn ensure_build_layered_image_does_not_change_store_path_contents() {
    let _claim = claim(&["file-in-store"]);
    let _image = load(&build("filesInStore"), &["file-in-store:latest"]);
    let rootfs = export_rootfs("file-in-store");
    nix_store_in(&rootfs.root, &["--verify", "--check-contents"]);
    let out = docker_run(&[], "file-in-store", &[]);
    assert!(both(&out).contains("some data"), "{}", both(&out));
}

/// `nix-store -q --references /bin/bash` in the image.
fn references_of_bin_bash(attr: &str, name: &str) {
    let _claim = claim(&[name]);
    let _image = load(&build(attr), &[&format!("{name}:latest")]);
    let rootfs = export_rootfs(name);
    let bash = resolve_in(&rootfs.root, "/bin/bash");
    let refs = nix_store_in(&rootfs.root, &["-q", "--references", &bash]);
    let store_path: String = bash.split('/').take(4).collect::<Vec<_>>().join("/");
    let expected = lines(&crate::support::process::stdout_of(
        crate::support::nix::nix()
            .command("nix-store")
            .args(["-q", "--references", &store_path]),
    ));
    assert_eq!(lines(&refs), expected, "nix-store -q --references {bash}");
}

#[test]
fn build_image_with_nix_db_has_a_nix_database() {
    references_of_bin_bash("nix", "nix");
}

#[test]
fn stream_layered_image_with_nix_db() {
    references_of_bin_bash("nix-layered", "nix-layered");
}
