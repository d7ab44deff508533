//! The Nix that builds the library's images in these tests (the host's, or
//! the sandboxed one), and building and checking `examples/default.nix`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::process::{run, run_bounded, run_fail, stdout_of, tempdir};

/// The checkout under test.
pub const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// The Nix that builds the library's images in these tests.
///
/// By default the host's (Debian 12's Nix 2.8, `sandbox = false`) with the
/// helper under test. With `STEVEDORE_TEST_NIX=sandbox`, Debian sid's Nix
/// in the tree of `scripts/sandbox-nix.sh` with the sandbox on and
/// `sandbox-fallback = false`, the static helper of
/// `scripts/build-static-helper.sh`, and shell and PATH from a busybox in
/// that store: as users build. Its store is the tree's own; store paths
/// are read on the host through [`Nix::host_path`], and launchers run in
/// the tree ([`Built::command`]).
pub struct Nix {
    /// The tree's root, in the sandbox mode.
    tree: Option<PathBuf>,
    helper: PathBuf,
}

/// The Nix these tests build with (see [`Nix`]).
pub fn nix() -> &'static Nix {
    static NIX: std::sync::OnceLock<Nix> = std::sync::OnceLock::new();
    NIX.get_or_init(|| match std::env::var("STEVEDORE_TEST_NIX").as_deref() {
        Ok("sandbox") => {
            let dir = std::env::var_os("STEVEDORE_SANDBOX_NIX")
                .map(PathBuf::from)
                .unwrap_or_else(|| Path::new(REPO).join("target/sandbox-nix"));
            assert!(
                dir.join("ready").exists(),
                "no sandboxed Nix at {}: run scripts/sandbox-nix.sh setup (scripts/test.sh does)",
                dir.display()
            );
            let helper = Path::new(REPO).join(format!(
                "target/{}-unknown-linux-gnu/release/stevedore",
                std::env::consts::ARCH
            ));
            assert!(
                helper.exists(),
                "no static helper at {}: run scripts/build-static-helper.sh (scripts/test.sh does)",
                helper.display()
            );
            Nix {
                tree: Some(dir.join("root")),
                helper,
            }
        }
        Ok("host") | Err(_) => Nix {
            tree: None,
            helper: PathBuf::from(env!("CARGO_BIN_EXE_stevedore")),
        },
        Ok(other) => panic!("STEVEDORE_TEST_NIX={other}: use sandbox or host"),
    })
}

impl Nix {
    /// Whether builds run in the Nix sandbox (of Nix 2.34).
    pub fn sandboxed(&self) -> bool {
        self.tree.is_some()
    }

    /// A command of this Nix: `nix-build`, `nix-store`, `nix-instantiate`.
    pub fn command(&self, program: &str) -> Command {
        self.run_in_tree(Path::new(program))
    }

    /// Runs `program` where this Nix's store is: in the tree for the
    /// sandboxed Nix (a launcher's interpreter is in that store).
    pub fn run_in_tree(&self, program: &Path) -> Command {
        match &self.tree {
            None => Command::new(program),
            Some(_) => {
                let mut cmd = Command::new(Path::new(REPO).join("scripts/sandbox-nix.sh"));
                cmd.arg("run").arg(program);
                cmd
            }
        }
    }

    /// The helper, as a path both Nix and the host read.
    pub fn helper(&self) -> &Path {
        &self.helper
    }

    /// Where a path of this Nix's store is on the host.
    pub fn host_path(&self, store_path: &Path) -> PathBuf {
        match &self.tree {
            None => store_path.to_owned(),
            Some(root) => root.join(store_path.strip_prefix("/").unwrap_or(store_path)),
        }
    }

    /// The arguments of `examples/default.nix` besides `helper`: in the
    /// sandbox, busybox from the store for the shell and PATH.
    pub fn example_args(&self) -> Vec<String> {
        match &self.tree {
            None => Vec::new(),
            Some(_) => ["--arg", "busybox", "/opt/busybox"]
                .map(str::to_owned)
                .to_vec(),
        }
    }

    /// The examples' arguments as a Nix attribute set's body, for
    /// `import EXAMPLES { ... }` in an expression.
    pub fn example_attrs(&self) -> String {
        let busybox = if self.sandboxed() {
            " busybox = /opt/busybox;"
        } else {
            ""
        };
        format!("helper = {};{busybox}", self.helper.display())
    }
}

/// `nix-build examples -A ATTR... --arg helper HELPER`, with the binary
/// under test as the helper.
pub fn example_build_cmd(attrs: &[&str]) -> Command {
    build_cmd_of(&Path::new(REPO).join("examples"), attrs)
}

/// `nix-build FILE -A ATTR... --arg helper HELPER` with the examples'
/// arguments: FILE is `examples/` or a file taking the same arguments.
pub fn build_cmd_of(file: &Path, attrs: &[&str]) -> Command {
    let nix = nix();
    let mut cmd = nix.command("nix-build");
    cmd.arg(file);
    for attr in attrs {
        cmd.args(["-A", attr]);
    }
    cmd.arg("--arg").arg("helper").arg(nix.helper());
    cmd.args(nix.example_args());
    cmd
}

/// An example built with `nix-build -o DIR/result`; the out link (a GC
/// root) goes with the directory.
pub struct Built {
    pub dir: tempfile::TempDir,
    /// The result, where the host reads it.
    pub path: PathBuf,
    /// The store path of the result, as Nix names it.
    pub store_path: PathBuf,
}

impl Built {
    /// Runs the result (a launcher), where its store is.
    pub fn command(&self) -> Command {
        nix().run_in_tree(&self.store_path)
    }
}

/// Runs a `nix-build` command with `-o DIR/result` in a new directory,
/// bounded in time; `what` names the build in a failure.
pub fn build_linked(cmd: &mut Command, what: &str) -> Built {
    let dir = tempdir();
    let link = dir.path().join("result");
    let out = run_bounded(cmd.arg("-o").arg(&link), Duration::from_secs(600));
    assert!(
        out.status.success(),
        "nix-build {what}:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let store_path = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
    Built {
        path: nix().host_path(&store_path),
        store_path,
        dir,
    }
}

/// Builds one example attribute.
pub fn build_example(attr: &str) -> Built {
    let dir = tempdir();
    let link = dir.path().join("result");
    let out = run(example_build_cmd(&[attr]).arg("-o").arg(&link));
    let out = String::from_utf8(out.stdout).unwrap();
    let store_path = PathBuf::from(out.trim());
    assert!(
        store_path.starts_with("/nix/store"),
        "nix-build -A {attr} printed {out:?}"
    );
    assert_eq!(fs::read_link(&link).unwrap(), store_path, "the out link");
    Built {
        dir,
        path: nix().host_path(&store_path),
        store_path,
    }
}

/// `nix-store --realise --check PATHS`: rebuilds the derivations and
/// fails the test unless every output comes out bit for bit the same.
pub fn realise_check<S: AsRef<std::ffi::OsStr> + std::fmt::Debug>(drvs: &[S]) {
    let out = nix()
        .command("nix-store")
        .args(["--realise", "--check"])
        .args(drvs)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "nix-store --realise --check {drvs:?}:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `nix-instantiate -E '(import REPO/nix { helper = HELPER; }).CALL'`,
/// which must fail at evaluation with every one of `needles` in its
/// message. Returns standard error.
pub fn evaluation_fails(call: &str, needles: &[&str]) -> String {
    let expr = format!(
        "(import {REPO}/nix {{ helper = {}; }}).{call}",
        nix().helper().display()
    );
    let stderr = run_fail(nix().command("nix-instantiate").arg("-E").arg(&expr));
    assert!(stderr.contains("error: "), "{expr}:\n{stderr}");
    for needle in needles {
        assert!(
            stderr.contains(needle),
            "{expr}: expected {needle:?} in:\n{stderr}"
        );
    }
    stderr
}

// Expressions of the library, built with this Nix.

/// A value no earlier run used.
pub fn nonce() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    format!("{}{}", now.as_nanos(), std::process::id())
}

/// `let ex = <the examples>; s = <the library>; in BODY`. The library
/// gets the shell and PATH this Nix's builds can run: the host's without
/// a sandbox, the examples' busybox from the store in it (as the flake
/// gives nixpkgs'), unless `library_args` names its own.
pub fn expr(library_args: &str, body: &str) -> String {
    let helper = nix().helper().display().to_string();
    let tools = if !library_args.is_empty() {
        library_args.to_owned()
    } else if nix().sandboxed() {
        r#"shell = "${ex.busybox}/bin/sh"; scriptPath = "${ex.busybox}/bin";"#.to_owned()
    } else {
        String::new()
    };
    format!(
        "let ex = import {REPO}/examples {{ {} }}; s = import {REPO}/nix {{ helper = {helper}; {tools} }}; in {body}",
        nix().example_attrs()
    )
}

/// Builds `expr` with this Nix, bounded in time; the result's store path
/// and its path on the host. The out link lives in `dir`.
pub fn build(expr: &str, dir: &Path) -> (PathBuf, PathBuf) {
    let (store_path, host, _) = build_logged(expr, dir);
    (store_path, host)
}

/// [`build`], with what Nix printed (evaluation warnings, build logs).
pub fn build_logged(expr: &str, dir: &Path) -> (PathBuf, PathBuf, String) {
    let link = dir.join("result");
    let out = run_bounded(
        nix()
            .command("nix-build")
            .arg("-E")
            .arg(expr)
            .arg("-o")
            .arg(&link),
        Duration::from_secs(300),
    );
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "nix-build -E {expr}:\n{stderr}");
    let store_path = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
    let host = nix().host_path(&store_path);
    (store_path, host, stderr)
}

/// The derivations `cmd` (a `nix-build ... --dry-run`) says it would
/// build.
pub fn would_build(cmd: &mut Command) -> std::collections::BTreeSet<String> {
    let out = run(cmd);
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("/nix/store/") && l.ends_with(".drv"))
        .map(str::to_owned)
        .collect()
}

/// Builds `expr`, which must fail; its error output.
pub fn build_fails(expr: &str) -> String {
    let out = run_bounded(
        nix()
            .command("nix-build")
            .args(["--no-out-link", "-E"])
            .arg(expr),
        Duration::from_secs(300),
    );
    assert!(!out.status.success(), "{expr} built");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The hash Nix reports for a fixed-output derivation built with a wrong
/// one (its `got:` line), as users take it.
pub fn reported_hash(stderr: &str) -> String {
    stderr
        .lines()
        .find(|l| l.trim_start().starts_with("got:"))
        .and_then(|l| l.split_whitespace().last())
        .unwrap_or_else(|| panic!("no hash in:\n{stderr}"))
        .to_owned()
}

/// The host's `nix-store` on an image's root: the `nix-store` the peer
/// runs in its containers, which no stand-in package can be. Its output,
/// which must succeed.
pub fn nix_store_in(root: &Path, args: &[&str]) -> String {
    stdout_of(
        Command::new("nix-store")
            .arg("--store")
            .arg(format!("local?root={}", root.display()))
            .args(args)
            .env("USER", "root"),
    )
}
