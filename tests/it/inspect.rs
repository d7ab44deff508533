//! `stevedore inspect`, `diff` and `why` as users read them: on a base
//! image (a docker-archive, and the OCI layout skopeo makes of it), on a
//! layered image and a launcher of the Nix library, and on an image in a
//! registry (manifest and config only). Digests are checked against
//! `skopeo inspect`, sizes against the files, store paths against the
//! layers' tars, narHash and references against the host's store.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

use crate::support::digest::sha256;
use crate::support::docker_archive::{
    Blob, archive_layer_digests, archive_layers, docker_archive, store_paths_in,
};
use crate::support::nix::build_example;
use crate::support::process::{
    assert_one_line_error, run, run_fail, stdout_of, stevedore, tempdir,
};
use crate::support::registry::Registry;
use crate::support::tar::{raw_entry, raw_layer, tar_members};

fn inspect_json(image: &str, extra: &[&str]) -> Value {
    let out = stdout_of(
        stevedore()
            .arg("inspect")
            .arg(image)
            .arg("--json")
            .args(extra),
    );
    serde_json::from_str(&out).unwrap()
}

fn skopeo_inspect(transport: &str, extra: &[&str]) -> Value {
    let out = stdout_of(
        Command::new("skopeo")
            .arg("inspect")
            .args(extra)
            .arg(transport),
    );
    serde_json::from_str(&out).unwrap()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

/// Bytes of the regular files below `path`, as the store has them.
fn file_bytes(path: &Path) -> u64 {
    let md = std::fs::symlink_metadata(path).unwrap();
    if md.is_dir() {
        std::fs::read_dir(path)
            .unwrap()
            .map(|e| file_bytes(&e.unwrap().path()))
            .sum()
    } else if md.is_file() {
        md.len()
    } else {
        0
    }
}

/// `sha256:<base16>` of the narHash the host's store records for `path`.
fn host_nar_hash(path: &str) -> String {
    let hash = stdout_of(Command::new("nix-store").args(["-q", "--hash", path]));
    let hex = stdout_of(Command::new("nix-hash").args([
        "--type",
        "sha256",
        "--to-base16",
        hash.trim().trim_start_matches("sha256:"),
    ]));
    format!("sha256:{}", hex.trim())
}

/// The store paths of each layer, as `inspect --json` lists them.
fn layer_store_paths(doc: &Value) -> Vec<BTreeSet<String>> {
    doc["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            l["storePaths"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["path"].as_str().unwrap().to_owned())
                .collect()
        })
        .collect()
}

#[test]
fn inspect_of_a_base_image_and_the_oci_layout_skopeo_makes_of_it() {
    let dir = tempdir();
    let store = "nix/store/0123456789abcdfghijklmnpqrsvwxyz-pkg-1.0";
    let first = raw_layer(&[
        raw_entry("bin/", b'5', b"", "", None),
        raw_entry("bin/tool", b'0', &[7u8; 2048], "", None),
        raw_entry("etc/", b'5', b"", "", None),
        raw_entry("etc/os-release", b'0', &[b'x'; 300], "", None),
    ]);
    let second = raw_layer(&[
        raw_entry("nix/", b'5', b"", "", None),
        raw_entry("nix/store/", b'5', b"", "", None),
        raw_entry(&format!("{store}/"), b'5', b"", "", None),
        raw_entry(&format!("{store}/data"), b'0', &[1u8; 1536], "", None),
        raw_entry("usr/", b'5', b"", "", None),
        raw_entry("usr/bin/", b'5', b"", "", None),
        raw_entry("usr/bin/tool", b'2', b"", "/bin/tool", None),
    ]);
    let tars = [first.clone(), second.clone()];
    let archive = docker_archive(dir.path(), &[Blob::gzip(&first), Blob::gzip(&second)]);
    let layout = dir.path().join("layout");
    run(Command::new("skopeo")
        .arg("copy")
        .arg(format!("docker-archive:{}", archive.display()))
        .arg(format!("oci:{}:base", layout.display())));

    let from_archive = inspect_json(archive.to_str().unwrap(), &[]);
    let from_layout = inspect_json(layout.to_str().unwrap(), &[]);
    let skopeo_archive = skopeo_inspect(&format!("docker-archive:{}", archive.display()), &[]);
    let skopeo_layout = skopeo_inspect(&format!("oci:{}:base", layout.display()), &[]);
    let raw_manifest = stdout_of(
        Command::new("skopeo")
            .args(["inspect", "--raw"])
            .arg(format!("oci:{}:base", layout.display())),
    );
    let manifest: Value = serde_json::from_str(&raw_manifest).unwrap();

    // skopeo writes the config anew in OCI form: each has its own id.
    assert_eq!(
        from_layout["id"], manifest["config"]["digest"],
        "the config digest"
    );
    let members = tar_members(&archive);
    let entry: Value = serde_json::from_slice(&members["manifest.json"]).unwrap();
    let config = &members[entry[0]["Config"].as_str().unwrap()];
    assert_eq!(from_archive["id"], sha256(config), "the config digest");
    for doc in [&from_archive, &from_layout] {
        assert_eq!(
            doc["platforms"],
            json!([{"os": "linux", "architecture": "amd64"}])
        );
        let layers = doc["layers"].as_array().unwrap();
        assert_eq!(layers.len(), 2);
        for (layer, tar) in layers.iter().zip(&tars) {
            assert_eq!(layer["size"], tar.len(), "the uncompressed tar's bytes");
            assert_eq!(layer["diffId"], sha256(tar));
        }
        assert_eq!(
            layers[0]["files"],
            json!([
                {"path": "/bin/tool", "kind": "file", "size": 2048},
                {"path": "/etc/os-release", "kind": "file", "size": 300},
            ])
        );
        assert_eq!(
            layers[1]["storePaths"],
            json!([{"path": format!("/{store}"), "size": 1536}])
        );
        assert_eq!(
            layers[1]["files"],
            json!([{"path": "/usr/bin/tool", "kind": "symlink", "size": 0, "target": "/bin/tool"}])
        );
    }
    // skopeo names a docker-archive's layers by diff_id, an OCI layout's by
    // blob digest.
    let diff_ids: Vec<String> = from_archive["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["diffId"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(diff_ids, strings(&skopeo_archive["Layers"]));
    assert_eq!(from_archive["names"], json!(["hostile:latest"]));
    for (i, l) in from_layout["layers"].as_array().unwrap().iter().enumerate() {
        assert_eq!(l["digest"], skopeo_layout["Layers"][i]);
        assert_eq!(l["compressedSize"], manifest["layers"][i]["size"]);
        assert_eq!(l["compression"], "gzip");
    }
    assert_eq!(from_layout["manifest"], skopeo_layout["Digest"]);

    // What people read: aligned rows, binary units.
    let text = stdout_of(stevedore().arg("inspect").arg(&layout));
    for line in [
        "platform  linux/amd64",
        "  2.0 KiB  /bin/tool",
        "  300 B    /etc/os-release",
        &format!("  1.5 KiB  /{store}"),
        "  symlink  /usr/bin/tool -> /bin/tool",
    ] {
        assert!(text.lines().any(|l| l == line), "{line:?} in:\n{text}");
    }
    assert!(text.contains("no narHash or references known"), "{text}");

    // skopeo's copy has a config of its own, and layers compressed anew:
    // a push of it after the archive sends the blobs the archive lacks.
    let d: Value = serde_json::from_str(&stdout_of(
        stevedore()
            .arg("diff")
            .arg(&archive)
            .arg(&layout)
            .arg("--json"),
    ))
    .unwrap();
    let old_blobs: BTreeSet<String> = archive_layer_digests(&archive).into_iter().collect();
    let mut shared = Vec::new();
    let mut want_bytes = manifest["config"]["size"].as_u64().unwrap();
    for l in manifest["layers"].as_array().unwrap() {
        let digest = l["digest"].as_str().unwrap().to_owned();
        if old_blobs.contains(&digest) {
            shared.push(digest);
        } else {
            want_bytes += l["size"].as_u64().unwrap();
        }
    }
    assert_eq!(d["sharedLayers"], json!(shared));
    assert_eq!(d["pushBytes"], want_bytes);
    assert_eq!(d["movedStorePaths"], json!([]));
    // Nothing says what refers to what in this image.
    let err = run_fail(
        stevedore()
            .arg("why")
            .arg(&layout)
            .arg(format!("/{store}/data")),
    );
    assert_one_line_error(&err, "references of its store paths are unknown");
}

#[test]
fn inspect_of_a_layered_image_and_a_launcher_lists_store_paths_with_their_sizes() {
    let layered = build_example("layered");
    let hello = build_example("hello");
    let doc = inspect_json(layered.path.to_str().unwrap(), &[]);
    let layers = archive_layers(&layered.path);
    let skopeo = skopeo_inspect(&format!("docker-archive:{}", layered.path.display()), &[]);
    assert_eq!(doc["names"], json!(["stevedore-example-layered:latest"]));
    assert_eq!(doc["graph"], "host-store");
    let listed = layer_store_paths(&doc);
    for (i, layer) in layers.iter().enumerate() {
        let l = &doc["layers"][i];
        assert_eq!(l["digest"], layer.digest);
        assert_eq!(l["diffId"], skopeo["Layers"][i]);
        assert_eq!(listed[i], store_paths_in(layer), "layer {}", i + 1);
        for p in l["storePaths"].as_array().unwrap() {
            let path = p["path"].as_str().unwrap();
            assert_eq!(p["size"], file_bytes(Path::new(path)), "{path}");
        }
    }
    // What the host's store knows of each path.
    for (path, info) in doc["storePaths"].as_object().unwrap() {
        assert_eq!(info["narHash"], host_nar_hash(path), "{path}");
        let refs: BTreeSet<String> =
            stdout_of(Command::new("nix-store").args(["-q", "--references", path]))
                .lines()
                .filter(|r| r != path)
                .map(str::to_owned)
                .collect();
        let have: BTreeSet<String> = strings(&info["references"]).into_iter().collect();
        assert_eq!(have, refs, "{path}");
    }

    // A launcher: its layers are those it streams.
    let streamed = hello.dir.path().join("streamed.tar");
    let out = run(&mut hello.command());
    std::fs::write(&streamed, out.stdout).unwrap();
    let doc = inspect_json(hello.path.to_str().unwrap(), &[]);
    let layers = archive_layers(&streamed);
    assert_eq!(doc["layers"].as_array().unwrap().len(), layers.len());
    let listed = layer_store_paths(&doc);
    for (i, layer) in layers.iter().enumerate() {
        assert_eq!(doc["layers"][i]["digest"], layer.digest);
        assert_eq!(listed[i], store_paths_in(layer));
    }
    let text = stdout_of(stevedore().arg("inspect").arg(&hello.path));
    assert!(text.contains("stevedore-example-hello:latest"), "{text}");
    assert!(text.contains(" MiB  /nix/store/"), "{text}");
    // The launcher's /bin/sh is busybox's, the one root.
    let out = stdout_of(stevedore().arg("why").arg(&hello.path).arg("/bin/sh"));
    assert!(
        out.trim().ends_with("-busybox  (root)") && out.lines().count() == 1,
        "{out}"
    );

    // An image with a Nix database: narHash and references from it.
    let with_db = build_example("nixDb");
    let doc = inspect_json(with_db.path.to_str().unwrap(), &[]);
    assert_eq!(doc["graph"], "image-db");
    for (path, info) in doc["storePaths"].as_object().unwrap() {
        assert_eq!(info["narHash"], host_nar_hash(path), "{path}");
    }
}

#[test]
fn diff_counts_what_a_push_sends_and_why_names_the_chain() {
    let layered = build_example("layered");
    let two = build_example("twoLayers");
    let hello = build_example("hello");
    let d: Value = serde_json::from_str(&stdout_of(
        stevedore()
            .arg("diff")
            .arg(&layered.path)
            .arg(&two.path)
            .arg("--json"),
    ))
    .unwrap();
    // The same store paths in other layers.
    assert_eq!(d["addedStorePaths"], json!([]));
    assert_eq!(d["removedStorePaths"], json!([]));
    let old_layers = archive_layers(&layered.path);
    let new_layers = archive_layers(&two.path);
    let old_digests: BTreeSet<&str> = old_layers.iter().map(|l| l.digest.as_str()).collect();
    // The bytes of the new archive's blobs the old one lacks, config
    // included.
    let members = tar_members(&two.path);
    let manifest: Value = serde_json::from_slice(&members["manifest.json"]).unwrap();
    let mut want = members[manifest[0]["Config"].as_str().unwrap()].len() as u64;
    let mut sent = BTreeSet::new();
    for (name, layer) in manifest[0]["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .zip(&new_layers)
    {
        if !old_digests.contains(layer.digest.as_str()) && sent.insert(&layer.digest) {
            want += members[name.as_str().unwrap()].len() as u64;
        }
    }
    assert_eq!(d["pushBytes"], want);
    assert_eq!(d["pushBlobs"], sent.len() + 1);
    let moved: BTreeSet<String> = d["movedStorePaths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["path"].as_str().unwrap().to_owned())
        .collect();
    let all: BTreeSet<String> = new_layers.iter().flat_map(store_paths_in).collect();
    assert_eq!(moved, all, "no layer of twoLayers is one of layered's");

    // Another image: paths added and removed.
    let text = stdout_of(stevedore().arg("diff").arg(&layered.path).arg(&hello.path));
    let hello_paths: BTreeSet<String> = {
        let doc = inspect_json(hello.path.to_str().unwrap(), &[]);
        doc["storePaths"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect()
    };
    for p in all.difference(&hello_paths) {
        assert!(
            text.lines().any(|l| l == format!("-  {p}")),
            "{p} in:\n{text}"
        );
    }
    assert!(text.contains("layers       "), "{text}");

    // why: the chain from a root, each step a reference.
    let doc = inspect_json(layered.path.to_str().unwrap(), &[]);
    let store: BTreeMap<String, Value> = doc["storePaths"]
        .as_object()
        .unwrap()
        .clone()
        .into_iter()
        .collect();
    let busybox = store
        .keys()
        .find(|p| p.ends_with("-busybox"))
        .unwrap()
        .clone();
    let dep1 = store
        .keys()
        .find(|p| p.ends_with("-dep-1"))
        .unwrap()
        .clone();
    for target in [&busybox, &dep1] {
        let out = stdout_of(stevedore().arg("why").arg(&layered.path).arg(target));
        let chain: Vec<&str> = out
            .lines()
            .map(|l| l.trim().trim_end_matches("  (root)"))
            .collect();
        assert_eq!(chain.last().unwrap(), target, "{out}");
        let root = chain[0];
        assert!(
            store
                .values()
                .all(|i| !strings(&i["references"]).iter().any(|r| r == root)),
            "{root} is a root"
        );
        for pair in chain.windows(2) {
            let refs = stdout_of(Command::new("nix-store").args(["-q", "--references", pair[0]]));
            assert!(
                refs.lines().any(|r| r == pair[1]),
                "{} refers to {}",
                pair[0],
                pair[1]
            );
        }
    }
    // A file that links into the store is resolved to its store path.
    let out = stdout_of(stevedore().arg("why").arg(&layered.path).arg("/bin/app"));
    assert!(
        out.lines().count() == 1 && out.contains("-app  (root)"),
        "{out}"
    );
    let err = run_fail(
        stevedore()
            .arg("why")
            .arg(&layered.path)
            .arg("/nix/store/00000000000000000000000000000000-absent"),
    );
    assert_one_line_error(&err, "00000000000000000000000000000000-absent");
}

#[test]
fn inspect_of_an_image_in_a_registry_reads_its_manifest_and_config_only() {
    let layered = build_example("layered");
    let reg = Registry::start();
    let dest = reg.reference("layered", "v1");
    run(reg
        .stevedore()
        .arg("push")
        .arg(&layered.path)
        .arg(&dest)
        .args(reg.stevedore_args()));
    let local = inspect_json(layered.path.to_str().unwrap(), &[]);
    let before = reg.log();
    let remote = inspect_json(&dest, &["--tls-verify=false"]);
    let skopeo = skopeo_inspect(&dest, &["--tls-verify=false"]);
    let manifest = skopeo_inspect(&dest, &["--tls-verify=false", "--raw"]);
    assert_eq!(remote["manifest"], skopeo["Digest"]);
    assert_eq!(remote["id"], local["id"]);
    for (i, l) in remote["layers"].as_array().unwrap().iter().enumerate() {
        assert_eq!(l["digest"], skopeo["Layers"][i]);
        assert_eq!(l["compressedSize"], manifest["layers"][i]["size"]);
        assert_eq!(l["size"], Value::Null, "not downloaded");
    }
    // The store paths of each layer, from the history comments.
    assert_eq!(layer_store_paths(&remote), layer_store_paths(&local));
    let log = reg.log();
    let after = &log[before.len()..];
    for l in remote["layers"].as_array().unwrap() {
        let digest = l["digest"].as_str().unwrap();
        assert!(
            !after
                .lines()
                .any(|line| line.contains("GET") && line.contains(digest)),
            "layer {digest} was downloaded:\n{after}"
        );
    }

    // Asked for, the layers come too: what the image holds, as on disk.
    let whole = inspect_json(&dest, &["--tls-verify=false", "--layers"]);
    assert_eq!(whole["manifest"], skopeo["Digest"]);
    assert_eq!(whole["storePaths"], local["storePaths"]);
    for (w, l) in whole["layers"]
        .as_array()
        .unwrap()
        .iter()
        .zip(local["layers"].as_array().unwrap())
    {
        assert_eq!(w["storePaths"], l["storePaths"]);
        assert_eq!(w["files"], l["files"]);
        assert_eq!(w["size"], l["size"]);
    }
}
