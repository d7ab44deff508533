//! The shell scripts of a job (`extraCommands`, `fakeRootCommands`,
//! `runAsRoot`): written to a file, never onto a command line, run by the
//! shell the library was given, with failures explained.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The programs that run `extraCommands` and `fakeRootCommands`.
pub struct ScriptTools<'a> {
    /// The shell; `None` when the library was given none.
    pub shell: Option<&'a str>,
    /// `PATH` for the commands.
    pub script_path: &'a str,
}

impl ScriptTools<'_> {
    /// The shell, if it can run here: a missing one is named with the
    /// fix, rather than left to the kernel's bare "No such file".
    pub fn checked_shell(&self, what: &str) -> Result<&str> {
        let shell = self.shell.with_context(|| {
            format!("{what} needs a shell; pass `shell` to the stevedore library")
        })?;
        if let Err(e) = fs::metadata(shell) {
            bail!(
                "{what}: the shell {shell} cannot be run here ({e}){}; import the library with a shell from the store, such as shell = \"${{pkgs.runtimeShell}}\" or a static busybox's \"${{busybox}}/bin/sh\"",
                if in_sandbox() {
                    ": in the Nix sandbox only store paths are visible"
                } else {
                    ""
                }
            );
        }
        Ok(shell)
    }

    /// `err`, with the likely cause added when the script ran a command
    /// its PATH does not have (exit status 127, as POSIX shells give it).
    pub fn explain(&self, what: &str, err: anyhow::Error) -> anyhow::Error {
        if !err.to_string().ends_with("(exit status 127)") {
            return err;
        }
        let missing: Vec<&str> = self
            .script_path
            .split(':')
            .filter(|dir| !dir.is_empty() && !Path::new(dir).is_dir())
            .collect();
        let cause = if self.script_path.is_empty() {
            "PATH is empty".to_owned()
        } else if missing.is_empty() {
            format!("PATH is {}", self.script_path)
        } else {
            format!(
                "PATH is {} and {} {} not here{}",
                self.script_path,
                missing.join(", "),
                if missing.len() == 1 { "is" } else { "are" },
                if in_sandbox() {
                    " (in the Nix sandbox only store paths are visible)"
                } else {
                    ""
                }
            )
        };
        err.context(format!(
            "{what} ran a command that was not found: {cause}; import the library with scriptPath naming store directories, such as lib.makeBinPath [ pkgs.coreutils ]"
        ))
    }
}

/// Whether this build runs in the Nix sandbox: its builder is PID 1 of
/// the sandbox's PID namespace, in `/build`.
fn in_sandbox() -> bool {
    // SAFETY: no arguments.
    unsafe { libc::getpid() == 1 }
}

/// Writes a script's text to a file in the build directory: its text is
/// never on a command line.
pub fn write_script(what: &str, text: &str) -> Result<PathBuf> {
    let script = std::env::current_dir()?.join(format!("{what}.sh"));
    fs::write(&script, text).with_context(|| format!("writing {}", script.display()))?;
    Ok(script)
}

/// Runs a script with the shell in `tree`, as the build user, and ends
/// what it left running.
pub fn run_script(tools: &ScriptTools, what: &str, text: &str, tree: &Path) -> Result<()> {
    let shell = tools.checked_shell(what)?;
    let script = write_script(what, text)?;
    // `-e`: a failing command fails the build, as in a stdenv builder.
    let status = Command::new(shell)
        .arg("-e")
        .arg(&script)
        .current_dir(tree)
        .env("PATH", tools.script_path)
        .env("out", tree)
        .status()
        .with_context(|| format!("running {what} with {shell}"));
    crate::rootfs::orphans::end();
    let status = status?;
    if !status.success() {
        let err = match status.code() {
            Some(code) => anyhow::anyhow!("{what} failed (exit status {code})"),
            None => anyhow::anyhow!("{what} failed ({status})"),
        };
        return Err(tools.explain(what, err));
    }
    Ok(())
}
