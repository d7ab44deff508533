//! The peer's subtests of mergeImages and exportImage.

use super::support::{build, claim, docker_images, docker_succeed, eval_string, load, tar_names};

fn repository_tag(attr: &str) -> String {
    format!(
        "{}-{}",
        eval_string(&format!("{attr}.imageName")),
        eval_string(&format!("{attr}.imageTag"))
    )
}

fn listed(repository_tag: &str) -> bool {
    docker_images("{{.Repository}}-{{.Tag}}")
        .iter()
        .any(|l| l.contains(repository_tag))
}

#[test]
fn ensure_docker_load_on_merged_images_loads_all_of_the_constituent_images() {
    let _claim = claim(&["bash", "redis"]);
    let _images = load(
        &build("mergedBashAndRedis"),
        &["bash:latest", "redis:latest"],
    );
    for attr in ["bash", "redis"] {
        assert!(listed(&repository_tag(attr)), "{attr} not loaded");
    }
    docker_succeed("bash", &["bash", "--version"]);
    docker_succeed("redis", &["redis-cli", "--version"]);
}

#[test]
fn ensure_docker_load_on_merged_images_loads_all_of_the_constituent_images_missing_tags() {
    let _claim = claim(&["bash-no-tag", "redis"]);
    let tag = eval_string("bashNoTag.imageTag");
    let _images = load(
        &build("mergedBashNoTagAndRedis"),
        &[&format!("bash-no-tag:{tag}"), "redis:latest"],
    );
    for attr in ["bashNoTag", "redis"] {
        assert!(listed(&repository_tag(attr)), "{attr} not loaded");
    }
    docker_succeed(&format!("bash-no-tag:{tag}"), &["bash", "--version"]);
    docker_succeed("redis", &["redis-cli", "--version"]);
}

const FAKE_ROOT: &str = "layered-image-with-fake-root-commands";

#[test]
fn merge_images_preserves_owners_of_the_original_images() {
    let _claim = claim(&["bash", FAKE_ROOT]);
    let _images = load(
        &build("mergedBashFakeRoot"),
        &["bash:latest", &format!("{FAKE_ROOT}:latest")],
    );
    let uid = docker_succeed(FAKE_ROOT, &["sh", "-c", "stat -c '%u' /home/alice"]);
    assert_eq!(uid, "1000\n");
}

#[test]
fn the_image_contains_store_paths_referenced_by_the_fake_root_commands_output() {
    // The peer runs the image its previous subtest loaded from
    // mergedBashFakeRoot.
    let _claim = claim(&["bash", FAKE_ROOT]);
    let _images = load(
        &build("mergedBashFakeRoot"),
        &["bash:latest", &format!("{FAKE_ROOT}:latest")],
    );
    let out = docker_succeed(
        FAKE_ROOT,
        &["/hello/bin/layeredImageWithFakeRootCommands-hello"],
    );
    assert!(out.contains("Hello, world!"), "{out}");
}

#[test]
fn merge_image_correctly_deals_with_varying_compression_schemas_in_inputs() {
    let _claim = claim(&["redis", "bash-uncompressed", "bash-zstd"]);
    let _images = load(
        &build("mergeVaryingCompressor"),
        &[
            "redis:latest",
            "bash-uncompressed:latest",
            "bash-zstd:latest",
        ],
    );
    for attr in ["redis", "bashUncompressed", "bashZstdCompressed"] {
        assert!(listed(&repository_tag(attr)), "{attr} not loaded");
    }
}

#[test]
fn export_image_produces_a_valid_tarball() {
    let built = build("exportBash");
    let names = tar_names(&built.path);
    // grep '\./bin/bash'
    assert!(
        names.iter().any(|n| n.contains("./bin/bash")),
        "no ./bin/bash in {names:#?}"
    );
}
