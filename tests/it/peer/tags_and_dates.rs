//! The peer's subtests of what `docker load` names an image and what
//! `docker inspect` shows: tags (given and computed), registry prefixes,
//! the creation date, the architecture, and layer compression.

use super::support::{
    build, claim, docker_images, docker_inspect, docker_succeed, eval_string, load,
};

const UNIX_TIME_SECOND1: &str = "1970-01-01T00:00:01Z";

fn created(image: &str) -> String {
    docker_inspect(image)["Created"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn ensure_docker_images_use_a_stable_date_by_default() {
    let _claim = claim(&["bash"]);
    let name = eval_string("bash.imageName");
    let tag = eval_string("bash.imageTag");
    let _image = load(&build("bash"), &[&format!("{name}:{tag}")]);
    assert!(
        created(&name).contains(UNIX_TIME_SECOND1),
        "{}",
        created(&name)
    );
    // What the peer checks right after, outside a subtest.
    docker_succeed(&name, &["bash", "--version"]);
    assert!(
        docker_images("{{.Tag}}").iter().any(|t| t.contains(&tag)),
        "no image tagged {tag}"
    );
}

#[test]
fn ensure_image_tag_attribute_matches_image() {
    for attr in [
        "bashNoTag",
        "bashNoTagLayered",
        "bashNoTagStreamLayered",
        "nixLayered",
    ] {
        let name = eval_string(&format!("{attr}.imageName"));
        let tag = eval_string(&format!("{attr}.imageTag"));
        let _claim = claim(&[&name]);
        let _image = load(&build(attr), &[&format!("{name}:{tag}")]);
        assert!(
            docker_images("{{.Tag}}").iter().any(|t| t.contains(&tag)),
            "{attr}: no image tagged {tag}"
        );
    }
}

#[test]
fn check_that_images_with_alternative_compression_schemas_load() {
    for attr in [
        "bashZstdCompressed",
        "bashUncompressed",
        "bashLayeredUncompressed",
        "bashLayeredZstdCompressed",
    ] {
        let name = eval_string(&format!("{attr}.imageName"));
        let _claim = claim(&[&name]);
        let _image = load(&build(attr), &[&format!("{name}:latest")]);
    }
}

fn unstable_date(attr: &str) {
    let name = eval_string(&format!("{attr}.imageName"));
    let _claim = claim(&[&name]);
    let _image = load(&build(attr), &[&format!("{name}:latest")]);
    assert!(
        !created(&name).contains(UNIX_TIME_SECOND1),
        "{attr}: {}",
        created(&name)
    );
}

#[test]
fn ensure_docker_images_can_use_an_unstable_date() {
    unstable_date("unstableDate");
}

#[test]
fn ensure_layered_docker_images_can_use_an_unstable_date() {
    unstable_date("unstableDateLayered");
}

fn registry_prefix(attr: &str) {
    let name = eval_string(&format!("{attr}.imageName"));
    assert!(name.starts_with("registry-1.docker.io/"), "{name}");
    let _claim = claim(&[&name]);
    let _image = load(&build(attr), &[&format!("{name}:latest")]);
    assert!(
        docker_images("{{.Repository}}")
            .iter()
            .any(|r| r.contains(&name)),
        "no repository {name}"
    );
}

#[test]
fn build_image_supports_registry_prefix_in_image_name() {
    registry_prefix("prefixedImage");
}

#[test]
fn build_layered_image_supports_registry_prefix_in_image_name() {
    registry_prefix("prefixedLayeredImage");
}

#[test]
fn ensure_correct_architecture_is_present_in_manifests() {
    for name in [
        "build-image-with-architecture",
        "layered-image-with-architecture",
    ] {
        let attr = name;
        let _claim = claim(&[name]);
        let _image = load(&build(attr), &[&format!("{name}:latest")]);
        assert_eq!(docker_inspect(name)["Architecture"], "arm64", "{name}");
    }
}
