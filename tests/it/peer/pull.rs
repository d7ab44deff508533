//! The peer's pullImage subtests. The peer pulls nixos/nix:2.2.1 from
//! Docker Hub; here the same pullImage call pulls from a docker-registry
//! on 127.0.0.1 that the test fills with a stand-in Nix image first.

use std::process::Command;

use super::support::{build, build_fails, build_with, claim, docker_succeed, load};
use crate::support::process::{run, stdout_of};
use crate::support::registry::Registry;

/// A registry holding a Nix image as nixos/nix:2.2.1, and the `pulled`
/// argument of images.nix that fetches it, with the hash Nix reports.
fn registry_with_nix() -> (Registry, Vec<String>) {
    let reg = Registry::start();
    let image = build("nixLayered");
    let dest = format!("docker://{}/nixos/nix:2.2.1", reg.host());
    run(Command::new("skopeo")
        .args(["copy", "-q"])
        .args(reg.skopeo_args("dest"))
        .arg(format!("docker-archive:{}", image.path.display()))
        .arg(&dest));
    let inspected: serde_json::Value = serde_json::from_str(&stdout_of(
        Command::new("skopeo")
            .arg("inspect")
            .args(reg.skopeo_args(""))
            .arg(&dest),
    ))
    .unwrap();
    let digest = inspected["Digest"].as_str().unwrap().to_owned();
    let pulled = |hash: &str| {
        vec![
            "--arg".to_owned(),
            "pulled".to_owned(),
            format!(
                "{{ imageName = \"{}/nixos/nix\"; imageDigest = \"{digest}\"; hash = \"{hash}\"; }}",
                reg.host()
            ),
        ]
    };
    // As a user does: build once with a wrong hash, take the one Nix reports.
    let wrong = pulled("sha256-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=");
    let stderr = build_fails("nixFromDockerHub", &wrong);
    let hash = crate::support::nix::reported_hash(&stderr);
    let args = pulled(&hash);
    (reg, args)
}

#[test]
fn the_pull_image_tool_works() {
    let (_reg, pulled) = registry_with_nix();
    let _claim = claim(&["nix"]);
    let _image = load(&build_with("testNixFromDockerHub", &pulled), &["nix:2.2.1"]);
    docker_succeed("nix:2.2.1", &["nix-store", "--version"]);
}

#[test]
fn a_pulled_image_can_be_used_as_base_image() {
    let (_reg, pulled) = registry_with_nix();
    let _claim = claim(&["ontopofpulledimage"]);
    let _image = load(
        &build_with("onTopOfPulledImage", &pulled),
        &["ontopofpulledimage:latest"],
    );
    docker_succeed("ontopofpulledimage", &["hello"]);
}
