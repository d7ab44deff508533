//! The peer's `includeStorePath` subtests: an image of a `buildEnv` of
//! hello, with and without its store paths (and with `enableFakechroot`).

use super::support::{
    build, claim, docker_run, docker_succeed_with, export_rootfs, load, tar_names,
};
use crate::support::nix::nix;

/// `docker run --rm OPTIONS hello | grep -i hello` succeeds.
fn says_hello(options: &[&str]) -> bool {
    let out = docker_run(options, "hello:latest", &[]);
    out.status.success()
        && String::from_utf8_lossy(&out.stdout)
            .to_lowercase()
            .contains("hello")
}

#[test]
fn include_store_path_assumption() {
    let _claim = claim(&["hello"]);
    let _image = load(&build("helloOnRoot"), &["hello:latest"]);
    assert!(says_hello(&[]), "docker run --rm hello | grep -i hello");
}

fn breaks_example(attr: &str) {
    let _claim = claim(&["hello"]);
    let _image = load(&build(attr), &["hello:latest"]);
    assert!(
        !says_hello(&[]),
        "{attr}: hello ran without its store paths"
    );
}

#[test]
fn include_store_path_false_breaks_example() {
    breaks_example("helloOnRootNoStore");
}

#[test]
fn include_store_path_false_breaks_example_fakechroot() {
    breaks_example("helloOnRootNoStoreFakechroot");
}

fn zero_paths(attr: &str) {
    let _claim = claim(&["hello"]);
    let _image = load(&build(attr), &["hello:latest"]);
    let rootfs = export_rootfs("hello:latest");
    let in_store: Vec<String> = tar_names(&rootfs.tar)
        .into_iter()
        .filter(|n| n.contains("nix/store/"))
        .collect();
    assert!(in_store.is_empty(), "{attr}: {in_store:#?}");
}

#[test]
fn ensure_zero_paths_are_added_to_the_store() {
    zero_paths("helloOnRootNoStore");
}

#[test]
fn ensure_zero_paths_are_added_to_the_store_fakechroot() {
    zero_paths("helloOnRootNoStoreFakechroot");
}

fn works_with_mounted_store(attr: &str) {
    let _claim = claim(&["hello"]);
    let _image = load(&build(attr), &["hello:latest"]);
    let store = nix().host_path(std::path::Path::new("/nix/store"));
    let volume = format!("{}:/nix/store:ro", store.display());
    let out = docker_succeed_with(&["--volume", &volume], "hello:latest", &[]);
    assert!(out.to_lowercase().contains("hello"), "{attr}: {out}");
}

#[test]
fn include_store_path_false_works_with_mounted_store() {
    works_with_mounted_store("helloOnRootNoStore");
}

#[test]
fn include_store_path_false_works_with_mounted_store_fakechroot() {
    works_with_mounted_store("helloOnRootNoStoreFakechroot");
}
