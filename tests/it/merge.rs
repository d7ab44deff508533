//! `stevedore merge` and the library's `mergeImages`: images in one
//! docker-archive, loaded by podman.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

use crate::support::docker_archive::{Blob, docker_members};
use crate::support::podman::{PodmanImage, podman, run_in_podman_store};
use crate::support::process::{
    assert_one_line_error, dir_names, run, run_fail, stevedore, tempdir,
};
use crate::support::spec::{build, spec, write_spec};
use crate::support::store::busybox_store_path;
use crate::support::tar::{Members, raw_entry, raw_layer, tar_of};

/// The members of a tar, by name.
fn members(tar: &[u8]) -> BTreeMap<String, Vec<u8>> {
    let mut archive = tar::Archive::new(tar);
    let mut out = BTreeMap::new();
    for e in archive.entries().unwrap() {
        let mut e = e.unwrap();
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut bytes).unwrap();
        let name = e.path().unwrap().to_string_lossy().into_owned();
        assert!(out.insert(name.clone(), bytes).is_none(), "{name} twice");
    }
    out
}

fn layer(name: &str, data: &[u8]) -> Blob {
    Blob::plain(raw_layer(&[raw_entry(name, b'0', data, "", None)]))
}

fn write_archive(path: &Path, images: Vec<(Members, Value)>, repositories: Option<Value>) {
    let mut all = Vec::new();
    let mut manifest = Vec::new();
    for (m, entry) in images {
        for member in m {
            if !all.iter().any(|(n, _): &(String, Vec<u8>)| *n == member.0) {
                all.push(member);
            }
        }
        manifest.push(entry);
    }
    all.push((
        "manifest.json".into(),
        serde_json::to_vec(&manifest).unwrap(),
    ));
    if let Some(r) = repositories {
        all.push(("repositories".into(), serde_json::to_vec(&r).unwrap()));
    }
    fs::write(path, tar_of(&all)).unwrap();
}

#[test]
fn merge_keeps_every_image_shares_blobs_and_merges_tags() {
    let dir = tempdir();
    let base = layer("base", b"base");
    let base_again = layer("base", b"base");
    // a.tar: two tags of one repository sharing a layer, and an untagged
    // image; compressed as a whole with gzip.
    let a = dir.path().join("a.tar");
    write_archive(
        &a,
        vec![
            docker_members(&[base, layer("one", b"1")], Some("app:1"), ""),
            docker_members(&[base_again, layer("two", b"2")], Some("app:2"), "x"),
            docker_members(&[layer("free", b"f")], None, "u"),
        ],
        Some(json!({ "app": { "1": "layer1", "2": "xlayer1" } })),
    );
    let a_gz = dir.path().join("a.tar.gz");
    run(Command::new("sh").arg("-c").arg(format!(
        "gzip -n -c {} > {}",
        a.display(),
        a_gz.display()
    )));
    // b.tar: a third tag of the same repository, sharing two layers with
    // a.tar under the same names; zstd as a whole.
    let b = dir.path().join("b.tar");
    write_archive(
        &b,
        vec![docker_members(
            &[
                layer("base", b"base"),
                layer("one", b"1"),
                layer("three", b"3"),
            ],
            Some("app:3"),
            "",
        )],
        Some(json!({ "app": { "3": "layer2" } })),
    );
    let b_zst = dir.path().join("b.tar.zst");
    run(Command::new("zstd").arg("-q").arg(&b).arg("-o").arg(&b_zst));

    let out = dir.path().join("merged.tar");
    run(stevedore()
        .arg("merge")
        .arg(&a_gz)
        .arg(&b_zst)
        .arg("--out")
        .arg(&out));
    let bytes = fs::read(&out).unwrap();
    let got = members(&bytes);
    let manifest: Vec<Value> = serde_json::from_slice(&got["manifest.json"]).unwrap();
    let tags: Vec<Value> = manifest.iter().map(|e| e["RepoTags"].clone()).collect();
    assert_eq!(
        tags,
        [
            json!(["app:1"]),
            json!(["app:2"]),
            Value::Null,
            json!(["app:3"])
        ]
    );
    let repositories: Value = serde_json::from_slice(&got["repositories"]).unwrap();
    assert_eq!(
        repositories,
        json!({ "app": { "1": "layer1", "2": "xlayer1", "3": "layer2" } })
    );
    // Every named member is there once, with the bytes of its input.
    let a_members = members(&fs::read(&a).unwrap());
    for (name, bytes) in &got {
        if name != "manifest.json" && name != "repositories" {
            assert_eq!(
                Some(bytes),
                a_members
                    .get(name)
                    .or(members(&fs::read(&b).unwrap()).get(name)),
                "{name}"
            );
        }
    }
    assert_eq!(
        got.keys().filter(|n| n.ends_with("layer.tar")).count(),
        6,
        "{:?}",
        got.keys()
    );
    // Deterministic, and the merged archive reads as a base: an image is
    // picked by name and tag.
    let again = dir.path().join("again.tar");
    run(stevedore()
        .arg("merge")
        .arg(&a_gz)
        .arg(&b_zst)
        .arg("--out")
        .arg(&again));
    assert!(fs::read(&again).unwrap() == bytes, "two merges differ");
    let rootfs = dir.path().join("rootfs.tar");
    run(stevedore()
        .arg("export")
        .arg(&out)
        .args(["--name", "app", "--tag", "3", "--out"])
        .arg(&rootfs));
    assert_eq!(
        members(&fs::read(&rootfs).unwrap())
            .keys()
            .collect::<Vec<_>>(),
        ["./", "./base", "./one", "./three"]
    );
}

/// The same member name with other bytes in two inputs (as a gzip and a
/// zstd build of one image have): the later one is renamed after its
/// digest, and each image keeps its own layers.
#[test]
fn merge_renames_members_that_clash() {
    let dir = tempdir();
    let one = dir.path().join("one.tar");
    write_archive(
        &one,
        vec![docker_members(&[layer("a", b"1")], Some("x:1"), "")],
        Some(json!({ "x": { "1": "layer0" } })),
    );
    let two = dir.path().join("two.tar");
    let second = layer("a", b"2");
    let hex = second.diff_id[7..].to_owned();
    write_archive(
        &two,
        vec![docker_members(&[second], Some("x:2"), "")],
        Some(json!({ "x": { "2": "layer0" } })),
    );
    let out = dir.path().join("merged.tar");
    run(stevedore()
        .arg("merge")
        .arg(&one)
        .arg(&two)
        .arg("--out")
        .arg(&out));
    let got = members(&fs::read(&out).unwrap());
    let manifest: Value = serde_json::from_slice(&got["manifest.json"]).unwrap();
    assert_eq!(manifest[0]["Layers"], json!(["layer0/layer.tar"]));
    assert_eq!(manifest[1]["Layers"], json!([format!("{hex}/layer.tar")]));
    let repositories: Value = serde_json::from_slice(&got["repositories"]).unwrap();
    assert_eq!(repositories, json!({ "x": { "1": "layer0", "2": hex } }));
    for (tag, data) in [("1", "1"), ("2", "2")] {
        let rootfs = dir.path().join(format!("rootfs-{tag}.tar"));
        run(stevedore()
            .arg("export")
            .arg(&out)
            .args(["--name", "x", "--tag", tag, "--out"])
            .arg(&rootfs));
        assert_eq!(members(&fs::read(&rootfs).unwrap())["./a"], data.as_bytes());
    }
}

#[test]
fn merge_refuses_what_holds_no_image_and_missing_members() {
    let dir = tempdir();
    let out_dir = tempdir();
    let out = out_dir.path().join("merged.tar");
    let fails = |inputs: &[&Path], want: &str| {
        let err = run_fail(stevedore().arg("merge").args(inputs).arg("--out").arg(&out));
        assert_one_line_error(&err, "merge");
        assert!(err.contains(want), "{err:?} does not say {want:?}");
        assert_eq!(dir_names(out_dir.path()), Vec::<String>::new());
    };

    let oci = dir.path().join("oci.tar");
    fs::write(
        &oci,
        tar_of(&[(
            "index.json".into(),
            serde_json::to_vec(&json!({ "manifests": [{
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "digest": format!("sha256:{}", "0".repeat(64)),
                "size": 1,
            }] }))
            .unwrap(),
        )]),
    )
    .unwrap();
    fails(&[&oci], "manifest 1 of index.json is an index of images");
    let empty = dir.path().join("empty.tar");
    fs::write(
        &empty,
        tar_of(&[("index.json".into(), br#"{"manifests":[]}"#.to_vec())]),
    )
    .unwrap();
    fails(&[&empty], "it holds no image");
    fails(&[dir.path()], "index.json is missing");
    let not_an_image = dir.path().join("not.tar");
    fs::write(&not_an_image, tar_of(&[("x".into(), b"x".to_vec())])).unwrap();
    fails(&[&not_an_image], "has no manifest.json or index.json");

    let one = dir.path().join("one.tar");
    write_archive(
        &one,
        vec![docker_members(&[layer("a", b"1")], Some("x:1"), "")],
        None,
    );
    let missing = dir.path().join("missing.tar");
    let (mut m, mut entry) = docker_members(&[layer("a", b"1")], Some("x:1"), "");
    entry["Layers"][0] = json!("gone/layer.tar");
    m.push((
        "manifest.json".into(),
        serde_json::to_vec(&[entry]).unwrap(),
    ));
    fs::write(&missing, tar_of(&m)).unwrap();
    fails(
        &[&one, &missing],
        "names \"gone/layer.tar\", which is not in the archive",
    );
}

/// An oci-archive and an OCI layout directory merged with a
/// docker-archive: podman loads the three and runs each.
#[test]
fn merge_takes_oci_layouts_and_podman_runs_them() {
    let busybox = busybox_store_path();
    let dir = tempdir();
    let mut inputs = Vec::new();
    for (n, format, compress) in [
        ("docker", "docker-archive", "gzip"),
        ("oci-archive", "oci-archive", "zstd"),
        ("oci-dir", "oci-dir", "none"),
    ] {
        let sub = dir.path().join(n);
        fs::create_dir(&sub).unwrap();
        let spec = spec(
            &format!("stevedore-merge-{n}"),
            &[vec![busybox.as_path()]],
            json!({ "config": { "Cmd": [busybox.join("bin/sh"), "-c", format!("echo from {n}")] } }),
        );
        let out = sub.join("image");
        build(&write_spec(&sub, &spec), format, compress, &out);
        inputs.push(out);
    }
    let merged = dir.path().join("merged.tar");
    run(stevedore()
        .arg("merge")
        .args(&inputs)
        .arg("--out")
        .arg(&merged));
    let names = ["docker", "oci-archive", "oci-dir"];
    let _loaded: Vec<PodmanImage> = names
        .iter()
        .map(|n| PodmanImage(format!("localhost/stevedore-merge-{n}:latest")))
        .collect();
    let load = run_in_podman_store(podman().arg("load").arg("-i").arg(&merged));
    let said = String::from_utf8_lossy(&load.stdout).into_owned();
    let mut failures = Vec::new();
    for n in names {
        let image = format!("localhost/stevedore-merge-{n}:latest");
        if !said.contains(&image) {
            failures.push(format!("podman load did not load {image}: {said}"));
            continue;
        }
        let ran = podman()
            .args(["run", "--rm", "--network", "none", &image])
            .output()
            .unwrap();
        if String::from_utf8_lossy(&ran.stdout).trim() != format!("from {n}") {
            failures.push(format!("{image}: {ran:?}"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// `mergeImages` of a gzip, a zstd and an uncompressed buildLayeredImage,
/// and of one compressed as a whole: podman loads all and runs each.
#[test]
fn merge_images_nix_loads_and_runs_in_podman() {
    let dir = tempdir();
    let link = dir.path().join("result");
    let helper = env!("CARGO_BIN_EXE_stevedore");
    let root = env!("CARGO_MANIFEST_DIR");
    let expr = format!(
        r#"let
          st = import {root}/nix {{ helper = "{helper}"; }};
          ex = import {root}/examples {{ helper = "{helper}"; }};
          image = tag: compressor: st.buildLayeredImage {{
            name = "stevedore-merge-${{tag}}";
            tag = "latest";
            contents = [ ex.busybox ];
            inherit compressor;
            config.Cmd = [ "/bin/sh" "-c" "echo merged ${{tag}}" ];
          }};
          whole = derivation {{
            name = "stevedore-merge-whole.tar.gz";
            system = builtins.currentSystem;
            builder = "/bin/sh";
            PATH = "/usr/bin:/bin";
            args = [ "-c" "gzip -n -c ${{image "whole" "zstd"}} > $out" ];
          }};
        in st.mergeImages [ (image "gz" "gz") (image "zstd" "zstd") (image "none" "none") whole ]"#
    );
    let out = run(Command::new("nix-build")
        .args(["-E", &expr, "-o"])
        .arg(&link));
    let path = String::from_utf8(out.stdout).unwrap();
    let path = Path::new(path.trim());
    assert!(
        path.to_string_lossy().ends_with("-merge-docker-images"),
        "{}",
        path.display()
    );
    let names = ["gz", "zstd", "none", "whole"];
    let _loaded: Vec<PodmanImage> = names
        .iter()
        .map(|n| PodmanImage(format!("localhost/stevedore-merge-{n}:latest")))
        .collect();
    let load = run_in_podman_store(podman().arg("load").arg("-i").arg(path));
    let said = String::from_utf8_lossy(&load.stdout).into_owned();
    let mut failures = Vec::new();
    for n in names {
        let image = format!("localhost/stevedore-merge-{n}:latest");
        if !said.contains(&image) {
            failures.push(format!("podman load did not load {image}: {said}"));
            continue;
        }
        let ran = podman()
            .args(["run", "--rm", "--network", "none", &image])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&ran.stdout);
        if stdout.trim() != format!("merged {n}") {
            failures.push(format!(
                "{image} said {stdout:?} {}",
                String::from_utf8_lossy(&ran.stderr)
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// The library's own checks, at evaluation.
#[test]
fn merge_and_export_arguments_are_checked_at_evaluation() {
    let helper = env!("CARGO_BIN_EXE_stevedore");
    let root = env!("CARGO_MANIFEST_DIR");
    for (call, want) in [
        (
            "st.mergeImages [ ]",
            "mergeImages: takes a non-empty list of images, such as [ app db ]",
        ),
        (
            r#"st.mergeImages [ "/x.tar" 3 ]"#,
            "mergeImages: image 2 of the list is not an image",
        ),
        (
            "st.exportImage { fromImage = 3; }",
            "exportImage: fromImage must be an image",
        ),
        (
            r#"st.exportImage { fromImage = "/x.tar"; name = ""; }"#,
            "exportImage: name must be a non-empty string",
        ),
        (
            r#"st.exportImage { fromImage = "/x.tar"; fromImageName = 1; }"#,
            "exportImage: fromImageName must be a string or null",
        ),
    ] {
        let expr = format!(
            r#"let st = import {root}/nix {{ helper = "{helper}"; }}; in ({call}).drvPath"#
        );
        let err = run_fail(Command::new("nix-instantiate").args(["--eval", "-E", &expr]));
        assert!(err.contains(want), "{call}: {err}");
    }
}
