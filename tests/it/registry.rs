//! `stevedore push`, `pull` and `load` against a real registry (Debian's
//! docker-registry, distribution 2.8) on 127.0.0.1, anonymous, with
//! htpasswd Basic auth, with TLS from a CA the test makes, and with token
//! auth from a token server the test runs; skopeo on the other side of
//! every round trip. A TCP proxy cuts connections and flips bytes.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{Value, json};

use crate::support::digest::sha256;
use crate::support::nix::REPO;
use crate::support::oci_layout::{Layout, blob_path, one_file_layout};
use crate::support::podman::{
    PodmanImage, containers_conf, podman, podman_store_lock, run_in_podman_store,
};
use crate::support::process::{
    HELPER, assert_one_line_error, dir_names, run, stevedore, tempdir, unique,
};
use crate::support::proxy::CuttingProxy;
use crate::support::registry::{Auth, PASSWORD, Registry, USER, push};
use crate::support::spec::{build, build_image, spec, write_spec};
use crate::support::store::{busybox_store_path, nix_add, noise, store_path_with};

fn stdout_lines(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// `stevedore pull SRC --out OUT` with the registry's arguments.
fn pull(reg: &Registry, src: &str, out: &Path, extra: &[&str]) -> Output {
    run(reg
        .stevedore()
        .arg("pull")
        .arg(src)
        .arg("--out")
        .arg(out)
        .args(reg.stevedore_args())
        .args(extra))
}

fn skopeo(reg: &Registry, args: &[&str], side: &str, rest: &[String]) -> Output {
    run(Command::new("skopeo")
        .args(args)
        .args(reg.skopeo_args(side))
        .args(rest))
}

/// The manifest the registry holds for a reference, as skopeo reads it.
fn raw_manifest(reg: &Registry, reference: &str) -> Vec<u8> {
    skopeo(reg, &["inspect", "--raw"], "", &[reference.to_owned()]).stdout
}

// ---------------------------------------------------------------------------
// Round trips, in every auth mode.

/// stevedore pushes, skopeo pulls; skopeo pushes, stevedore pulls. The
/// manifest digest and every blob stay the same all the way.
fn round_trips(auth: Auth) {
    let reg = Registry::start_with(auth);
    let dir = tempdir();
    let busybox = busybox_store_path();
    let data = store_path_with(
        &format!("rt-data-{}", unique()),
        &[("data", noise(300_000, unique()))],
    );
    let layout_dir = build_image(
        dir.path(),
        "rt",
        &[vec![&busybox], vec![&data]],
        "oci-dir",
        "gzip",
        "layout",
    );
    let original = Layout::read(&layout_dir);

    // stevedore -> registry -> skopeo.
    let dest = reg.reference("rt/pushed", "v1");
    let out = push(&reg, &layout_dir, &dest, &[]);
    assert_eq!(
        stdout_lines(&out).last().unwrap(),
        &format!("{}/rt/pushed:v1@{}", reg.host(), original.digest),
        "the last line names the pushed manifest"
    );
    assert_eq!(raw_manifest(&reg, &dest), original.manifest);
    let back = dir.path().join("skopeo-back");
    skopeo(
        &reg,
        &["copy"],
        "src",
        &[dest.clone(), format!("oci:{}:v1", back.display())],
    );
    let back = Layout::read(&back);
    assert_eq!(back.digest, original.digest);
    for layer in original.layers() {
        assert!(
            back.blob(&layer) == original.blob(&layer),
            "layer {layer} changed"
        );
    }

    // skopeo -> registry -> stevedore.
    let theirs = reg.reference("rt/skopeo", "v1");
    skopeo(
        &reg,
        &["copy"],
        "dest",
        &[
            format!("oci:{}:latest", layout_dir.display()),
            theirs.clone(),
        ],
    );
    let by_digest = format!("docker://{}/rt/skopeo@{}", reg.host(), original.digest);
    let pulled_dir = dir.path().join("pulled-oci");
    let out = pull(&reg, &by_digest, &pulled_dir, &["--format", "oci-dir"]);
    assert_eq!(
        stdout_lines(&out).last().unwrap(),
        &format!("{}/rt/skopeo@{}", reg.host(), original.digest)
    );
    let pulled = Layout::read(&pulled_dir);
    assert_eq!(pulled.digest, original.digest);
    assert_eq!(pulled.manifest, original.manifest);
    assert_eq!(
        pulled.blob(&original.config()),
        original.blob(&original.config())
    );
    for layer in original.layers() {
        assert!(
            pulled.blob(&layer) == original.blob(&layer),
            "layer {layer} changed"
        );
    }

    // And as a docker-archive: the blobs byte for byte, named by digest.
    let archive = dir.path().join("pulled.tar");
    pull(&reg, &by_digest, &archive, &["--tag", "rt:pulled"]);
    let mut tar = tar::Archive::new(fs::File::open(&archive).unwrap());
    let mut names = Vec::new();
    for entry in tar.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().to_string_lossy().into_owned();
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut bytes).unwrap();
        if let Some(hex) = name.strip_suffix(".tar") {
            assert_eq!(sha256(&bytes), format!("sha256:{hex}"));
        }
        if name == "manifest.json" {
            let m: Value = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(m[0]["RepoTags"], json!(["rt:pulled"]));
        }
        names.push(name);
    }
    let mut expected: Vec<String> = original
        .layers()
        .iter()
        .map(|d| format!("{}.tar", &d[7..]))
        .collect();
    expected.push(format!("{}.json", &original.config()[7..]));
    expected.push("manifest.json".to_owned());
    assert_eq!(names, expected);
}

#[test]
fn round_trips_anonymous() {
    round_trips(Auth::Anonymous);
}

#[test]
fn round_trips_htpasswd_basic() {
    round_trips(Auth::Basic);
}

#[test]
fn round_trips_tls_with_a_test_ca() {
    round_trips(Auth::Tls);
}

#[test]
fn round_trips_token_auth() {
    round_trips(Auth::Token);
}

/// Credentials as podman, skopeo and Docker keep them: REGISTRY_AUTH_FILE,
/// $XDG_RUNTIME_DIR/containers/auth.json and ~/.docker/config.json.
#[test]
fn credentials_come_from_auth_files() {
    use base64::Engine as _;
    let reg = Registry::start_with(Auth::Basic);
    let dir = tempdir();
    let layout = one_file_layout(dir.path(), "creds", "creds", 1000, 3);
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    let file = json!({ "auths": { reg.host(): { "auth": auth } } }).to_string();
    let auth_file = dir.path().join("auth.json");
    fs::write(&auth_file, &file).unwrap();
    let runtime = dir.path().join("runtime");
    fs::create_dir_all(runtime.join("containers")).unwrap();
    fs::write(runtime.join("containers/auth.json"), &file).unwrap();
    let home = dir.path().join("home");
    fs::create_dir_all(home.join(".docker")).unwrap();
    fs::write(
        home.join(".docker/config.json"),
        json!({ "auths": { format!("http://{}", reg.host()): { "auth": auth } } }).to_string(),
    )
    .unwrap();
    let empty_home = dir.path().join("empty-home");
    fs::create_dir_all(&empty_home).unwrap();
    let cases: [(&str, Vec<(&str, &Path)>); 3] = [
        (
            "REGISTRY_AUTH_FILE",
            vec![("REGISTRY_AUTH_FILE", &auth_file), ("HOME", &empty_home)],
        ),
        (
            "XDG_RUNTIME_DIR",
            vec![("XDG_RUNTIME_DIR", &runtime), ("HOME", &empty_home)],
        ),
        ("~/.docker/config.json", vec![("HOME", &home)]),
    ];
    for (i, (what, env)) in cases.iter().enumerate() {
        let mut cmd = stevedore();
        cmd.env_remove("REGISTRY_AUTH_FILE")
            .env_remove("XDG_RUNTIME_DIR")
            .env_remove("DOCKER_CONFIG");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd
            .arg("push")
            .arg(&layout)
            .arg(reg.reference("creds/app", &format!("t{i}")))
            .arg("--tls-verify=false")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "push with credentials from {what} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

// ---------------------------------------------------------------------------
// Formats and sources.

/// A docker-archive pushed as Docker schema 2, and a spec (what a
/// streamLayeredImage launcher holds) pushed straight from the store: the
/// latter gives the very manifest `build` writes.
#[test]
fn pushes_docker_archives_as_v2s2_and_specs_from_the_store() {
    let reg = Registry::start();
    let dir = tempdir();
    let busybox = busybox_store_path();
    let data = store_path_with(
        &format!("fmt-{}", unique()),
        &[
            ("big", noise(2_500_000, 11)),
            ("small", b"hello\n".to_vec()),
        ],
    );
    let layers = [vec![busybox.as_path()], vec![data.as_path()]];
    let archive = build_image(
        dir.path(),
        "fmt",
        &layers,
        "docker-archive",
        "gzip",
        "image.tar",
    );
    let dest = reg.reference("fmt/archive", "v2s2");
    push(&reg, &archive, &dest, &["--format", "v2s2"]);
    let raw: Value = serde_json::from_slice(&raw_manifest(&reg, &dest)).unwrap();
    assert_eq!(
        raw["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    assert_eq!(
        raw["layers"][1]["mediaType"],
        "application/vnd.docker.image.rootfs.diff.tar.gzip"
    );
    let back = dir.path().join("back");
    skopeo(
        &reg,
        &["copy"],
        "src",
        &[dest, format!("oci:{}:x", back.display())],
    );

    // The spec, streamed and pushed in 1 MiB chunks: the same manifest as
    // the OCI layout that `build` writes.
    let spec_dir = dir.path().join("spec");
    fs::create_dir(&spec_dir).unwrap();
    let spec_path = write_spec(
        &spec_dir,
        &spec("fmt", &layers, json!({ "created": "2024-01-02T03:04:05Z" })),
    );
    let launcher = dir.path().join("launcher");
    fs::write(
        &launcher,
        [
            b"#!/nonexistent/stevedore stream\n".as_slice(),
            &fs::read(&spec_path).unwrap(),
        ]
        .concat(),
    )
    .unwrap();
    let layout = dir.path().join("layout");
    build(&spec_path, "oci-dir", "zstd", &layout);
    let built = Layout::read(&layout);
    let dest = reg.reference("fmt/stream", "zstd");
    let out = push(
        &reg,
        &launcher,
        &dest,
        &["--compress", "zstd", "--chunk-size", "1048576"],
    );
    assert_eq!(
        stdout_lines(&out).last().unwrap(),
        &format!("{}/fmt/stream:zstd@{}", reg.host(), built.digest)
    );
    assert_eq!(raw_manifest(&reg, &dest), built.manifest);

    // zstd has no Docker schema 2 media type: refused before any upload.
    let err = run_fails(stevedore().args([
        "push",
        layout.to_str().unwrap(),
        &reg.reference("fmt/none", "x"),
        "--tls-verify=false",
        "--format",
        "v2s2",
    ]));
    assert!(err.contains("zstd"), "{err}");
}

// ---------------------------------------------------------------------------
// Incremental push.

/// Blob uploads in a registry's access log after `from`: the digests of
/// the closing PUTs, and the number of PATCHes.
fn uploads(log: &str, repo: &str) -> (BTreeSet<String>, usize) {
    let put = regex::Regex::new(&format!(
        r#""PUT /v2/{repo}/blobs/uploads/[^ "]*digest=sha256(?:%3A|:)([0-9a-f]{{64}})[^ "]* HTTP/1\.1" 201"#
    ))
    .unwrap();
    let digests = put
        .captures_iter(log)
        .map(|c| format!("sha256:{}", &c[1]))
        .collect();
    let patches = log
        .matches(&format!("\"PATCH /v2/{repo}/blobs/uploads/"))
        .count();
    (digests, patches)
}

/// A second push of an image that differs by one layer uploads that layer
/// and the new config, nothing else, as the registry's log shows.
#[test]
fn second_push_uploads_only_the_changed_layer() {
    let reg = Registry::start();
    let dir = tempdir();
    let busybox = busybox_store_path();
    let stable = store_path_with(
        &format!("stable-{}", unique()),
        &[("lib", noise(400_000, 5))],
    );
    let app_a = store_path_with(
        &format!("app-a-{}", unique()),
        &[("app", noise(200_000, 6))],
    );
    let app_b = store_path_with(
        &format!("app-b-{}", unique()),
        &[("app", noise(200_000, 7))],
    );
    let a = build_image(
        dir.path(),
        "inc",
        &[vec![&busybox], vec![&stable], vec![&app_a]],
        "oci-dir",
        "gzip",
        "a",
    );
    let b = build_image(
        dir.path(),
        "inc",
        &[vec![&busybox], vec![&stable], vec![&app_b]],
        "oci-dir",
        "gzip",
        "b",
    );
    let (a, b) = (Layout::read(&a), Layout::read(&b));
    push(&reg, &a.dir, &reg.reference("inc/app", "a"), &[]);
    let (first, _) = uploads(&reg.log(), "inc/app");
    let mut all_a: BTreeSet<String> = a.layers().into_iter().collect();
    all_a.insert(a.config());
    assert_eq!(first, all_a, "the first push uploads every blob");

    let mark = reg.log().len();
    let out = push(&reg, &b.dir, &reg.reference("inc/app", "b"), &[]);
    // The access log line of the manifest PUT may trail the answer.
    std::thread::sleep(std::time::Duration::from_millis(200));
    let log = reg.log();
    let (second, patches) = uploads(&log[mark..], "inc/app");
    let changed = b.layers()[2].clone();
    assert_eq!(
        second,
        BTreeSet::from([changed.clone(), b.config()]),
        "the second push uploads the changed layer and the config only:\n{}",
        &log[mark..]
    );
    assert_eq!(patches, 0, "small blobs go up in one PUT");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.matches("skipped").count(), 2, "{stderr}");
    assert_eq!(stderr.matches("uploaded").count(), 1, "{stderr}");
}

// ---------------------------------------------------------------------------
// Cut connections.

/// The bytes of the partial blobs of pulls under `tmp`, in whatever
/// work directories they are.
fn partial_bytes(tmp: &Path) -> u64 {
    let mut total = 0;
    for entry in fs::read_dir(tmp).unwrap() {
        let entry = entry.unwrap();
        let md = fs::symlink_metadata(entry.path()).unwrap();
        if md.is_dir() {
            total += partial_bytes(&entry.path());
        } else if entry.file_name().to_string_lossy().ends_with(".partial") {
            total += md.len();
        }
    }
    total
}

/// A pull cut in the middle of a layer fails (with retries off) and keeps
/// the partial blob under TMPDIR; the rerun resumes it with a Range
/// request instead of fetching it again. With retries on, one run rides
/// over a cut. Every output is the same bytes as an uncut pull.
#[test]
fn cut_pulls_resume() {
    let reg = Registry::start();
    let dir = tempdir();
    let big = store_path_with(
        &format!("big-{}", unique()),
        &[("blob", noise(3_000_000, 9))],
    );
    let layout = build_image(
        dir.path(),
        "cut",
        &[vec![&big]],
        "oci-dir",
        "gzip",
        "layout",
    );
    let image = Layout::read(&layout);
    let layer_size = image.blob(&image.layers()[0]).len() as u64;
    push(&reg, &layout, &reg.reference("cut/pull", "v1"), &[]);

    let direct = dir.path().join("direct.tar");
    pull(&reg, &reg.reference("cut/pull", "v1"), &direct, &[]);

    let proxy = CuttingProxy::start(reg.port);
    let src = format!("docker://{}/cut/pull@{}", proxy.host(), image.digest);
    let tmp = tempdir();
    let out_dir = tempdir();
    let out = out_dir.path().join("image.tar");
    let pull_via_proxy = |retries: &str| {
        let mut cmd = stevedore();
        cmd.env("TMPDIR", tmp.path())
            .args(["pull", &src, "--tls-verify=false", "--retries", retries])
            .arg("--out")
            .arg(&out)
            .args(["--tag", &format!("{}/cut/pull:latest", reg.host())]);
        cmd
    };

    proxy.cut_down_after(layer_size / 2);
    let err = run_fails(&mut pull_via_proxy("0"));
    assert!(err.contains("layer 1"), "{err}");
    assert!(!out.exists(), "a failed pull left {}", out.display());
    assert_eq!(dir_names(out_dir.path()), Vec::<String>::new());
    let kept = partial_bytes(tmp.path());
    assert!(
        kept > layer_size / 4,
        "the partial layer was not kept ({kept} bytes)"
    );

    let before = proxy.down();
    run(&mut pull_via_proxy("0"));
    let moved = proxy.down() - before;
    assert!(
        moved < layer_size - kept + 64 * 1024,
        "the rerun fetched {moved} bytes for a layer of {layer_size} of which {kept} were kept"
    );
    assert!(fs::read(&out).unwrap() == fs::read(&direct).unwrap());
    assert_eq!(
        partial_bytes(tmp.path()),
        0,
        "the work directory is removed"
    );

    fs::remove_file(&out).unwrap();
    proxy.cut_down_after(layer_size / 3);
    let before = proxy.down();
    run(&mut pull_via_proxy("5"));
    assert!(proxy.down() - before < layer_size + layer_size / 2);
    assert!(fs::read(&out).unwrap() == fs::read(&direct).unwrap());
}

/// A push cut while a layer goes up (in 1 MiB chunks) fails with retries
/// off and tags nothing; the rerun finishes. With retries on, one run
/// resumes the chunk where the registry says the upload stands, also for a
/// layer streamed from the store. skopeo reads back every byte.
#[test]
fn cut_pushes_resume() {
    let reg = Registry::start();
    let dir = tempdir();
    let big = store_path_with(
        &format!("bigp-{}", unique()),
        &[("blob", noise(3_000_000, 13))],
    );
    let layers = [vec![big.as_path()]];
    let layout = build_image(dir.path(), "cutp", &layers, "oci-dir", "gzip", "layout");
    let image = Layout::read(&layout);
    let proxy = CuttingProxy::start(reg.port);
    let dest = |repo: &str| format!("docker://{}/{repo}:v1", proxy.host());
    let chunked = ["--tls-verify=false", "--chunk-size", "1048576"];

    proxy.cut_up_after(1_500_000);
    let err = run_fails(
        stevedore()
            .arg("push")
            .arg(&layout)
            .arg(dest("cutp/a"))
            .args(chunked)
            .args(["--retries", "0"]),
    );
    assert!(err.contains("layer 1"), "{err}");
    let tags = Command::new("skopeo")
        .args([
            "inspect",
            "--tls-verify=false",
            &reg.reference("cutp/a", "v1"),
        ])
        .output()
        .unwrap();
    assert!(!tags.status.success(), "a failed push tagged the image");

    let check = |repo: &str| {
        let back = dir.path().join(format!("back-{}", repo.replace('/', "-")));
        run(Command::new("skopeo").args([
            "copy",
            "--src-tls-verify=false",
            &reg.reference(repo, "v1"),
            &format!("oci:{}:v1", back.display()),
        ]));
        let back = Layout::read(&back);
        assert_eq!(back.digest, image.digest);
        for layer in image.layers() {
            assert!(back.blob(&layer) == image.blob(&layer));
        }
    };
    run(stevedore()
        .arg("push")
        .arg(&layout)
        .arg(dest("cutp/a"))
        .args(chunked)
        .args(["--retries", "0"]));
    check("cutp/a");

    proxy.cut_up_after(1_500_000);
    run(stevedore()
        .arg("push")
        .arg(&layout)
        .arg(dest("cutp/b"))
        .args(chunked));
    check("cutp/b");

    // Streamed from the store, cut in the second chunk.
    let spec_dir = dir.path().join("spec");
    fs::create_dir(&spec_dir).unwrap();
    let spec_path = write_spec(
        &spec_dir,
        &spec(
            "cutp",
            &layers,
            json!({ "created": "2024-01-02T03:04:05Z" }),
        ),
    );
    proxy.cut_up_after(1_500_000);
    let out = run(stevedore()
        .arg("push")
        .arg(&spec_path)
        .arg(dest("cutp/c"))
        .args(chunked));
    assert!(
        stdout_lines(&out).last().unwrap().ends_with(&image.digest),
        "{:?}",
        stdout_lines(&out)
    );
    check("cutp/c");
}

// ---------------------------------------------------------------------------
// Bad input: one clear line, nothing written.

/// Runs a command that must fail with exactly one `stevedore: error:` line
/// (progress lines may come before it) and exit code 1; returns the line.
fn run_fails(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{cmd:?}: {stderr}");
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.starts_with("layer "))
        .collect();
    assert_eq!(
        errors.len(),
        1,
        "{cmd:?}: expected one error line:\n{stderr}"
    );
    assert_one_line_error(errors[0], &format!("{cmd:?}"));
    errors[0].to_owned()
}

/// A pull that must fail: one line, and nothing at `--out` or beside it.
fn pull_fails(reg_args: &[String], src: &str, extra: &[&str]) -> String {
    let out_dir = tempdir();
    let out = out_dir.path().join("image.tar");
    let tmp = tempdir();
    let line = run_fails(
        stevedore()
            .env("TMPDIR", tmp.path())
            .arg("pull")
            .arg(src)
            .arg("--out")
            .arg(&out)
            .args(reg_args)
            .args(extra),
    );
    assert!(!out.exists());
    assert_eq!(dir_names(out_dir.path()), Vec::<String>::new());
    line
}

/// Puts a manifest into the registry as is, with curl.
fn put_manifest(reg: &Registry, repo: &str, tag: &str, media_type: &str, body: &[u8]) {
    let file = tempfile::NamedTempFile::new().unwrap();
    fs::write(file.path(), body).unwrap();
    let out = run(Command::new("curl").args([
        "-sS",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-X",
        "PUT",
        "-H",
        &format!("Content-Type: {media_type}"),
        "--data-binary",
        &format!("@{}", file.path().display()),
        &format!("http://{}/v2/{repo}/manifests/{tag}", reg.host()),
    ]));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "201");
}

#[test]
fn bad_registry_input_fails_with_one_line_and_no_output() {
    let reg = Registry::start();
    let dir = tempdir();
    let layout = one_file_layout(dir.path(), "bad", "bad", 500_000, 21);
    let image = Layout::read(&layout);
    push(&reg, &layout, &reg.reference("bad/app", "v1"), &[]);
    let args = reg.stevedore_args();

    // A digest the registry does not have.
    let missing = sha256(b"no such manifest");
    let err = pull_fails(
        &args,
        &format!("docker://{}/bad/app@{missing}", reg.host()),
        &[],
    );
    assert!(
        err.contains("no such manifest") && err.contains(&missing[..20]),
        "{err}"
    );

    // A repository that does not exist.
    let err = pull_fails(
        &args,
        &format!("docker://{}/bad/nothere@{}", reg.host(), image.digest),
        &[],
    );
    assert!(
        err.contains("bad/nothere") && err.contains("no such manifest or repository"),
        "{err}"
    );

    // Bytes that do not match their digest on the way.
    let proxy = CuttingProxy::start(reg.port);
    proxy.corrupt_down_at(2_000 + 250_000);
    let err = pull_fails(
        &args,
        &format!("docker://{}/bad/app@{}", proxy.host(), image.digest),
        &[],
    );
    assert!(err.contains("digest is sha256:"), "{err}");
    assert!(err.contains(&image.layers()[0]), "{err}");

    // Manifests whose layer sizes lie, smaller and larger.
    for (tag, delta) in [("small", -1000i64), ("large", 1000)] {
        let mut doc = image.doc();
        let size = doc["layers"][0]["size"].as_i64().unwrap();
        doc["layers"][0]["size"] = json!(size + delta);
        let bytes = serde_json::to_vec(&doc).unwrap();
        put_manifest(
            &reg,
            "bad/app",
            tag,
            "application/vnd.oci.image.manifest.v1+json",
            &bytes,
        );
        let err = pull_fails(
            &args,
            &format!("docker://{}/bad/app@{}", reg.host(), sha256(&bytes)),
            &["--retries", "1"],
        );
        assert!(
            err.contains(&(size + delta).to_string()) && err.contains("the manifest says"),
            "{err}"
        );
    }

    // A web server that is not a registry.
    let html = crate::support::http::html_server();
    let err = pull_fails(
        &args,
        &format!("docker://127.0.0.1:{}/bad/app@{}", html.port, image.digest),
        &[],
    );
    assert!(err.contains("HTML"), "{err}");
    let err = run_fails(stevedore().args([
        "push",
        layout.to_str().unwrap(),
        &format!("docker://127.0.0.1:{}/bad/app:v1", html.port),
        "--tls-verify=false",
    ]));
    assert!(err.contains("HTML"), "{err}");
}

/// Wrong or missing credentials: one line that says which were refused,
/// and never the user or the password.
#[test]
fn wrong_credentials_fail_without_showing_them() {
    let dir = tempdir();
    let layout = one_file_layout(dir.path(), "creds-bad", "creds", 1000, 2);
    let image = Layout::read(&layout);
    let secret = "wrong-Secret-9876";
    for auth in [Auth::Basic, Auth::Token] {
        let reg = Registry::start_with(auth);
        push(&reg, &layout, &reg.reference("creds/app", "v1"), &[]);
        let src = format!("docker://{}/creds/app@{}", reg.host(), image.digest);
        let wrong = vec![
            "--tls-verify=false".to_owned(),
            format!("--creds=someone-else:{secret}"),
        ];
        let err = pull_fails(&wrong, &src, &[]);
        assert!(
            err.contains("--creds") && err.contains("refused"),
            "{auth:?}: {err}"
        );
        assert!(
            !err.contains(secret) && !err.contains("someone-else"),
            "{err}"
        );
        let err = run_fails(
            stevedore()
                .arg("push")
                .arg(&layout)
                .arg(reg.reference("creds/app", "v2"))
                .args(&wrong),
        );
        assert!(
            err.contains("refused") && !err.contains(secret),
            "{auth:?}: {err}"
        );

        let home = tempdir();
        let none = vec!["--tls-verify=false".to_owned()];
        let out_dir = tempdir();
        let err = run_fails(
            stevedore()
                .env("HOME", home.path())
                .env_remove("REGISTRY_AUTH_FILE")
                .env_remove("XDG_RUNTIME_DIR")
                .env_remove("DOCKER_CONFIG")
                .args(["pull", &src, "--out"])
                .arg(out_dir.path().join("x.tar"))
                .args(&none),
        );
        assert!(err.contains("requires credentials"), "{auth:?}: {err}");
    }
}

// ---------------------------------------------------------------------------
// Loading without a registry.

/// `stevedore load --into podman` streams a launcher into `podman load`.
#[test]
fn load_into_podman_runs() {
    let busybox = busybox_store_path();
    let dir = tempdir();
    let name = format!("stevedore-it/load-{}", unique());
    let spec_path = write_spec(
        dir.path(),
        &spec(
            &name,
            &[vec![&busybox]],
            json!({ "config": { "Cmd": [busybox.join("bin/busybox"), "echo", "loaded by stevedore"] } }),
        ),
    );
    let conf = containers_conf();
    let reference = format!("localhost/{name}:latest");
    let image = PodmanImage(reference.clone());
    run_in_podman_store(stevedore().env("CONTAINERS_CONF", conf).args([
        "load",
        spec_path.to_str().unwrap(),
        "--into",
        "podman",
    ]));
    let out = podman()
        .args(["run", "--rm", "--network", "none", &reference])
        .output()
        .unwrap();
    drop(image);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "loaded by stevedore\n"
    );
}

/// `stevedore load --into docker-daemon` speaks the Engine API on the
/// unix socket of DOCKER_HOST. No Docker daemon runs here: a small server
/// on a socket checks the request's shape and that the body is the
/// archive, byte for byte, and answers as the daemon does.
#[test]
fn load_into_docker_daemon_posts_the_archive_on_the_socket() {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::os::unix::net::UnixListener;
    let dir = tempdir();
    let data = store_path_with(&format!("docker-{}", unique()), &[("f", noise(100_000, 4))]);
    let archive = build_image(
        dir.path(),
        "dockerd",
        &[vec![&data]],
        "docker-archive",
        "gzip",
        "a.tar",
    );
    let socket = dir.path().join("docker.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    let server = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut head = Vec::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line == "\r\n" {
                break;
            }
            head.push(line.trim_end().to_owned());
        }
        let mut body = Vec::new();
        loop {
            let mut size = String::new();
            reader.read_line(&mut size).unwrap();
            let n = usize::from_str_radix(size.trim(), 16).unwrap();
            let mut chunk = vec![0u8; n + 2];
            reader.read_exact(&mut chunk).unwrap();
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
        let answer = "{\"stream\":\"Loaded image: dockerd:latest\\n\"}\r\n";
        let mut stream = stream;
        write!(
            stream,
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{answer}\r\n0\r\n\r\n",
            answer.len()
        )
        .unwrap();
        (head, body)
    });
    let out = run(stevedore()
        .env("DOCKER_HOST", format!("unix://{}", socket.display()))
        .env("http_proxy", "http://127.0.0.1:9")
        .env("HTTP_PROXY", "http://127.0.0.1:9")
        .args(["load", archive.to_str().unwrap(), "--into", "docker-daemon"]));
    let (head, body) = server.join().unwrap();
    assert_eq!(head[0], "POST /images/load HTTP/1.1");
    let lower: Vec<String> = head.iter().map(|h| h.to_ascii_lowercase()).collect();
    assert!(
        lower.contains(&"content-type: application/x-tar".to_owned()),
        "{head:?}"
    );
    assert!(
        lower.contains(&"transfer-encoding: chunked".to_owned()),
        "{head:?}"
    );
    assert!(
        body == fs::read(&archive).unwrap(),
        "the body is not the archive"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("Loaded image: dockerd:latest"));
}

// ---------------------------------------------------------------------------
// The Nix functions: pullImage, copyToRegistry, copyToPodman.

/// Writes an expression that imports the library, with `body` in scope of
/// `s` (the library) and the arguments `args`.
fn nix_file(dir: &Path, args: &str, body: &str) -> PathBuf {
    let file = dir.join("default.nix");
    fs::write(
        &file,
        format!(
            "{{ helper, {args} }}:\nlet s = import {REPO}/nix {{ inherit helper; }}; in\n{body}\n"
        ),
    )
    .unwrap();
    file
}

fn nix_build(file: &Path, attr: &str, args: &[(&str, &str)], extra: &[&str]) -> Output {
    let mut cmd = Command::new("nix-build");
    cmd.arg(file)
        .args(["-A", attr, "--arg", "helper", HELPER])
        .arg("--no-out-link");
    for (k, v) in args {
        cmd.args(["--argstr", k, v]);
    }
    cmd.args(extra).output().unwrap()
}

fn sri_sha256(bytes: &[u8]) -> String {
    use base64::Engine as _;
    use sha2::Digest as _;
    format!(
        "sha256-{}",
        base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(bytes))
    )
}

/// Runs an image in podman and removes it.
fn podman_run_once(reference: &str) -> String {
    let image = PodmanImage(reference.to_owned());
    let out = podman()
        .args(["run", "--rm", "--network", "none", reference])
        .output()
        .unwrap();
    drop(image);
    assert!(
        out.status.success(),
        "podman run {reference}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// pullImage from the local registry inside nix-build: the hash is the
/// one `stevedore pull` gives, a rebuild with --check gives it again, a
/// wrong hash is Nix's hash mismatch, and the image loads and runs.
#[test]
fn pull_image_is_reproducible_and_runs() {
    let reg = Registry::start();
    let dir = tempdir();
    let busybox = busybox_store_path();
    let message = format!("pulled by nix {}", unique());
    let spec_path = write_spec(
        dir.path(),
        &spec(
            "pulled",
            &[vec![&busybox]],
            json!({ "config": { "Cmd": [busybox.join("bin/busybox"), "echo", message] } }),
        ),
    );
    let out = push(&reg, &spec_path, &reg.reference("nix/pulled", "v1"), &[]);
    let pushed = stdout_lines(&out).last().unwrap().clone();
    let digest = pushed.rsplit_once('@').unwrap().1.to_owned();

    let name = format!("stevedore-it/nix-pulled-{}", unique());
    let expected = dir.path().join("expected.tar");
    pull(
        &reg,
        &format!("docker://{}/nix/pulled@{digest}", reg.host()),
        &expected,
        &["--tag", &format!("{name}:v1")],
    );
    let hash = sri_sha256(&fs::read(&expected).unwrap());

    let file = nix_file(
        dir.path(),
        "name, digest, hash, host",
        r#"s.pullImage {
  imageName = "${host}/nix/pulled";
  imageDigest = digest;
  inherit hash;
  finalImageName = name;
  finalImageTag = "v1";
  tlsVerify = false;
}"#,
    );
    let host = reg.host();
    let args = [
        ("name", name.as_str()),
        ("digest", digest.as_str()),
        ("hash", hash.as_str()),
        ("host", host.as_str()),
    ];
    let built = nix_build(&file, "", &args, &[]);
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let path = PathBuf::from(String::from_utf8_lossy(&built.stdout).trim());
    assert!(fs::read(&path).unwrap() == fs::read(&expected).unwrap());
    let again = nix_build(&file, "", &args, &["--check"]);
    assert!(
        again.status.success(),
        "nix-build --check of pullImage: {}",
        String::from_utf8_lossy(&again.stderr)
    );

    let wrong = sri_sha256(b"not the image");
    let mut wrong_args = args;
    wrong_args[2] = ("hash", wrong.as_str());
    let failed = nix_build(&file, "", &wrong_args, &[]);
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(!failed.status.success());
    assert!(stderr.contains("hash mismatch"), "{stderr}");

    run_in_podman_store(podman().arg("load").arg("-i").arg(&path));
    assert_eq!(
        podman_run_once(&format!("localhost/{name}:v1")),
        format!("{message}\n")
    );
}

/// A base written by another tool: a busybox root file system imported
/// into podman, saved by `podman save`, pushed by skopeo, pulled with
/// pullImage and extended with buildLayeredImage. The base's layer keeps
/// its digest, and podman runs the result.
#[test]
fn base_from_a_registry_pushed_by_skopeo_is_pulled_and_extended() {
    let reg = Registry::start();
    let dir = tempdir();
    let rootfs = dir.path().join("rootfs");
    fs::create_dir_all(rootfs.join("bin")).unwrap();
    fs::create_dir_all(rootfs.join("etc")).unwrap();
    fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
    for applet in ["sh", "cat", "echo"] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
    }
    fs::write(rootfs.join("etc/base-note"), "from the imported base\n").unwrap();
    let rootfs_tar = dir.path().join("rootfs.tar");
    run(Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .arg("-cf")
        .arg(&rootfs_tar)
        .arg("."));
    let imported = format!("localhost/stevedore-it/imported-{}:1", unique());
    let imported_image = PodmanImage(imported.clone());
    run_in_podman_store(podman().arg("import").arg(&rootfs_tar).arg(&imported));
    let saved = dir.path().join("saved.tar");
    run_in_podman_store(
        podman()
            .args(["save", "--format", "docker-archive", "-o"])
            .arg(&saved)
            .arg(&imported),
    );
    drop(imported_image);
    let dest = reg.reference("imported/base", "1");
    skopeo(
        &reg,
        &["copy", "-q"],
        "dest",
        &[format!("docker-archive:{}", saved.display()), dest.clone()],
    );
    let manifest = raw_manifest(&reg, &dest);
    let digest = format!(
        "sha256:{}",
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&manifest))
    );
    let manifest: Value = serde_json::from_slice(&manifest).unwrap();
    let base_layer = manifest["layers"][0]["digest"].as_str().unwrap().to_owned();

    let name = format!("stevedore-it/on-pulled-{}", unique());
    let expected = dir.path().join("expected.tar");
    pull(
        &reg,
        &format!("docker://{}/imported/base@{digest}", reg.host()),
        &expected,
        &["--tag", "imported/base:1"],
    );
    let hash = sri_sha256(&fs::read(&expected).unwrap());
    let extra = {
        let d = tempdir();
        let root = d.path().join("extra");
        fs::create_dir_all(root.join("share")).unwrap();
        fs::write(root.join("share/extra-note"), "and a layer on top\n").unwrap();
        nix_add(&root)
    };
    let file = nix_file(
        dir.path(),
        "name, digest, hash, host, extra",
        r#"s.buildLayeredImage {
  inherit name;
  tag = "v1";
  fromImage = s.pullImage {
    imageName = "${host}/imported/base";
    imageDigest = digest;
    inherit hash;
    finalImageName = "imported/base";
    finalImageTag = "1";
    tlsVerify = false;
  };
  contents = [ (builtins.storePath extra) ];
  config.Cmd = [ "/bin/sh" "-c" "cat /etc/base-note /share/extra-note" ];
}"#,
    );
    let host = reg.host();
    let extra = extra.display().to_string();
    let args = [
        ("name", name.as_str()),
        ("digest", digest.as_str()),
        ("hash", hash.as_str()),
        ("host", host.as_str()),
        ("extra", extra.as_str()),
    ];
    let built = nix_build(&file, "", &args, &[]);
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let image = PathBuf::from(String::from_utf8_lossy(&built.stdout).trim());
    // The base's layer, as the registry has it, is the image's first.
    let members = crate::support::tar::tar_members(&image);
    let top: Value = serde_json::from_slice(&members["manifest.json"]).unwrap();
    let first = top[0]["Layers"][0].as_str().unwrap();
    assert_eq!(sha256(&members[first]), base_layer);

    run_in_podman_store(podman().arg("load").arg("-i").arg(&image));
    assert_eq!(
        podman_run_once(&format!("localhost/{name}:v1")),
        "from the imported base\nand a layer on top\n"
    );
}

/// A launcher on a base pushes the base's blobs as they are, then its own
/// layers made while they are sent; skopeo pulls the result back.
#[test]
fn launcher_on_a_base_pushes_the_base_blobs_unchanged() {
    let reg = Registry::start();
    let dir = tempdir();
    let busybox = busybox_store_path();
    let base_spec = write_spec(
        dir.path(),
        &spec(
            "pushed-base",
            &[vec![&busybox]],
            json!({ "config": { "Cmd": [busybox.join("bin/echo"), "base"] } }),
        ),
    );
    let base = dir.path().join("base.tar");
    build(&base_spec, "docker-archive", "zstd", &base);
    let base_members = crate::support::tar::tar_members(&base);
    let base_manifest: Value = serde_json::from_slice(&base_members["manifest.json"]).unwrap();
    let base_blob = sha256(&base_members[base_manifest[0]["Layers"][0].as_str().unwrap()]);

    let top_dir = dir.path().join("top");
    fs::create_dir(&top_dir).unwrap();
    let note = top_dir.join("tree/etc");
    fs::create_dir_all(&note).unwrap();
    fs::write(note.join("note"), "pushed on a base\n").unwrap();
    let top_spec = write_spec(
        &top_dir,
        &spec(
            "pushed-top",
            &[],
            json!({
                "base": { "path": base },
                "customisation": { "trees": [top_dir.join("tree")] },
                "config": { "Cmd": [busybox.join("bin/cat"), "/etc/note"] }
            }),
        ),
    );
    let dest = reg.reference("stacked/top", "v1");
    push(&reg, &top_spec, &dest, &[]);
    let manifest: Value = serde_json::from_slice(&raw_manifest(&reg, &dest)).unwrap();
    assert_eq!(manifest["layers"][0]["digest"], base_blob.as_str());
    assert_eq!(
        manifest["layers"][0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+zstd"
    );
    assert_eq!(manifest["layers"].as_array().unwrap().len(), 2);
    let name = format!("localhost/stevedore-it/stacked-{}:v1", unique());
    let guard = podman_store_lock();
    skopeo(
        &reg,
        &["copy", "-q"],
        "src",
        &[dest, format!("containers-storage:{name}")],
    );
    drop(guard);
    assert_eq!(podman_run_once(&name), "pushed on a base\n");
}

/// copyToPodman streams a streamLayeredImage into `podman load`, and
/// copyToRegistry pushes it (run with `nix run`, as users do).
#[test]
fn copy_to_podman_and_registry_from_nix() {
    let reg = Registry::start();
    let dir = tempdir();
    let busybox = busybox_store_path();
    let name = format!("stevedore-it/copy-to-{}", unique());
    let message = format!("copied {}", unique());
    let file = nix_file(
        dir.path(),
        "busybox, name, message",
        r#"let bb = builtins.storePath busybox; in
s.streamLayeredImage {
  inherit name;
  tag = "v1";
  contents = [ bb ];
  config.Cmd = [ "${bb}/bin/busybox" "echo" message ];
}"#,
    );
    let args = [
        ("busybox", busybox.to_str().unwrap()),
        ("name", name.as_str()),
        ("message", message.as_str()),
    ];
    let built = nix_build(&file, "copyToPodman", &args, &[]);
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let launcher =
        PathBuf::from(String::from_utf8_lossy(&built.stdout).trim()).join("bin/copy-to-podman");
    let conf = containers_conf();
    run_in_podman_store(Command::new(&launcher).env("CONTAINERS_CONF", conf));
    assert_eq!(
        podman_run_once(&format!("localhost/{name}:v1")),
        format!("{message}\n")
    );

    let mut cmd = Command::new("nix");
    cmd.args(["--extra-experimental-features", "nix-command", "run", "-f"])
        .arg(&file)
        .args(["copyToRegistry", "--arg", "helper", HELPER]);
    for (k, v) in args {
        cmd.args(["--argstr", k, v]);
    }
    let out = run(cmd
        .arg("--")
        .arg(reg.reference("nix/copied", "v1"))
        .arg("--tls-verify=false"));
    let line = stdout_lines(&out).last().unwrap().clone();
    assert!(
        line.starts_with(&format!("{}/nix/copied:v1@sha256:", reg.host())),
        "{line}"
    );
    let raw = raw_manifest(&reg, &reg.reference("nix/copied", "v1"));
    assert_eq!(
        format!("{}/nix/copied:v1@{}", reg.host(), sha256(&raw)),
        line
    );
}

// ---------------------------------------------------------------------------
// Mounts, retries, indexes and layers that do not match their digest.

/// With `--mount-from`, blobs missing in the repository are mounted from
/// the other one: nothing is uploaded again.
#[test]
fn mounts_blobs_from_another_repository() {
    let reg = Registry::start();
    let dir = tempdir();
    let data = store_path_with(&format!("mnt-{}", unique()), &[("f", noise(300_000, 31))]);
    let more = store_path_with(&format!("mnt2-{}", unique()), &[("g", noise(100_000, 32))]);
    let layout = build_image(
        dir.path(),
        "mnt",
        &[vec![&data], vec![&more]],
        "oci-dir",
        "gzip",
        "layout",
    );
    push(&reg, &layout, &reg.reference("mnt/a", "v1"), &[]);
    let mark = reg.log().len();
    let out = push(
        &reg,
        &layout,
        &reg.reference("mnt/b", "v1"),
        &["--mount-from", "mnt/a"],
    );
    std::thread::sleep(std::time::Duration::from_millis(200));
    let log = reg.log();
    let (uploaded, patches) = uploads(&log[mark..], "mnt/b");
    assert!(uploaded.is_empty() && patches == 0, "{}", &log[mark..]);
    assert!(log[mark..].contains("\"POST /v2/mnt/b/blobs/uploads/?mount="));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.matches("mounted from mnt/a").count(), 2, "{stderr}");
    raw_manifest(&reg, &reg.reference("mnt/b", "v1"));
}

/// 503 and 429 answers are retried with backoff, up to `--retries`.
#[test]
fn busy_registries_are_retried() {
    let reg = Registry::start();
    let dir = tempdir();
    let layout = one_file_layout(dir.path(), "busy", "busy", 200_000, 33);
    let image = Layout::read(&layout);
    push(&reg, &layout, &reg.reference("busy/app", "v1"), &[]);
    let proxy = CuttingProxy::start(reg.port);
    let src = format!("docker://{}/busy/app@{}", proxy.host(), image.digest);
    for status in [503, 429] {
        proxy.refuse_blob_gets(status, 3);
        let out = dir.path().join(format!("ok-{status}.tar"));
        run(stevedore()
            .args(["pull", &src, "--tls-verify=false", "--out"])
            .arg(&out));
        assert!(out.exists());
    }
    proxy.refuse_blob_gets(503, 10);
    let err = pull_fails(
        &["--tls-verify=false".to_owned(), "--retries=2".to_owned()],
        &src,
        &[],
    );
    assert!(err.contains("HTTP 503"), "{err}");
}

/// An index is followed to the platform asked for; a platform it lacks is
/// one line that lists those it has.
#[test]
fn pull_follows_an_index_to_the_platform() {
    let reg = Registry::start();
    let dir = tempdir();
    let one = store_path_with(&format!("amd-{}", unique()), &[("f", noise(1000, 41))]);
    let two = store_path_with(&format!("arm-{}", unique()), &[("f", noise(1000, 42))]);
    let a = Layout::read(&build_image(
        dir.path(),
        "idx",
        &[vec![&one]],
        "oci-dir",
        "gzip",
        "a",
    ));
    let b = Layout::read(&build_image(
        dir.path(),
        "idx",
        &[vec![&two]],
        "oci-dir",
        "gzip",
        "b",
    ));
    push(&reg, &a.dir, &reg.reference("idx/app", "a"), &[]);
    push(&reg, &b.dir, &reg.reference("idx/app", "b"), &[]);
    let entry = |l: &Layout, platform: Value| {
        json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": l.digest,
            "size": l.manifest.len(),
            "platform": platform,
        })
    };
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            entry(&a, json!({ "architecture": "amd64", "os": "linux" })),
            entry(&b, json!({ "architecture": "arm64", "os": "linux", "variant": "v8" })),
        ],
    }))
    .unwrap();
    put_manifest(
        &reg,
        "idx/app",
        "multi",
        "application/vnd.oci.image.index.v1+json",
        &index,
    );
    let src = format!("docker://{}/idx/app@{}", reg.host(), sha256(&index));
    let out = pull(
        &reg,
        &src,
        &dir.path().join("amd.tar"),
        &["--arch", "amd64"],
    );
    assert!(stdout_lines(&out).last().unwrap().ends_with(&a.digest));
    let out = pull(
        &reg,
        &src,
        &dir.path().join("arm"),
        &["--arch", "arm64", "--variant", "v8", "--format", "oci-dir"],
    );
    assert!(stdout_lines(&out).last().unwrap().ends_with(&b.digest));
    assert_eq!(Layout::read(&dir.path().join("arm")).manifest, b.manifest);
    let err = pull_fails(&reg.stevedore_args(), &src, &["--arch", "s390x"]);
    assert!(
        err.contains("linux/s390x") && err.contains("linux/amd64, linux/arm64/v8"),
        "{err}"
    );
}

/// A layer whose bytes are not those of the digest its image records
/// stops the push before the manifest, naming the layer: sent whole or in
/// chunks. (A launcher records no digests: its manifest is made from the
/// digests of the bytes sent, each checked by the registry.)
#[test]
fn push_stops_at_a_layer_that_does_not_match_its_digest() {
    let reg = Registry::start();
    let dir = tempdir();
    let layout = one_file_layout(dir.path(), "rot", "rot", 400_000, 51);
    let image = Layout::read(&layout);
    let layer = image.layers()[0].clone();
    let blob = blob_path(&layout, &layer);
    let mut bytes = fs::read(&blob).unwrap();
    bytes[200_000] ^= 0xff;
    fs::set_permissions(&blob, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    fs::write(&blob, bytes).unwrap();
    for (tag, extra) in [
        ("whole", vec![]),
        ("chunked", vec!["--chunk-size", "100000"]),
    ] {
        let err = run_fails(
            stevedore()
                .arg("push")
                .arg(&layout)
                .arg(reg.reference("rot/app", tag))
                .arg("--tls-verify=false")
                .args(&extra),
        );
        assert!(
            err.contains("layer 1") && err.contains(&layer) && err.contains("do not match"),
            "{tag}: {err}"
        );
        let inspect = Command::new("skopeo")
            .args([
                "inspect",
                "--tls-verify=false",
                &reg.reference("rot/app", tag),
            ])
            .output()
            .unwrap();
        assert!(!inspect.status.success(), "{tag}: a manifest was pushed");
    }
}

/// A docker-archive whose compressed layer is not what its config's
/// diff_id records is refused before anything is tagged.
#[test]
fn push_checks_docker_archive_layers_against_their_diff_ids() {
    let reg = Registry::start();
    let dir = tempdir();
    let data = store_path_with(&format!("diff-{}", unique()), &[("f", noise(300_000, 81))]);
    let archive = build_image(
        dir.path(),
        "diff",
        &[vec![&data]],
        "docker-archive",
        "gzip",
        "a.tar",
    );
    let unpacked = dir.path().join("unpacked");
    fs::create_dir(&unpacked).unwrap();
    run(Command::new("tar")
        .arg("-xf")
        .arg(&archive)
        .arg("-C")
        .arg(&unpacked));
    let manifest: Value =
        serde_json::from_slice(&fs::read(unpacked.join("manifest.json")).unwrap()).unwrap();
    let config_path = unpacked.join(manifest[0]["Config"].as_str().unwrap());
    let mut config: Value = serde_json::from_slice(&fs::read(&config_path).unwrap()).unwrap();
    let wrong = sha256(b"another tar");
    config["rootfs"]["diff_ids"][0] = json!(wrong);
    fs::write(&config_path, serde_json::to_vec(&config).unwrap()).unwrap();
    let broken = dir.path().join("broken.tar");
    run(Command::new("tar")
        .arg("-cf")
        .arg(&broken)
        .arg("-C")
        .arg(&unpacked)
        .arg("."));
    let dest = reg.reference("diff/app", "v1");
    let err = run_fails(
        stevedore()
            .arg("push")
            .arg(&broken)
            .arg(&dest)
            .arg("--tls-verify=false"),
    );
    assert!(
        err.contains("layer 1") && err.contains(&wrong) && err.contains("records"),
        "{err}"
    );
    let inspect = Command::new("skopeo")
        .args(["inspect", "--tls-verify=false", &dest])
        .output()
        .unwrap();
    assert!(!inspect.status.success(), "a manifest was pushed");
    push(&reg, &archive, &dest, &[]);
}

/// TLS roots from NIX_SSL_CERT_FILE too; without the CA the error says
/// how to get past it, and `--tls-verify=false` accepts the certificate.
#[test]
fn tls_roots_come_from_the_environment() {
    let reg = Registry::start_with(Auth::Tls);
    let dir = tempdir();
    let layout = one_file_layout(dir.path(), "tls", "tls", 1000, 61);
    let dest = reg.reference("tls/app", "v1");
    run(stevedore()
        .env_remove("SSL_CERT_FILE")
        .env("NIX_SSL_CERT_FILE", reg.ca())
        .arg("push")
        .arg(&layout)
        .arg(&dest));
    let err = run_fails(
        stevedore()
            .env_remove("SSL_CERT_FILE")
            .env_remove("NIX_SSL_CERT_FILE")
            .arg("push")
            .arg(&layout)
            .arg(&dest),
    );
    assert!(err.contains("--tls-verify=false"), "{err}");
    run(stevedore()
        .env_remove("SSL_CERT_FILE")
        .env_remove("NIX_SSL_CERT_FILE")
        .arg("push")
        .arg(&layout)
        .arg(&dest)
        .arg("--tls-verify=false"));
}

/// A launcher's layers are made from the store once: the next push finds
/// their digests in the cache and checks them with HEAD, reading nothing;
/// a store that gives other bytes than before stops the push, naming the
/// layer.
#[test]
fn launcher_layers_are_made_once_per_push_target() {
    let reg = Registry::start();
    let dir = tempdir();
    let cache = tempdir();
    let busybox = busybox_store_path();
    let data = store_path_with(
        &format!("cache-{}", unique()),
        &[("f", noise(2_500_000, 71))],
    );
    let spec_path = write_spec(
        dir.path(),
        &spec(
            "cached",
            &[vec![&busybox], vec![&data]],
            json!({ "created": "2024-01-02T03:04:05Z" }),
        ),
    );
    let push_launcher = |dest: &str| {
        let mut cmd = stevedore();
        cmd.env("XDG_CACHE_HOME", cache.path())
            .arg("push")
            .arg(&spec_path)
            .arg(dest)
            .args(["--tls-verify=false", "--chunk-size", "1048576"]);
        cmd
    };
    let first = run(&mut push_launcher(&reg.reference("cache/app", "v1")));
    let mark = reg.log().len();
    let second = run(&mut push_launcher(&reg.reference("cache/app", "v2")));
    std::thread::sleep(std::time::Duration::from_millis(200));
    let (uploaded, patches) = uploads(&reg.log()[mark..], "cache/app");
    assert!(uploaded.is_empty() && patches == 0, "{uploaded:?}");
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(stderr.matches("skipped").count(), 2, "{stderr}");
    let digest = |out: &Output| {
        stdout_lines(out)
            .last()
            .unwrap()
            .rsplit_once('@')
            .unwrap()
            .1
            .to_owned()
    };
    assert_eq!(digest(&first), digest(&second));

    // Entries that no longer match what the store gives.
    let layers = cache.path().join("stevedore/layers");
    for entry in fs::read_dir(&layers).unwrap() {
        let path = entry.unwrap().path();
        let mut v: Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        v["digest"] = json!(sha256(b"something else"));
        fs::write(&path, serde_json::to_vec(&v).unwrap()).unwrap();
    }
    let err = run_fails(&mut push_launcher(&reg.reference("cache/other", "v1")));
    assert!(
        err.contains("the store has changed") && err.contains("layer "),
        "{err}"
    );
    let inspect = Command::new("skopeo")
        .args([
            "inspect",
            "--tls-verify=false",
            &reg.reference("cache/other", "v1"),
        ])
        .output()
        .unwrap();
    assert!(!inspect.status.success(), "a manifest was pushed");
}

/// The password from standard input (`--creds USER --password-stdin`), so
/// that it is not on the command line where `ps` shows it; a `--creds`
/// with a password as well is refused.
#[test]
fn the_password_can_come_from_standard_input() {
    use std::io::Write as _;
    let dir = tempdir();
    let layout = one_file_layout(dir.path(), "stdin-creds", "stdin", 1000, 3);
    let reg = Registry::start_with(Auth::Basic);
    let with_stdin = |extra: &[&str], input: &str| {
        let mut child = stevedore()
            .arg("push")
            .arg(&layout)
            .arg(reg.reference("stdin/app", "v1"))
            .args(["--tls-verify=false", "--password-stdin"])
            .args(extra)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let out = with_stdin(&["--creds", USER], &format!("{PASSWORD}\n"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = with_stdin(&["--creds", &format!("{USER}:{PASSWORD}")], "");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("takes the user name alone") && !stderr.contains(PASSWORD),
        "{stderr}"
    );
}

/// Issue 11, case 10: a spec whose store is a directory other than
/// /nix/store can change under the same names, so push makes its layers
/// again each time rather than reusing what it pushed before.
#[test]
fn layers_of_a_store_that_can_change_are_not_taken_from_the_cache() {
    let reg = Registry::start();
    let dir = tempdir();
    let cache = tempdir();
    let store = tempdir();
    let data = store.path().join("0123456789abcdfghijklmnpqrsvwxyz-data");
    fs::create_dir(&data).unwrap();
    fs::write(data.join("f"), noise(100_000, 1)).unwrap();
    let spec_path = write_spec(
        dir.path(),
        &spec(
            "changing",
            &[vec![&data]],
            json!({ "store_dir": store.path(), "created": "2024-01-02T03:04:05Z" }),
        ),
    );
    let push_spec = |tag: &str| {
        let out = run(stevedore()
            .env("XDG_CACHE_HOME", cache.path())
            .arg("push")
            .arg(&spec_path)
            .arg(reg.reference("changing/app", tag))
            .arg("--tls-verify=false"));
        let digest = stdout_lines(&out)
            .last()
            .unwrap()
            .rsplit_once('@')
            .unwrap()
            .1
            .to_owned();
        (digest, String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (first, _) = push_spec("v1");
    fs::write(data.join("f"), noise(100_000, 2)).unwrap();
    let (second, stderr) = push_spec("v2");
    assert_ne!(first, second, "the changed file was not pushed: {stderr}");
    assert!(!stderr.contains("skipped"), "{stderr}");
}
