//! Registries that try to take the credentials stevedore was given for
//! them elsewhere (issue 11, cases 4 and 5): an upload `Location` on
//! another host or port, a blob redirected to another port. Credentials go
//! to the registry's own origin (scheme, host and port) and nowhere else.
//! The servers are small hostile HTTP servers on 127.0.0.1 that record what
//! they are sent.

use std::path::Path;
use std::time::Duration;

use base64::Engine as _;

use crate::support::http::{Answer, Request, STALL, STALL_BODY, Server};
use crate::support::oci_layout::Layout;
use crate::support::process::{stevedore, tempdir};
use crate::support::spec::{build, spec, write_spec};
use crate::support::store::busybox_store_path;

const USER: &str = "alice";
const PASSWORD: &str = "s3cret-for-the-registry";

fn basic() -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"))
    )
}

/// The registry's side of Basic auth: 401 with a challenge until the
/// credentials come.
fn unauthorized(request: &Request) -> Option<Answer> {
    (request.headers.get("authorization") != Some(&basic())).then(|| {
        (
            401,
            vec![("WWW-Authenticate".into(), "Basic realm=\"registry\"".into())],
            Vec::new(),
        )
    })
}

/// A small OCI layout to push and to serve.
fn small_layout(dir: &Path) -> std::path::PathBuf {
    let busybox = busybox_store_path();
    let spec_path = write_spec(
        dir,
        &spec("hostile", &[vec![busybox.as_path()]], serde_json::json!({})),
    );
    let out = dir.join("layout");
    build(&spec_path, "oci-dir", "gzip", &out);
    out
}

/// `stevedore pull docker://127.0.0.1:PORT/REFERENCE` into a fresh
/// directory (its `TMPDIR` too), which must fail with one line; that line.
fn pull_fails_from(port: u16, reference: &str, extra: &[&str], what: &str) -> String {
    let dir = tempdir();
    let out = stevedore()
        .env("TMPDIR", dir.path())
        .arg("pull")
        .arg(format!("docker://127.0.0.1:{port}/{reference}"))
        .arg("--out")
        .arg(dir.path().join("image.tar"))
        .arg("--tls-verify=false")
        .args(extra)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{what}: {stderr}");
    crate::support::process::assert_one_line_error(&stderr, what);
    stderr
}

fn assert_no_credentials(server: &Server, what: &str) {
    let requests = server.requests();
    assert!(!requests.is_empty(), "{what}: the server was never asked");
    for r in requests {
        assert!(
            !r.headers.contains_key("authorization"),
            "{what}: {} {} carried Authorization: {:?}",
            r.method,
            r.path,
            r.headers["authorization"]
        );
    }
}

#[test]
fn an_upload_location_on_another_port_gets_no_credentials() {
    let dir = tempdir();
    let layout = small_layout(dir.path());
    // Where the hostile registry sends the uploads: it takes them.
    let elsewhere = Server::start(|r, _| {
        let digest = r
            .path
            .split("digest=")
            .nth(1)
            .unwrap_or_default()
            .replace("%3A", ":");
        (
            201,
            vec![("Docker-Content-Digest".into(), digest)],
            Vec::new(),
        )
    });
    let other = elsewhere.port;
    let registry = Server::start(move |r, _| {
        if let Some(challenge) = unauthorized(r) {
            return challenge;
        }
        match (r.method.as_str(), r.path.as_str()) {
            ("GET", "/v2/") => (200, vec![], b"{}".to_vec()),
            ("HEAD", _) => (404, vec![], Vec::new()),
            ("POST", p) if p.contains("/blobs/uploads/") => (
                202,
                vec![(
                    "Location".into(),
                    format!("http://127.0.0.1:{other}/upload/1?state=x"),
                )],
                Vec::new(),
            ),
            ("PUT", p) if p.contains("/manifests/") => (201, vec![], Vec::new()),
            _ => (404, vec![], Vec::new()),
        }
    });
    let out = stevedore()
        .arg("push")
        .arg(&layout)
        .arg(format!("docker://127.0.0.1:{}/app:1", registry.port))
        .args([
            "--tls-verify=false",
            "--creds",
            &format!("{USER}:{PASSWORD}"),
        ])
        .args(["--retries", "0"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains(PASSWORD), "{stderr}");
    assert!(
        elsewhere.requests().iter().any(|r| r.method == "PUT"),
        "the upload did not go to the Location"
    );
    assert_no_credentials(&elsewhere, "the upload location");
}

#[test]
fn a_blob_redirected_to_another_port_gets_no_credentials() {
    let dir = tempdir();
    let layout = small_layout(dir.path());
    let image = Layout::read(&layout);
    let manifest = std::fs::read(crate::support::oci_layout::blob_path(
        &layout,
        &image.digest,
    ))
    .unwrap();
    let blobs_dir = layout.join("blobs/sha256");
    // Serves every blob, to whoever asks.
    let elsewhere = Server::start(move |r, _| {
        let hex = r.path.rsplit(':').next().unwrap_or_default();
        match std::fs::read(blobs_dir.join(hex)) {
            Ok(bytes) => (200, vec![], bytes),
            Err(_) => (404, vec![], Vec::new()),
        }
    });
    let other = elsewhere.port;
    let digest = image.digest.clone();
    let registry = Server::start(move |r, _| {
        if let Some(challenge) = unauthorized(r) {
            return challenge;
        }
        match r.path.as_str() {
            "/v2/" => (200, vec![], b"{}".to_vec()),
            p if p.ends_with(&format!("/manifests/{digest}")) => (
                200,
                vec![(
                    "Content-Type".into(),
                    "application/vnd.oci.image.manifest.v1+json".into(),
                )],
                manifest.clone(),
            ),
            p if p.contains("/blobs/") => (
                307,
                vec![(
                    "Location".into(),
                    format!(
                        "http://127.0.0.1:{other}/cdn/{}",
                        p.rsplit('/').next().unwrap()
                    ),
                )],
                Vec::new(),
            ),
            _ => (404, vec![], Vec::new()),
        }
    });
    let out_dir = tempdir();
    let out = stevedore()
        .env("TMPDIR", out_dir.path())
        .arg("pull")
        .arg(format!(
            "docker://127.0.0.1:{}/app@{}",
            registry.port, image.digest
        ))
        .arg("--out")
        .arg(out_dir.path().join("image.tar"))
        .args([
            "--tls-verify=false",
            "--creds",
            &format!("{USER}:{PASSWORD}"),
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_no_credentials(&elsewhere, "the redirected blob");
}

#[test]
fn a_password_in_the_reference_is_refused_without_being_repeated() {
    let dir = tempdir();
    let layout = small_layout(dir.path());
    let reference = format!("docker://{USER}:{PASSWORD}@127.0.0.1:1/app");
    let runs = [
        stevedore()
            .arg("push")
            .arg(&layout)
            .arg(format!("{reference}:1"))
            .output()
            .unwrap(),
        stevedore()
            .arg("pull")
            .arg(format!("{reference}@sha256:{}", "0".repeat(64)))
            .arg("--out")
            .arg(dir.path().join("image.tar"))
            .output()
            .unwrap(),
    ];
    for out in runs {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        crate::support::process::assert_one_line_error(&stderr, "a reference with credentials");
        assert!(!stderr.contains(PASSWORD), "{stderr}");
        assert!(
            stderr.contains("credentials in the reference") && stderr.contains("--creds"),
            "{stderr}"
        );
    }
}

/// Issue 11, case 11: a registry's error code that would erase the line
/// (`ESC[2K\r`) and a message with a bidirectional override reach the
/// terminal escaped, on one line.
#[test]
fn control_characters_from_a_registry_are_escaped() {
    let registry = Server::start(|r, _| match r.path.as_str() {
        "/v2/" => (200, vec![], b"{}".to_vec()),
        _ => (
            404,
            vec![("Content-Type".into(), "application/json".into())],
            br#"{"errors":[{"code":"\u001b[2K\rALL GOOD \u202egnp.exe","message":"x"}]}"#.to_vec(),
        ),
    });
    let stderr = pull_fails_from(
        registry.port,
        "app:1",
        &["--retries", "0"],
        "an error code with controls",
    );
    assert!(
        !stderr.contains('\u{1b}') && !stderr.contains('\r') && !stderr.contains('\u{202e}'),
        "{stderr:?}"
    );
    assert!(
        stderr.contains(r"\x1b[2K\rALL GOOD \u{202e}gnp.exe"),
        "{stderr:?}"
    );
}

/// Issue 11, case 14: an index of 10,000 platforms, none of them the one
/// asked for, gives one short line that says how many there are.
#[test]
fn an_index_of_ten_thousand_platforms_gives_a_short_error() {
    let entries: Vec<serde_json::Value> = (0..10_000)
        .map(|i| {
            serde_json::json!({
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": format!("sha256:{:064x}", i),
                "size": 100,
                "platform": { "os": "linux", "architecture": format!("arch{i}") },
            })
        })
        .collect();
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": entries,
    }))
    .unwrap();
    let registry = Server::start(move |r, _| match r.path.as_str() {
        "/v2/" => (200, vec![], b"{}".to_vec()),
        _ => (
            200,
            vec![(
                "Content-Type".into(),
                "application/vnd.oci.image.index.v1+json".into(),
            )],
            index.clone(),
        ),
    });
    let stderr = pull_fails_from(
        registry.port,
        "app:1",
        &["--arch", "s390x"],
        "an index of 10,000 platforms",
    );
    assert!(stderr.len() < 2000, "{} bytes: {stderr}", stderr.len());
    assert!(stderr.contains("and 9990 more"), "{stderr}");
}

/// Issue 11, case 9: a manifest whose config says it is 200 MB is refused
/// before the config is fetched: configs are read whole, up to 16 MiB.
#[test]
fn a_config_of_200_mb_is_refused_before_it_is_fetched() {
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": format!("sha256:{}", "1".repeat(64)),
            "size": 200_000_000,
        },
        "layers": [],
    }))
    .unwrap();
    let digest = crate::support::digest::sha256(&manifest);
    let registry = Server::start(move |r, _| match r.path.as_str() {
        "/v2/" => (200, vec![], b"{}".to_vec()),
        p if p.contains("/manifests/") => (
            200,
            vec![(
                "Content-Type".into(),
                "application/vnd.oci.image.manifest.v1+json".into(),
            )],
            manifest.clone(),
        ),
        _ => (200, vec![], vec![b'x'; 1 << 20]),
    });
    let stderr = pull_fails_from(
        registry.port,
        &format!("app@{digest}"),
        &[],
        "a 200 MB config",
    );
    assert!(
        stderr.contains("the config is 200000000 bytes") && stderr.contains("up to 16777216 bytes"),
        "{stderr}"
    );
    assert!(
        !registry
            .requests()
            .iter()
            .any(|r| r.path.contains("/blobs/")),
        "the config was fetched"
    );
}

/// Issue 11, case 6: a registry that stalls (never answers, stops in the
/// middle of a body, stops reading an upload) makes pull and push fail
/// within `--timeout` per attempt, retried, with one line; not hang.
#[test]
fn stalled_registries_fail_within_the_timeout() {
    let dir = tempdir();
    // A layer larger than what the kernel buffers on loopback, so that an
    // upload the registry stops reading blocks its writer.
    let big =
        crate::support::oci_layout::one_file_layout(dir.path(), "stall", "stall", 24 << 20, 61);
    let no_answer = Server::start(|_, _| (STALL, vec![], Vec::new()));
    let half_body = Server::start(|r, _| match r.path.as_str() {
        "/v2/" => (200, vec![], b"{}".to_vec()),
        _ => (STALL_BODY, vec![], vec![b'{'; 100]),
    });
    let no_reading = Server::start(move |r, port| match (r.method.as_str(), r.path.as_str()) {
        ("GET", "/v2/") => (200, vec![], b"{}".to_vec()),
        ("HEAD", _) => (404, vec![], Vec::new()),
        ("POST", _) => (
            202,
            vec![(
                "Location".into(),
                format!("http://127.0.0.1:{port}/upload/1"),
            )],
            Vec::new(),
        ),
        _ => (STALL, vec![], Vec::new()),
    });
    let out = dir.path().join("image.tar");
    let runs: Vec<(&str, Vec<String>)> = vec![
        (
            "headers never come",
            vec![
                "pull".into(),
                format!("docker://127.0.0.1:{}/app:1", no_answer.port),
                "--out".into(),
                out.display().to_string(),
            ],
        ),
        (
            "a body stops",
            vec![
                "pull".into(),
                format!("docker://127.0.0.1:{}/app:1", half_body.port),
                "--out".into(),
                out.display().to_string(),
            ],
        ),
        (
            "an upload is not read",
            vec![
                "push".into(),
                big.display().to_string(),
                format!("docker://127.0.0.1:{}/app:1", no_reading.port),
            ],
        ),
    ];
    for (what, args) in runs {
        let started = std::time::Instant::now();
        let done = crate::support::process::run_bounded(
            stevedore().env("TMPDIR", dir.path()).args(&args).args([
                "--tls-verify=false",
                "--timeout",
                "2",
                "--retries",
                "1",
            ]),
            Duration::from_secs(90),
        );
        let took = started.elapsed();
        let stderr = String::from_utf8_lossy(&done.stderr);
        assert_eq!(done.status.code(), Some(1), "{what}: {stderr}");
        crate::support::process::assert_one_line_error(&stderr, what);
        assert!(
            stderr.contains("imeout") || stderr.contains("timed out"),
            "{what}: {stderr}"
        );
        assert!(took < Duration::from_secs(45), "{what}: {took:?}");
    }
}

/// Issue 11, case 5, the token realm: a registry whose Bearer realm is a
/// plain-http server on another port of the same host (a port another
/// user may hold) does not get that server the credentials; the token is
/// asked for without them.
#[test]
fn a_plain_http_realm_on_another_port_gets_no_credentials() {
    let realm = Server::start(|_, _| (200, vec![], br#"{"token":"anonymous"}"#.to_vec()));
    let realm_port = realm.port;
    let registry = Server::start(move |r, _| {
        if r.headers.get("authorization").map(String::as_str) != Some("Bearer anonymous") {
            return (
                401,
                vec![(
                    "WWW-Authenticate".into(),
                    format!("Bearer realm=\"http://127.0.0.1:{realm_port}/token\",service=\"x\""),
                )],
                Vec::new(),
            );
        }
        match r.path.as_str() {
            "/v2/" => (200, vec![], b"{}".to_vec()),
            _ => (404, vec![], Vec::new()),
        }
    });
    let stderr = pull_fails_from(
        registry.port,
        "app:1",
        &["--creds", &format!("{USER}:{PASSWORD}"), "--retries", "0"],
        "a plain-http realm",
    );
    assert!(!stderr.contains(PASSWORD), "{stderr}");
    assert_no_credentials(&realm, "the token realm");
}
