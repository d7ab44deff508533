//! Version-1 build specs: writing them, and running `stevedore build` on
//! them, to succeed or to fail the way a user wants.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use super::process::{HELPER, assert_one_line_error, dir_names, run, stevedore, tempdir};

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
            cmd.args(rest).arg(HELPER);
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

/// Builds an image of store-path layers in `dir` as `format`.
pub fn build_image(
    dir: &Path,
    name: &str,
    layers: &[Vec<&Path>],
    format: &str,
    compress: &str,
    out: &str,
) -> PathBuf {
    let spec_dir = dir.join(format!("spec-{out}"));
    fs::create_dir_all(&spec_dir).unwrap();
    let spec_path = write_spec(
        &spec_dir,
        &spec(name, layers, json!({ "created": "2024-01-02T03:04:05Z" })),
    );
    let out = dir.join(out);
    build(&spec_path, format, compress, &out);
    out
}
