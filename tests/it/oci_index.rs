//! OCI layouts whose image is an index of images for several platforms,
//! made as users make them: images pushed to a registry, a list of them
//! made and pushed with `podman manifest`, and `skopeo copy --all` into an
//! `oci:` directory and an `oci-archive:`. A base, `export` and `merge`
//! take the image for this machine from them; `push` sends the whole
//! index.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::support::docker_archive::archive_layer_digests;
use crate::support::oci_layout::{blob_json, layer_digests};
use crate::support::podman::{PodmanImage, podman, run_in_podman_store};
use crate::support::process::{
    assert_one_line_error, dir_names, run, run_fail, stevedore, tempdir, unique,
};
use crate::support::registry::Registry;
use crate::support::spec::{build, build_fails, spec, write_spec};
use crate::support::store::busybox_store_path;
use crate::support::tar::tar_members;

/// The other architecture of the index, in OCI terms: one the host is
/// not.
fn other_arch() -> &'static str {
    if std::env::consts::ARCH == "aarch64" {
        "amd64"
    } else {
        "arm64"
    }
}

/// A multi-platform image in a registry and copied out of it.
struct MultiPlatform {
    reg: Registry,
    /// `skopeo copy --all ... oci:DIR:multi`.
    dir: PathBuf,
    /// `skopeo copy --all ... oci-archive:FILE:NAME:multi`.
    archive: PathBuf,
    /// The full name the archive's `index.json` gives the image.
    archive_name: String,
    /// The host's architecture, in OCI terms.
    host: String,
    /// The layer digests of the host's image, when the index has one.
    host_layers: Vec<String>,
    busybox: PathBuf,
    /// Holds the layouts and archives.
    _work: tempfile::TempDir,
}

impl MultiPlatform {
    /// Builds one small busybox image per entry of `platforms` (`None`:
    /// the host's, with a file only it has), pushes them, lists them with
    /// `podman manifest` and copies the list out with skopeo.
    fn make(platforms: &[Option<&str>]) -> MultiPlatform {
        let work = tempdir();
        let reg = Registry::start();
        let busybox = busybox_store_path();
        let n = unique();
        let mut host = String::new();
        let mut host_layers = Vec::new();
        let list = PodmanImage(format!("localhost/stevedore-index-list-{n}:latest"));
        run_in_podman_store(podman().args(["manifest", "create", &list.0]));
        for (i, arch) in platforms.iter().enumerate() {
            let sub = work.path().join(format!("image-{i}"));
            fs::create_dir(&sub).unwrap();
            let tree = sub.join("tree");
            fs::create_dir_all(tree.join("etc")).unwrap();
            let word = arch.unwrap_or("host");
            fs::write(tree.join("etc/arch"), word).unwrap();
            if arch.is_none() {
                fs::write(tree.join("etc/only-host"), "here").unwrap();
            }
            let mut extra = json!({
                "customisation": { "trees": [tree] },
                "config": { "Cmd": [busybox.join("bin/cat"), "/etc/arch"] },
            });
            if let Some(arch) = arch {
                extra["architecture"] = json!(arch);
            }
            let s = write_spec(&sub, &spec("stevedore-index/app", &[vec![&busybox]], extra));
            let out = sub.join("oci");
            build(&s, "oci-dir", "gzip", &out);
            let manifest = only_manifest(&out);
            let config = blob_json(&out, manifest["config"]["digest"].as_str().unwrap());
            if arch.is_none() {
                host = config["architecture"].as_str().unwrap().to_owned();
                host_layers = layer_digests(&manifest);
            }
            let reference = reg.reference("index/app", &format!("image-{i}"));
            run(stevedore()
                .arg("push")
                .arg(&out)
                .arg(&reference)
                .args(reg.stevedore_args()));
            run_in_podman_store(podman().args([
                "manifest",
                "add",
                "--tls-verify=false",
                &list.0,
                &reference,
            ]));
        }
        crate::support::podman::podman_manifest_push(&list, &reg.reference("index/app", "multi"));
        drop(list);
        if host.is_empty() {
            host = host_architecture(&busybox, work.path());
        }
        let dir = work.path().join("layout");
        let archive = work.path().join("layout.tar");
        let archive_name = format!("localhost/stevedore-index-{n}:multi");
        for to in [
            format!("oci:{}:multi", dir.display()),
            format!("oci-archive:{}:{archive_name}", archive.display()),
        ] {
            run(std::process::Command::new("skopeo")
                .args(["copy", "--all", "--src-tls-verify=false"])
                .arg(reg.reference("index/app", "multi"))
                .arg(to));
        }
        MultiPlatform {
            reg,
            dir,
            archive,
            archive_name,
            host,
            host_layers,
            busybox,
            _work: work,
        }
    }

    /// The platforms of the index the layout's `index.json` names.
    fn index(&self) -> Value {
        let top: Value =
            serde_json::from_slice(&fs::read(self.dir.join("index.json")).unwrap()).unwrap();
        assert_eq!(
            top["manifests"][0]["mediaType"], "application/vnd.oci.image.index.v1+json",
            "skopeo writes the list as an index: {top}"
        );
        blob_json(&self.dir, top["manifests"][0]["digest"].as_str().unwrap())
    }

    /// A copy of the layout whose `index.json` lists each platform's
    /// manifest itself, with its platform and the tag `multi`, rather than
    /// naming the index.
    fn flattened(&self, to: &Path) -> PathBuf {
        run(std::process::Command::new("cp")
            .arg("-r")
            .arg(&self.dir)
            .arg(to));
        let mut entries = self.index()["manifests"].clone();
        for entry in entries.as_array_mut().unwrap() {
            entry["annotations"] = json!({ "org.opencontainers.image.ref.name": "multi" });
        }
        let top = json!({ "schemaVersion": 2, "manifests": entries });
        fs::write(to.join("index.json"), serde_json::to_vec(&top).unwrap()).unwrap();
        to.to_owned()
    }
}

/// The host's architecture as stevedore names it: that of an image built
/// without one.
fn host_architecture(busybox: &Path, dir: &Path) -> String {
    let sub = dir.join("host-arch");
    fs::create_dir(&sub).unwrap();
    let s = write_spec(
        &sub,
        &spec("stevedore-index/probe", &[vec![busybox]], json!({})),
    );
    let out = sub.join("oci");
    build(&s, "oci-dir", "none", &out);
    let manifest = only_manifest(&out);
    let config = blob_json(&out, manifest["config"]["digest"].as_str().unwrap());
    config["architecture"].as_str().unwrap().to_owned()
}

/// The manifest of a layout holding one image.
fn only_manifest(layout: &Path) -> Value {
    let index: Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    blob_json(layout, index["manifests"][0]["digest"].as_str().unwrap())
}

/// `podman run` of an image that is loaded.
fn podman_run(reference: &str) -> String {
    let out = podman()
        .args(["run", "--rm", "--network", "none", reference])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "podman run {reference}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A spec on `base` (with `pick`'s `name` and `tag`), adding a file.
fn spec_on(dir: &Path, name: &str, base: &Path, pick: Value) -> PathBuf {
    let tree = dir.join("top-tree");
    fs::create_dir_all(tree.join("etc")).unwrap();
    fs::write(tree.join("etc/top"), "top").unwrap();
    let mut b = pick;
    b["path"] = json!(base);
    write_spec(
        dir,
        &spec(
            name,
            &[],
            json!({ "base": b, "customisation": { "trees": [tree] } }),
        ),
    )
}

#[test]
fn a_base_from_a_multi_platform_layout_is_the_hosts_image() {
    let image = MultiPlatform::make(&[None, Some(other_arch())]);
    let other = other_arch();
    let platforms: Vec<String> = image.index()["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["platform"]["architecture"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(platforms, [image.host.as_str(), other]);
    let dir = tempdir();
    let flat = image.flattened(&dir.path().join("flat"));
    let n = unique();
    for (base, pick, run_it) in [
        (&image.dir, json!({}), true),
        (&image.dir, json!({ "tag": "multi" }), false),
        (&image.archive, json!({}), true),
        (&flat, json!({ "tag": "multi" }), true),
    ] {
        let name = format!("stevedore-index/on-multi-{n}");
        let s = spec_on(dir.path(), &name, base, pick.clone());
        let out = dir.path().join("on-multi.tar");
        let _ = fs::remove_file(&out);
        build(&s, "docker-archive", "gzip", &out);
        let layers = archive_layer_digests(&out);
        assert_eq!(
            layers[..image.host_layers.len()],
            image.host_layers[..],
            "{} {pick}: the base layers are the host image's",
            base.display()
        );
        assert_eq!(layers.len(), image.host_layers.len() + 1);
        if run_it {
            let reference = format!("localhost/{name}:latest");
            let _loaded = PodmanImage(reference.clone());
            run_in_podman_store(podman().arg("load").arg("-i").arg(&out));
            assert_eq!(podman_run(&reference), "host", "{}", base.display());
        }
    }

    // The name and tag are looked for among index.json's entries.
    let s = spec_on(
        dir.path(),
        "stevedore-index/none",
        &image.dir,
        json!({ "tag": "nope" }),
    );
    let err = build_fails(&[], &s, "docker-archive", "gzip", "none.tar", &[]);
    assert!(err.contains("index.json has no image *:nope"), "{err}");
}

#[test]
fn export_and_merge_take_the_hosts_image() {
    let image = MultiPlatform::make(&[None, Some(other_arch())]);
    let dir = tempdir();

    for layout in [&image.dir, &image.archive] {
        let out = dir.path().join("rootfs.tar");
        let _ = fs::remove_file(&out);
        run(stevedore().arg("export").arg(layout).arg("--out").arg(&out));
        let files = tar_members(&out);
        assert_eq!(files["etc/arch"], b"host", "{}", layout.display());
        assert!(files.contains_key("etc/only-host"), "{}", layout.display());
    }

    let n = unique();
    let plain_name = format!("stevedore-index-plain-{n}");
    let s = write_spec(
        dir.path(),
        &spec(
            &plain_name,
            &[vec![&image.busybox]],
            json!({ "config": { "Cmd": [image.busybox.join("bin/echo"), "plain"] } }),
        ),
    );
    let plain = dir.path().join("plain.tar");
    build(&s, "docker-archive", "gzip", &plain);
    let merged = dir.path().join("merged.tar");
    run(stevedore()
        .arg("merge")
        .arg(&image.archive)
        .arg(&plain)
        .arg("--out")
        .arg(&merged));
    let plain_ref = format!("localhost/{plain_name}:latest");
    let _loaded = [
        PodmanImage(image.archive_name.clone()),
        PodmanImage(plain_ref.clone()),
    ];
    run_in_podman_store(podman().arg("load").arg("-i").arg(&merged));
    assert_eq!(podman_run(&image.archive_name), "host");
    assert_eq!(podman_run(&plain_ref), "plain\n");

    // The layout directory (tagged `multi` only) merges as one untagged
    // image: the host's.
    let from_dir = dir.path().join("from-dir.tar");
    run(stevedore()
        .arg("merge")
        .arg(&image.dir)
        .arg("--out")
        .arg(&from_dir));
    let files = tar_members(&from_dir);
    let manifest: Value = serde_json::from_slice(&files["manifest.json"]).unwrap();
    assert_eq!(manifest.as_array().unwrap().len(), 1, "{manifest}");
    assert_eq!(archive_layer_digests(&from_dir), image.host_layers);
}

#[test]
fn an_index_without_the_hosts_platform_is_refused_in_one_line() {
    let other = other_arch();
    let image = MultiPlatform::make(&[Some(other), Some("s390x")]);
    let want = format!(
        "is an index of images: it has no image for linux/{}; its platforms are linux/{other}, linux/s390x",
        image.host
    );
    let dir = tempdir();
    let s = spec_on(dir.path(), "stevedore-index/nothing", &image.dir, json!({}));
    let err = build_fails(&[], &s, "docker-archive", "gzip", "out.tar", &[]);
    assert!(err.contains(&want), "{err}");
    assert!(
        err.contains(&image.dir.display().to_string()),
        "{err} names the layout"
    );

    let out = dir.path().join("out.tar");
    for cmd in [
        stevedore()
            .arg("export")
            .arg(&image.archive)
            .arg("--out")
            .arg(&out),
        stevedore()
            .arg("merge")
            .arg(&image.archive)
            .arg("--out")
            .arg(&out),
    ] {
        let err = run_fail(cmd);
        assert_one_line_error(&err, "export or merge");
        assert!(err.contains(&want), "{err}");
        assert!(
            err.contains(&image.archive.display().to_string()),
            "{err} names the archive"
        );
        assert!(!out.exists());
    }
}

#[test]
fn push_sends_the_whole_index() {
    let image = MultiPlatform::make(&[None, Some(other_arch())]);
    let reg = &image.reg;
    let top: Value =
        serde_json::from_slice(&fs::read(image.dir.join("index.json")).unwrap()).unwrap();
    let index_digest = top["manifests"][0]["digest"].as_str().unwrap().to_owned();
    let index_bytes = fs::read(
        image
            .dir
            .join("blobs/sha256")
            .join(index_digest.strip_prefix("sha256:").unwrap()),
    )
    .unwrap();
    let dir = tempdir();
    for (layout, repo) in [(&image.dir, "copy/dir"), (&image.archive, "copy/archive")] {
        let out = run(stevedore()
            .arg("push")
            .arg(layout)
            .arg(reg.reference(repo, "v1"))
            .args(reg.stevedore_args()));
        let said = String::from_utf8(out.stdout).unwrap();
        assert_eq!(
            said.trim_end(),
            format!("{}/{repo}:v1@{index_digest}", reg.host()),
            "{}",
            layout.display()
        );
        let raw = run(std::process::Command::new("skopeo")
            .args(["inspect", "--raw", "--tls-verify=false"])
            .arg(reg.reference(repo, "v1")));
        assert_eq!(raw.stdout, index_bytes, "the index as the layout has it");
        // Every platform's manifest and blobs are there: a copy of all.
        let back = dir.path().join(repo.replace('/', "-"));
        run(std::process::Command::new("skopeo")
            .args(["copy", "--all", "--src-tls-verify=false"])
            .arg(reg.reference(repo, "v1"))
            .arg(format!("oci:{}:v1", back.display())));
        assert_eq!(
            dir_names(&back.join("blobs/sha256")),
            dir_names(&image.dir.join("blobs/sha256")),
            "{}",
            layout.display()
        );
    }

    let refused = |layout: &Path, extra: &[&str], want: &str| {
        let err = run_fail(
            stevedore()
                .arg("push")
                .arg(layout)
                .arg(reg.reference("copy/refused", "v1"))
                .args(reg.stevedore_args())
                .args(extra),
        );
        assert_one_line_error(&err, "push");
        assert!(err.contains(want), "{err}");
    };
    refused(
        &image.dir,
        &["--format", "v2s2"],
        &format!(
            "is an index of images (linux/{}, linux/{}), pushed as it is",
            image.host,
            other_arch()
        ),
    );
    let flat = image.flattened(&dir.path().join("flat"));
    refused(
        &flat,
        &[],
        "index.json names one image for several platforms",
    );
    let tagged = std::process::Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(reg.reference("copy/refused", "v1"))
        .output()
        .unwrap();
    assert!(!tagged.status.success(), "a refused push tagged nothing");
}

#[test]
fn inspect_of_a_multi_platform_layout_names_every_platform_and_reads_the_hosts() {
    let image = MultiPlatform::make(&[None, Some(other_arch())]);
    let doc: Value = serde_json::from_str(&crate::support::process::stdout_of(
        stevedore().arg("inspect").arg(&image.dir).arg("--json"),
    ))
    .unwrap();
    let platforms: Vec<String> = doc["platforms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            format!(
                "{}/{}",
                p["os"].as_str().unwrap(),
                p["architecture"].as_str().unwrap()
            )
        })
        .collect();
    let mut want = vec![
        format!("linux/{}", image.host),
        format!("linux/{}", other_arch()),
    ];
    want.sort();
    let mut have = platforms.clone();
    have.sort();
    assert_eq!(have, want);
    let layers: Vec<String> = doc["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        layers, image.host_layers,
        "the host's image is the one read"
    );
    let files = &doc["layers"][1]["files"];
    assert!(
        files
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["path"] == "/etc/only-host"),
        "{files}"
    );
}
