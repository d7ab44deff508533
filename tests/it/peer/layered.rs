//! The peer's subtests of layered images and images on bases: what runs,
//! which layers there are and in what order, what a base passes on
//! (environment, files), and which store paths get in.

use super::support::{
    build, claim, docker_succeed, docker_succeed_with, eval_string, load, set_of_layers,
};
use crate::support::tar::tar_members;

#[test]
fn ensure_layered_docker_images_work() {
    let _claim = claim(&["layered-image"]);
    let _image = load(&build("layered-image"), &["layered-image:latest"]);
    docker_succeed("layered-image", &[]);
    docker_succeed("layered-image", &["cat", "extraCommands"]);
}

#[test]
fn ensure_images_built_on_top_of_layered_docker_images_work() {
    let _claim = claim(&["layered-on-top"]);
    let _image = load(&build("layered-on-top"), &["layered-on-top:latest"]);
    docker_succeed("layered-on-top", &[]);
}

#[test]
fn ensure_layered_images_built_on_top_of_layered_docker_images_work() {
    let _claim = claim(&["layered-on-top-layered"]);
    let _image = load(
        &build("layered-on-top-layered"),
        &["layered-on-top-layered:latest"],
    );
    docker_succeed("layered-on-top-layered", &[]);
}

#[test]
fn ensure_layers_are_shared_between_images() {
    let _claim = claim(&["layered-image", "another-layered-image"]);
    let _first = load(&build("layered-image"), &["layered-image:latest"]);
    let _second = load(
        &build("another-layered-image"),
        &["another-layered-image:latest"],
    );
    let layers1 = set_of_layers("layered-image");
    let layers2 = set_of_layers("another-layered-image");
    assert!(
        layers1.intersection(&layers2).next().is_some(),
        "{layers1:#?}\n{layers2:#?}"
    );
}

#[test]
fn ensure_order_of_layers_is_correct() {
    let _claim = claim(&["l3"]);
    let _image = load(&build("layersOrder"), &["l3:latest"]);
    for index in 1..=3 {
        let out = docker_succeed("l3", &["cat", &format!("/tmp/layer{index}")]);
        assert!(
            out.contains(&format!("layer{index}")),
            "/tmp/layer{index}: {out}"
        );
    }
}

#[test]
fn ensure_layers_unpacked_in_correct_order_before_run_as_root_runs() {
    let _claim = claim(&["layers-unpack-order-c"]);
    let _image = load(
        &build("layersUnpackOrder"),
        &["layers-unpack-order-c:latest"],
    );
    let out = docker_succeed("layers-unpack-order-c", &["cat", "/layer-order"]);
    assert!(out.contains("abc"), "/layer-order: {out:?}");
}

fn inherited_environment(attr: &str) {
    let _claim = claim(&["child"]);
    let _image = load(&build(attr), &["child:latest"]);
    let out = docker_succeed("child", &["env"]);
    let env: Vec<&str> = out.lines().collect();
    assert!(
        env.contains(&"FROM_PARENT=true"),
        "envvars from the parent should be preserved: {env:?}"
    );
    assert!(
        env.contains(&"FROM_CHILD=true"),
        "envvars from the child should be preserved: {env:?}"
    );
    assert!(
        env.contains(&"LAST_LAYER=child"),
        "envvars from the child should take priority: {env:?}"
    );
}

#[test]
fn ensure_environment_variables_are_correctly_inherited() {
    inherited_environment("environmentVariables");
}

#[test]
fn ensure_environment_variables_of_layered_images_are_correctly_inherited() {
    inherited_environment("environmentVariablesLayered");
}

#[test]
fn ensure_inherited_environment_variables_of_layered_images_are_correctly_resolved() {
    let built = build("environmentVariablesLayered");
    let members = tar_members(&built.path);
    let manifest: serde_json::Value = serde_json::from_slice(&members["manifest.json"]).unwrap();
    let config_name = manifest[0]["Config"].as_str().unwrap();
    let config: serde_json::Value = serde_json::from_slice(&members[config_name]).unwrap();
    let env: Vec<&str> = config["config"]["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert_eq!(
        env.iter().filter(|e| e.starts_with("LAST_LAYER")).count(),
        1,
        "envvars overridden by child should be unique: {env:?}"
    );
}

#[test]
fn ensure_image_with_only_2_layers_can_be_loaded() {
    let _claim = claim(&["two-layered-image"]);
    let _image = load(&build("two-layered-image"), &["two-layered-image:latest"]);
}

#[test]
fn ensure_the_bulk_layer_doesnt_miss_store_paths_regression_test_for_78744() {
    let _claim = claim(&["bulk-layer"]);
    let _image = load(&build("bulk-layer"), &["bulk-layer:latest"]);
    docker_succeed("bulk-layer", &["ls", "/bin/hello"]);
}

#[test]
fn ensure_the_bulk_layer_with_a_base_image_respects_the_number_of_max_layers() {
    let _claim = claim(&["layered-bulk-layer"]);
    let _image = load(&build("layered-bulk-layer"), &["layered-bulk-layer:latest"]);
    docker_succeed("layered-bulk-layer", &["ls", "/bin/hello"]);
    assert_eq!(set_of_layers("layered-bulk-layer").len(), 4);
}

#[test]
fn ensure_only_minimal_paths_are_added_to_the_store() {
    let _claim = claim(&["no-store-paths"]);
    let _image = load(&build("no-store-paths"), &["no-store-paths:latest"]);
    docker_succeed("no-store-paths", &["ls", "/"]);
    let busybox = eval_string("pkgs.pkgsStatic.busybox.outPath");
    let listed = docker_succeed("no-store-paths", &["ls", "/nix/store"]);
    assert_eq!(
        listed,
        format!("{}\n", busybox.strip_prefix("/nix/store/").unwrap()),
        "ls /nix/store"
    );
}

#[test]
fn build_layered_image_doesnt_dereference_nix_store_symlink_layers() {
    let _claim = claim(&["layeredstoresymlink"]);
    let symlink = eval_string("layeredStoreSymlink.passthru.symlink.outPath");
    let _image = load(
        &build("layeredStoreSymlink"),
        &["layeredstoresymlink:latest"],
    );
    docker_succeed(
        "layeredstoresymlink",
        &["bash", "-c", &format!("test -L {symlink}")],
    );
}

#[test]
fn ensure_bare_paths_in_contents_are_loaded_correctly() {
    for name in ["build-image-with-path", "layered-image-with-path"] {
        let _claim = claim(&[name]);
        let _image = load(&build(name), &[&format!("{name}:latest")]);
        docker_succeed(name, &["bash", "-c", "[[ -e /hello.txt ]]"]);
    }
}

#[test]
fn ensure_layered_nix_store_has_correct_permissions_and_that_the_container_starts_when_its_process_does_not_have_uid_0()
 {
    let _claim = claim(&["bash-layered-with-user"]);
    let bash = eval_string("pkgs.bash.outPath");
    let _image = load(
        &build("bashLayeredWithUser"),
        &["bash-layered-with-user:latest"],
    );
    docker_succeed_with(
        &["-u", "somebody"],
        "bash-layered-with-user",
        &[
            &format!("{bash}/bin/bash"),
            "-c",
            "test 755 == $(stat --format=%a /nix) && test 755 == $(stat --format=%a /nix/store)",
        ],
    );
}
