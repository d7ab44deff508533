//! Base images given to the helper directly (`base` in the spec): archives
//! made here by hand, by podman and by stevedore in each form a base comes
//! in, with whiteouts, several images in one archive, and the layers of
//! the base checked byte for byte in the result.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use crate::support::digest::sha256;
use crate::support::docker_archive::archive_layer_digests;
use crate::support::podman::{PodmanImage, podman, run_in_podman_store};
use crate::support::process::{run, run_fail, stevedore, tempdir};
use crate::support::spec::{build, spec, write_spec};
use crate::support::store::busybox_store_path;
use crate::support::tar::tar_members;

/// A layer made here: `(name, contents)` files and `name/` directories.
fn layer_tar(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in entries {
        let mut h = tar::Header::new_ustar();
        if name.ends_with('/') {
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(0o755);
        } else {
            h.set_entry_type(tar::EntryType::Regular);
            h.set_mode(0o644);
        }
        h.set_size(data.len() as u64);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1);
        h.set_path(name).unwrap();
        h.set_cksum();
        b.append(&h, *data).unwrap();
    }
    b.into_inner().unwrap()
}

/// A docker-archive of uncompressed `layers` with `config` (rootfs added).
fn docker_archive(path: &Path, tag: &str, layers: &[Vec<u8>], mut config: Value) {
    let diff_ids: Vec<String> = layers.iter().map(|l| sha256(l)).collect();
    config["rootfs"] = json!({ "type": "layers", "diff_ids": diff_ids });
    config["architecture"] = json!("amd64");
    config["os"] = json!("linux");
    let config = serde_json::to_vec(&config).unwrap();
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    let mut names = Vec::new();
    for (i, l) in layers.iter().enumerate() {
        let name = format!("layer{i}.tar");
        files.push((name.clone(), l.clone()));
        names.push(name);
    }
    files.push(("config.json".into(), config));
    files.push((
        "manifest.json".into(),
        serde_json::to_vec(
            &json!([{ "Config": "config.json", "RepoTags": [tag], "Layers": names }]),
        )
        .unwrap(),
    ));
    let mut b = tar::Builder::new(fs::File::create(path).unwrap());
    for (name, data) in files {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o444);
        h.set_mtime(1);
        h.set_path(&name).unwrap();
        h.set_cksum();
        b.append(&h, &data[..]).unwrap();
    }
    b.finish().unwrap();
}

/// The `sha256:` digests of a docker-archive's layer blobs, and its config.
fn archive_layers(path: &Path) -> (Vec<String>, Value) {
    let files = tar_members(path);
    let manifest: Value = serde_json::from_slice(&files["manifest.json"]).unwrap();
    let config = serde_json::from_slice(&files[manifest[0]["Config"].as_str().unwrap()]).unwrap();
    (archive_layer_digests(path), config)
}

/// `podman load -i ARCHIVE`, then `podman run` of `reference` with
/// `args`; the image is removed afterwards.
fn load_and_run(archive: &Path, reference: &str, args: &[&str]) -> String {
    let image = PodmanImage(reference.to_owned());
    run_in_podman_store(podman().arg("load").arg("-i").arg(archive));
    let out = podman()
        .args(["run", "--rm", "--network", "none", reference])
        .args(args)
        .output()
        .unwrap();
    drop(image);
    assert!(
        out.status.success(),
        "podman run {reference}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A tree with one file, `rel`, holding `text`.
fn tree_with(dir: &Path, rel: &str, text: &str) -> PathBuf {
    let root = dir.join("tree");
    let file = root.join(rel);
    fs::create_dir_all(file.parent().unwrap()).unwrap();
    fs::write(file, text).unwrap();
    root
}

#[test]
fn whiteouts_of_the_base_stay_unless_the_new_layers_add_the_path_back() {
    let dir = tempdir();
    let busybox = busybox_store_path();
    let bb_name = busybox.file_name().unwrap().to_str().unwrap().to_owned();
    // Layer 1 has /etc/gone, /etc/back and (a stand-in for) the busybox
    // store path; layer 2 deletes all three.
    let l1 = layer_tar(&[
        ("etc/", b""),
        ("etc/back", b"old"),
        ("etc/gone", b"gone"),
        ("etc/kept", b"kept"),
        ("nix/", b""),
        ("nix/store/", b""),
        (&format!("nix/store/{bb_name}/"), b""),
        (&format!("nix/store/{bb_name}/stand-in"), b""),
    ]);
    let l2 = layer_tar(&[
        ("etc/.wh.back", b""),
        ("etc/.wh.gone", b""),
        (&format!("nix/store/.wh.{bb_name}"), b""),
    ]);
    let base = dir.path().join("base.tar");
    docker_archive(
        &base,
        "handmade/base:1",
        &[l1.clone(), l2.clone()],
        json!({ "config": { "Env": ["PATH=/bin", "A=base", "KEEP=1"] } }),
    );
    let tree = tree_with(dir.path(), "etc/back", "new");
    let spec_path = write_spec(
        dir.path(),
        &spec(
            "stevedore-it/whiteouts",
            &[vec![&busybox]],
            json!({
                "base": { "path": base },
                "customisation": { "trees": [tree] },
                "config": {
                    "Env": ["A=child", "NEW=1"],
                    "Cmd": [busybox.join("bin/sh"), "-c",
                            "for f in gone back kept; do test -e /etc/$f && cat /etc/$f || printf no-$f; echo; done; echo $A $KEEP $NEW"]
                }
            }),
        ),
    );
    let out = dir.path().join("image.tar");
    build(&spec_path, "docker-archive", "gzip", &out);
    let (layers, config) = archive_layers(&out);
    assert_eq!(
        layers[..2],
        [sha256(&l1), sha256(&l2)],
        "the base's layers, byte for byte"
    );
    assert_eq!(
        config["config"]["Env"],
        json!(["PATH=/bin", "A=child", "KEEP=1", "NEW=1"]),
        "Env merged by name, the new value winning"
    );
    // busybox was deleted in the base, so the store layer holds it again.
    let said = load_and_run(&out, "localhost/stevedore-it/whiteouts:latest", &[]);
    assert_eq!(said, "no-gone\nnew\nkept\nchild 1 1\n");
}

#[test]
fn oci_layout_base_keeps_its_blobs_and_media_types() {
    let dir = tempdir();
    let busybox = busybox_store_path();
    let base_spec = write_spec(
        dir.path(),
        &spec(
            "stevedore-it/oci-base",
            &[vec![&busybox]],
            json!({ "config": { "Cmd": [busybox.join("bin/echo"), "from the base"] } }),
        ),
    );
    let base = dir.path().join("base-oci");
    build(&base_spec, "oci-dir", "zstd", &base);
    let index: Value = serde_json::from_slice(&fs::read(base.join("index.json")).unwrap()).unwrap();
    let manifest_digest = index["manifests"][0]["digest"].as_str().unwrap();
    let manifest: Value = serde_json::from_slice(
        &fs::read(base.join("blobs/sha256").join(&manifest_digest[7..])).unwrap(),
    )
    .unwrap();
    let base_layer = manifest["layers"][0].clone();

    let tree = tree_with(dir.path(), "etc/motd", "on an OCI base");
    let top_spec = write_spec(
        dir.path(),
        &spec(
            "stevedore-it/on-oci",
            &[],
            json!({ "base": { "path": base }, "customisation": { "trees": [tree] } }),
        ),
    );
    let top = dir.path().join("top-oci");
    build(&top_spec, "oci-dir", "gzip", &top);
    let index: Value = serde_json::from_slice(&fs::read(top.join("index.json")).unwrap()).unwrap();
    let manifest_digest = index["manifests"][0]["digest"].as_str().unwrap();
    let manifest: Value = serde_json::from_slice(
        &fs::read(top.join("blobs/sha256").join(&manifest_digest[7..])).unwrap(),
    )
    .unwrap();
    assert_eq!(
        manifest["layers"][0], base_layer,
        "the base layer's descriptor"
    );
    assert_eq!(
        manifest["layers"][0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+zstd"
    );
    assert_eq!(
        manifest["layers"][1]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    // The base's Cmd is inherited; the new file is there.
    let archive = dir.path().join("top.tar");
    build(&top_spec, "docker-archive", "gzip", &archive);
    let said = load_and_run(&archive, "localhost/stevedore-it/on-oci:latest", &[]);
    assert_eq!(said, "from the base\n");
    let said = load_and_run(
        &archive,
        "localhost/stevedore-it/on-oci:latest",
        &[busybox.join("bin/cat").to_str().unwrap(), "/etc/motd"],
    );
    assert_eq!(said, "on an OCI base");
}

#[test]
fn compressed_archive_base_and_a_pick_from_several_images() {
    let dir = tempdir();
    let busybox = busybox_store_path();
    // Two images in one archive, written by podman.
    let mut digests = Vec::new();
    let mut loaded = Vec::new();
    for (name, word) in [("first", "one"), ("second", "two")] {
        let d = dir.path().join(name);
        fs::create_dir(&d).unwrap();
        let tree = tree_with(&d, "etc/word", word);
        let s = write_spec(
            &d,
            &spec(
                &format!("stevedore-it/pick-{name}"),
                &[vec![&busybox]],
                json!({ "tag": "v1", "customisation": { "trees": [tree] } }),
            ),
        );
        let out = d.join("image.tar");
        build(&s, "docker-archive", "none", &out);
        run_in_podman_store(podman().arg("load").arg("-i").arg(&out));
        loaded.push(PodmanImage(format!(
            "localhost/stevedore-it/pick-{name}:v1"
        )));
        digests.push(archive_layers(&out).0);
    }
    let both = dir.path().join("both.tar");
    run_in_podman_store(
        podman()
            .args(["save", "--multi-image-archive", "-o"])
            .arg(&both)
            .args(loaded.iter().map(|image| &image.0)),
    );
    drop(loaded);
    // The whole archive gzip-compressed, as dockerTools' buildImage
    // writes it with a compressor.
    let gz = dir.path().join("both.tar.gz");
    let mut enc =
        flate2::write::GzEncoder::new(fs::File::create(&gz).unwrap(), flate2::Compression::fast());
    enc.write_all(&fs::read(&both).unwrap()).unwrap();
    enc.finish().unwrap();

    for (base, pick, want) in [
        (
            &both,
            json!({ "tag": "v1", "name": "stevedore-it/pick-second" }),
            1,
        ),
        (&gz, json!({ "name": "stevedore-it/pick-second" }), 1),
        (&gz, json!({}), 0),
    ] {
        let mut b = pick.clone();
        b["path"] = json!(base);
        let s = write_spec(
            dir.path(),
            &spec(
                "stevedore-it/picked",
                &[],
                json!({ "base": b, "config": { "Cmd": [busybox.join("bin/cat"), "/etc/word"] } }),
            ),
        );
        let out = dir.path().join("picked.tar");
        let _ = fs::remove_file(&out);
        build(&s, "docker-archive", "gzip", &out);
        let (layers, _) = archive_layers(&out);
        assert_eq!(
            layers[..2],
            digests[want][..],
            "{pick}: the picked image's layers"
        );
        let said = load_and_run(&out, "localhost/stevedore-it/picked:latest", &[]);
        assert_eq!(said, ["one", "two"][want], "{pick}");
    }

    let s = write_spec(
        dir.path(),
        &spec(
            "stevedore-it/picked",
            &[],
            json!({ "base": { "path": both, "name": "stevedore-it/pick-third" } }),
        ),
    );
    let out = dir.path().join("none.tar");
    let err = run_fail(stevedore().arg("build").arg(&s).arg("--out").arg(&out));
    assert!(
        err.contains("has no image tagged stevedore-it/pick-third:*"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(!out.exists());
}

/// A base whose config and manifest are read-only, as in the store, and
/// an uncompressed archive straight from `podman save`.
#[test]
fn read_only_base_from_the_store_is_read() {
    let dir = tempdir();
    let busybox = busybox_store_path();
    let l1 = layer_tar(&[("etc/", b""), ("etc/base-file", b"in the base")]);
    let base_dir = dir.path().join("base");
    fs::create_dir(&base_dir).unwrap();
    docker_archive(
        &base_dir.join("base.tar"),
        "handmade/ro:1",
        &[l1],
        json!({ "config": {} }),
    );
    let out = run(Command::new("nix-store")
        .arg("--add")
        .arg(base_dir.join("base.tar")));
    let stored = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let s = write_spec(
        dir.path(),
        &spec(
            "stevedore-it/ro-base",
            &[vec![&busybox]],
            json!({ "base": { "path": stored },
                    "config": { "Cmd": [busybox.join("bin/cat"), "/etc/base-file"] } }),
        ),
    );
    let image = dir.path().join("image.tar");
    build(&s, "docker-archive", "zstd", &image);
    let said = load_and_run(&image, "localhost/stevedore-it/ro-base:latest", &[]);
    assert_eq!(said, "in the base");
}
