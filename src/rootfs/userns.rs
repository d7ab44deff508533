//! Runs the `runAsRoot` script as uid 0 chrooted into a scratch root, in a
//! new user and mount namespace instead of dockerTools' KVM VM, so that
//! builds need no VM, no /dev/kvm and no privileges.
//!
//! The helper starts a copy of itself (`nix-builder --in-namespace`),
//! which calls `unshare(CLONE_NEWUSER | CLONE_NEWNS)` and says so on a
//! status pipe; the parent then writes the child's id maps and sends one
//! byte on its standard input. The child, now uid 0 of its namespace with
//! every capability there, makes its mounts private, bind-mounts what the
//! script needs (store paths, `/dev/null`, `/dev/zero`, `/dev/urandom`,
//! `/proc`), chroots and executes the shell. It unshares after its own
//! `execve`, not before: Nix runs builders with `no_new_privs`, under
//! which an `execve` in a namespace that is not mapped yet would drop the
//! namespace's capabilities for good. The mounts exist only in the
//! child's mount namespace; the mountpoints made for them in the root are
//! removed by the parent afterwards, so they never reach the layer. A
//! failure before the shell runs is sent back on the status pipe, which
//! is closed on `execve`, so it is one line naming its cause rather than
//! a script failure.
//!
//! Id maps: a helper that is root with the first 65536 ids of its own
//! namespace (root outside any container, as in CI and in Nix builds
//! without build users) maps them one to one, so `chown alice` in the
//! script gives the file alice's uid. Any other build user maps itself
//! alone to root (after `deny` in `setgroups`, as the kernel requires):
//! everything is root's inside, and a real `chown` to another id would
//! fail with EINVAL; there the chown calls are answered by a supervisor
//! that records the owners asked for ([`super::chown`]), and [`Chroot::run`]
//! returns that record.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Component, Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use super::chown::{self, Owners};

/// The ids a privileged helper maps one to one.
const IDS: u64 = 65536;

/// The uid and gid the kernel shows for ids that are not mapped.
const OVERFLOW_ID: u64 = 65534;

/// `PATH` of the script, as in a root shell.
const SCRIPT_PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";

/// How ids outside the namespace appear inside it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdMapping {
    /// `0 0 65536`: the helper is root with those ids.
    Identity,
    /// `0 uid 1`: the build user is root inside, alone.
    BuildUser { uid: u32, gid: u32 },
}

impl IdMapping {
    /// The mapping this process can give a child namespace.
    pub fn for_this_process() -> IdMapping {
        // SAFETY: no arguments, cannot fail.
        let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
        let covers =
            |file: &str| fs::read_to_string(file).is_ok_and(|text| map_covers_first_ids(&text));
        if uid == 0 && covers("/proc/self/uid_map") && covers("/proc/self/gid_map") {
            IdMapping::Identity
        } else {
            IdMapping::BuildUser { uid, gid }
        }
    }

    /// The uid and gid seen inside the namespace for ids seen outside.
    pub fn inside(&self, uid: u32, gid: u32) -> (u64, u64) {
        let (uid, gid) = (u64::from(uid), u64::from(gid));
        match *self {
            IdMapping::Identity => (
                if uid < IDS { uid } else { OVERFLOW_ID },
                if gid < IDS { gid } else { OVERFLOW_ID },
            ),
            IdMapping::BuildUser { uid: u, gid: g } => (
                if uid == u64::from(u) { 0 } else { OVERFLOW_ID },
                if gid == u64::from(g) { 0 } else { OVERFLOW_ID },
            ),
        }
    }
}

/// Whether an id map (`/proc/self/uid_map`) maps ids 0 to 65535 of this
/// namespace in one range.
fn map_covers_first_ids(text: &str) -> bool {
    text.lines().any(|line| {
        let fields: Vec<u64> = line
            .split_whitespace()
            .filter_map(|f| f.parse().ok())
            .collect();
        matches!(fields[..], [inside, _, count] if inside == 0 && count >= IDS)
    })
}

/// A bind mount the child makes before it chroots.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Mount {
    pub source: PathBuf,
    /// Outside path, inside the root.
    pub target: PathBuf,
    pub read_only: bool,
    /// Remounted writable: a bind mount takes the flags of the mount its
    /// source is on, such as a read-only store mounted before it.
    #[serde(default)]
    pub writable: bool,
    /// With the mounts below the source (`/proc`).
    pub recursive: bool,
    /// A failure to mount is no error: the script goes without it.
    pub optional: bool,
}

/// What a bind mount is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bind {
    /// Read-only, and only where the root has no such path.
    StorePath,
    /// A device node of the host.
    Device,
    /// The host's `/proc` with the mounts below it, if the kernel allows.
    Proc,
}

/// What the child needs, written to a file for it.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChildConfig {
    /// What runs, for messages: `runAsRoot` or `fakeRootCommands`.
    what: String,
    /// With `chroot`, the root to chroot into; without, the directory
    /// the script runs in, with the builder's root.
    root: PathBuf,
    chroot: bool,
    mounts: Vec<Mount>,
    shell: String,
    script: String,
    /// Variables set for the shell. With `chroot` they are its whole
    /// environment, after `PATH` and `HOME`; without, they are added to
    /// the builder's.
    env: BTreeMap<String, String>,
    identity: bool,
    /// Where the supervisor of chown calls writes its record, in the
    /// single-id mapping.
    owners: Option<PathBuf>,
    /// The base's owners that extraction could not give, in the
    /// single-id mapping.
    #[serde(default)]
    base_owners: Vec<chown::BaseOwner>,
}

/// A root to run a script in, with the mounts it will get and the
/// mountpoints made for them.
pub struct Chroot {
    what: &'static str,
    root: PathBuf,
    chroot: bool,
    mounts: Vec<Mount>,
    env: BTreeMap<String, String>,
    /// Entries made in the root for mounts, in the order they were made.
    created: Vec<PathBuf>,
}

impl Chroot {
    /// `runAsRoot`: the script runs chrooted into `root`.
    pub fn new(root: &Path) -> Chroot {
        Chroot::named("runAsRoot", root)
    }

    /// A script named `what` in messages (`fakeRootCommands` with
    /// enableFakechroot) runs chrooted into `root`.
    pub fn named(what: &'static str, root: &Path) -> Chroot {
        Chroot {
            what,
            root: root.to_owned(),
            chroot: true,
            mounts: Vec::new(),
            env: BTreeMap::new(),
            created: Vec::new(),
        }
    }

    /// `fakeRootCommands`: the script runs as root in `dir`, with the
    /// builder's root and environment, so the store and the build
    /// directory are where the builder sees them.
    /// The store is mounted read-only over itself there: root in a
    /// namespace that maps every id could otherwise chown or chmod the
    /// host's store files through a symlink of the tree.
    pub fn in_place(what: &'static str, dir: &Path) -> Chroot {
        let store = std::env::var_os("NIX_STORE")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/nix/store"));
        Chroot {
            what,
            root: dir.to_owned(),
            chroot: false,
            // The tree itself may be in the store (Nix without a sandbox
            // builds an output in place): it stays writable.
            mounts: vec![
                Mount {
                    source: store.clone(),
                    target: store,
                    read_only: true,
                    writable: false,
                    recursive: true,
                    optional: false,
                },
                Mount {
                    source: dir.to_owned(),
                    target: dir.to_owned(),
                    read_only: false,
                    writable: true,
                    recursive: false,
                    optional: false,
                },
            ],
            env: BTreeMap::new(),
            created: Vec::new(),
        }
    }

    /// Sets a variable for the shell.
    pub fn env(&mut self, name: &str, value: &str) -> &mut Chroot {
        self.env.insert(name.to_owned(), value.to_owned());
        self
    }

    /// Makes `source` visible at `inside` (an absolute path in the root)
    /// while the script runs. Where the root has an entry there already,
    /// a store path is left as the root has it, and anything else
    /// (`/dev/null`, `/proc`) is mounted over it unless it is a symlink.
    /// The mountpoint and the directories above it are made where missing;
    /// a symlink on the way is refused, as it could lead out of the root.
    pub fn bind(&mut self, source: &Path, inside: &str, mode: Bind) -> Result<()> {
        let rel = Path::new(inside.trim_start_matches('/'));
        let mut dir = self.root.clone();
        let parents: Vec<Component> = rel
            .parent()
            .map_or(Vec::new(), |p| p.components().collect());
        for component in parents {
            dir.push(component);
            match fs::symlink_metadata(&dir) {
                Ok(md) if md.is_dir() => {}
                Ok(_) => bail!(
                    "{}: /{} in the image root is not a directory, so {} cannot be mounted at {inside}",
                    self.what,
                    dir.strip_prefix(&self.root).unwrap_or(&dir).display(),
                    source.display()
                ),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
                    self.created.push(dir.clone());
                }
                Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
            }
        }
        let target = self.root.join(rel);
        match fs::symlink_metadata(&target) {
            Ok(_) if mode == Bind::StorePath => return Ok(()),
            Ok(md) if md.file_type().is_symlink() => return Ok(()),
            Ok(_) => {}
            Err(_) => {
                if source.is_dir() {
                    fs::create_dir(&target)
                } else {
                    fs::File::create(&target).map(drop)
                }
                .with_context(|| format!("creating {}", target.display()))?;
                self.created.push(target.clone());
            }
        }
        self.mounts.push(Mount {
            source: source.to_owned(),
            target,
            read_only: mode == Bind::StorePath,
            writable: false,
            recursive: mode == Bind::Proc,
            optional: mode == Bind::Proc,
        });
        Ok(())
    }

    /// Removes the mountpoints and the directories made for them; a
    /// directory the script put something in stays.
    pub fn remove_mountpoints(&mut self) -> Result<()> {
        while let Some(path) = self.created.pop() {
            let removed = match fs::symlink_metadata(&path) {
                Ok(md) if md.is_dir() => fs::remove_dir(&path),
                Ok(_) => fs::remove_file(&path),
                Err(e) => Err(e),
            };
            match removed {
                Ok(()) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::NotFound | io::ErrorKind::DirectoryNotEmpty
                    ) => {}
                Err(e) => return Err(e).with_context(|| format!("removing {}", path.display())),
            }
        }
        Ok(())
    }

    /// Runs `shell -e script` as root in the root; `config` is a file
    /// name for the child's instructions, outside the root (and, with
    /// `.owners` added, for the record of chown calls). Returns the owners
    /// the script gave with chown where the namespace could not (empty in
    /// the identity mapping, where it can), and `base_owners`, those
    /// extraction could not give, where the script left them.
    pub fn run(
        &self,
        config: &Path,
        shell: &str,
        script: &str,
        mapping: IdMapping,
        base_owners: Vec<chown::BaseOwner>,
    ) -> Result<Owners> {
        let identity = mapping == IdMapping::Identity;
        let owners_file = {
            let mut name = config.as_os_str().to_owned();
            name.push(".owners");
            PathBuf::from(name)
        };
        let what = self.what;
        let child_config = ChildConfig {
            what: what.to_owned(),
            root: self.root.clone(),
            chroot: self.chroot,
            mounts: self.mounts.clone(),
            shell: shell.to_owned(),
            script: script.to_owned(),
            env: self.env.clone(),
            identity,
            owners: (!identity).then(|| owners_file.clone()),
            base_owners: if identity { Vec::new() } else { base_owners },
        };
        fs::write(config, serde_json::to_vec(&child_config)?)
            .with_context(|| format!("writing {}", config.display()))?;
        let (mut status_reader, status_writer) =
            io::pipe().with_context(|| format!("making a pipe for the {what} namespace"))?;
        let status_fd = status_writer.as_raw_fd();
        let exe = std::env::current_exe().context("finding the stevedore binary")?;
        let mut cmd = Command::new(exe);
        cmd.arg("nix-builder")
            .arg("--in-namespace")
            .arg(config)
            .arg("--status-fd")
            .arg(status_fd.to_string())
            .stdin(Stdio::piped());
        // SAFETY: fcntl is async-signal-safe, and nothing here allocates.
        unsafe {
            cmd.pre_exec(move || {
                // The child keeps the status pipe until it executes the
                // shell.
                if libc::fcntl(status_fd, libc::F_SETFD, 0) == -1 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting the {what} namespace"))?;
        drop(status_writer);
        let mut stdin = child.stdin.take().expect("piped stdin");
        let mut first = [0u8; 1];
        let mut message = Vec::new();
        match status_reader.read(&mut first) {
            Ok(1) if first == READY => {
                if let Err(e) = write_id_maps(child.id(), mapping) {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(e).with_context(|| {
                        format!("{what}: writing the id maps of its user namespace")
                    });
                }
                // A child that died already fails below with its own
                // message.
                let _ = stdin.write_all(b"1");
            }
            Ok(1) => message.push(first[0]),
            _ => {}
        }
        drop(stdin);
        let _ = status_reader.read_to_end(&mut message);
        let status = child
            .wait()
            .with_context(|| format!("waiting for {what}"))?;
        // What the script left running is killed and reaped.
        super::orphans::end();
        let message = String::from_utf8_lossy(&message);
        let message = message.trim_end();
        if !message.is_empty() {
            let sysctls = Sysctls::read();
            if message.contains("Operation not permitted")
                && sysctls.apparmor_restrict_unprivileged_userns == Some(1)
                && !message.contains("apparmor")
            {
                bail!("{message}; {}", APPARMOR_HINT);
            }
            bail!("{message}");
        }
        // The supervisor's own failure comes first: it ended the script.
        let owners = if identity {
            Ok(Owners::new())
        } else {
            match fs::read(&owners_file) {
                Ok(bytes) => chown::read_report(&bytes),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Owners::new()),
                Err(e) => Err(e).with_context(|| format!("reading {}", owners_file.display())),
            }
        };
        let owners = owners?;
        if !status.success() {
            bail!("{what} failed ({})", describe(status));
        }
        Ok(owners)
    }
}

/// What the child sends once it is in its namespace.
const READY: [u8; 1] = *b"u";

/// `exit status N` or `killed by signal N`.
fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        (None, None) => status.to_string(),
    }
}

fn write_id_maps(pid: u32, mapping: IdMapping) -> io::Result<()> {
    let proc = PathBuf::from(format!("/proc/{pid}"));
    match mapping {
        IdMapping::Identity => {
            fs::write(proc.join("uid_map"), format!("0 0 {IDS}\n"))?;
            fs::write(proc.join("gid_map"), format!("0 0 {IDS}\n"))
        }
        IdMapping::BuildUser { uid, gid } => {
            // Without it an unprivileged process may not map a group.
            match fs::write(proc.join("setgroups"), "deny") {
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                other => other?,
            }
            fs::write(proc.join("uid_map"), format!("0 {uid} 1\n"))?;
            fs::write(proc.join("gid_map"), format!("0 {gid} 1\n"))
        }
    }
}

/// The kernel settings that decide whether a user namespace can be made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sysctls {
    /// `user.max_user_namespaces`: 0 turns them off for everyone.
    pub max_user_namespaces: Option<u64>,
    /// Debian's older `kernel.unprivileged_userns_clone`: 0 turns them off
    /// for users other than root.
    pub unprivileged_userns_clone: Option<u64>,
    /// Ubuntu's `kernel.apparmor_restrict_unprivileged_userns`: 1 leaves
    /// unconfined users a namespace without capabilities.
    pub apparmor_restrict_unprivileged_userns: Option<u64>,
}

impl Sysctls {
    pub fn read() -> Sysctls {
        let read = |file: &str| {
            fs::read_to_string(file)
                .ok()
                .and_then(|s| s.trim().parse().ok())
        };
        Sysctls {
            max_user_namespaces: read("/proc/sys/user/max_user_namespaces"),
            unprivileged_userns_clone: read("/proc/sys/kernel/unprivileged_userns_clone"),
            apparmor_restrict_unprivileged_userns: read(
                "/proc/sys/kernel/apparmor_restrict_unprivileged_userns",
            ),
        }
    }
}

const APPARMOR_HINT: &str = "AppArmor restricts unprivileged user namespaces here: set kernel.apparmor_restrict_unprivileged_userns=0 (sysctl -w), or build as root";

/// The one line that says why no user namespace could be made and which
/// setting changes it.
pub fn no_namespace_message(what: &str, err: &io::Error, sysctls: &Sysctls) -> String {
    let fix = if sysctls.max_user_namespaces == Some(0) {
        "user namespaces are turned off: set user.max_user_namespaces to a positive number (sysctl -w user.max_user_namespaces=10000)".to_owned()
    } else if sysctls.unprivileged_userns_clone == Some(0) {
        "user namespaces are turned off for users other than root: set kernel.unprivileged_userns_clone=1 (sysctl -w), or build as root".to_owned()
    } else if sysctls.apparmor_restrict_unprivileged_userns == Some(1) {
        APPARMOR_HINT.to_owned()
    } else if matches!(err.raw_os_error(), Some(libc::ENOSPC | libc::EUSERS)) {
        "the limit of user namespaces is reached: raise user.max_user_namespaces (sysctl -w)"
            .to_owned()
    } else {
        "no kernel setting forbids them, so a seccomp filter may (a container runtime's): allow unshare there, or build outside the container".to_owned()
    };
    format!("{what} needs a user namespace, and unshare(CLONE_NEWUSER) failed ({err}); {fix}")
}

/// The child's side: `stevedore nix-builder --in-namespace CONFIG
/// --status-fd FD`. Never returns: it executes the shell, or sends what
/// went wrong on the status pipe and exits.
pub fn child(config_path: &Path, status_fd: RawFd) -> ! {
    fn fail(status: &mut fs::File, message: String) -> ! {
        let _ = status.write_all(message.as_bytes());
        std::process::exit(1)
    }
    // SAFETY: the parent passed this descriptor open for writing.
    let mut status = unsafe { fs::File::from_raw_fd(status_fd) };
    let config = match read_config(config_path) {
        Ok(config) => config,
        Err(e) => fail(&mut status, format!("{e:#}")),
    };
    let what = config.what.clone();
    // SAFETY: no pointers; this process has one thread, as unshare needs.
    if unsafe { libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNS) } != 0 {
        let err = io::Error::last_os_error();
        let message = match err.raw_os_error() {
            Some(libc::EPERM | libc::EINVAL | libc::ENOSPC | libc::EUSERS) => {
                no_namespace_message(&what, &err, &Sysctls::read())
            }
            _ => format!("{what}: unshare(CLONE_NEWUSER | CLONE_NEWNS) failed: {err}"),
        };
        fail(&mut status, message);
    }
    if status.write_all(&READY).is_err() {
        std::process::exit(1);
    }
    let mut go = [0u8; 1];
    if io::stdin().read_exact(&mut go).is_err() {
        // The parent could not map the namespace and said so.
        std::process::exit(1);
    }
    let (mut shell, supervision) = match enter(config) {
        Ok(entered) => entered,
        Err(e) => fail(&mut status, format!("{e:#}")),
    };
    // SAFETY: a descriptor this process owns.
    unsafe { libc::fcntl(status_fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    if let Some(setup) = supervision {
        // Returns in the process that executes the shell.
        if let Err(e) = chown::fork_supervisor(setup, status_fd) {
            fail(&mut status, format!("{e:#}"));
        }
    }
    let program = shell.get_program().to_string_lossy().into_owned();
    let err = shell.exec();
    fail(
        &mut status,
        format!("{what}: running the shell {program}: {err}"),
    )
}

fn read_config(config_path: &Path) -> Result<ChildConfig> {
    let text =
        fs::read(config_path).with_context(|| format!("reading {}", config_path.display()))?;
    serde_json::from_slice(&text)
        .with_context(|| format!("{}: not a namespace configuration", config_path.display()))
}

fn cstring(path: &Path) -> Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .with_context(|| format!("{}: a path with a NUL byte", path.display()))
}

fn check(ret: libc::c_int, what: impl FnOnce() -> String) -> Result<()> {
    if ret != 0 {
        bail!("{}: {}", what(), io::Error::last_os_error());
    }
    Ok(())
}

/// Becomes root, mounts, chroots; returns the shell to execute, and what
/// the supervisor of chown calls needs from outside the root when there
/// is to be one.
fn enter(config: ChildConfig) -> Result<(Command, Option<chown::Setup>)> {
    let what = config.what.as_str();
    let supervision = match &config.owners {
        Some(file) => Some(chown::Setup::open(file, config.base_owners.clone())?),
        None => None,
    };
    let check = |ret, step: &dyn Fn() -> String| check(ret, || format!("{what}: {}", step()));
    // SAFETY: plain system calls on values owned here.
    unsafe {
        if config.identity {
            check(libc::setgroups(0, std::ptr::null()), &|| {
                "dropping supplementary groups".into()
            })?;
        }
        check(libc::setresgid(0, 0, 0), &|| "becoming gid 0".into())?;
        check(libc::setresuid(0, 0, 0), &|| "becoming uid 0".into())?;
        // Nothing mounted here may reach the build's namespace.
        check(
            libc::mount(
                std::ptr::null(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ),
            &|| "making the mounts of its namespace private".into(),
        )?;
    }
    for m in &config.mounts {
        bind_mount(m).with_context(|| what.to_owned())?;
    }
    let root = cstring(&config.root)?;
    if !config.chroot {
        // SAFETY: a C string owned here.
        check(unsafe { libc::chdir(root.as_ptr()) }, &|| {
            format!("chdir to {}", config.root.display())
        })?;
        let mut cmd = Command::new(&config.shell);
        cmd.arg("-e").arg(&config.script).envs(&config.env);
        return Ok((cmd, supervision));
    }
    // SAFETY: plain system calls on values owned here.
    unsafe {
        check(libc::chroot(root.as_ptr()), &|| {
            format!("chroot to {}", config.root.display())
        })?;
        check(libc::chdir(c"/".as_ptr()), &|| "chdir to /".into())?;
    }
    if fs::metadata(&config.shell).is_err() {
        bail!(
            "{what}: the shell {} is not in the image root; add a shell to contents (such as busybox or bash), or import the library with a shell from the store (shell = \"${{pkgs.runtimeShell}}\")",
            config.shell
        );
    }
    let mut cmd = Command::new(&config.shell);
    cmd.arg("-e")
        .arg(&config.script)
        .env_clear()
        .env("PATH", SCRIPT_PATH)
        .env("HOME", "/root")
        .envs(&config.env)
        .current_dir("/");
    Ok((cmd, supervision))
}

fn bind_mount(m: &Mount) -> Result<()> {
    let source = cstring(&m.source)?;
    let target = cstring(&m.target)?;
    let mut flags = libc::MS_BIND;
    if m.recursive {
        flags |= libc::MS_REC;
    }
    // SAFETY: C strings owned here.
    let ret = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            std::ptr::null(),
            flags,
            std::ptr::null(),
        )
    };
    if ret != 0 {
        if m.optional {
            return Ok(());
        }
        check(ret, || {
            format!("mounting {} at {}", m.source.display(), m.target.display())
        })?;
    }
    if m.read_only || m.writable {
        remount(&m.target, m.read_only)?;
    }
    if m.read_only && m.recursive {
        // A remount changes one mount: those below it (the store paths
        // the Nix sandbox mounts one by one) each get their own.
        for below in mounts_below(&m.target)? {
            remount(&below, true)?;
        }
    }
    Ok(())
}

/// Makes the mount at `target` read-only or writable, keeping the flags
/// the kernel locks in a user namespace (nosuid, nodev, ...), which a
/// remount must repeat.
fn remount(target: &Path, read_only: bool) -> Result<()> {
    let c_target = cstring(target)?;
    // SAFETY: a zeroed statvfs is valid, and filled by the call.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    check(unsafe { libc::statvfs(c_target.as_ptr(), &mut st) }, || {
        format!("reading the mount at {}", target.display())
    })?;
    let locked = [
        (libc::ST_NOSUID, libc::MS_NOSUID),
        (libc::ST_NODEV, libc::MS_NODEV),
        (libc::ST_NOEXEC, libc::MS_NOEXEC),
        (libc::ST_NOATIME, libc::MS_NOATIME),
        (libc::ST_NODIRATIME, libc::MS_NODIRATIME),
        (libc::ST_RELATIME, libc::MS_RELATIME),
    ]
    .into_iter()
    .filter(|(st_flag, _)| st.f_flag & st_flag != 0)
    .fold(0, |acc, (_, ms)| acc | ms);
    let rdonly = if read_only { libc::MS_RDONLY } else { 0 };
    // SAFETY: C strings owned here.
    let ret = unsafe {
        libc::mount(
            std::ptr::null(),
            c_target.as_ptr(),
            std::ptr::null(),
            libc::MS_BIND | libc::MS_REMOUNT | rdonly | locked,
            std::ptr::null(),
        )
    };
    check(ret, || {
        format!(
            "making {} {}",
            target.display(),
            if read_only { "read-only" } else { "writable" }
        )
    })
}

/// The mount points strictly below `dir`, from `/proc/self/mountinfo`.
fn mounts_below(dir: &Path) -> Result<Vec<PathBuf>> {
    let text =
        fs::read_to_string("/proc/self/mountinfo").context("reading /proc/self/mountinfo")?;
    Ok(text
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|field| PathBuf::from(unescape_mountinfo(field)))
        .filter(|point| point != dir && point.starts_with(dir))
        .collect())
}

/// A mountinfo field with its octal escapes (`\040` for a space) undone.
fn unescape_mountinfo(field: &str) -> std::ffi::OsString {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|d| {
            let d = std::str::from_utf8(d).ok()?;
            u8::from_str_radix(d, 8).ok()
        });
        match (bytes[i], octal) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    std::os::unix::ffi::OsStringExt::from_vec(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eperm() -> io::Error {
        io::Error::from_raw_os_error(libc::EPERM)
    }

    #[test]
    fn turned_off_namespaces_name_max_user_namespaces() {
        let s = Sysctls {
            max_user_namespaces: Some(0),
            unprivileged_userns_clone: Some(1),
            apparmor_restrict_unprivileged_userns: None,
        };
        let m = no_namespace_message("runAsRoot", &io::Error::from_raw_os_error(libc::ENOSPC), &s);
        assert!(
            m.starts_with("runAsRoot needs a user namespace, and unshare(CLONE_NEWUSER) failed ("),
            "{m}"
        );
        assert!(
            m.contains("set user.max_user_namespaces to a positive number"),
            "{m}"
        );
        assert!(!m.contains('\n'));
    }

    #[test]
    fn debian_switch_names_unprivileged_userns_clone() {
        let s = Sysctls {
            max_user_namespaces: Some(15000),
            unprivileged_userns_clone: Some(0),
            apparmor_restrict_unprivileged_userns: None,
        };
        let m = no_namespace_message("runAsRoot", &eperm(), &s);
        assert!(m.contains("set kernel.unprivileged_userns_clone=1"), "{m}");
        assert!(m.contains("Operation not permitted"), "{m}");
    }

    #[test]
    fn ubuntu_names_the_apparmor_restriction() {
        let s = Sysctls {
            max_user_namespaces: Some(15000),
            unprivileged_userns_clone: Some(1),
            apparmor_restrict_unprivileged_userns: Some(1),
        };
        let m = no_namespace_message("runAsRoot", &eperm(), &s);
        assert!(
            m.contains("set kernel.apparmor_restrict_unprivileged_userns=0"),
            "{m}"
        );
    }

    #[test]
    fn a_full_count_and_an_unknown_cause_are_told_apart() {
        let s = Sysctls {
            max_user_namespaces: Some(15000),
            ..Sysctls::default()
        };
        let full =
            no_namespace_message("runAsRoot", &io::Error::from_raw_os_error(libc::ENOSPC), &s);
        assert!(full.contains("raise user.max_user_namespaces"), "{full}");
        let other = no_namespace_message("runAsRoot", &eperm(), &s);
        assert!(other.contains("seccomp"), "{other}");
    }

    #[test]
    fn identity_needs_the_first_65536_ids() {
        assert!(map_covers_first_ids("         0          0 4294967295\n"));
        assert!(map_covers_first_ids("0 100000 65536\n"));
        assert!(!map_covers_first_ids("1000 1000 1\n"));
        assert!(!map_covers_first_ids("0 1000 1\n1 100000 65535\n"));
    }

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(unescape_mountinfo("/nix/store"), "/nix/store");
        assert_eq!(unescape_mountinfo("/a\\040b\\011c"), "/a b\tc");
        assert_eq!(unescape_mountinfo("/a\\x"), "/a\\x");
    }

    #[test]
    fn ids_seen_inside() {
        let single = IdMapping::BuildUser {
            uid: 1000,
            gid: 100,
        };
        assert_eq!(single.inside(1000, 100), (0, 0));
        assert_eq!(single.inside(0, 0), (OVERFLOW_ID, OVERFLOW_ID));
        assert_eq!(IdMapping::Identity.inside(1000, 1001), (1000, 1001));
        assert_eq!(IdMapping::Identity.inside(70000, 0), (OVERFLOW_ID, 0));
    }
}
