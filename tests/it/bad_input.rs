//! Bad inputs: each one makes `stevedore build` exit with status 1 and one
//! line on standard error that names the file, field or path at fault,
//! without a panic, leaving nothing at `--out` and no temporary file or
//! directory beside it ([`build_fails`] checks all of that), in every
//! output format.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use crate::support::process::{assert_one_line_error, run, stevedore, tempdir};
use crate::support::spec::{build_fails, spec, write_spec};

/// Format and compression pairs covering each way an output is written:
/// a file written directly, a file with a scratch directory of blobs, and
/// a directory.
const OUTPUTS: [(&str, &str); 3] = [
    ("docker-archive", "none"),
    ("oci-archive", "zstd"),
    ("oci-dir", "gzip"),
];

/// Builds `spec_path` in every output format, checks each failure with
/// [`build_fails`] and that the error line holds every `needle`.
fn fails_everywhere(prefix: &[&str], spec_path: &Path, args: &[&str], needles: &[&str]) {
    for (format, compress) in OUTPUTS {
        let err = build_fails(prefix, spec_path, format, compress, "image", args);
        for needle in needles {
            assert!(
                err.contains(needle),
                "{format}/{compress}: error does not name {needle:?}: {err}"
            );
        }
    }
}

/// For errors found before anything is written: `stream` fails the same
/// way, and writes nothing to standard output.
fn stream_fails(spec_path: &Path, needles: &[&str]) {
    let out = stevedore().arg("stream").arg(spec_path).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_one_line_error(&stderr, "stevedore stream");
    assert!(
        out.stdout.is_empty(),
        "stream wrote {} bytes",
        out.stdout.len()
    );
    for needle in needles {
        assert!(stderr.contains(needle), "stream: {stderr}");
    }
}

/// A spec file with raw text.
fn raw_spec(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("spec.json");
    fs::write(&path, text).unwrap();
    path
}

fn store_spec(name: &str, paths: &[&Path], extra: Value) -> Value {
    spec(name, &[paths.to_vec()], extra)
}

/// A fake store directory with one path holding one file.
fn fake_store(tmp: &Path) -> (PathBuf, PathBuf) {
    let store = tmp.join("store");
    let p = store.join("aaaa-good");
    fs::create_dir_all(p.join("share")).unwrap();
    fs::write(p.join("share/file"), vec![7u8; 100_000]).unwrap();
    (store, p)
}

#[test]
fn invalid_json() {
    let tmp = tempdir();
    let path = raw_spec(
        tmp.path(),
        "{\"version\": 1, \"name\": \"x\",\n  \"layers\": [}\n",
    );
    let file = path.to_str().unwrap();
    fails_everywhere(&[], &path, &[], &[file, "JSON", "line 2"]);
    stream_fails(&path, &[file]);
    // Not a file at all.
    let missing = tmp.path().join("no-such-spec.json");
    fails_everywhere(&[], &missing, &[], &[missing.to_str().unwrap()]);
}

#[test]
fn unknown_fields_are_named() {
    let tmp = tempdir();
    let path = write_spec(tmp.path(), &spec("x", &[], json!({"colour": "blue"})));
    fails_everywhere(&[], &path, &[], &[path.to_str().unwrap(), "colour"]);
    stream_fails(&path, &["colour"]);

    let path = write_spec(
        tmp.path(),
        &spec("x", &[], json!({"config": {"Cmdd": ["sh"]}})),
    );
    fails_everywhere(&[], &path, &[], &["config", "Cmdd"]);

    let path = write_spec(
        tmp.path(),
        &spec(
            "x",
            &[],
            json!({"customisation": {"trees": [], "extra": 1}}),
        ),
    );
    fails_everywhere(&[], &path, &[], &["customisation", "extra"]);
}

#[test]
fn unknown_spec_version() {
    let tmp = tempdir();
    let mut s = spec("x", &[], json!({}));
    s["version"] = json!(2);
    let path = write_spec(tmp.path(), &s);
    fails_everywhere(&[], &path, &[], &["version", "2"]);
    stream_fails(&path, &["version"]);
    s.as_object_mut().unwrap().remove("version");
    let path = write_spec(tmp.path(), &s);
    fails_everywhere(&[], &path, &[], &["version"]);
}

#[test]
fn missing_store_path() {
    let tmp = tempdir();
    let missing = Path::new("/nix/store/00000000000000000000000000000000-stevedore-missing");
    let path = write_spec(tmp.path(), &store_spec("x", &[missing], json!({})));
    let needles = ["layers[0].paths[0]", missing.to_str().unwrap()];
    fails_everywhere(&[], &path, &[], &needles);
    stream_fails(&path, &needles);
}

#[test]
fn path_outside_the_store() {
    let tmp = tempdir();
    for outside in ["/etc", "/nix/store/../etc", "/nix/var/nix", "/nix/store"] {
        let path = write_spec(
            tmp.path(),
            &store_spec("x", &[Path::new(outside)], json!({})),
        );
        fails_everywhere(&[], &path, &[], &["layers[0].paths[0]", outside]);
    }
    // Below a store path rather than a store path.
    let dir = tmp.path().join("stevedore-bad-input-nested");
    fs::create_dir_all(dir.join("bin")).unwrap();
    fs::write(dir.join("bin/tool"), "tool").unwrap();
    let store_file = crate::support::store::nix_add(&dir).join("bin");
    let path = write_spec(tmp.path(), &store_spec("x", &[&store_file], json!({})));
    fails_everywhere(
        &[],
        &path,
        &[],
        &["layers[0].paths[0]", store_file.to_str().unwrap()],
    );
}

/// A file that cannot be read. Tests run as root, which reads any file
/// whatever its mode, so the build runs as `nobody` (`setpriv`, which drops
/// every capability with the uid) against a fake store whose file has mode
/// 000: the walk sees the file, opening it fails while the layer is being
/// written. A directory of mode 000 fails earlier, when it is listed.
#[test]
fn unreadable_file_and_directory() {
    let tmp = tempdir();
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let (store, p) = fake_store(tmp.path());
    let secret = p.join("share/secret");
    fs::write(&secret, "no one may read this").unwrap();
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o000)).unwrap();
    let path = write_spec(
        tmp.path(),
        &store_spec("x", &[&p], json!({"store_dir": store})),
    );
    let nobody = [
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
    ];
    // Check the premise: nobody cannot read it.
    let cat = Command::new(nobody[0])
        .args(&nobody[1..])
        .arg("cat")
        .arg(&secret)
        .output()
        .unwrap();
    assert!(!cat.status.success(), "nobody can read a mode 000 file");
    fails_everywhere(&nobody, &path, &[], &[secret.to_str().unwrap()]);

    fs::set_permissions(&secret, fs::Permissions::from_mode(0o644)).unwrap();
    let locked = p.join("locked");
    fs::create_dir(&locked).unwrap();
    fs::write(locked.join("inside"), "x").unwrap();
    fs::set_permissions(&locked, fs::Permissions::from_mode(0o000)).unwrap();
    fails_everywhere(&nobody, &path, &[], &[locked.to_str().unwrap()]);
}

/// Things that are neither file, directory nor symlink, and a path through
/// a file, fail even for root.
#[test]
fn unsupported_file_types_and_paths_through_files() {
    let tmp = tempdir();
    let (store, p) = fake_store(tmp.path());
    let fifo = p.join("share/pipe");
    run(Command::new("mkfifo").arg(&fifo));
    let path = write_spec(
        tmp.path(),
        &store_spec("x", &[&p], json!({"store_dir": store})),
    );
    fails_everywhere(&[], &path, &[], &[fifo.to_str().unwrap(), "fifo"]);

    // A store directory that is a file: its "paths" cannot exist.
    let file = tmp.path().join("not-a-dir");
    fs::write(&file, "x").unwrap();
    let through = file.join("bbbb-x");
    let path = write_spec(
        tmp.path(),
        &store_spec("x", &[&through], json!({"store_dir": file})),
    );
    fails_everywhere(
        &[],
        &path,
        &[],
        &["layers[0].paths[0]", through.to_str().unwrap()],
    );

    // A customisation tree that is a file.
    let path = write_spec(
        tmp.path(),
        &spec("x", &[], json!({"customisation": {"trees": [file]}})),
    );
    fails_everywhere(
        &[],
        &path,
        &[],
        &["customisation.trees[0]", file.to_str().unwrap()],
    );
}

#[test]
fn invalid_name_and_tag() {
    let tmp = tempdir();
    let path = write_spec(tmp.path(), &spec("Hello/World", &[], json!({})));
    fails_everywhere(&[], &path, &[], &["name", "Hello/World", "lowercase"]);
    stream_fails(&path, &["lowercase"]);
    for tag in ["a/b", ".hidden", "", "has space"] {
        let path = write_spec(tmp.path(), &spec("hello", &[], json!({"tag": tag})));
        fails_everywhere(&[], &path, &[], &["tag"]);
    }
}

/// Tags are ASCII (`[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}` in docs/spec.md, as
/// in the distribution grammar, whose `\w` is ASCII): registries refuse
/// others, so the build must too.
#[test]
fn non_ascii_tags_are_refused() {
    let tmp = tempdir();
    for tag in ["café", "版本", "v\u{0661}\u{0660}"] {
        let path = write_spec(tmp.path(), &spec("hello", &[], json!({"tag": tag})));
        fails_everywhere(&[], &path, &[], &["tag"]);
    }
}

#[test]
fn output_directory_does_not_exist() {
    let tmp = tempdir();
    let path = write_spec(tmp.path(), &spec("hello", &[], json!({})));
    for (format, compress) in OUTPUTS {
        let err = build_fails(&[], &path, format, compress, "missing/image", &[]);
        assert!(err.contains("missing"), "{err}");
    }
}

/// An error in the second layer, after the first is written: nothing is
/// left of the first either.
#[test]
fn an_error_mid_way_leaves_nothing() {
    let tmp = tempdir();
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let (store, good) = fake_store(tmp.path());
    let bad = store.join("bbbb-bad");
    fs::create_dir(&bad).unwrap();

    // Missing (found before anything is written).
    let missing = store.join("cccc-missing");
    let path = write_spec(
        tmp.path(),
        &spec(
            "x",
            &[vec![&good], vec![&missing]],
            json!({"store_dir": store}),
        ),
    );
    fails_everywhere(
        &[],
        &path,
        &["--jobs", "1"],
        &["layers[1].paths[0]", missing.to_str().unwrap()],
    );

    // A fifo, found when the second layer is planned.
    let fifo = bad.join("pipe");
    run(Command::new("mkfifo").arg(&fifo));
    let path = write_spec(
        tmp.path(),
        &spec("x", &[vec![&good], vec![&bad]], json!({"store_dir": store})),
    );
    for jobs in ["1", "4"] {
        fails_everywhere(&[], &path, &["--jobs", jobs], &[fifo.to_str().unwrap()]);
    }
    fs::remove_file(&fifo).unwrap();

    // An unreadable file, found while the second layer is written.
    let secret = bad.join("secret");
    fs::write(&secret, "x").unwrap();
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o000)).unwrap();
    let nobody = [
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
    ];
    fails_everywhere(
        &nobody,
        &path,
        &["--jobs", "1"],
        &[secret.to_str().unwrap()],
    );

    // Conflicting customisation trees, found in the last layer.
    let (t1, t2) = (tmp.path().join("t1"), tmp.path().join("t2"));
    for (t, content) in [(&t1, "1"), (&t2, "2")] {
        fs::create_dir_all(t.join("etc")).unwrap();
        fs::write(t.join("etc/conf"), content).unwrap();
    }
    let path = write_spec(
        tmp.path(),
        &spec(
            "x",
            &[vec![&good]],
            json!({"store_dir": store, "customisation": {"trees": [t1, t2]}}),
        ),
    );
    fails_everywhere(
        &[],
        &path,
        &["--jobs", "1"],
        &[t1.to_str().unwrap(), t2.to_str().unwrap()],
    );
}

/// An `oci-dir` target that exists is refused and left as it was.
#[test]
fn existing_oci_dir_is_left_alone() {
    let tmp = tempdir();
    let path = write_spec(tmp.path(), &spec("hello", &[], json!({})));
    let out = tmp.path().join("oci");
    fs::create_dir(&out).unwrap();
    fs::write(out.join("mine"), "keep").unwrap();
    let err = crate::support::process::run_fail(
        stevedore()
            .arg("build")
            .arg(&path)
            .args(["--format", "oci-dir", "--out"])
            .arg(&out),
    );
    assert_one_line_error(&err, "build onto an existing directory");
    assert!(err.contains(out.to_str().unwrap()), "{err}");
    assert_eq!(crate::support::process::dir_names(&out), ["mine"]);
    assert_eq!(
        crate::support::process::dir_names(tmp.path()),
        ["oci", "spec.json"],
        "temporary files left"
    );
}

/// Issue 11, case 3: `--out` of build, export, merge and pull onto a device
/// node, a fifo, a symlink (to a fifo or to a file) or another user's file
/// is refused with one line, and the node is left as it was; never
/// replaced by a regular file.
#[test]
fn outputs_that_are_not_our_regular_files_are_refused_and_left_alone() {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let busybox = crate::support::store::busybox_store_path();
    let spec_dir = tempdir();
    let spec_path = write_spec(
        spec_dir.path(),
        &spec("out", &[vec![busybox.as_path()]], json!({})),
    );
    let dir = tempdir();
    let d = dir.path();
    let node = |name: &str, mode: libc::mode_t, dev: libc::dev_t| {
        let path = d.join(name);
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a C string owned here.
        assert_eq!(
            unsafe { libc::mknod(c.as_ptr(), mode, dev) },
            0,
            "mknod {name}"
        );
        path
    };
    // The null device's numbers, as a node of the test's own directory.
    let device = node("null", libc::S_IFCHR | 0o666, libc::makedev(1, 3));
    let fifo = node("fifo", libc::S_IFIFO | 0o644, 0);
    let link_to_fifo = d.join("link-to-fifo");
    std::os::unix::fs::symlink(&fifo, &link_to_fifo).unwrap();
    let file = d.join("file");
    fs::write(&file, "kept\n").unwrap();
    let link_to_file = d.join("link-to-file");
    std::os::unix::fs::symlink(&file, &link_to_file).unwrap();
    let theirs = d.join("theirs");
    fs::write(&theirs, "nobody's\n").unwrap();
    std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
    let cases = [
        (&device, "is a character device"),
        (&fifo, "is a fifo"),
        (&link_to_fifo, "is a symlink"),
        (&link_to_file, "is a symlink"),
        (&theirs, "is a file of uid 65534"),
    ];
    // An image to export and merge, beside the targets' directory.
    let image_dir = tempdir();
    let image = image_dir.path().join("image.tar");
    crate::support::spec::build(&spec_path, "docker-archive", "none", &image);
    let image = image.to_str().unwrap();
    let spec_arg = spec_path.to_str().unwrap();
    // Pull takes its output first: it is refused before any connection.
    let pull_src = format!("docker://127.0.0.1:1/app@sha256:{}", "0".repeat(64));
    let commands: [&[&str]; 5] = [
        &[
            "build",
            spec_arg,
            "--format",
            "docker-archive",
            "--compress",
            "none",
        ],
        &[
            "build",
            spec_arg,
            "--format",
            "oci-archive",
            "--compress",
            "gzip",
        ],
        &["export", image],
        &["merge", image],
        &["pull", &pull_src, "--tls-verify=false"],
    ];
    for (target, said) in cases {
        for command in commands {
            let out = Command::new(env!("CARGO_BIN_EXE_stevedore"))
                .args(command)
                .arg("--out")
                .arg(target)
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(
                out.status.code(),
                Some(1),
                "{command:?} {}: {stderr}",
                target.display()
            );
            assert_one_line_error(&stderr, &target.display().to_string());
            assert!(
                stderr.contains(&format!("output {} {said}", target.display())),
                "{command:?}: {stderr}"
            );
        }
    }
    let kind = |p: &Path| fs::symlink_metadata(p).unwrap().file_type();
    assert!(kind(&device).is_char_device());
    assert!(kind(&fifo).is_fifo());
    assert!(kind(&link_to_fifo).is_symlink() && kind(&link_to_file).is_symlink());
    assert_eq!(fs::read_to_string(&file).unwrap(), "kept\n");
    assert_eq!(fs::read_to_string(&theirs).unwrap(), "nobody's\n");
    assert_eq!(fs::metadata(&theirs).unwrap().uid(), 65534);
    // Nothing else was left beside them.
    assert_eq!(
        crate::support::process::dir_names(d),
        [
            "fifo",
            "file",
            "link-to-fifo",
            "link-to-file",
            "null",
            "theirs"
        ]
    );
}

/// Issue 11, case 12: SIGINT, SIGTERM or SIGHUP in the middle of a build
/// leaves nothing beside the output: the temporary archive and the
/// scratch directory of layer blobs are removed, and the exit status is
/// 128 + the signal's number.
#[test]
fn a_build_ended_by_a_signal_leaves_no_partial_files() {
    let data = crate::support::store::store_path_with(
        &format!("signalled-{}", std::process::id()),
        &[("noise", crate::support::store::noise(96 << 20, 7))],
    );
    let spec_dir = tempdir();
    let spec_path = write_spec(
        spec_dir.path(),
        &spec("signalled", &[vec![data.as_path()]], json!({})),
    );
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        let dir = tempdir();
        let mut child = stevedore()
            .arg("build")
            .arg(&spec_path)
            .args(["--format", "docker-archive", "--compress", "gzip", "--out"])
            .arg(dir.path().join("image.tar"))
            .spawn()
            .unwrap();
        // Until something is half-written beside the output.
        let started = std::time::Instant::now();
        while crate::support::process::dir_names(dir.path()).is_empty() {
            assert!(
                started.elapsed() < std::time::Duration::from_secs(60),
                "the build wrote nothing in a minute"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
        // SAFETY: a signal to the child this test started.
        unsafe { libc::kill(child.id() as libc::pid_t, signal) };
        let status = child.wait().unwrap();
        assert_eq!(
            status.code(),
            Some(128 + signal),
            "signal {signal}: {status}"
        );
        assert_eq!(
            crate::support::process::dir_names(dir.path()),
            Vec::<String>::new(),
            "signal {signal} left files"
        );
    }
}
