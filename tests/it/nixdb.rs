//! The Nix database inside images (`includeNixDB`) and `stevedore nix-db`,
//! checked by the host's real Nix: each image of `examples/default.nix`
//! that carries a database is unpacked with umoci, and `nix-store --store
//! local?root=ROOTFS` verifies every hash and size, answers closure,
//! reference and hash queries as the host does, and keeps the contents
//! alive in garbage collection. The helper's command is checked the same
//! way, against `nix-store --load-db` of the same registration, and on
//! bad graphs.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use crate::support::digest::sha256;
use crate::support::nix::{REPO, build_example, example_build_cmd, realise_check};
use crate::support::process::{
    HELPER, assert_one_line_error, dir_names, run, run_fail, stdout_of, stevedore, tempdir,
};
use crate::support::tar::tar_members;

fn lines(text: &str) -> BTreeSet<String> {
    text.lines().map(str::to_owned).collect()
}

/// Store paths of example attributes that are no images.
fn example_paths(attrs: &[&str]) -> Vec<String> {
    let mut cmd = Command::new("nix-build");
    cmd.arg(Path::new(REPO).join("examples"));
    for a in attrs {
        cmd.args(["-A", a]);
    }
    let out = stdout_of(cmd.args(["--arg", "helper", HELPER, "--no-out-link"]));
    out.lines().map(str::to_owned).collect()
}

/// An image unpacked by umoci: `root` is its root filesystem.
struct Unpacked {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

/// Unpacks a docker-archive (through skopeo's OCI layout) or, for a
/// launcher, the OCI layout `stevedore build` writes from it.
fn unpack(image: &Path) -> Unpacked {
    let dir = tempdir();
    let layout = dir.path().join("layout");
    if fs::read(image).unwrap().starts_with(b"#!") {
        run(stevedore()
            .arg("build")
            .arg(image)
            .args(["--format", "oci-dir", "--compress", "gzip", "--out"])
            .arg(&layout));
    } else {
        run(Command::new("skopeo")
            .args(["copy", "-q"])
            .arg(format!("docker-archive:{}", image.display()))
            .arg(format!("oci:{}:latest", layout.display())));
    }
    let bundle = dir.path().join("bundle");
    run(Command::new("umoci")
        .args(["unpack", "--rootless", "--image"])
        .arg(format!("{}:latest", layout.display()))
        .arg(&bundle));
    Unpacked {
        root: bundle.join("rootfs"),
        _dir: dir,
    }
}

/// `nix-store --store local?root=ROOT`, the host's Nix on an image root.
fn nix_store(root: &Path) -> Command {
    let mut cmd = Command::new("nix-store");
    cmd.arg("--store")
        .arg(format!("local?root={}", root.display()));
    cmd
}

/// The rows of a Nix database: path -> (hash, narSize, ca, references).
type Rows = BTreeMap<String, (String, i64, Option<String>, BTreeSet<String>)>;

fn db_rows(db: &Path, only: Option<&BTreeSet<String>>) -> Rows {
    let db = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .unwrap();
    let mut rows = Rows::new();
    let mut stmt = db
        .prepare("SELECT path, hash, narSize, ca FROM ValidPaths")
        .unwrap();
    for row in stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, Option<String>>(3)?,
            ))
        })
        .unwrap()
    {
        let (path, hash, size, ca) = row.unwrap();
        if only.is_none_or(|o| o.contains(&path)) {
            rows.insert(path, (hash, size, ca, BTreeSet::new()));
        }
    }
    let mut stmt = db
        .prepare(
            "SELECT a.path, b.path FROM Refs JOIN ValidPaths a ON a.id = referrer \
             JOIN ValidPaths b ON b.id = reference",
        )
        .unwrap();
    for row in stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
        .unwrap()
    {
        let (from, to) = row.unwrap();
        if let Some(entry) = rows.get_mut(&from) {
            entry.3.insert(to);
        }
    }
    rows
}

/// The host's database, read only.
const HOST_DB: &str = "/nix/var/nix/db/db.sqlite";

/// Checks an unpacked image's database with the host's Nix: it registers
/// exactly the store paths in the image, which are `closure`; everything
/// verifies with `--check-contents`; closure, references and hashes are
/// the host's; every path has `registration_time`; each of `roots` has a
/// gcroot, and garbage collection finds none of their closure dead.
/// Returns what `--gc --print-dead` lists.
fn check_database(
    image: &Unpacked,
    roots: &[String],
    closure: &BTreeSet<String>,
    registration_time: i64,
) -> BTreeSet<String> {
    let root = &image.root;
    let db = root.join("nix/var/nix/db/db.sqlite");
    assert_eq!(
        fs::read_to_string(root.join("nix/var/nix/db/schema")).unwrap(),
        "10"
    );
    let in_store: BTreeSet<String> = dir_names(&root.join("nix/store"))
        .into_iter()
        .map(|n| format!("/nix/store/{n}"))
        .collect();
    assert_eq!(&in_store, closure, "store paths in the image");
    let rows = db_rows(&db, None);
    let registered: BTreeSet<String> = rows.keys().cloned().collect();
    assert_eq!(&registered, closure, "registered paths");
    let host = db_rows(Path::new(HOST_DB), Some(closure));
    assert_eq!(
        rows, host,
        "hash, narSize, ca and references as the host has them"
    );
    let conn = rusqlite::Connection::open(&db).unwrap();
    let times: BTreeSet<i64> = conn
        .prepare("SELECT DISTINCT registrationTime FROM ValidPaths")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(times, [registration_time].into(), "registrationTime");
    drop(conn);

    // The host's Nix writes into the root (lock files, the switch to
    // WAL): the root is a scratch copy, and the tests run as root.
    let verify = nix_store(root)
        .args(["--verify", "--check-contents"])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&verify.stderr);
    assert!(
        verify.status.success() && !said.contains("modified") && !said.contains("error"),
        "nix-store --verify --check-contents:\n{said}"
    );
    for path in closure {
        let image_refs = lines(&stdout_of(
            nix_store(root).args(["-q", "--references"]).arg(path),
        ));
        let host_refs = lines(&stdout_of(
            Command::new("nix-store")
                .args(["-q", "--references"])
                .arg(path),
        ));
        assert_eq!(image_refs, host_refs, "nix-store -q --references {path}");
    }
    let all: Vec<&String> = closure.iter().collect();
    let image_hashes = stdout_of(nix_store(root).args(["-q", "--hash"]).args(&all));
    let host_hashes = stdout_of(Command::new("nix-store").args(["-q", "--hash"]).args(&all));
    assert_eq!(image_hashes, host_hashes, "nix-store -q --hash");
    let image_sizes = stdout_of(nix_store(root).args(["-q", "--size"]).args(&all));
    let host_sizes = stdout_of(Command::new("nix-store").args(["-q", "--size"]).args(&all));
    assert_eq!(image_sizes, host_sizes, "nix-store -q --size");

    let mut kept = BTreeSet::new();
    let links: BTreeSet<String> = dir_names(&root.join("nix/var/nix/gcroots/docker"))
        .into_iter()
        .collect();
    let want_links: BTreeSet<String> = roots
        .iter()
        .map(|r| r.strip_prefix("/nix/store/").unwrap().to_owned())
        .collect();
    assert_eq!(links, want_links, "gcroots/docker");
    for r in roots {
        let name = r.strip_prefix("/nix/store/").unwrap();
        let link = root.join("nix/var/nix/gcroots/docker").join(name);
        assert_eq!(fs::read_link(&link).unwrap(), Path::new(r));
        let image_closure = lines(&stdout_of(nix_store(root).arg("-qR").arg(r)));
        let host_closure = lines(&stdout_of(Command::new("nix-store").arg("-qR").arg(r)));
        assert_eq!(image_closure, host_closure, "nix-store -qR {r}");
        kept.extend(image_closure);
    }
    let dead = lines(&stdout_of(nix_store(root).args(["--gc", "--print-dead"])));
    let lost: Vec<_> = dead.intersection(&kept).collect();
    assert!(lost.is_empty(), "gcroots do not keep {lost:#?}");
    assert!(
        dead.is_subset(closure),
        "dead paths outside the image: {dead:#?}"
    );
    dead
}

/// The closure of store paths on the host.
fn host_closure(paths: &[String]) -> BTreeSet<String> {
    lines(&stdout_of(Command::new("nix-store").arg("-qR").args(paths)))
}

/// The paths the store of `busybox` plus `app` image holds.
fn busybox_app() -> (Vec<String>, BTreeSet<String>) {
    let roots = example_paths(&["busybox", "app"]);
    let closure = host_closure(&roots);
    assert_eq!(closure.len(), 31, "{closure:#?}");
    (roots, closure)
}

#[test]
fn layered_image_database_verifies_and_agrees_with_the_host() {
    let built = build_example("nixDb");
    let (roots, closure) = busybox_app();
    let image = unpack(&built.path);
    let dead = check_database(&image, &roots, &closure, 1);
    assert!(dead.is_empty(), "{dead:#?}");
}

/// With `includeNixDB` on a base that has a Nix database, one database
/// registers the base's paths and the new ones, as the host's Nix has
/// them, and the gcroots of both images keep them alive.
#[test]
fn database_on_a_base_database_registers_both() {
    let built = build_example("nixDbOnBase");
    let roots = example_paths(&["busybox", "app", "greeter"]);
    let closure = host_closure(&roots);
    assert_eq!(closure.len(), 32, "{closure:#?}");
    let image = unpack(&built.path);
    let dead = check_database(&image, &roots, &closure, 1);
    assert!(dead.is_empty(), "{dead:#?}");
}

#[test]
fn streamed_image_has_the_same_database() {
    let built = build_example("nixDb.stream");
    let (roots, closure) = busybox_app();
    let image = unpack(&built.path);
    // The archive's database is the same file (compared before the host's
    // Nix opens either).
    let archive = unpack(&build_example("nixDb").path);
    let db = "nix/var/nix/db/db.sqlite";
    assert_eq!(
        sha256(&fs::read(image.root.join(db)).unwrap()),
        sha256(&fs::read(archive.root.join(db)).unwrap())
    );
    check_database(&image, &roots, &closure, 1);
}

#[test]
fn derivation_files_are_registered_with_their_outputs() {
    let built = build_example("nixDbDrv");
    let roots = example_paths(&["busybox", "app", "drvRef"]);
    // exportReferencesGraph adds the outputs of the derivations it meets,
    // and so does the image.
    let closure = lines(&stdout_of(
        Command::new("nix-store")
            .args(["-qR", "--include-outputs"])
            .args(&roots),
    ));
    assert!(
        closure.iter().filter(|p| p.ends_with(".drv")).count() >= 30,
        "{closure:#?}"
    );
    let image = unpack(&built.path);
    check_database(&image, &roots, &closure, 1);
    let outputs = |db: &Path| -> BTreeSet<(String, String, String)> {
        let conn =
            rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
                .unwrap();
        let mut stmt = conn
            .prepare(
                "SELECT v.path, d.id, d.path FROM DerivationOutputs d \
                 JOIN ValidPaths v ON v.id = d.drv",
            )
            .unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .map(Result::unwrap)
            .filter(|(drv, _, _): &(String, String, String)| closure.contains(drv))
            .collect()
    };
    let image_outputs = outputs(&image.root.join("nix/var/nix/db/db.sqlite"));
    assert!(image_outputs.len() >= 30, "{image_outputs:#?}");
    assert_eq!(image_outputs, outputs(Path::new(HOST_DB)));
}

#[test]
fn config_only_paths_are_registered_but_not_kept() {
    let built = build_example("nixDbNonRoot");
    let busybox = example_paths(&["busybox"]);
    let app = example_paths(&["app"]);
    // The config names app, so its closure is in the image and registered,
    // but only busybox has a gcroot.
    let closure = host_closure(&[busybox.clone(), app.clone()].concat());
    let image = unpack(&built.path);
    check_database(&image, &busybox, &closure, 1);
    let deps: BTreeSet<String> = closure
        .iter()
        .filter(|p| p.contains("-dep-"))
        .cloned()
        .collect();
    assert_eq!(deps.len(), 29);
    // Not kept: outside the closure of the image's gcroots. (`--gc
    // --print-dead` would also count the host's runtime roots, any
    // process of another test that names app's paths.)
    let kept = lines(&stdout_of(nix_store(&image.root).arg("-qR").args(&busybox)));
    assert!(kept.is_disjoint(&deps), "kept: {kept:#?}");
}

// ---------------------------------------------------------------------------
// Tar headers: owners, and no /nix/var without includeNixDB.

/// Each layer of a docker-archive, decompressed, as `tar --numeric-owner
/// -tvf` lists it: (mode, uid/gid, name).
fn tar_listings(archive: &Path) -> Vec<Vec<(String, String, String)>> {
    let dir = tempdir();
    let files = tar_members(archive);
    let manifest: Value = serde_json::from_slice(&files["manifest.json"]).unwrap();
    manifest[0]["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let blob = &files[name.as_str().unwrap()];
            let mut layer = Vec::new();
            if blob.starts_with(&[0x1f, 0x8b]) {
                flate2::read::GzDecoder::new(&blob[..])
                    .read_to_end(&mut layer)
                    .unwrap();
            } else if blob.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
                zstd::stream::read::Decoder::new(&blob[..])
                    .unwrap()
                    .read_to_end(&mut layer)
                    .unwrap();
            } else {
                layer.clone_from(blob);
            }
            let file = dir.path().join(format!("layer{i}.tar"));
            fs::write(&file, layer).unwrap();
            stdout_of(
                Command::new("tar")
                    .args(["--numeric-owner", "-tvf"])
                    .arg(&file),
            )
            .lines()
            .map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f[0].to_owned(), f[1].to_owned(), f[5].to_owned())
            })
            .collect()
        })
        .collect()
}

/// The entries of the top layer under `nix/`.
fn nix_entries(archive: &Path) -> Vec<(String, String, String)> {
    let layers = tar_listings(archive);
    layers
        .last()
        .unwrap()
        .iter()
        .filter(|(_, _, name)| name.starts_with("nix/"))
        .cloned()
        .collect()
}

#[test]
fn nix_uid_and_gid_own_the_nix_state() {
    for (attr, owner) in [("nixDbNonRoot", "1000/1000"), ("nixDb", "0/0")] {
        let built = build_example(attr);
        let mut entries = nix_entries(&built.path);
        // The store layers below hold /nix and /nix/store, root's; the top
        // layer gives /nix/store to a user other than root, and adds
        // /nix/var, root's, and /nix/var/nix, the user's.
        if owner != "0/0" {
            let store = entries.remove(0);
            assert_eq!(
                store,
                ("drwxr-xr-x".into(), owner.into(), "nix/store/".into()),
                "{attr}"
            );
        }
        let names: Vec<&str> = entries.iter().map(|e| e.2.as_str()).collect();
        assert_eq!(names[0], "nix/var/", "{attr}: {names:#?}");
        assert_eq!(entries[0].1, "0/0", "{attr}: /nix/var");
        for (mode, ids, name) in &entries[1..] {
            assert!(name.starts_with("nix/var/nix/"), "{attr}: {name}");
            assert_eq!(ids, owner, "{attr}: owner of {name}");
            let want = if name.ends_with('/') {
                "drwxr-xr-x"
            } else if name.contains("/gcroots/docker/") {
                "lrwxrwxrwx"
            } else {
                "-rw-r--r--"
            };
            assert_eq!(mode, want, "{attr}: mode of {name}");
        }
        for want in [
            "nix/var/nix/",
            "nix/var/nix/db/",
            "nix/var/nix/db/db.sqlite",
            "nix/var/nix/db/schema",
            "nix/var/nix/gcroots/",
            "nix/var/nix/gcroots/docker/",
        ] {
            assert!(names.contains(&want), "{attr}: no {want} in {names:#?}");
        }
    }
}

/// With `nixUid`, Nix runs as that user on the image: unpacked with its
/// owners (umoci as root), the store and the database are the user's, so
/// the host's Nix as uid 1000 verifies the store and collects what has no
/// gcroot: app and its dependencies, reached only through the config.
#[test]
fn nix_runs_as_nix_uid_on_the_image() {
    let built = build_example("nixDbNonRoot");
    let busybox = example_paths(&["busybox"]);
    let dir = tempdir();
    let layout = dir.path().join("layout");
    run(Command::new("skopeo")
        .args(["copy", "-q"])
        .arg(format!("docker-archive:{}", built.path.display()))
        .arg(format!("oci:{}:latest", layout.display())));
    let bundle = dir.path().join("bundle");
    run(Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}:latest", layout.display()))
        .arg(&bundle));
    // umoci makes the bundle root's only; the user needs to reach the root.
    use std::os::unix::fs::PermissionsExt;
    for d in [dir.path(), &bundle] {
        fs::set_permissions(d, fs::Permissions::from_mode(0o755)).unwrap();
    }
    let root = bundle.join("rootfs");
    let as_user = |args: &[&str]| -> String {
        let mut cmd = Command::new("setpriv");
        cmd.args(["--reuid=1000", "--regid=1000", "--clear-groups"])
            .arg("env")
            .arg("HOME=/tmp")
            .arg("nix-store")
            .arg("--store")
            .arg(format!("local?root={}", root.display()))
            .args(args);
        let out = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && !stderr.contains("error"),
            "{cmd:?}:\n{stderr}"
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let before = dir_names(&root.join("nix/store")).len();
    assert_eq!(before, 31);
    as_user(&["--verify", "--check-contents"]);
    assert_eq!(lines(&as_user(&["-qR", &busybox[0]])), lines(&busybox[0]));
    as_user(&["--gc"]);
    let kept: Vec<String> = dir_names(&root.join("nix/store"))
        .into_iter()
        .filter(|n| !n.starts_with('.'))
        .collect();
    assert_eq!(
        kept,
        [busybox[0].strip_prefix("/nix/store/").unwrap()],
        "what garbage collection keeps"
    );
    as_user(&["--verify", "--check-contents"]);
}

#[test]
fn images_without_include_nix_db_have_no_nix_var() {
    for attr in ["layered", "twoLayers"] {
        let built = build_example(attr);
        for (i, layer) in tar_listings(&built.path).iter().enumerate() {
            let var: Vec<_> = layer
                .iter()
                .filter(|(_, _, n)| n.starts_with("nix/var"))
                .collect();
            assert!(var.is_empty(), "{attr} layer {i}: {var:#?}");
        }
    }
}

#[test]
fn nix_db_images_rebuild_to_the_same_bytes() {
    let attrs = ["nixDb", "nixDbDrv", "nixDbNonRoot", "nixDbOnBase"];
    let mut drvs = Vec::new();
    for attr in attrs {
        let first = build_example(attr);
        let again = example_build_cmd(&[attr])
            .args(["--no-out-link", "--check"])
            .output()
            .unwrap();
        assert!(
            again.status.success(),
            "nix-build --check -A {attr}:\n{}",
            String::from_utf8_lossy(&again.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&again.stdout).trim(),
            first.path.to_str().unwrap()
        );
        let drv = stdout_of(
            Command::new("nix-store")
                .args(["-q", "--deriver"])
                .arg(&first.path),
        );
        let inputs = stdout_of(
            Command::new("nix-store")
                .args(["-q", "--references"])
                .arg(drv.trim()),
        );
        drvs.extend(
            inputs
                .lines()
                .filter(|r| r.ends_with("-nix-db.drv"))
                .map(str::to_owned),
        );
        drop(first.dir);
    }
    assert_eq!(drvs.len(), attrs.len(), "{drvs:#?}");
    // The database derivations: the database and its metadata.
    realise_check(&drvs);
}

// ---------------------------------------------------------------------------
// Evaluation errors

fn evaluation_fails(call: &str, needle: &str) {
    let expr = format!("(import {REPO}/nix {{ helper = {HELPER}; }}).{call}");
    let stderr = run_fail(Command::new("nix-instantiate").arg("-E").arg(&expr));
    assert!(
        stderr.contains(needle),
        "{expr}: expected {needle:?} in:\n{stderr}"
    );
}

#[test]
fn nix_db_arguments_are_checked_at_evaluation() {
    evaluation_fails(
        r#"buildLayeredImage { name = "x"; includeNixDB = true; includeStorePaths = false; }"#,
        "buildLayeredImage: includeNixDB needs includeStorePaths = true",
    );
    evaluation_fails(
        r#"buildImageWithNixDb { name = "x"; nixUid = -1; }"#,
        "buildImageWithNixDb: nixUid -1 must be a non-negative integer",
    );
    evaluation_fails(
        r#"streamLayeredImage { name = "x"; includeNixDB = "yes"; }"#,
        "streamLayeredImage: includeNixDB must be true or false",
    );
    evaluation_fails(
        r#"buildLayeredImageWithNixDb { name = "X/"; }"#,
        r#"buildLayeredImageWithNixDb: name "X/" is not a valid repository name"#,
    );
}

// ---------------------------------------------------------------------------
// stevedore nix-db

/// The closure of `paths` as `nix path-info --json --recursive` gives it
/// (with deriver and ca), a graph `stevedore nix-db` reads.
fn path_info_graph(paths: &[String]) -> Value {
    let out = stdout_of(
        Command::new("nix")
            .args([
                "--extra-experimental-features",
                "nix-command",
                "path-info",
                "--json",
                "--recursive",
            ])
            .args(paths),
    );
    serde_json::from_str(&out).unwrap()
}

/// Copies store paths into ROOT/nix/store.
fn copy_store_paths(root: &Path, paths: &BTreeSet<String>) {
    let store = root.join("nix/store");
    fs::create_dir_all(&store).unwrap();
    run(Command::new("cp").arg("-a").args(paths).arg(&store));
}

#[test]
fn nix_db_command_writes_what_nix_verifies() {
    let roots = example_paths(&["app"]);
    let closure = host_closure(&roots);
    let dir = tempdir();
    let graph = dir.path().join("graph.json");
    fs::write(
        &graph,
        serde_json::to_vec(&path_info_graph(&roots)).unwrap(),
    )
    .unwrap();
    let root = dir.path().join("root");
    fs::create_dir(&root).unwrap();
    run(stevedore()
        .arg("nix-db")
        .arg(&graph)
        .arg("--root")
        .arg(&root)
        .args(["--registration-time", "2020-01-01T00:00:00Z"]));
    // Byte-identical when written again.
    let again = dir.path().join("again");
    fs::create_dir(&again).unwrap();
    run(stevedore()
        .arg("nix-db")
        .arg(&graph)
        .arg("--root")
        .arg(&again)
        .args(["--registration-time", "2020-01-01T00:00:00Z"]));
    let db = "nix/var/nix/db/db.sqlite";
    assert_eq!(
        sha256(&fs::read(root.join(db)).unwrap()),
        sha256(&fs::read(again.join(db)).unwrap())
    );
    copy_store_paths(&root, &closure);
    let unpacked = Unpacked {
        _dir: tempdir(),
        root: root.clone(),
    };
    // The gcroot is the graph's root, app.
    check_database(&unpacked, &roots, &closure, 1_577_836_800);
    // nix path-info gives derivers: they are registered too.
    for path in &closure {
        let image = stdout_of(nix_store(&root).args(["-q", "--deriver"]).arg(path));
        let host = stdout_of(
            Command::new("nix-store")
                .args(["-q", "--deriver"])
                .arg(path),
        );
        assert_eq!(image, host, "deriver of {path}");
    }
}

/// The same registration given to `nix-store --load-db` gives the same
/// tables (but for registration times, which load-db takes from the clock).
#[test]
fn nix_db_command_agrees_with_nix_store_load_db() {
    let roots = example_paths(&["busybox", "app"]);
    let closure: Vec<String> = host_closure(&roots).into_iter().collect();
    let dir = tempdir();
    let graph = dir.path().join("graph.json");
    fs::write(
        &graph,
        serde_json::to_vec(&path_info_graph(&roots)).unwrap(),
    )
    .unwrap();
    let ours = dir.path().join("ours");
    let theirs = dir.path().join("theirs");
    fs::create_dir(&ours).unwrap();
    fs::create_dir(&theirs).unwrap();
    run(stevedore()
        .arg("nix-db")
        .arg(&graph)
        .arg("--root")
        .arg(&ours));
    let registration = run(Command::new("nix-store").arg("--dump-db").args(&closure)).stdout;
    let mut load = nix_store(&theirs)
        .arg("--load-db")
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    load.stdin.take().unwrap().write_all(&registration).unwrap();
    assert!(load.wait().unwrap().success());
    let db = "nix/var/nix/db/db.sqlite";
    let (mut a, b) = (
        db_rows(&ours.join(db), None),
        db_rows(&theirs.join(db), None),
    );
    // load-db does not keep content addresses.
    for row in a.values_mut() {
        row.2 = None;
    }
    assert_eq!(a, b);
    assert_eq!(a.len(), closure.len());
}

/// A graph of two paths, `app` referring to `lib`, with real-looking hashes.
fn small_graph() -> Value {
    json!([
        { "path": "/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-app",
          "narHash": "sha256:0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73",
          "narSize": 120,
          "references": ["/nix/store/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-lib"] },
        { "path": "/nix/store/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-lib",
          "narHash": "sha256:00xyyr3fi8l6hb839bv3f7yb86yjv7xi1cgh1xnhipym4asvb4aq",
          "narSize": 80,
          "references": [] }
    ])
}

/// Runs `stevedore nix-db` on `graph` into a fresh root, which must fail
/// with one line containing every needle and leave the root empty.
fn nix_db_fails(graph: &Value, needles: &[&str]) {
    nix_db_fails_with(graph, &[], needles);
}

fn nix_db_fails_with(graph: &Value, args: &[&str], needles: &[&str]) {
    let dir = tempdir();
    let file = dir.path().join("graph.json");
    fs::write(&file, serde_json::to_vec(graph).unwrap()).unwrap();
    let root = dir.path().join("root");
    fs::create_dir(&root).unwrap();
    let out = stevedore()
        .arg("nix-db")
        .arg(&file)
        .arg("--root")
        .arg(&root)
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_one_line_error(&stderr, "stevedore nix-db");
    for needle in needles {
        assert!(stderr.contains(needle), "expected {needle:?} in {stderr}");
    }
    assert_eq!(dir_names(&root), Vec::<String>::new(), "{stderr}");
}

#[test]
fn nix_db_command_refuses_bad_graphs_and_writes_nothing() {
    let lib = "/nix/store/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-lib";
    let app = "/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-app";
    let mut g = small_graph();
    g[1].as_object_mut().unwrap().remove("narHash");
    nix_db_fails(&g, &[lib, "no narHash"]);
    let mut g = small_graph();
    g[1].as_object_mut().unwrap().remove("narSize");
    nix_db_fails(&g, &[lib, "no narSize"]);
    let mut g = small_graph();
    g[0]["references"] = json!(["/nix/store/cccccccccccccccccccccccccccccccc-gone"]);
    nix_db_fails(
        &g,
        &[
            app,
            "/nix/store/cccccccccccccccccccccccccccccccc-gone",
            "not in the graph",
        ],
    );
    for (hash, why) in [
        (
            "md5:d41d8cd98f00b204e9800998ecf8427e",
            "unknown hash format",
        ),
        (
            "0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73",
            "unknown hash format",
        ),
        ("sha256:not-a-hash", "not a valid SHA-256"),
    ] {
        let mut g = small_graph();
        g[1]["narHash"] = json!(hash);
        nix_db_fails(&g, &[lib, why]);
    }
    let mut g = small_graph();
    g[1]["path"] = json!("/gnu/store/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-lib");
    g[0]["references"] = json!(["/gnu/store/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-lib"]);
    nix_db_fails(
        &g,
        &[
            "/gnu/store/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-lib",
            "not in /nix/store",
        ],
    );
    nix_db_fails_with(
        &small_graph(),
        &["--gc-root", "/nix/store/cccccccccccccccccccccccccccccccc-x"],
        &["gc root /nix/store/cccccccccccccccccccccccccccccccc-x is not a store path of the image"],
    );
    nix_db_fails_with(
        &small_graph(),
        &["--registration-time", "yesterday"],
        &["--registration-time \"yesterday\""],
    );
}

#[test]
fn nix_db_command_writes_into_an_existing_root_but_not_over_a_database() {
    let dir = tempdir();
    let file = dir.path().join("graph.json");
    fs::write(&file, serde_json::to_vec(&small_graph()).unwrap()).unwrap();
    let root = dir.path().join("root");
    fs::create_dir_all(root.join("nix/var/nix/gcroots")).unwrap();
    fs::write(root.join("keep"), "x").unwrap();
    run(stevedore()
        .arg("nix-db")
        .arg(&file)
        .arg("--root")
        .arg(&root));
    assert_eq!(
        fs::read_link(root.join("nix/var/nix/gcroots/docker/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-app"))
            .unwrap(),
        Path::new("/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-app")
    );
    assert_eq!(
        dir_names(&root.join("nix/var/nix/db")),
        ["db.sqlite", "schema"]
    );
    let before = fs::read(root.join("nix/var/nix/db/db.sqlite")).unwrap();
    let stderr = run_fail(
        stevedore()
            .arg("nix-db")
            .arg(&file)
            .arg("--root")
            .arg(&root),
    );
    assert_one_line_error(&stderr, "stevedore nix-db over a database");
    assert!(stderr.contains("db.sqlite already exists"), "{stderr}");
    assert_eq!(
        fs::read(root.join("nix/var/nix/db/db.sqlite")).unwrap(),
        before
    );
    assert_eq!(
        dir_names(&root.join("nix/var/nix/db")),
        ["db.sqlite", "schema"]
    );
}
