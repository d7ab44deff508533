//! `buildImageIndex` end to end: an amd64 image of the host's busybox and
//! an arm64 one of Debian's `busybox-static:arm64`, built by the Nix
//! library into one index, pushed to a docker-registry, read back with
//! skopeo, and run by podman for each platform with qemu-user-static;
//! `stevedore load --platform` and `stevedore pull --arch` take one
//! platform from it. Like [`crate::nix_library`], the module runs on the
//! host's Nix and, with `STEVEDORE_TEST_NIX=sandbox`, on Nix 2.34 with the
//! sandbox on.

use std::fs;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::support::digest::sha256;
use crate::support::docker_archive::archive_layer_digests;
use crate::support::nix::{build, expr, nix, nonce};
use crate::support::oci_layout::{blob_json, layer_digests};
use crate::support::podman::{PodmanImage, podman, podman_store_lock, run_in_podman_store};
use crate::support::process::{run, run_fail, stdout_of, tempdir};
use crate::support::qemu::{arm64_busybox_root, ensure_qemu_aarch64};
use crate::support::registry::{Registry, push};

/// The library expression's `let` bindings: `amd64`, a buildLayeredImage
/// of the examples' busybox (the host's), and `arm64`, a
/// streamLayeredImage of the arm64 busybox at `arm_root`, both named
/// `name` and running busybox as their entrypoint.
fn images(name: &str, arm_root: &Path) -> String {
    format!(
        r#"arm = builtins.path {{ path = {root}; name = "busybox-arm64"; }};
        amd64 = s.buildLayeredImage {{ name = "{name}"; contents = [ ex.busybox ]; config.Entrypoint = [ "/bin/busybox" ]; }};
        arm64 = s.streamLayeredImage {{ name = "{name}"; architecture = "arm64"; variant = "v8"; contents = [ arm ]; config.Entrypoint = [ "/bin/busybox" ]; }};"#,
        root = arm_root.display()
    )
}

/// `let IMAGES in BODY` in the library's scope.
fn with_images(name: &str, arm_root: &Path, body: &str) -> String {
    expr("", &format!("let {} in {body}", images(name, arm_root)))
}

/// `podman run --platform PLATFORM IMAGE uname -m`, pulling the image for
/// that platform from the registry first.
fn uname_in_registry_image(reference: &str, platform: &str) -> String {
    let _guard = podman_store_lock();
    let out = stdout_of(podman().args([
        "run",
        "--rm",
        "--network",
        "none",
        "--pull",
        "always",
        "--tls-verify=false",
        "--platform",
        platform,
        reference,
        "uname",
        "-m",
    ]));
    let _ = podman().args(["rmi", "-f", reference]).output();
    out.trim().to_owned()
}

/// `uname -m` in a podman image that is already loaded.
fn uname_in(image: &PodmanImage) -> String {
    stdout_of(podman().args(["run", "--rm", "--network", "none", &image.0, "uname", "-m"]))
        .trim()
        .to_owned()
}

#[test]
fn an_index_of_amd64_and_arm64_runs_on_both_and_each_is_taken_alone() {
    if std::env::consts::ARCH != "x86_64" {
        eprintln!("skipped: the index's amd64 image is the host's busybox");
        return;
    }
    ensure_qemu_aarch64();
    let dir = tempdir();
    let arm_root = arm64_busybox_root(dir.path());
    let name = format!("multi-{}", nonce());

    // The index, and the amd64 archive it was made of.
    let index_expr = with_images(
        &name,
        &arm_root,
        r#"s.buildImageIndex { name = amd64.imageName; tag = "1.0"; images = [ amd64 arm64 ]; }"#,
    );
    let (_, layout) = build(&index_expr, dir.path());
    let amd64_dir = dir.path().join("amd64");
    fs::create_dir(&amd64_dir).unwrap();
    let (_, amd64_archive) = build(&with_images(&name, &arm_root, "amd64"), &amd64_dir);

    // The layout: index.json names the index under NAME:1.0, and the index
    // lists one manifest per platform, each config saying its platform.
    let top: Value = serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    let entry = &top["manifests"][0];
    assert_eq!(top["manifests"].as_array().unwrap().len(), 1, "{top}");
    assert_eq!(
        entry["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    assert_eq!(
        entry["annotations"]["io.containerd.image.name"],
        format!("{name}:1.0")
    );
    let index_digest = entry["digest"].as_str().unwrap().to_owned();
    let index = blob_json(&layout, &index_digest);
    let platforms: Vec<&Value> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| &m["platform"])
        .collect();
    assert_eq!(
        platforms,
        [
            &serde_json::json!({"architecture": "amd64", "os": "linux"}),
            &serde_json::json!({"architecture": "arm64", "os": "linux", "variant": "v8"}),
        ]
    );
    let manifest_of =
        |i: usize| blob_json(&layout, index["manifests"][i]["digest"].as_str().unwrap());
    let (amd64_manifest, arm64_manifest) = (manifest_of(0), manifest_of(1));
    for (manifest, arch, variant) in [
        (&amd64_manifest, "amd64", Value::Null),
        (&arm64_manifest, "arm64", Value::from("v8")),
    ] {
        let config = blob_json(&layout, manifest["config"]["digest"].as_str().unwrap());
        assert_eq!(
            (&config["architecture"], &config["os"], &config["variant"]),
            (&Value::from(arch), &Value::from("linux"), &variant),
            "{config}"
        );
    }
    // The amd64 layers are the archive's, byte for byte.
    assert_eq!(
        layer_digests(&amd64_manifest),
        archive_layer_digests(&amd64_archive)
    );

    // Pushed whole: skopeo reads the index back, with the layout's digest.
    let reg = Registry::start();
    let dest = reg.reference(&name, "1.0");
    let pushed = push(&reg, &layout, &dest, &[]);
    let said = String::from_utf8_lossy(&pushed.stdout);
    assert!(
        said.trim_end().ends_with(&format!("@{index_digest}")),
        "{said}"
    );
    let raw = run(Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(&dest))
    .stdout;
    assert_eq!(sha256(&raw), index_digest);
    let remote: Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(remote, index);

    // The result's copyToRegistry sends the same index whole.
    let copy_dir = dir.path().join("copy");
    fs::create_dir(&copy_dir).unwrap();
    let (copy_to_registry, _) = build(
        &with_images(
            &name,
            &arm_root,
            r#"(s.buildImageIndex { name = amd64.imageName; tag = "1.0"; images = [ amd64 arm64 ]; }).copyToRegistry"#,
        ),
        &copy_dir,
    );
    let copied = reg.reference(&name, "copied");
    reg.run_copy_app(&copy_to_registry, "copy-to-registry", &copied);
    let raw = run(Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(&copied))
    .stdout;
    assert_eq!(sha256(&raw), index_digest);

    // podman runs each platform's image; arm64's through qemu.
    let in_registry = format!("{}/{name}:1.0", reg.host());
    assert_eq!(
        uname_in_registry_image(&in_registry, "linux/arm64"),
        "aarch64"
    );
    assert_eq!(
        uname_in_registry_image(&in_registry, "linux/amd64"),
        "x86_64"
    );

    // stevedore load: the host's platform by default, or --platform's.
    let loaded = PodmanImage(format!("localhost/{name}:1.0"));
    for (platform, machine) in [(None, "x86_64"), (Some("linux/arm64"), "aarch64")] {
        let mut load = Command::new(env!("CARGO_BIN_EXE_stevedore"));
        load.arg("load").arg(&layout).args(["--into", "podman"]);
        if let Some(p) = platform {
            load.args(["--platform", p]);
        }
        run_in_podman_store(&mut load);
        assert_eq!(uname_in(&loaded), machine, "load --platform {platform:?}");
    }
    let err = run_fail(
        Command::new(env!("CARGO_BIN_EXE_stevedore"))
            .arg("load")
            .arg(&layout)
            .args(["--into", "podman", "--platform", "linux/s390x"]),
    );
    assert!(
        err.contains("has no image for linux/s390x; its platforms are linux/amd64, linux/arm64/v8"),
        "{err}"
    );
    drop(loaded);

    // stevedore pull --arch arm64: that platform's image alone, its layers
    // as the index has them.
    let pulled = dir.path().join("arm64.tar");
    run(reg
        .stevedore()
        .arg("pull")
        .arg(&dest)
        .args(["--arch", "arm64", "--out"])
        .arg(&pulled)
        .args(reg.stevedore_args()));
    assert_eq!(
        archive_layer_digests(&pulled),
        layer_digests(&arm64_manifest)
    );
    let config: Value = serde_json::from_str(&stdout_of(
        Command::new("skopeo")
            .args(["inspect", "--config"])
            .arg(format!("docker-archive:{}", pulled.display())),
    ))
    .unwrap();
    assert_eq!(
        (&config["architecture"], &config["variant"]),
        (&Value::from("arm64"), &Value::from("v8"))
    );
}

/// Evaluating `body` (with the images bound) fails with every needle.
fn evaluation_fails(arm_root: &Path, body: &str, needles: &[&str]) {
    let err = run_fail(
        nix()
            .command("nix-instantiate")
            .arg("-E")
            .arg(with_images("multi", arm_root, body)),
    );
    for needle in needles {
        assert!(
            err.contains(needle),
            "{body}: expected {needle:?} in:\n{err}"
        );
    }
}

#[test]
fn an_index_refuses_two_images_for_one_platform_and_other_names_at_evaluation() {
    let dir = tempdir();
    // Evaluation never reads the arm64 busybox: any directory will do.
    let arm_root = dir.path();
    evaluation_fails(
        arm_root,
        r#"s.buildImageIndex { name = "multi"; images = [ amd64 (amd64.override { created = "2024-01-01T00:00:00Z"; }) ]; }"#,
        &[
            "buildImageIndex: images 1 and 2 are both for linux/amd64",
            "build each for its own architecture",
        ],
    );
    evaluation_fails(
        arm_root,
        r#"s.buildImageIndex { name = "multi"; images = [ (arm64.override { variant = null; }) arm64 ]; }"#,
        &[
            "images 1 and 2 are both for linux/arm64 and linux/arm64/v8 (a platform without a variant matches any)",
        ],
    );
    evaluation_fails(
        arm_root,
        r#"s.buildImageIndex { name = "other"; images = [ amd64 arm64 ]; }"#,
        &[
            r#"image 1 of images is named "multi" but the index is "other"; give every image name = "other""#,
        ],
    );
    evaluation_fails(
        arm_root,
        r#"s.buildImageIndex { name = "multi"; images = [ amd64 ex.busybox ]; }"#,
        &["image 2 of images is not an image of this library"],
    );
    evaluation_fails(
        arm_root,
        r#"s.buildImageIndex { name = "multi"; images = [ ]; }"#,
        &["images must be a non-empty list of images, one per platform"],
    );
    // The result says what it holds.
    let out = run(nix()
        .command("nix-instantiate")
        .args(["--eval", "--strict", "--json", "-E"])
        .arg(with_images(
            "multi",
            arm_root,
            r#"let i = s.buildImageIndex { name = "multi"; tag = "1.0"; images = [ amd64 arm64 ]; }; in { inherit (i) imageName imageTag platforms; }"#,
        )));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"imageName": "multi", "imageTag": "1.0", "platforms": ["linux/amd64", "linux/arm64/v8"]})
    );
}
