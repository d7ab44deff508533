//! Small helpers shared by the integration tests: running the binary,
//! temporary directories, adding fixtures to the Nix store, writing specs.

#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{Value, json};

/// The `stevedore` binary under test.
pub fn stevedore() -> Command {
    Command::new(env!("CARGO_BIN_EXE_stevedore"))
}

/// Runs a command, panicking with its output if it fails.
pub fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    if !out.status.success() {
        panic!(
            "{cmd:?} failed with {}\nstdout:\n{}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

/// Runs a command that must fail, returning its standard error.
pub fn run_fail(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        !out.status.success(),
        "{cmd:?} succeeded but should have failed\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stderr).unwrap()
}

/// A fresh temporary directory, removed when dropped.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("stevedore-test-")
        .tempdir()
        .unwrap()
}

/// Adds a directory tree to the Nix store (`nix-store --add`) and returns
/// the store path. Nix canonicalises it: modes 0444/0555, mtime 1, root.
pub fn nix_add(dir: &Path) -> PathBuf {
    let out = run(Command::new("nix-store").arg("--add").arg(dir));
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

/// A store path holding the static busybox as `bin/busybox`, with
/// `bin/sh` and `bin/echo` as symlinks to it.
pub fn busybox_store_path() -> PathBuf {
    let dir = tempdir();
    let root = dir.path().join("busybox-static");
    fs::create_dir_all(root.join("bin")).unwrap();
    fs::copy("/bin/busybox", root.join("bin/busybox")).expect("/bin/busybox from busybox-static");
    for applet in ["sh", "echo", "cat", "ls", "id", "stat"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
    nix_add(&root)
}

/// A version-1 spec with the given store-path layers; `extra` fields are
/// merged in at the top level.
pub fn spec(name: &str, layers: &[Vec<&Path>], extra: Value) -> Value {
    let layers: Vec<Value> = layers
        .iter()
        .map(|paths| json!({ "paths": paths.iter().map(|p| p.to_str().unwrap()).collect::<Vec<_>>() }))
        .collect();
    let mut spec = json!({ "version": 1, "name": name, "tag": "latest", "layers": layers });
    if let Value::Object(extra) = extra {
        for (k, v) in extra {
            spec[k] = v;
        }
    }
    spec
}

/// Writes a spec into `dir` and returns its path.
pub fn write_spec(dir: &Path, spec: &Value) -> PathBuf {
    let path = dir.join("spec.json");
    fs::write(&path, serde_json::to_vec_pretty(spec).unwrap()).unwrap();
    path
}

/// `stevedore build SPEC --format F --compress C --out OUT`.
pub fn build(spec: &Path, format: &str, compress: &str, out: &Path) {
    run(stevedore()
        .arg("build")
        .arg(spec)
        .args(["--format", format, "--compress", compress, "--out"])
        .arg(out));
}

/// A podman command with this machine's settings: no default ulimits
/// (the machine refuses them) and runc.
pub fn podman() -> Command {
    let conf = std::env::temp_dir().join("stevedore-test-containers.conf");
    if !conf.exists() {
        fs::write(
            &conf,
            "[containers]\ndefault_ulimits = []\n[engine]\nruntime = \"runc\"\n",
        )
        .unwrap();
    }
    let mut cmd = Command::new("podman");
    cmd.env("CONTAINERS_CONF", conf);
    cmd
}

/// The names in a directory, sorted.
pub fn dir_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The SHA-256 of some bytes, as `sha256:<hex>`.
pub fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

/// Runs `stevedore build SPEC --format F --compress C --out PARENT/OUT ARGS`,
/// with `PARENT` a fresh empty directory, optionally behind a command prefix
/// (such as `setpriv ...`), and checks that it failed the way a user wants:
/// a non-zero exit that is not a panic, exactly one line on standard error,
/// nothing at the output path and no temporary file or directory left in
/// `PARENT`. Returns that line.
pub fn build_fails(
    prefix: &[&str],
    spec: &Path,
    format: &str,
    compress: &str,
    out: &str,
    args: &[&str],
) -> String {
    use std::os::unix::fs::PermissionsExt;
    let parent = tempdir();
    // Writable by all, for runs under another user.
    fs::set_permissions(parent.path(), fs::Permissions::from_mode(0o777)).unwrap();
    let out = parent.path().join(out);
    let mut cmd = match prefix {
        [] => stevedore(),
        [program, rest @ ..] => {
            let mut cmd = Command::new(program);
            cmd.args(rest).arg(env!("CARGO_BIN_EXE_stevedore"));
            cmd
        }
    };
    cmd.arg("build")
        .arg(spec)
        .args(["--format", format, "--compress", compress, "--out"])
        .arg(&out)
        .args(args);
    let output = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        !output.status.success(),
        "{cmd:?} succeeded but should have failed"
    );
    assert_one_line_error(&stderr, &format!("{cmd:?}"));
    assert_eq!(output.status.code(), Some(1), "{cmd:?}: {stderr}");
    assert!(
        fs::symlink_metadata(&out).is_err(),
        "{cmd:?} failed but left {}",
        out.display()
    );
    assert_eq!(
        dir_names(parent.path()),
        Vec::<String>::new(),
        "{cmd:?} failed but left files in the output directory"
    );
    stderr.trim_end().to_owned()
}

/// Checks that standard error is one `stevedore: error:` line, no panic.
pub fn assert_one_line_error(stderr: &str, what: &str) {
    assert!(!stderr.contains("panicked"), "{what} panicked:\n{stderr}");
    let text = stderr.trim_end();
    assert!(
        text.starts_with("stevedore: error: ") && !text.contains('\n'),
        "{what}: expected one error line on stderr, got:\n{stderr}"
    );
}
