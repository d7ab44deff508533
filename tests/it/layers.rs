//! The layer-tar rules of `docs/spec.md` ("Layer tars", "Compression" and
//! the config's `rootfs`/`history`), one test per rule. Layers are read from
//! an `oci-dir` output with the `tar` crate (and GNU tar where it matters),
//! never with stevedore's own code.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};
use tar::EntryType;

use crate::support::digest::sha256;
use crate::support::process::{dir_names, run, stevedore, tempdir};
use crate::support::spec::{build_fails, spec, write_spec};
use crate::support::store::nix_add;

// ---------------------------------------------------------------------------
// Helpers: building, reading an OCI layout, reading tars, fake stores.

/// A built OCI layout; the temporary directory lives as long as it does.
struct Oci {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
}

impl Oci {
    fn json(&self, digest: &str) -> Value {
        serde_json::from_slice(&self.blob(digest)).unwrap()
    }

    fn blob(&self, digest: &str) -> Vec<u8> {
        let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
        let path = self.dir.join("blobs/sha256").join(hex);
        fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
    }

    fn manifest(&self) -> Value {
        let index: Value =
            serde_json::from_slice(&fs::read(self.dir.join("index.json")).unwrap()).unwrap();
        let manifests = index["manifests"].as_array().unwrap();
        assert_eq!(manifests.len(), 1, "{index}");
        self.json(manifests[0]["digest"].as_str().unwrap())
    }

    fn config(&self) -> Value {
        self.json(self.manifest()["config"]["digest"].as_str().unwrap())
    }

    fn layer_digests(&self) -> Vec<String> {
        self.manifest()["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["digest"].as_str().unwrap().to_owned())
            .collect()
    }

    /// The layer blobs in manifest order, as stored (uncompressed tars for
    /// `--compress none`).
    fn layer_blobs(&self) -> Vec<Vec<u8>> {
        self.layer_digests().iter().map(|d| self.blob(d)).collect()
    }
}

/// Builds `spec` as an `oci-dir` with `--compress COMPRESS` and extra args.
fn build_oci_with(spec: &Value, compress: &str, args: &[&str]) -> Oci {
    let tmp = tempdir();
    let spec_path = write_spec(tmp.path(), spec);
    let dir = tmp.path().join("oci");
    run(stevedore()
        .arg("build")
        .arg(&spec_path)
        .args(["--format", "oci-dir", "--compress", compress, "--out"])
        .arg(&dir)
        .args(args));
    Oci { _tmp: tmp, dir }
}

/// The uncompressed layer tars of `spec`, in order.
fn layer_tars(spec: &Value) -> Vec<Vec<u8>> {
    build_oci_with(spec, "none", &[]).layer_blobs()
}

/// One tar entry as the `tar` crate reads it (PAX records applied).
#[derive(Debug)]
struct Ent {
    /// As written: directories end in `/`.
    name: String,
    kind: EntryType,
    mode: u32,
    uid: u64,
    gid: u64,
    uname: String,
    gname: String,
    mtime: u64,
    link: Option<String>,
    data: Vec<u8>,
    dev: (Option<u32>, Option<u32>),
}

impl Ent {
    /// The path without the trailing `/` of directories.
    fn path(&self) -> &str {
        self.name.trim_end_matches('/')
    }
}

fn entries(tar_bytes: &[u8]) -> Vec<Ent> {
    use std::io::Read;
    let mut archive = tar::Archive::new(tar_bytes);
    archive
        .entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let name = String::from_utf8(e.path_bytes().into_owned()).unwrap();
            let link = e
                .link_name_bytes()
                .map(|l| String::from_utf8(l.into_owned()).unwrap());
            let h = e.header().clone();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            Ent {
                name,
                kind: h.entry_type(),
                mode: h.mode().unwrap(),
                uid: h.uid().unwrap(),
                gid: h.gid().unwrap(),
                uname: String::from_utf8(h.username_bytes().unwrap().to_vec()).unwrap(),
                gname: String::from_utf8(h.groupname_bytes().unwrap().to_vec()).unwrap(),
                mtime: h.mtime().unwrap(),
                link,
                data,
                dev: (h.device_major().unwrap(), h.device_minor().unwrap()),
            }
        })
        .collect()
}

/// One header of a tar as written, PAX headers included.
struct Raw {
    kind: EntryType,
    name: Vec<u8>,
    mtime: u64,
    /// Has the POSIX ustar magic and version.
    ustar: bool,
    /// The records of an `x` header.
    pax: Vec<(String, String)>,
}

fn raw_headers(tar_bytes: &[u8]) -> Vec<Raw> {
    let mut archive = tar::Archive::new(tar_bytes);
    let entries = archive.entries().unwrap().raw(true);
    entries
        .map(|e| {
            let mut e = e.unwrap();
            let h = e.header().clone();
            let pax = if h.entry_type() == EntryType::XHeader {
                e.pax_extensions()
                    .unwrap()
                    .unwrap()
                    .map(|r| {
                        let r = r.unwrap();
                        (r.key().unwrap().to_owned(), r.value().unwrap().to_owned())
                    })
                    .collect()
            } else {
                Vec::new()
            };
            Raw {
                kind: h.entry_type(),
                name: h.path_bytes().into_owned(),
                mtime: h.mtime().unwrap(),
                ustar: h.as_ustar().is_some(),
                pax,
            }
        })
        .collect()
}

/// The PAX records in front of each entry (empty when there is no `x`
/// header), in entry order, so they zip with [`entries`].
fn pax_records(tar_bytes: &[u8]) -> Vec<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut pending: Option<Vec<(String, String)>> = None;
    for raw in raw_headers(tar_bytes) {
        if raw.kind == EntryType::XHeader {
            assert!(pending.is_none(), "two PAX headers in a row");
            assert_eq!(raw.name, b"././@PaxHeader");
            pending = Some(raw.pax);
        } else {
            out.push(pending.take().unwrap_or_default());
        }
    }
    assert!(pending.is_none(), "a PAX header ends the archive");
    out
}

fn names(entries: &[Ent]) -> Vec<&str> {
    entries.iter().map(|e| e.name.as_str()).collect()
}

fn find<'a>(entries: &'a [Ent], path: &str) -> &'a Ent {
    let path = path.trim_end_matches('/');
    entries
        .iter()
        .find(|e| e.path() == path)
        .unwrap_or_else(|| panic!("no entry {path} in {:#?}", names(entries)))
}

/// Checks the order rule on any entry list: sorted by path compared
/// component by component, every parent before its children, no repeats.
fn assert_component_order(entries: &[Ent]) {
    let key =
        |e: &Ent| -> Vec<Vec<u8>> { e.path().split('/').map(|c| c.as_bytes().to_vec()).collect() };
    for pair in entries.windows(2) {
        assert!(
            key(&pair[0]) < key(&pair[1]),
            "{} comes before {}",
            pair[0].name,
            pair[1].name
        );
    }
    for (i, e) in entries.iter().enumerate() {
        if let Some((parent, _)) = e.path().rsplit_once('/') {
            let seen = entries[..i].iter().any(|p| p.path() == parent);
            assert!(seen, "{} has no parent {parent} before it", e.name);
        }
    }
}

/// A fake store directory `TMP/store`, for modes, owners and shapes the
/// real store would not keep.
fn fake_store(tmp: &Path) -> PathBuf {
    let store = tmp.join("store");
    fs::create_dir(&store).unwrap();
    store
}

/// The in-image path of a host path: the absolute path without its `/`.
fn in_image(path: &Path) -> String {
    path.to_str().unwrap().trim_start_matches('/').to_owned()
}

/// Writes a file, creating its parents.
fn put(path: &Path, content: &[u8]) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, content).unwrap();
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// A spec over a fake store, with more fields merged in.
fn fake_spec(store: &Path, layers: &[Vec<&Path>], mut extra: Value) -> Value {
    extra["store_dir"] = json!(store);
    spec("layers-test", layers, extra)
}

/// A small real store path, the same on every run.
fn real_path(name: &str, files: &[(&str, &str)]) -> PathBuf {
    let tmp = tempdir();
    let root = tmp.path().join(name);
    fs::create_dir(&root).unwrap();
    for (path, content) in files {
        put(&root.join(path), content.as_bytes());
    }
    nix_add(&root)
}

fn store_name(path: &Path) -> &str {
    path.file_name().unwrap().to_str().unwrap()
}

// ---------------------------------------------------------------------------
// Order.

#[test]
fn entries_are_sorted_component_by_component_parents_first() {
    let tmp = tempdir();
    let store = fake_store(tmp.path());
    // Names that sort differently compared as whole paths ("a-b" < "a.b" <
    // "a/b", as '-' < '.' < '/') and component by component ("a" < "a-b").
    let sort = store.join("aaaa-sort");
    for f in ["a/b/z", "a/b-c", "a/c/d", "a-b", "a.b", "a0"] {
        put(&sort.join(f), f.as_bytes());
    }
    // Store paths too: "bbbb-p/x" must come before "bbbb-p-q".
    put(&store.join("bbbb-p/x"), b"x");
    put(&store.join("bbbb-p-q"), b"a store path that is a file");
    let spec = fake_spec(
        &store,
        // Listed in the wrong order on purpose.
        &[vec![&store.join("bbbb-p-q"), &store.join("bbbb-p"), &sort]],
        json!({}),
    );
    let layers = layer_tars(&spec);
    assert_eq!(layers.len(), 1);
    let entries = entries(&layers[0]);
    let s = in_image(&store);
    let mut expected: Vec<String> = Vec::new();
    let mut prefix = String::new();
    for component in s.split('/') {
        prefix.push_str(component);
        prefix.push('/');
        expected.push(prefix.clone());
    }
    for rel in [
        "aaaa-sort/",
        "aaaa-sort/a/",
        "aaaa-sort/a/b/",
        "aaaa-sort/a/b/z",
        "aaaa-sort/a/b-c",
        "aaaa-sort/a/c/",
        "aaaa-sort/a/c/d",
        "aaaa-sort/a-b",
        "aaaa-sort/a.b",
        "aaaa-sort/a0",
        "bbbb-p/",
        "bbbb-p/x",
        "bbbb-p-q",
    ] {
        expected.push(format!("{s}/{rel}"));
    }
    assert_eq!(names(&entries), expected);
    assert_component_order(&entries);
}

#[test]
fn customisation_trees_are_merged_in_component_order() {
    let tmp = tempdir();
    let (t1, t2) = (tmp.path().join("t1"), tmp.path().join("t2"));
    for f in ["a/b/z", "a-b", "a0"] {
        put(&t1.join(f), f.as_bytes());
    }
    for f in ["a/b-c", "a.b", "a/b/y"] {
        put(&t2.join(f), f.as_bytes());
    }
    let spec = spec(
        "layers-test",
        &[],
        json!({"customisation": {"trees": [t1, t2]}}),
    );
    let layers = layer_tars(&spec);
    assert_eq!(layers.len(), 1);
    let entries = entries(&layers[0]);
    assert_eq!(
        names(&entries),
        ["a/", "a/b/", "a/b/y", "a/b/z", "a/b-c", "a-b", "a.b", "a0"]
    );
    assert_component_order(&entries);
}

// ---------------------------------------------------------------------------
// The store directory entries.

#[test]
fn store_layers_begin_with_the_store_directories_and_others_have_no_nix() {
    let p = real_path("stevedore-layers-prefix", &[("share/hello", "hello\n")]);
    let tmp = tempdir();
    put(&tmp.path().join("tree/etc/motd"), b"welcome\n");
    let tree = tmp.path().join("tree");

    let layers = layer_tars(&spec(
        "layers-test",
        &[vec![&p]],
        json!({"customisation": {"trees": [tree]}}),
    ));
    assert_eq!(layers.len(), 2);
    let store = entries(&layers[0]);
    assert_eq!(names(&store)[..2], ["nix/", "nix/store/"]);
    for e in &store[..2] {
        assert_eq!(e.kind, EntryType::Directory, "{}", e.name);
        assert_eq!(e.mode, 0o755, "{}", e.name);
        assert_eq!((e.uid, e.gid), (0, 0), "{}", e.name);
        assert_eq!((e.uname.as_str(), e.gname.as_str()), ("root", "root"));
    }
    let prefix = format!("nix/store/{}", store_name(&p));
    for e in &store[2..] {
        assert!(e.path().starts_with(&prefix), "{}", e.name);
    }
    assert_component_order(&store);

    // The customisation layer, on top of a store layer and on its own.
    let custom = entries(&layers[1]);
    assert_eq!(names(&custom), ["etc/", "etc/motd"]);
    let alone = layer_tars(&spec(
        "layers-test",
        &[],
        json!({"customisation": {"trees": [tree]}}),
    ));
    assert_eq!(alone.len(), 1);
    let alone = entries(&alone[0]);
    assert_eq!(names(&alone), ["etc/", "etc/motd"]);
    for e in custom.iter().chain(&alone) {
        assert!(!e.path().starts_with("nix"), "{}", e.name);
    }
}

// ---------------------------------------------------------------------------
// Times, owners and device numbers.

#[test]
fn every_entry_has_the_spec_mtime() {
    let tmp = tempdir();
    let store = fake_store(tmp.path());
    let p = store.join("aaaa-times");
    put(&p.join("bin/tool"), b"#!/bin/sh\n");
    // A long name, so that a PAX header is written and checked too.
    put(&p.join("x".repeat(120)), b"long");
    symlink("tool", p.join("bin/alias")).unwrap();
    put(&tmp.path().join("tree/etc/conf"), b"conf");
    let tree = tmp.path().join("tree");

    for (extra, want) in [
        (json!({}), 1),
        (json!({"mtime": "2001-02-03T04:05:06Z"}), 981_173_106),
        (json!({"mtime": "2001-02-03T05:05:06+01:00"}), 981_173_106),
        (json!({"created": "2020-01-01T00:00:00Z"}), 1_577_836_800),
        (json!({"created": "now"}), 1),
        (
            json!({"created": "2020-01-01T00:00:00Z", "mtime": "1970-01-01T00:00:01Z"}),
            1,
        ),
    ] {
        let mut extra = extra;
        extra["customisation"] = json!({"trees": [tree]});
        let layers = layer_tars(&fake_spec(&store, &[vec![&p]], extra.clone()));
        assert_eq!(layers.len(), 2);
        for layer in &layers {
            for e in entries(layer) {
                assert_eq!(e.mtime, want, "{} with spec {extra}", e.name);
            }
            let raw = raw_headers(layer);
            assert!(raw.len() >= 2);
            for r in raw {
                assert_eq!(
                    r.mtime,
                    want,
                    "{:?} {} with spec {extra}",
                    r.kind,
                    String::from_utf8_lossy(&r.name)
                );
            }
        }
    }
}

#[test]
fn owners_come_from_the_spec_never_from_the_host() {
    let tmp = tempdir();
    let store = fake_store(tmp.path());
    let p = store.join("aaaa-owned");
    put(&p.join("bin/tool"), b"tool");
    symlink("tool", p.join("bin/alias")).unwrap();
    put(&tmp.path().join("tree/etc/conf"), b"conf");
    let tree = tmp.path().join("tree");
    // Give everything to a host user with a name (daemon, uid 1 on Debian):
    // neither its ids nor its name may reach the layers.
    for path in [
        p.clone(),
        p.join("bin"),
        p.join("bin/tool"),
        p.join("bin/alias"),
        tree.join("etc"),
        tree.join("etc/conf"),
    ] {
        std::os::unix::fs::lchown(&path, Some(1), Some(1)).unwrap();
    }
    let store_dirs: Vec<String> = {
        let mut prefix = String::new();
        in_image(&store)
            .split('/')
            .map(|c| {
                prefix.push_str(c);
                prefix.push('/');
                prefix.clone()
            })
            .collect()
    };

    for (extra, owner) in [
        (json!({}), (0, 0, "root", "root")),
        (
            json!({"uid": 1000, "gid": 100, "uname": "alice", "gname": "users"}),
            (1000, 100, "alice", "users"),
        ),
    ] {
        let mut extra = extra;
        extra["customisation"] = json!({"trees": [tree]});
        let layers = layer_tars(&fake_spec(&store, &[vec![&p]], extra.clone()));
        assert_eq!(layers.len(), 2);
        for (i, layer) in layers.iter().enumerate() {
            assert!(
                !layer.windows(6).any(|w| w == b"daemon"),
                "layer {i} names the host user"
            );
            for e in entries(layer) {
                let store_entry = i == 0 && !store_dirs.contains(&e.name);
                let want = if store_entry {
                    owner
                } else {
                    (0, 0, "root", "root")
                };
                let got = (e.uid, e.gid, e.uname.as_str(), e.gname.as_str());
                assert_eq!(got, want, "layer {i} entry {} with spec {extra}", e.name);
                assert_eq!(e.dev, (Some(0), Some(0)), "device numbers of {}", e.name);
            }
        }
    }
}

/// Values too large for their ustar fields (ids over 2097151, names over
/// 32 bytes, times after 2242) reach GNU tar through PAX records.
#[test]
fn large_ids_long_owner_names_and_late_mtimes_reach_gnu_tar() {
    let tmp = tempdir();
    let store = fake_store(tmp.path());
    let p = store.join("aaaa-big");
    put(&p.join("f"), b"f");
    let uname = "u".repeat(40);
    let layers = layer_tars(&fake_spec(
        &store,
        &[vec![&p]],
        json!({
            "uid": 5_000_000, "gid": 3_000_000, "uname": uname, "gname": "staff",
            "mtime": "2300-01-01T00:00:00Z",
        }),
    ));
    let tar_file = tmp.path().join("layer.tar");
    fs::write(&tar_file, &layers[0]).unwrap();
    let file = format!("{}/f", in_image(&p));
    let list = |args: &[&str]| -> String {
        let out = run(Command::new("tar")
            .args(args)
            .arg("--full-time")
            .arg("-tvf")
            .arg(&tar_file));
        assert!(
            out.stderr.is_empty(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let listing = String::from_utf8(out.stdout).unwrap();
        listing
            .lines()
            .find(|l| l.ends_with(&format!(" {file}")))
            .unwrap_or_else(|| panic!("{file} not in {listing}"))
            .to_owned()
    };
    let named = list(&[]);
    assert!(named.contains(&format!(" {uname}/staff ")), "{named}");
    assert!(named.contains(" 2300-01-01 00:00:00 "), "{named}");
    let numeric = list(&["--numeric-owner"]);
    assert!(numeric.contains(" 5000000/3000000 "), "{numeric}");
}

#[test]
fn the_store_directories_stay_root_with_a_store_owner() {
    let p = real_path("stevedore-layers-prefix", &[("share/hello", "hello\n")]);
    let layers = layer_tars(&spec(
        "layers-test",
        &[vec![&p]],
        json!({"uid": 1000, "gid": 100, "uname": "alice", "gname": "users"}),
    ));
    let entries = entries(&layers[0]);
    for e in &entries[..2] {
        assert_eq!(
            (e.uid, e.gid, e.uname.as_str(), e.gname.as_str()),
            (0, 0, "root", "root"),
            "{}",
            e.name
        );
    }
    for e in &entries[2..] {
        assert_eq!(
            (e.uid, e.gid, e.uname.as_str(), e.gname.as_str()),
            (1000, 100, "alice", "users"),
            "{}",
            e.name
        );
    }
}

// ---------------------------------------------------------------------------
// Kinds: hard links and symlinks.

#[test]
fn hard_links_are_written_as_regular_files() {
    let tmp = tempdir();
    let store = fake_store(tmp.path());
    let p = store.join("aaaa-hard");
    let content = b"the same inode, three names\n".repeat(40);
    put(&p.join("one"), &content);
    fs::create_dir(p.join("sub")).unwrap();
    fs::hard_link(p.join("one"), p.join("two")).unwrap();
    fs::hard_link(p.join("one"), p.join("sub/three")).unwrap();
    assert_eq!(fs::metadata(p.join("one")).unwrap().nlink(), 3);

    let layers = layer_tars(&fake_spec(&store, &[vec![&p]], json!({})));
    let entries = entries(&layers[0]);
    let base = in_image(&p);
    for name in ["one", "two", "sub/three"] {
        let e = find(&entries, &format!("{base}/{name}"));
        assert_eq!(e.kind, EntryType::Regular, "{name}");
        assert_eq!(e.data, content, "{name}");
        assert_eq!(e.link, None, "{name}");
    }
    for r in raw_headers(&layers[0]) {
        assert_ne!(
            r.kind,
            EntryType::Link,
            "{}",
            String::from_utf8_lossy(&r.name)
        );
    }
}

#[test]
fn an_optimised_store_gives_the_same_layer() {
    // Content no other store file has, so that the two copies are linked by
    // this test's optimise and not before.
    let unique = format!(
        "shared by two store paths: {:?} {}\n",
        std::time::SystemTime::now(),
        std::process::id()
    )
    .repeat(30);
    let a = real_path("stevedore-optimise-a", &[("share/data", &unique)]);
    let b = real_path("stevedore-optimise-b", &[("share/data", &unique)]);
    let spec = spec("layers-test", &[vec![&a, &b]], json!({}));
    let before = layer_tars(&spec);

    run(Command::new("nix-store").arg("--optimise"));
    let (ma, mb) = (
        fs::metadata(a.join("share/data")).unwrap(),
        fs::metadata(b.join("share/data")).unwrap(),
    );
    assert!(ma.nlink() > 1, "nix-store --optimise did not link the file");
    assert_eq!(ma.ino(), mb.ino(), "the two copies are one inode now");

    let after = layer_tars(&spec);
    assert!(
        before == after,
        "the layer changed after nix-store --optimise"
    );
    let entries = entries(&after[0]);
    for p in [&a, &b] {
        let e = find(&entries, &format!("{}/share/data", in_image(p)));
        assert_eq!(e.kind, EntryType::Regular);
        assert_eq!(e.data, unique.as_bytes());
    }
    for r in raw_headers(&after[0]) {
        assert_ne!(
            r.kind,
            EntryType::Link,
            "{}",
            String::from_utf8_lossy(&r.name)
        );
    }
}

#[test]
fn symlinks_are_kept_and_never_followed() {
    let tmp = tempdir();
    let store = fake_store(tmp.path());
    let p = store.join("aaaa-links");
    put(&p.join("target.txt"), b"target");
    put(&p.join("sub/inner"), b"inner");
    symlink("target.txt", p.join("rel")).unwrap();
    symlink("sub", p.join("dirlink")).unwrap();
    symlink("does/not/exist", p.join("dangling")).unwrap();
    symlink("/etc/passwd", p.join("absolute")).unwrap();
    // A store path that is itself a symlink to a directory.
    let q = store.join("bbbb-symlinked");
    symlink(&p, &q).unwrap();

    let layers = layer_tars(&fake_spec(&store, &[vec![&p, &q]], json!({})));
    let entries = entries(&layers[0]);
    let base = in_image(&p);
    for (name, target) in [
        ("rel", "target.txt"),
        ("dirlink", "sub"),
        ("dangling", "does/not/exist"),
        ("absolute", "/etc/passwd"),
    ] {
        let e = find(&entries, &format!("{base}/{name}"));
        assert_eq!(e.kind, EntryType::Symlink, "{name}");
        assert_eq!(e.link.as_deref(), Some(target), "{name}");
        assert!(e.data.is_empty(), "{name}");
    }
    let under_dirlink = format!("{base}/dirlink/");
    assert!(
        !entries.iter().any(|e| e.name.starts_with(&under_dirlink)),
        "the directory behind a symlink was followed: {:#?}",
        names(&entries)
    );
    // The real directory is there once.
    assert_eq!(find(&entries, &format!("{base}/sub/inner")).data, b"inner");

    let q_name = in_image(&q);
    let qs: Vec<&Ent> = entries
        .iter()
        .filter(|e| e.path() == q_name || e.path().starts_with(&format!("{q_name}/")))
        .collect();
    assert_eq!(qs.len(), 1, "{:#?}", names(&entries));
    assert_eq!(qs[0].kind, EntryType::Symlink);
    assert_eq!(qs[0].link.as_deref(), p.to_str());
    assert_component_order(&entries);
}

// ---------------------------------------------------------------------------
// Modes.

#[test]
fn modes_are_kept_as_the_store_has_them() {
    let tmp = tempdir();
    let store = fake_store(tmp.path());
    let p = store.join("aaaa-modes");
    let files = [
        ("private", 0o600),
        ("exec", 0o755),
        ("setuid", 0o4755),
        ("setgid", 0o2711),
        ("readonly", 0o444),
        ("secret/inside", 0o640),
    ];
    for (name, _) in files {
        put(&p.join(name), name.as_bytes());
    }
    fs::create_dir(p.join("shared")).unwrap();
    let dirs = [("", 0o755), ("secret", 0o700), ("shared", 0o1777)];
    for (name, mode) in files.iter().chain(&dirs) {
        chmod(&p.join(name), *mode);
    }
    // The customisation layer keeps modes too.
    let tree = tmp.path().join("tree");
    put(&tree.join("etc/private/key"), b"key");
    chmod(&tree.join("etc/private/key"), 0o600);
    chmod(&tree.join("etc/private"), 0o700);

    let layers = layer_tars(&fake_spec(
        &store,
        &[vec![&p]],
        json!({"customisation": {"trees": [tree]}}),
    ));
    let entries_0 = entries(&layers[0]);
    let base = in_image(&p);
    for (name, mode) in files.iter().chain(&dirs) {
        let e = find(&entries_0, &format!("{base}/{name}"));
        assert_eq!(e.mode, *mode, "{name}: {:o}", e.mode);
    }
    let entries_1 = entries(&layers[1]);
    assert_eq!(find(&entries_1, "etc/private").mode, 0o700);
    assert_eq!(find(&entries_1, "etc/private/key").mode, 0o600);
}

// ---------------------------------------------------------------------------
// Long names.

#[test]
fn long_names_and_targets_use_pax_and_round_trip_through_tar_readers() {
    let tmp = tempdir();
    let store = fake_store(tmp.path());
    let p = store.join("aaaa-long");
    let long_dir = "d".repeat(110);
    let long_file = format!("{long_dir}/{}.txt", "f".repeat(140));
    put(&p.join(&long_file), b"deep content\n");
    let long_target = format!("../{}", "t".repeat(160));
    symlink(&long_target, p.join("far")).unwrap();

    let layers = layer_tars(&fake_spec(&store, &[vec![&p]], json!({})));
    let layer = &layers[0];
    let base = in_image(&p);
    let file_path = format!("{base}/{long_file}");
    let dir_path = format!("{base}/{long_dir}/");
    let link_path = format!("{base}/far");
    assert!(file_path.len() > 100 && dir_path.len() > 100 && long_target.len() > 100);

    // The tar crate.
    let entries = entries(layer);
    let e = find(&entries, &file_path);
    assert_eq!(
        (e.name.as_str(), e.kind),
        (file_path.as_str(), EntryType::Regular)
    );
    assert_eq!(e.data, b"deep content\n");
    let e = find(&entries, &dir_path);
    assert_eq!(
        (e.name.as_str(), e.kind),
        (dir_path.as_str(), EntryType::Directory)
    );
    let e = find(&entries, &link_path);
    assert_eq!(e.kind, EntryType::Symlink);
    assert_eq!(e.link.as_deref(), Some(long_target.as_str()));

    // The format: POSIX ustar headers, and a PAX `x` header in front of
    // each long entry, with only the records it needs; none elsewhere.
    for r in raw_headers(layer) {
        assert!(r.ustar, "{:?} header is not ustar", r.kind);
    }
    let pax = pax_records(layer);
    assert_eq!(pax.len(), entries.len());
    for (e, records) in entries.iter().zip(&pax) {
        let want: Vec<(String, String)> = if e.name == file_path || e.name == dir_path {
            vec![("path".into(), e.name.clone())]
        } else if e.name == link_path {
            vec![("linkpath".into(), long_target.clone())]
        } else {
            Vec::new()
        };
        assert_eq!(*records, want, "PAX records of {}", e.name);
    }

    // GNU tar: lists and extracts the same names, without a warning.
    let tar_file = tmp.path().join("layer.tar");
    fs::write(&tar_file, layer).unwrap();
    let listed = run(Command::new("tar").arg("-tvf").arg(&tar_file));
    assert!(
        listed.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    let listing = String::from_utf8(listed.stdout).unwrap();
    assert!(
        listing.lines().any(|l| l.ends_with(&file_path)),
        "{listing}"
    );
    assert!(
        listing
            .lines()
            .any(|l| l.ends_with(&format!("{link_path} -> {long_target}"))),
        "{listing}"
    );
    let dest = tmp.path().join("extracted");
    fs::create_dir(&dest).unwrap();
    let extracted = run(Command::new("tar")
        .arg("-xf")
        .arg(&tar_file)
        .arg("-C")
        .arg(&dest));
    assert!(
        extracted.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&extracted.stderr)
    );
    assert_eq!(fs::read(dest.join(&file_path)).unwrap(), b"deep content\n");
    assert!(fs::symlink_metadata(dest.join(&dir_path)).unwrap().is_dir());
    assert_eq!(
        fs::read_link(dest.join(&link_path)).unwrap(),
        Path::new(&long_target)
    );
}

// ---------------------------------------------------------------------------
// What a layer leaves out.

#[test]
fn a_store_path_in_a_lower_layer_is_not_written_again() {
    let a = real_path("stevedore-dedup-a", &[("share/a", "a\n")]);
    let b = real_path("stevedore-dedup-b", &[("share/b", "b\n")]);
    let a_prefix = format!("nix/store/{}", store_name(&a));
    let b_prefix = format!("nix/store/{}", store_name(&b));
    let a_dotted = PathBuf::from(format!("/nix/store/./{}/", store_name(&a)));
    let under = |entries: &[Ent], prefix: &str| {
        entries
            .iter()
            .filter(|e| e.path() == prefix || e.path().starts_with(&format!("{prefix}/")))
            .count()
    };
    for higher_a in [a.as_path(), a_dotted.as_path()] {
        let layers = layer_tars(&spec(
            "layers-test",
            &[vec![&a], vec![higher_a, &b]],
            json!({}),
        ));
        assert_eq!(layers.len(), 2);
        let (low, high) = (entries(&layers[0]), entries(&layers[1]));
        assert_eq!(under(&low, &a_prefix), 3, "{:#?}", names(&low));
        assert_eq!(under(&high, &a_prefix), 0, "{:#?}", names(&high));
        assert_eq!(under(&high, &b_prefix), 3, "{:#?}", names(&high));
    }
    // The same path twice in one layer, once dotted: written once.
    let layers = layer_tars(&spec("layers-test", &[vec![&a, &a_dotted]], json!({})));
    let entries = entries(&layers[0]);
    assert_eq!(under(&entries, &a_prefix), 3, "{:#?}", names(&entries));
    assert_component_order(&entries);
}

#[test]
fn customisation_copies_of_store_files_are_checked_and_left_out() {
    let a = real_path(
        "stevedore-custom-copy",
        &[("share/msg", "from the store\n")],
    );
    let tmp = tempdir();
    let copy = |tree: &str, content: &[u8]| -> PathBuf {
        let root = tmp.path().join(tree);
        let file = root.join(format!("nix/store/{}/share/msg", store_name(&a)));
        put(&file, content);
        chmod(&file, 0o444); // as in the store
        put(&root.join("etc/x"), b"x");
        root
    };
    let same = copy("same", b"from the store\n");
    let layers = layer_tars(&spec(
        "layers-test",
        &[vec![&a]],
        json!({"customisation": {"trees": [same]}}),
    ));
    assert_eq!(layers.len(), 2);
    assert_eq!(names(&entries(&layers[1])), ["etc/", "etc/x"]);

    let different = copy("different", b"changed\n");
    let spec_path = write_spec(
        tmp.path(),
        &spec(
            "layers-test",
            &[vec![&a]],
            json!({"customisation": {"trees": [different]}}),
        ),
    );
    let err = build_fails(&[], &spec_path, "oci-dir", "none", "image", &[]);
    let tree_file = different.join(format!("nix/store/{}/share/msg", store_name(&a)));
    let store_file = a.join("share/msg");
    assert!(err.contains(tree_file.to_str().unwrap()), "{err}");
    assert!(err.contains(store_file.to_str().unwrap()), "{err}");
}

/// A tree entry inside a lower layer's store path that the store does not
/// have is a "different copy" too: the error names the tree's file (not
/// only the store path that does not exist).
#[test]
fn customisation_additions_inside_a_store_path_are_errors_naming_the_tree() {
    let a = real_path(
        "stevedore-custom-copy",
        &[("share/msg", "from the store\n")],
    );
    let tmp = tempdir();
    let inside = tmp
        .path()
        .join(format!("tree/nix/store/{}/share", store_name(&a)));
    for (what, extra) in [
        ("file", inside.join("extra")),
        ("directory", inside.join("newdir")),
    ] {
        if what == "file" {
            put(&extra, b"new\n");
        } else {
            fs::create_dir_all(&extra).unwrap();
        }
        let spec_path = write_spec(
            tmp.path(),
            &spec(
                "layers-test",
                &[vec![&a]],
                json!({"customisation": {"trees": [tmp.path().join("tree")]}}),
            ),
        );
        let err = build_fails(&[], &spec_path, "oci-dir", "none", "image", &[]);
        assert!(
            err.contains(extra.to_str().unwrap()),
            "the error about a {what} does not name {}: {err}",
            extra.display()
        );
        if what == "file" {
            fs::remove_file(&extra).unwrap();
        }
    }
}

#[test]
fn customisation_trees_must_agree_on_a_destination() {
    let tmp = tempdir();
    let tree = |name: &str, content: &[u8]| -> PathBuf {
        let root = tmp.path().join(name);
        put(&root.join("etc/conf"), content);
        chmod(&root.join("etc/conf"), 0o644);
        root
    };
    let (one, one_again, two) = (
        tree("one", b"1\n"),
        tree("one-again", b"1\n"),
        tree("two", b"2\n"),
    );

    let layers = layer_tars(&spec(
        "layers-test",
        &[],
        json!({"customisation": {"trees": [one, one_again]}}),
    ));
    let entries = entries(&layers[0]);
    assert_eq!(names(&entries), ["etc/", "etc/conf"]);
    assert_eq!(find(&entries, "etc/conf").data, b"1\n");

    let spec_path = write_spec(
        tmp.path(),
        &spec(
            "layers-test",
            &[],
            json!({"customisation": {"trees": [one, two]}}),
        ),
    );
    let err = build_fails(&[], &spec_path, "oci-dir", "none", "image", &[]);
    assert!(err.contains("/etc/conf"), "{err}");
    assert!(err.contains(one.to_str().unwrap()), "{err}");
    assert!(err.contains(two.to_str().unwrap()), "{err}");
}

// ---------------------------------------------------------------------------
// Size.

/// Walks a tar block by block from its headers' size fields; returns the
/// offset where the entries end.
fn end_of_entries(tar_bytes: &[u8]) -> usize {
    let mut pos = 0;
    loop {
        let block = &tar_bytes[pos..pos + 512];
        if block.iter().all(|&b| b == 0) {
            return pos;
        }
        let size_field = std::str::from_utf8(&block[124..135]).unwrap();
        let size = usize::from_str_radix(size_field, 8).unwrap();
        pos += 512 + size.div_ceil(512) * 512;
    }
}

#[test]
fn layers_are_whole_blocks_ending_in_two_zero_blocks() {
    let tmp = tempdir();
    let store = fake_store(tmp.path());
    let p = store.join("aaaa-sizes");
    for size in [0usize, 1, 511, 512, 513, 1024, 4097] {
        put(&p.join(format!("f{size}")), &vec![b'z'; size]);
    }
    put(&p.join("l".repeat(150)), b"pax");
    let q = store.join("bbbb-other");
    put(&q.join("x"), b"x");
    put(&tmp.path().join("tree/etc/conf"), b"conf");
    let spec = fake_spec(
        &store,
        &[vec![&p], vec![&q], vec![&p]],
        json!({"customisation": {"trees": [tmp.path().join("tree")]}}),
    );
    let oci = build_oci_with(&spec, "none", &[]);
    let layers = oci.layer_blobs();
    assert_eq!(layers.len(), 4);
    let sizes: Vec<u64> = oci.manifest()["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["size"].as_u64().unwrap())
        .collect();
    for (i, layer) in layers.iter().enumerate() {
        assert_eq!(layer.len() as u64, sizes[i], "layer {i}: manifest size");
        assert_eq!(layer.len() % 512, 0, "layer {i}: {} bytes", layer.len());
        let end = end_of_entries(layer);
        assert_eq!(
            layer.len() - end,
            1024,
            "layer {i}: two zero blocks, then the end"
        );
        assert!(layer[end..].iter().all(|&b| b == 0));
    }
    // The third layer's only path is in the first: an empty tar.
    assert_eq!(layers[2], vec![0; 1024]);

    // `stream` announces each layer's size before writing it: its
    // layer.tar entries are these very tars.
    let spec_path = write_spec(tmp.path(), &spec);
    let streamed = run(stevedore().arg("stream").arg(&spec_path)).stdout;
    let mut outer = tar::Archive::new(&streamed[..]);
    let mut streamed_layers = Vec::new();
    for e in outer.entries().unwrap() {
        let mut e = e.unwrap();
        if e.path_bytes().ends_with(b"/layer.tar") {
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut bytes).unwrap();
            streamed_layers.push(bytes);
        }
    }
    assert!(streamed_layers == layers, "stream wrote other layer tars");
}

// ---------------------------------------------------------------------------
// Compression.

/// A spec with a few layers of some size.
fn compression_spec(tmp: &Path) -> Value {
    let store = fake_store(tmp);
    let mut layers = Vec::new();
    for i in 0..4u32 {
        let p = store.join(format!("{i}{i}{i}{i}-layer"));
        let data: Vec<u8> = (0..200_000u32)
            .flat_map(|n| (n.wrapping_mul(2_654_435_761) >> (i + 3)).to_le_bytes())
            .collect();
        put(&p.join("data"), &data);
        put(&p.join("text"), "some text\n".repeat(1000).as_bytes());
        layers.push(p);
    }
    let layers: Vec<Vec<&Path>> = layers.iter().map(|p| vec![p.as_path()]).collect();
    fake_spec(&store, &layers, json!({}))
}

/// Decompresses a blob with a command-line tool (`gzip`, `zstd`).
fn decompress(tool: &str, blob: &[u8], tmp: &Path) -> Vec<u8> {
    let file = tmp.join(format!("blob.{tool}"));
    fs::write(&file, blob).unwrap();
    run(Command::new(tool).arg("-dc").arg(&file)).stdout
}

#[test]
fn gzip_layers_have_no_name_and_no_time_and_hold_the_layer() {
    let tmp = tempdir();
    let spec = compression_spec(tmp.path());
    let plain = build_oci_with(&spec, "none", &[]).layer_blobs();
    let oci = build_oci_with(&spec, "gzip", &[]);
    let manifest = oci.manifest();
    let diff_ids = oci.config()["rootfs"]["diff_ids"].clone();
    let blobs = oci.layer_blobs();
    assert_eq!(blobs.len(), plain.len());
    for (i, blob) in blobs.iter().enumerate() {
        assert_eq!(
            manifest["layers"][i]["mediaType"],
            "application/vnd.oci.image.layer.v1.tar+gzip"
        );
        assert_eq!(&blob[..3], &[0x1f, 0x8b, 8], "layer {i}: gzip, deflate");
        assert_eq!(blob[3] & 0x08, 0, "layer {i}: FLG.FNAME is set");
        assert_eq!(blob[3] & 0x10, 0, "layer {i}: FLG.FCOMMENT is set");
        assert_eq!(&blob[4..8], &[0, 0, 0, 0], "layer {i}: MTIME is not 0");
        let tar = decompress("gzip", blob, tmp.path());
        assert!(
            tar == plain[i],
            "layer {i}: gunzipped is not the plain layer"
        );
        assert_eq!(diff_ids[i], sha256(&tar), "layer {i}: diff_id");
        assert_eq!(manifest["layers"][i]["digest"], sha256(blob));
    }
}

#[test]
fn zstd_layers_are_the_same_for_every_job_count_and_hold_the_layer() {
    let tmp = tempdir();
    let spec = compression_spec(tmp.path());
    let one = build_oci_with(&spec, "zstd", &["--jobs", "1"]);
    let four = build_oci_with(&spec, "zstd", &["--jobs", "4"]);
    assert_eq!(one.layer_digests(), four.layer_digests());
    assert_eq!(
        fs::read(one.dir.join("index.json")).unwrap(),
        fs::read(four.dir.join("index.json")).unwrap()
    );
    assert_eq!(
        dir_names(&one.dir.join("blobs/sha256")),
        dir_names(&four.dir.join("blobs/sha256"))
    );
    let manifest = one.manifest();
    let diff_ids = one.config()["rootfs"]["diff_ids"].clone();
    let blobs = one.layer_blobs();
    assert_eq!(blobs.len(), 4);
    for (i, blob) in blobs.iter().enumerate() {
        assert_eq!(
            manifest["layers"][i]["mediaType"],
            "application/vnd.oci.image.layer.v1.tar+zstd"
        );
        assert_eq!(sha256(blob), manifest["layers"][i]["digest"], "layer {i}");
        let tar = decompress("zstd", blob, tmp.path());
        assert_eq!(diff_ids[i], sha256(&tar), "layer {i}: diff_id");
    }
}

// ---------------------------------------------------------------------------
// The config.

#[test]
fn config_lists_diff_ids_and_one_history_entry_per_layer() {
    let a = real_path("stevedore-config-a", &[("share/a", "a\n")]);
    let b = real_path("stevedore-config-b", &[("share/b", "b\n")]);
    let tmp = tempdir();
    put(&tmp.path().join("tree/etc/conf"), b"conf");
    let tree = tmp.path().join("tree");
    for (created, want_created) in [
        (None, "1970-01-01T00:00:01Z"),
        (Some("2021-06-07T08:09:10Z"), "2021-06-07T08:09:10Z"),
    ] {
        let mut extra = json!({"customisation": {"trees": [tree]}});
        if let Some(c) = created {
            extra["created"] = json!(c);
        }
        let oci = build_oci_with(
            &spec("layers-test", &[vec![&a], vec![&b]], extra),
            "none",
            &[],
        );
        let config = oci.config();
        let layers = oci.layer_blobs();
        assert_eq!(layers.len(), 3);
        assert_eq!(config["rootfs"]["type"], "layers");
        let diff_ids: Vec<String> = layers.iter().map(|l| sha256(l)).collect();
        assert_eq!(config["rootfs"]["diff_ids"], json!(diff_ids));
        assert_eq!(
            oci.layer_digests(),
            diff_ids,
            "uncompressed blobs are their tars"
        );
        assert_eq!(config["created"], want_created);

        let history = config["history"].as_array().unwrap();
        assert_eq!(history.len(), 3, "{config}");
        for h in history {
            assert_eq!(h["created"], want_created, "{h}");
            assert_eq!(h["created_by"], "stevedore", "{h}");
            assert!(h.get("empty_layer").is_none_or(|v| v == false), "{h}");
        }
        let comment = |i: usize| history[i]["comment"].as_str().unwrap().to_owned();
        let (a, b, t) = (
            a.to_str().unwrap(),
            b.to_str().unwrap(),
            tree.to_str().unwrap(),
        );
        assert!(
            comment(0).contains(a) && !comment(0).contains(b),
            "{}",
            comment(0)
        );
        assert!(
            comment(1).contains(b) && !comment(1).contains(a),
            "{}",
            comment(1)
        );
        assert!(comment(2).contains(t), "{}", comment(2));
    }
}

// ---------------------------------------------------------------------------
// The image name.

#[test]
fn an_uppercase_name_is_refused() {
    let tmp = tempdir();
    let spec_path = write_spec(tmp.path(), &spec("MyApp", &[], json!({})));
    for format in ["docker-archive", "oci-dir"] {
        let err = build_fails(&[], &spec_path, format, "none", "image", &[]);
        assert!(err.contains("lowercase"), "{err}");
        assert!(err.contains("MyApp"), "{err}");
    }
}
