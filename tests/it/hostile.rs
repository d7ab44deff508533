//! Hostile base images: each archive is built here byte by byte (where the
//! `tar` crate would refuse to write such a name), and `stevedore export`
//! must refuse it with one line naming the entry, exit status 1, and
//! nothing written: no output, no temporary file beside it, nothing left
//! in its scratch directory, nothing through a symlink.

use std::fs;
use std::path::Path;

use serde_json::json;

use crate::support::digest::sha256;
use crate::support::docker_archive::{Blob, docker_archive, docker_members, gzip};
use crate::support::process::{assert_one_line_error, dir_names, stevedore, tempdir};
use crate::support::tar::{raw_entry, raw_layer, tar_of};

/// Runs `stevedore export IMAGE --out OUT/rootfs.tar` (with `env`), which
/// must fail with one line holding every one of `want`, exit status 1, and
/// leave the output directory and the scratch directory empty.
fn export_refuses(image: &Path, env: &[(&str, &str)], want: &[&str]) -> String {
    let out_dir = tempdir();
    let scratch = tempdir();
    let out = out_dir.path().join("rootfs.tar");
    let mut cmd = stevedore();
    cmd.arg("export")
        .arg(image)
        .arg("--out")
        .arg(&out)
        .env("TMPDIR", scratch.path())
        .envs(env.iter().copied());
    let output = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_one_line_error(&stderr, &format!("{cmd:?}"));
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    for w in want {
        assert!(stderr.contains(w), "{stderr:?} does not say {w:?}");
    }
    assert!(fs::symlink_metadata(&out).is_err(), "{stderr}");
    assert_eq!(dir_names(out_dir.path()), Vec::<String>::new(), "{stderr}");
    assert_eq!(dir_names(scratch.path()), Vec::<String>::new(), "{stderr}");
    stderr
}

/// A layer holding only `entry`, refused with `want`.
fn layer_refused(entries: &[Vec<u8>], want: &[&str]) {
    let dir = tempdir();
    let image = docker_archive(dir.path(), &[Blob::plain(raw_layer(entries))]);
    export_refuses(&image, &[], want);
}

#[test]
fn hostile_dotdot_name() {
    layer_refused(
        &[raw_entry("x/../../evil", b'0', b"x", "", None)],
        &["\"x/../../evil\"", "\"..\""],
    );
}

#[test]
fn hostile_absolute_name() {
    layer_refused(
        &[raw_entry("/etc/evil", b'0', b"x", "", None)],
        &["\"/etc/evil\" is absolute"],
    );
}

#[test]
fn hostile_write_through_symlink() {
    let outside = tempdir();
    let target = outside.path().to_str().unwrap();
    layer_refused(
        &[
            raw_entry("l", b'2', b"", target, None),
            raw_entry("l/evil", b'0', b"x", "", None),
        ],
        &["\"l/evil\"", "symlink"],
    );
    assert_eq!(dir_names(outside.path()), Vec::<String>::new());
}

#[test]
fn hostile_hard_link_escaping() {
    layer_refused(
        &[raw_entry("h", b'1', b"", "../../etc/passwd", None)],
        &["\"h\"", "\"..\""],
    );
    layer_refused(
        &[raw_entry("h", b'1', b"", "/etc/passwd", None)],
        &["\"h\"", "absolute"],
    );
}

#[test]
fn hostile_hard_link_to_nothing() {
    layer_refused(
        &[raw_entry("h", b'1', b"", "missing", None)],
        &["\"h\"", "\"missing\"", "not a file earlier"],
    );
}

#[test]
fn hostile_size_beyond_the_data() {
    // The header says 2000 bytes; the layer ends after 1000.
    let mut entry = raw_entry("a", b'0', &[7; 2000], "", None);
    entry.truncate(512 + 1000);
    let dir = tempdir();
    let image = docker_archive(dir.path(), &[Blob::plain(entry)]);
    export_refuses(&image, &[], &["\"a\"", "2000 bytes"]);
}

#[test]
fn hostile_oci_blob_size_differs_from_manifest() {
    let dir = tempdir();
    let layout = dir.path().join("layout");
    let blobs = layout.join("blobs/sha256");
    fs::create_dir_all(&blobs).unwrap();
    let put = |bytes: &[u8]| {
        let d = sha256(bytes);
        fs::write(blobs.join(&d[7..]), bytes).unwrap();
        d
    };
    let layer = raw_layer(&[raw_entry("a", b'0', b"hello", "", None)]);
    let layer_digest = put(&layer);
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": { "type": "layers", "diff_ids": [layer_digest] },
    }))
    .unwrap();
    let config_digest = put(&config);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len() },
        "layers": [{ "mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer.len() + 512 }],
    }))
    .unwrap();
    let manifest_digest = put(&manifest);
    fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "manifests": [{ "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest_digest, "size": manifest.len() }],
        }))
        .unwrap(),
    )
    .unwrap();
    fs::write(
        layout.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    let size = layer.len().to_string();
    let said = (layer.len() + 512).to_string();
    export_refuses(
        &layout,
        &[],
        &["layer 1", &layer_digest, &size, &said, "the manifest says"],
    );
}

#[test]
fn hostile_bad_header_checksum() {
    let mut layer = raw_layer(&[
        raw_entry("a", b'0', b"x", "", None),
        raw_entry("b", b'0', b"y", "", None),
    ]);
    // The second header's name: its checksum no longer matches.
    layer[1024] ^= 1;
    layer_refused_bytes(layer, &["after entry a"]);
}

#[test]
fn hostile_huge_long_name() {
    // A GNU long name that claims a terabyte: refused before it is read
    // into memory.
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::GNULongName);
    h.as_gnu_mut().unwrap().name[..13].copy_from_slice(b"././@LongLink");
    h.set_mode(0o644);
    h.set_size(1 << 40);
    h.set_cksum();
    let mut layer = raw_entry("a", b'0', b"x", "", None);
    layer.extend_from_slice(h.as_bytes());
    layer.extend_from_slice(&[b'n'; 8192]);
    layer_refused_bytes(
        layer,
        &["after entry a", "GNU long name of 1099511627776 bytes"],
    );
}

fn layer_refused_bytes(layer: Vec<u8>, want: &[&str]) {
    let dir = tempdir();
    let image = docker_archive(dir.path(), &[Blob::plain(layer)]);
    export_refuses(&image, &[], want);
}

/// A layer of one 4 MiB file of zeros.
fn zeros_layer() -> Vec<u8> {
    raw_layer(&[raw_entry("zeros", b'0', &vec![0; 4 << 20], "", None)])
}

#[test]
fn hostile_gzip_bomb() {
    let dir = tempdir();
    let image = docker_archive(dir.path(), &[Blob::gzip(&zeros_layer())]);
    export_refuses(
        &image,
        &[("STEVEDORE_MAX_LAYER_BYTES", "1048576")],
        &["layer 1", "layer0/layer.tar", "more than 1048576 bytes"],
    );
}

#[test]
fn hostile_zstd_bomb() {
    let dir = tempdir();
    let image = docker_archive(dir.path(), &[Blob::zstd(&zeros_layer())]);
    export_refuses(
        &image,
        &[("STEVEDORE_MAX_LAYER_BYTES", "1048576")],
        &["layer 1", "layer0/layer.tar", "more than 1048576 bytes"],
    );
}

#[test]
fn hostile_archive_bomb_compressed_as_a_whole() {
    let dir = tempdir();
    let image = docker_archive(dir.path(), &[Blob::plain(zeros_layer())]);
    let gz = dir.path().join("image.tar.gz");
    fs::write(&gz, gzip(&fs::read(&image).unwrap())).unwrap();
    export_refuses(
        &gz,
        &[("STEVEDORE_MAX_LAYER_BYTES", "1048576")],
        &["image.tar.gz", "more than 1048576 bytes"],
    );
}

#[test]
fn hostile_manifest_names_missing_layer() {
    let dir = tempdir();
    let layer = Blob::plain(raw_layer(&[raw_entry("a", b'0', b"x", "", None)]));
    let (mut members, mut entry) = docker_members(&[layer], Some("hostile:latest"), "");
    entry["Layers"][0] = json!("gone/layer.tar");
    members.push((
        "manifest.json".into(),
        serde_json::to_vec(&[entry]).unwrap(),
    ));
    let path = dir.path().join("image.tar");
    fs::write(&path, tar_of(&members)).unwrap();
    export_refuses(
        &path,
        &[],
        &["\"gone/layer.tar\", which is not in the archive"],
    );
}

#[test]
fn hostile_manifest_names_missing_config() {
    let dir = tempdir();
    let layer = Blob::plain(raw_layer(&[raw_entry("a", b'0', b"x", "", None)]));
    let (mut members, mut entry) = docker_members(&[layer], Some("hostile:latest"), "");
    entry["Config"] = json!("gone.json");
    members.push((
        "manifest.json".into(),
        serde_json::to_vec(&[entry]).unwrap(),
    ));
    let path = dir.path().join("image.tar");
    fs::write(&path, tar_of(&members)).unwrap();
    export_refuses(&path, &[], &["\"gone.json\", which is not in the archive"]);
}

/// Points `layout`'s manifest at `config` (a file written under the name
/// `digest`, claiming `size` bytes) and writes manifest and index again.
fn with_config_blob(layout: &Path, digest: &str, size: u64) {
    let image = crate::support::oci_layout::Layout::read(layout);
    let mut manifest = image.doc();
    manifest["config"]["digest"] = json!(digest);
    manifest["config"]["size"] = json!(size);
    let bytes = serde_json::to_vec(&manifest).unwrap();
    let manifest_digest = sha256(&bytes);
    fs::write(
        crate::support::oci_layout::blob_path(layout, &manifest_digest),
        &bytes,
    )
    .unwrap();
    let index = json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest,
            "size": bytes.len(),
        }],
    });
    fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&index).unwrap(),
    )
    .unwrap();
}

/// Issue 11, cases 9 and 15: an OCI layout whose config blob is a fifo, or
/// says it is 200 MB, is refused at once with one line, reading nothing of
/// it: by export and merge (the fifo), by export (the size).
#[test]
fn a_config_that_is_a_fifo_or_huge_is_refused_at_once() {
    let dir = tempdir();
    let layout = crate::support::oci_layout::one_file_layout(dir.path(), "cfg", "cfg", 1000, 41);
    let fifo_digest = sha256(b"a fifo");
    let fifo = crate::support::oci_layout::blob_path(&layout, &fifo_digest);
    let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a C string owned here.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    let huge_digest = sha256(b"a huge config");
    let huge = crate::support::oci_layout::blob_path(&layout, &huge_digest);
    fs::File::create(&huge).unwrap().set_len(200 << 20).unwrap();

    // Merge copies a config without reading it whole, so only the fifo
    // concerns it.
    for (digest, size, said, commands) in [
        (
            &fifo_digest,
            0,
            "is not a regular file",
            &["export", "merge"][..],
        ),
        (
            &huge_digest,
            200 << 20,
            "up to 16777216 bytes",
            &["export"][..],
        ),
    ] {
        with_config_blob(&layout, digest, size);
        let out = dir.path().join("out.tar");
        for command in commands {
            let args = [command.to_string(), layout.display().to_string()];
            let done = crate::support::process::run_bounded(
                stevedore().args(&args).arg("--out").arg(&out),
                std::time::Duration::from_secs(60),
            );
            let stderr = String::from_utf8_lossy(&done.stderr);
            assert_eq!(done.status.code(), Some(1), "{args:?}: {stderr}");
            assert_one_line_error(&stderr, &format!("{args:?}"));
            assert!(stderr.contains(said), "{args:?}: {stderr}");
            assert!(!out.exists());
        }
    }
}

/// A PAX extended header giving `path`, then a file entry for it.
fn pax_file(path: &str, data: &[u8]) -> Vec<u8> {
    let record = |len: usize| format!("{len} path={path}\n");
    let mut len = record(0).len();
    while record(len).len() != len {
        len = record(len).len();
    }
    let mut out = raw_entry("pax", b'x', record(len).as_bytes(), "", None);
    out.extend(raw_entry("short", b'0', data, "", None));
    out
}

/// Runs stevedore to the end; its output and its peak memory in MiB.
///
/// Through a small Python process: a child's peak memory as the kernel
/// counts it includes that of the process that started it, at the time,
/// and this test process is large.
fn run_measured(args: &[&str]) -> (std::process::Output, u64) {
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(
            "import resource, subprocess, sys\n\
             r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)\n\
             sys.stderr.buffer.write(r.stderr)\n\
             print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024)\n\
             sys.exit(r.returncode)",
        )
        .arg(env!("CARGO_BIN_EXE_stevedore"))
        .args(args)
        .output()
        .unwrap();
    let mib = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    (out, mib)
}

/// Issue 11, case 7: deep paths in a base layer. One path of 72 KB is
/// refused naming its entry, in a short line; 100 paths just under the
/// 4096-byte limit, each with its own 2000 parents, take memory in
/// proportion to the layer, not to the square of its paths.
#[test]
fn deep_paths_are_refused_past_path_max_and_take_linear_memory() {
    let dir = tempdir();
    let deep = format!("{}f", "a/".repeat(36_000));
    let layer = Blob::plain(raw_layer(&[pax_file(&deep, b"x")]));
    let image = docker_archive(dir.path(), &[layer]);
    let out = dir.path().join("rootfs.tar");
    let (done, mib) = run_measured(&[
        "export",
        image.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&done.stderr);
    assert_eq!(done.status.code(), Some(1), "{stderr}");
    assert_one_line_error(&stderr, "a 72 KB path");
    assert!(
        stderr.contains("(72001 bytes)") && stderr.contains("longer than 4096 bytes"),
        "{stderr}"
    );
    assert!(stderr.len() < 1000, "{} bytes", stderr.len());
    assert!(mib < 100, "{mib} MiB for one deep path");

    let dir = tempdir();
    let entries: Vec<Vec<u8>> = (0..100)
        .map(|i| pax_file(&format!("d{i:03}/{}f", "a/".repeat(2040)), b"x"))
        .collect();
    let image = docker_archive(dir.path(), &[Blob::plain(raw_layer(&entries))]);
    // An image on that base reads every entry of it, and writes the
    // base's layer as it is.
    let spec_path = crate::support::spec::write_spec(
        dir.path(),
        &json!({ "version": 1, "name": "on-deep", "tag": "latest", "layers": [],
                 "base": { "path": image } }),
    );
    let out = dir.path().join("image.tar");
    let (done, mib) = run_measured(&[
        "build",
        spec_path.to_str().unwrap(),
        "--format",
        "docker-archive",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    assert!(
        mib < 300,
        "{mib} MiB for a layer of {} KiB",
        fs::metadata(&image).unwrap().len() >> 10
    );
}
