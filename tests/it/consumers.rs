//! Images checked by the programs people load them with: podman runs them,
//! skopeo pushes them to a real registry and pulls them back, umoci unpacks
//! them and GNU tar lists their layers.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use crate::support::digest::sha256;
use crate::support::podman::{podman_inspect, podman_load, podman_load_stream, podman_run};
use crate::support::process::{run, stdout_of, stevedore, tempdir, unique};
use crate::support::registry::Registry;
use crate::support::spec::{build, spec, write_spec};
use crate::support::store::{busybox_store_path, nix_add};

/// The `created` every image here is given, as podman and skopeo print it.
const CREATED: &str = "2024-01-02T03:04:05Z";

/// An image name no other test (or concurrent test run) uses.
fn unique_name(what: &str) -> String {
    format!("stevedore-it/{what}-{}", unique())
}

/// An `mtime` no other test uses, so that images loaded into podman share
/// no layer: removing one image then cannot race with loading another.
fn unique_mtime() -> String {
    let t = 1_500_000_000 + unique() as i64;
    time::OffsetDateTime::from_unix_timestamp(t)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

/// Builds a busybox image as a docker-archive compressed with `compress`,
/// loads it into podman, runs it, and checks the name, tag and date.
fn podman_runs_docker_archive(compress: &str) {
    let busybox = busybox_store_path();
    let dir = tempdir();
    let name = unique_name(&format!("podman-{compress}"));
    let tag = format!("v1-{compress}");
    let message = format!("hello from a {compress} docker-archive");
    let spec_path = write_spec(
        dir.path(),
        &spec(
            &name,
            &[vec![&busybox]],
            json!({
                "tag": tag,
                "created": CREATED,
                "mtime": unique_mtime(),
                "config": { "Cmd": [busybox.join("bin/busybox"), "echo", message] },
            }),
        ),
    );
    let archive = dir.path().join("image.tar");
    build(&spec_path, "docker-archive", compress, &archive);

    let reference = format!("localhost/{name}:{tag}");
    let image = podman_load(&archive, &reference);
    assert_eq!(podman_run(&image, &[]), format!("{message}\n"));

    let inspect = podman_inspect(&image);
    assert_eq!(inspect["RepoTags"], json!([reference]), "{inspect:#}");
    assert_eq!(inspect["Created"], CREATED, "{inspect:#}");
    assert_eq!(
        inspect["RootFS"]["Layers"].as_array().map(Vec::len),
        Some(1),
        "{inspect:#}"
    );
}

#[test]
fn podman_runs_uncompressed_docker_archive() {
    podman_runs_docker_archive("none");
}

#[test]
fn podman_runs_gzip_docker_archive() {
    podman_runs_docker_archive("gzip");
}

#[test]
fn podman_runs_zstd_docker_archive() {
    podman_runs_docker_archive("zstd");
}

#[test]
fn stream_piped_into_podman_load_runs() {
    let busybox = busybox_store_path();
    let dir = tempdir();
    let name = unique_name("stream");
    let spec_path = write_spec(
        dir.path(),
        &spec(
            &name,
            &[vec![&busybox]],
            json!({
                "tag": "streamed",
                "created": CREATED,
                "mtime": unique_mtime(),
                "config": { "Cmd": [busybox.join("bin/busybox"), "echo", "streamed through a pipe"] },
            }),
        ),
    );

    let reference = format!("localhost/{name}:streamed");
    let image = podman_load_stream(stevedore().arg("stream").arg(&spec_path), &reference);

    assert_eq!(podman_run(&image, &[]), "streamed through a pipe\n");
    let inspect = podman_inspect(&image);
    assert_eq!(inspect["RepoTags"], json!([reference]), "{inspect:#}");
    assert_eq!(inspect["Created"], CREATED, "{inspect:#}");
}

#[test]
fn podman_sees_the_runtime_config() {
    let busybox = busybox_store_path();
    let dir = tempdir();
    // The working directory comes from the customisation layer.
    let tree = dir.path().join("tree");
    fs::create_dir_all(tree.join("srv/app")).unwrap();
    fs::write(tree.join("srv/app/greeting"), "hi from the working dir\n").unwrap();

    let name = unique_name("config");
    let sh = busybox.join("bin/sh");
    let spec_path = write_spec(
        dir.path(),
        &spec(
            &name,
            &[vec![&busybox]],
            json!({
                "tag": "config",
                "created": CREATED,
                "mtime": unique_mtime(),
                "config": {
                    "Env": [format!("PATH={}/bin", busybox.display()), "FOO=bar baz", "EMPTY="],
                    "Entrypoint": [sh, "-c"],
                    "Cmd": ["echo \"FOO=$FOO\"; echo \"EMPTY=[$EMPTY]\"; pwd; cat greeting; id -u; id -g"],
                    "WorkingDir": "/srv/app",
                    "User": "1234:5678",
                    "Labels": { "org.example.team": "tests", "version": "1.2.3" },
                    "StopSignal": "SIGINT",
                    "ExposedPorts": { "8080/tcp": {} },
                },
                "customisation": { "trees": [tree] },
            }),
        ),
    );
    let archive = dir.path().join("image.tar");
    build(&spec_path, "docker-archive", "gzip", &archive);
    let image = podman_load(&archive, &format!("localhost/{name}:config"));

    assert_eq!(
        podman_run(&image, &[]),
        "FOO=bar baz\nEMPTY=[]\n/srv/app\nhi from the working dir\n1234\n5678\n"
    );
    // Arguments replace Cmd but keep the Entrypoint: they are a script for
    // `sh -c`, with PATH from the spec finding the busybox applets.
    assert_eq!(
        podman_run(&image, &["echo override; echo $FOO"]),
        "override\nbar baz\n"
    );

    let inspect = podman_inspect(&image);
    let config = &inspect["Config"];
    assert_eq!(
        config["Labels"],
        json!({ "org.example.team": "tests", "version": "1.2.3" }),
        "{inspect:#}"
    );
    assert_eq!(config["StopSignal"], "SIGINT", "{inspect:#}");
    assert_eq!(config["User"], "1234:5678", "{inspect:#}");
    assert_eq!(config["WorkingDir"], "/srv/app", "{inspect:#}");
    assert!(
        config["ExposedPorts"].get("8080/tcp").is_some(),
        "{inspect:#}"
    );
}

// ---------------------------------------------------------------------------
// A real registry, through skopeo.

/// The one manifest of an OCI layout, as the index points to it.
struct Layout {
    dir: PathBuf,
    manifest_digest: String,
    manifest: Value,
}

impl Layout {
    /// Reads `dir/index.json` and checks it names the manifest by `tag`.
    fn read(dir: &Path, tag: &str) -> Layout {
        let index: Value = serde_json::from_slice(&fs::read(dir.join("index.json")).unwrap())
            .expect("index.json is JSON");
        let manifests = index["manifests"].as_array().expect("index has manifests");
        let entry = manifests
            .iter()
            .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
            .unwrap_or_else(|| panic!("no manifest tagged {tag} in {index}"));
        let manifest_digest = entry["digest"].as_str().unwrap().to_owned();
        let mut layout = Layout {
            dir: dir.to_owned(),
            manifest_digest,
            manifest: Value::Null,
        };
        layout.manifest = serde_json::from_slice(&layout.blob(&layout.manifest_digest)).unwrap();
        layout
    }

    fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
        self.dir.join("blobs/sha256").join(hex)
    }

    /// A blob's bytes, checked against its digest.
    fn blob(&self, digest: &str) -> Vec<u8> {
        let bytes = fs::read(self.blob_path(digest))
            .unwrap_or_else(|e| panic!("blob {digest} in {}: {e}", self.dir.display()));
        assert_eq!(
            sha256(&bytes),
            digest,
            "blob content does not match its name"
        );
        bytes
    }

    fn layer_digests(&self) -> Vec<String> {
        self.manifest["layers"]
            .as_array()
            .expect("manifest has layers")
            .iter()
            .map(|l| l["digest"].as_str().unwrap().to_owned())
            .collect()
    }

    fn layer_media_types(&self) -> Vec<String> {
        self.manifest["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["mediaType"].as_str().unwrap().to_owned())
            .collect()
    }
}

/// Pushes an OCI image (`oci-dir` or `oci-archive`) to a registry with
/// skopeo, inspects it there, pulls it back into a new layout and checks
/// every layer is the same blob all the way.
fn registry_round_trip(format: &str, compress: &str, media_type: &str) {
    let busybox = busybox_store_path();
    let dir = tempdir();
    let tree = dir.path().join("tree");
    fs::create_dir_all(tree.join("etc")).unwrap();
    fs::write(tree.join("etc/motd"), format!("{format} {compress}\n")).unwrap();
    let tag = format!("{format}-{compress}");
    let name = unique_name("registry");
    let spec_path = write_spec(
        dir.path(),
        &spec(
            &name,
            &[vec![&busybox]],
            json!({
                "tag": tag,
                "created": CREATED,
                "config": { "Cmd": [busybox.join("bin/busybox"), "cat", "/etc/motd"] },
                "customisation": { "trees": [tree] },
            }),
        ),
    );

    let (source, original) = if format == "oci-dir" {
        let out = dir.path().join("layout");
        build(&spec_path, format, compress, &out);
        (format!("oci:{}:{tag}", out.display()), out)
    } else {
        let out = dir.path().join("image.oci.tar");
        build(&spec_path, format, compress, &out);
        // The archive is a tar of a layout: unpack it to read the blobs.
        let unpacked = dir.path().join("unpacked");
        fs::create_dir(&unpacked).unwrap();
        run(Command::new("tar")
            .arg("-xf")
            .arg(&out)
            .arg("-C")
            .arg(&unpacked));
        (format!("oci-archive:{}:{tag}", out.display()), unpacked)
    };
    let original = Layout::read(&original, &tag);
    let layers = original.layer_digests();
    assert_eq!(layers.len(), 2, "{}", original.manifest);
    assert_eq!(
        original.layer_media_types(),
        vec![media_type.to_owned(); 2],
        "{}",
        original.manifest
    );

    let registry = Registry::start();
    let remote = registry.reference(&name, &tag);
    run(Command::new("skopeo")
        .args(["copy", "--dest-tls-verify=false"])
        .arg(&source)
        .arg(&remote));

    let inspect: Value = serde_json::from_str(&stdout_of(
        Command::new("skopeo")
            .args(["inspect", "--tls-verify=false"])
            .arg(&remote),
    ))
    .unwrap();
    assert_eq!(inspect["Layers"], json!(layers), "{inspect:#}");
    assert_eq!(inspect["Created"], CREATED, "{inspect:#}");
    // Nothing needed converting, so the registry holds our very manifest:
    // the image can be pinned by the digest the layout gives.
    assert_eq!(
        inspect["Digest"], original.manifest_digest,
        "the registry's manifest is not the one built: {inspect:#}"
    );
    let raw = run(Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(&remote))
    .stdout;
    assert_eq!(raw, original.blob(&original.manifest_digest));

    let back = dir.path().join("pulled");
    run(Command::new("skopeo")
        .args(["copy", "--src-tls-verify=false"])
        .arg(&remote)
        .arg(format!("oci:{}:{tag}", back.display())));
    let pulled = Layout::read(&back, &tag);
    assert_eq!(pulled.layer_digests(), layers);
    for digest in &layers {
        assert!(
            pulled.blob(digest) == original.blob(digest),
            "layer {digest} changed on its way through the registry"
        );
    }
}

#[test]
fn registry_round_trip_oci_dir_gzip() {
    registry_round_trip(
        "oci-dir",
        "gzip",
        "application/vnd.oci.image.layer.v1.tar+gzip",
    );
}

#[test]
fn registry_round_trip_oci_dir_zstd() {
    registry_round_trip(
        "oci-dir",
        "zstd",
        "application/vnd.oci.image.layer.v1.tar+zstd",
    );
}

#[test]
fn registry_round_trip_oci_archive_gzip() {
    registry_round_trip(
        "oci-archive",
        "gzip",
        "application/vnd.oci.image.layer.v1.tar+gzip",
    );
}

// ---------------------------------------------------------------------------
// umoci: unpacking to a root filesystem.

/// What a file-system object is, as compared between source and rootfs.
#[derive(Debug, PartialEq, Eq)]
enum Node {
    Dir { mode: u32 },
    File { mode: u32, content: Vec<u8> },
    Symlink { target: PathBuf },
}

fn node(path: &Path) -> Node {
    let md = fs::symlink_metadata(path).unwrap();
    let mode = md.permissions().mode() & 0o7777;
    if md.file_type().is_symlink() {
        Node::Symlink {
            target: fs::read_link(path).unwrap(),
        }
    } else if md.is_dir() {
        Node::Dir { mode }
    } else if md.is_file() {
        Node::File {
            mode,
            content: fs::read(path).unwrap(),
        }
    } else {
        panic!("{} is not a file, directory or symlink", path.display());
    }
}

/// Every object below `dir` (not `dir` itself), by path under `prefix`.
fn walk(dir: &Path, prefix: &Path, out: &mut BTreeMap<PathBuf, Node>) {
    for entry in fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let path = entry.path();
        let rel = prefix.join(entry.file_name());
        let n = node(&path);
        let is_dir = matches!(n, Node::Dir { .. });
        out.insert(rel.clone(), n);
        if is_dir {
            walk(&path, &rel, out);
        }
    }
}

/// A store path with a little of everything a store path may hold.
fn fixture_store_path() -> PathBuf {
    let dir = tempdir();
    let root = dir.path().join("stevedore-umoci-fixture");
    fs::create_dir_all(root.join("bin")).unwrap();
    fs::create_dir_all(root.join("share/doc/deep/er")).unwrap();
    fs::create_dir_all(root.join("share/empty-dir")).unwrap();
    fs::write(root.join("bin/tool"), "#!/bin/sh\necho tool\n").unwrap();
    fs::set_permissions(root.join("bin/tool"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(root.join("share/doc/README"), "read me\n").unwrap();
    fs::write(root.join("share/doc/deep/er/notes"), vec![b'n'; 10_000]).unwrap();
    fs::write(root.join("share/empty-file"), "").unwrap();
    fs::write(root.join("share").join("s".repeat(150)), "long name\n").unwrap();
    symlink("../share/doc/README", root.join("bin/readme")).unwrap();
    symlink("/no/such/target", root.join("bin/dangling")).unwrap();
    let long_target = format!("../share/{}", "s".repeat(150));
    symlink(long_target, root.join("bin/long-link")).unwrap();
    nix_add(&root)
}

/// A customisation tree with modes the store cannot have. Modes are set
/// explicitly so the umask does not matter.
fn fixture_tree(root: &Path) {
    let file = |rel: &str, content: &[u8], mode: u32| {
        let path = root.join(rel);
        fs::write(&path, content).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
    };
    let dir = |rel: &str, mode: u32| {
        let path = root.join(rel);
        fs::create_dir_all(&path).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
    };
    dir("etc", 0o755);
    dir("etc/nested", 0o750);
    dir("etc/nested/deeper", 0o700);
    dir("var", 0o755);
    dir("var/empty", 0o711);
    dir("tmp", 0o1777);
    dir("usr", 0o755);
    dir("usr/bin", 0o755);
    file("etc/secret", b"secret\n", 0o600);
    file("etc/nested/deeper/file", b"deep\n", 0o640);
    file("etc/empty", b"", 0o644);
    file("usr/bin/run", b"#!/bin/sh\nexit 0\n", 0o755);
    file("usr/bin/suid", b"setuid\n", 0o4755);
    file("usr/bin/sgid", b"setgid\n", 0o2711);
    file(&format!("etc/{}", "l".repeat(150)), b"long name\n", 0o444);
    symlink("secret", root.join("etc/link")).unwrap();
    symlink("/usr/bin/run", root.join("usr/bin/absolute-link")).unwrap();
}

/// What a `tar -tv` line says of an entry.
#[derive(Debug)]
struct Listed {
    mode: String,
    owner: String,
}

/// `tar -tvf` of a layer blob, by entry name.
fn list_layer(blob: &Path, compress: &str, numeric: bool) -> BTreeMap<String, Listed> {
    let mut cmd = Command::new("tar");
    if compress == "gzip" {
        cmd.arg("-z");
    }
    if numeric {
        cmd.arg("--numeric-owner");
    }
    let text = stdout_of(cmd.arg("-tvf").arg(blob));
    let mut out = BTreeMap::new();
    for line in text.lines() {
        // mode owner size date time name [-> target]; fixture names have
        // no spaces.
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert!(fields.len() >= 6, "unexpected tar line {line:?}");
        out.insert(
            fields[5].to_owned(),
            Listed {
                mode: fields[0].to_owned(),
                owner: fields[1].to_owned(),
            },
        );
    }
    out
}

fn umoci_unpacks(compress: &str) {
    let store = fixture_store_path();
    let dir = tempdir();
    let tree = dir.path().join("tree");
    fs::create_dir(&tree).unwrap();
    fixture_tree(&tree);
    let mtime = "2023-05-06T07:08:09Z";
    let spec_path = write_spec(
        dir.path(),
        &spec(
            &unique_name("umoci"),
            &[vec![&store]],
            json!({
                "tag": "unpack",
                "created": CREATED,
                "mtime": mtime,
                "uid": 1000, "gid": 100, "uname": "alice", "gname": "users",
                "customisation": { "trees": [tree] },
            }),
        ),
    );
    let layout_dir = dir.path().join("layout");
    build(&spec_path, "oci-dir", compress, &layout_dir);

    let bundle = dir.path().join("bundle");
    run(Command::new("umoci")
        .args(["unpack", "--rootless", "--image"])
        .arg(format!("{}:unpack", layout_dir.display()))
        .arg(&bundle));
    let rootfs = bundle.join("rootfs");

    // Everything from the store path and the tree, and nothing else.
    let mut expected = BTreeMap::new();
    expected.insert(PathBuf::from("nix"), Node::Dir { mode: 0o755 });
    expected.insert(PathBuf::from("nix/store"), Node::Dir { mode: 0o755 });
    let store_rel = store.strip_prefix("/").unwrap();
    expected.insert(store_rel.to_owned(), node(&store));
    walk(&store, store_rel, &mut expected);
    walk(&tree, Path::new(""), &mut expected);
    let mut actual = BTreeMap::new();
    walk(&rootfs, Path::new(""), &mut actual);
    let missing: Vec<_> = expected
        .keys()
        .filter(|k| !actual.contains_key(*k))
        .collect();
    let extra: Vec<_> = actual
        .keys()
        .filter(|k| !expected.contains_key(*k))
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing from the rootfs: {missing:?}\nnot in the sources: {extra:?}"
    );
    for (path, want) in &expected {
        assert_eq!(&actual[path], want, "/{} differs", path.display());
    }
    // The spec's mtime reaches every file, directory and symlink.
    let want_mtime = 1_683_356_889; // 2023-05-06T07:08:09Z
    for path in expected.keys() {
        let md = fs::symlink_metadata(rootfs.join(path)).unwrap();
        assert_eq!(md.mtime(), want_mtime, "mtime of /{}", path.display());
    }

    // A rootless unpack makes everything the unpacking user's, so owners
    // are read from the layers themselves.
    let layout = Layout::read(&layout_dir, "unpack");
    let layers = layout.layer_digests();
    assert_eq!(layers.len(), 2, "a store layer and a customisation layer");
    let store_blob = layout.blob_path(&layers[0]);
    let custom_blob = layout.blob_path(&layers[1]);
    let store_rel = store_rel.to_str().unwrap();

    let numeric = list_layer(&store_blob, compress, true);
    let named = list_layer(&store_blob, compress, false);
    for top in ["nix/", "nix/store/"] {
        let e = numeric
            .get(top)
            .unwrap_or_else(|| panic!("{top} missing from the store layer: {numeric:?}"));
        assert_eq!((e.mode.as_str(), e.owner.as_str()), ("drwxr-xr-x", "0/0"));
        assert_eq!(named[top].owner, "root/root");
    }
    // Exactly the store path below /nix/store, owned as the spec says.
    let names = |listing: &BTreeMap<String, Listed>| -> BTreeSet<PathBuf> {
        listing
            .keys()
            .map(|k| PathBuf::from(k.trim_end_matches('/')))
            .collect()
    };
    let want: BTreeSet<PathBuf> = expected
        .keys()
        .filter(|k| k.starts_with("nix"))
        .cloned()
        .collect();
    assert_eq!(names(&numeric), want, "entries of the store layer");
    for (name, e) in numeric.iter().filter(|(k, _)| k.starts_with(store_rel)) {
        assert_eq!(e.owner, "1000/100", "owner of {name}");
        assert_eq!(named[name].owner, "alice/users", "owner name of {name}");
    }

    // The customisation layer: exactly the tree, owned by root.
    let numeric = list_layer(&custom_blob, compress, true);
    let named = list_layer(&custom_blob, compress, false);
    let want: BTreeSet<PathBuf> = expected
        .keys()
        .filter(|k| !k.starts_with("nix"))
        .cloned()
        .collect();
    assert_eq!(names(&numeric), want, "entries of the customisation layer");
    for (name, e) in &numeric {
        assert_eq!(e.owner, "0/0", "owner of {name}");
        assert_eq!(named[name].owner, "root/root", "owner name of {name}");
    }
    assert_eq!(numeric["usr/bin/suid"].mode, "-rwsr-xr-x");
    assert_eq!(numeric["tmp/"].mode, "drwxrwxrwt");
}

#[test]
fn umoci_unpacks_uncompressed_layout() {
    umoci_unpacks("none");
}

#[test]
fn umoci_unpacks_gzip_layout() {
    umoci_unpacks("gzip");
}
