//! `chown` and `stat` in a namespace that maps one id: the calls are
//! answered by a supervisor that records the owners chown asks for and
//! shows them to stat, and the layer takes its owners from that record.
//!
//! Where the builder is a single mapped uid (a Nix build user, the Nix
//! sandbox), the script's namespace can map only `0 <uid> 1`, and a real
//! `chown` to any other id fails with EINVAL. Instead, just before the
//! shell is executed, its process forks: the new process installs a
//! seccomp filter that sends `chown`, `fchown`, `lchown`, `fchownat` and
//! the stat family (`stat`, `fstat`, `lstat`, `newfstatat`, `statx`;
//! those the architecture has) to a listener (`SECCOMP_RET_USER_NOTIF`,
//! Linux 5.0) and allows every other call, hands the listener to the old
//! process over a socket (`SCM_RIGHTS`), and executes the shell, which
//! with everything it starts inherits the filter. The old process is the
//! supervisor; it is not under the filter, so its own stat calls do not
//! wait for itself. Being in the kernel, this covers static binaries
//! (busybox) as well as dynamic ones, which an `LD_PRELOAD` fakeroot
//! would not.
//!
//! For each chown call the supervisor reads the path from the caller's
//! memory (`/proc/PID/mem`, then checks that the notification is still
//! valid, as seccomp_unotify(2) says), finds the object as the kernel
//! would (an absolute path in the root both share, a relative one from
//! `/proc/PID/cwd` or `/proc/PID/fd/N`, following the last symlink or
//! not, `AT_EMPTY_PATH`) through `/proc` opened before `chroot`, and
//! records `(st_dev, st_ino) -> (uid, gid)`, where `-1` keeps what an
//! earlier call recorded. It answers success, or the error the real call
//! would give: those of the lookup (ENOENT, ENOTDIR, ELOOP, ...), EROFS
//! on a read-only mount (the store paths), EINVAL for an id the identity
//! map would not have (65536 and above), EPERM for an object whose owner
//! is not mapped (the host's `/dev/null`). As a real `chown` does, it
//! clears the setuid bit, and the setgid bit of a group-executable file,
//! of what is not a directory. The owner on disk does not change.
//!
//! A stat call's object is found the same way. When it has a recorded
//! owner, the supervisor makes the call itself, puts that owner in the
//! result and writes the result into the caller's buffer; otherwise, and
//! whenever the lookup fails, it lets the kernel make the call
//! (`SECCOMP_USER_NOTIF_FLAG_CONTINUE`, Linux 5.5; older kernels get no
//! stat calls in the filter). So the script sees the owners it gave, and
//! tools that keep an owner by reading it first (`chgrp`, `chown :g`,
//! `sed -i`, `cp -p`) keep the recorded one rather than root. The record
//! starts with the owners of the base image that extraction as the build
//! user could not give ([`BaseOwner`]), so a file of the base that the
//! script changes keeps its owner in the layer, and the script sees it.
//!
//! Limits: calls through another ABI (32-bit programs) are not sent to
//! the supervisor: their chown fails as before and their stat shows root;
//! paths are resolved in the supervisor's root, so a script that chroots
//! again has its absolute paths (and `..` above its new root) looked up
//! in the image root.
//!
//! The supervisor keeps an `O_PATH` descriptor of every inode it records,
//! so that a recorded file the script deletes cannot free its inode number
//! for a new file while the script runs; those whose link count is 0 at
//! the end (deleted) are left out of the record. When the shell exits, the
//! record is written as JSON to a file opened before `chroot`, and the
//! supervisor exits with the shell's status. The builder reads the record
//! and gives every recorded inode the recorded owner in the layer; those
//! whose owner differs from the lower layer's are changes.
//!
//! Written by hand on `libc`: no maintained crate supervises seccomp user
//! notifications in this shape (a filter installed by the process it
//! watches just before it executes the shell, answered through `/proc`
//! opened before `chroot`); `libc` has the structures, the ioctls and the
//! BPF opcodes, and the constants it lacks (`AUDIT_ARCH_*`,
//! `__X32_SYSCALL_BIT`) are defined below.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::FileExt;
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

/// The owner a chown asked for: `None` keeps the one the entry has.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Owner {
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

impl Owner {
    /// `self`, then `later` on top of it.
    fn then(self, later: Owner) -> Owner {
        Owner {
            uid: later.uid.or(self.uid),
            gid: later.gid.or(self.gid),
        }
    }
}

/// Recorded owners by `(st_dev, st_ino)`.
pub type Owners = BTreeMap<(u64, u64), Owner>;

/// One recorded inode, as written to the record file.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
struct Recorded {
    dev: u64,
    ino: u64,
    uid: Option<u32>,
    gid: Option<u32>,
}

/// What the supervisor leaves: the owners, or why it gave up.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Report {
    error: Option<String>,
    owners: Vec<Recorded>,
}

fn report_bytes(result: &Result<Owners, String>) -> Vec<u8> {
    let report = match result {
        Ok(owners) => Report {
            error: None,
            owners: owners
                .iter()
                .map(|(&(dev, ino), o)| Recorded {
                    dev,
                    ino,
                    uid: o.uid,
                    gid: o.gid,
                })
                .collect(),
        },
        Err(e) => Report {
            error: Some(e.clone()),
            owners: Vec::new(),
        },
    };
    serde_json::to_vec(&report).expect("a report serialises")
}

/// Reads what the supervisor wrote; an empty file (no supervisor, as on
/// an architecture without a filter) records nothing. An error the
/// supervisor met is returned as the error.
pub fn read_report(bytes: &[u8]) -> Result<Owners> {
    if bytes.is_empty() {
        return Ok(Owners::new());
    }
    let report: Report = serde_json::from_slice(bytes)
        .context("chown supervisor: reading the record of chown calls")?;
    if let Some(e) = report.error {
        bail!("{e}");
    }
    Ok(report
        .owners
        .into_iter()
        .map(|r| {
            (
                (r.dev, r.ino),
                Owner {
                    uid: r.uid,
                    gid: r.gid,
                },
            )
        })
        .collect())
}

/// The ids a call may name, as the identity map has them.
const IDS: u32 = 65536;

// ---------------------------------------------------------------------------
// The calls and where their objects are.

/// A call the supervisor answers: the chown family, which it records,
/// and the stat family, whose owners it gives as recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Call {
    Chown,
    Fchown,
    Lchown,
    Fchownat,
    Stat,
    Fstat,
    Lstat,
    /// `newfstatat` (`fstatat` of the C library).
    Fstatat,
    Statx,
}

impl Call {
    fn is_stat(self) -> bool {
        matches!(
            self,
            Call::Stat | Call::Fstat | Call::Lstat | Call::Fstatat | Call::Statx
        )
    }
}

/// `AUDIT_ARCH_X86_64` (linux/audit.h: `EM_X86_64 | __AUDIT_ARCH_64BIT |
/// __AUDIT_ARCH_LE`), which `libc` does not define.
#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: Option<u32> = Some(62 | 0x8000_0000 | 0x4000_0000);
/// `AUDIT_ARCH_AARCH64` (`EM_AARCH64 | __AUDIT_ARCH_64BIT |
/// __AUDIT_ARCH_LE`), which `libc` does not define.
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: Option<u32> = Some(183 | 0x8000_0000 | 0x4000_0000);
/// Other architectures get no filter: chown fails as it always has.
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const AUDIT_ARCH: Option<u32> = None;

/// `__X32_SYSCALL_BIT`: x32 programs call the same numbers with it set,
/// under the x86_64 audit arch.
#[cfg(target_arch = "x86_64")]
const X32_BIT: u32 = 0x4000_0000;

/// The calls of this architecture by number: chown's, and with `stat`
/// the stat family's. x32 programs have their chown calls answered; their
/// stat calls go to the kernel (their `struct stat` is another).
#[cfg(target_arch = "x86_64")]
fn calls(stat: bool) -> Vec<(u32, Call)> {
    let native = [
        (libc::SYS_chown as u32, Call::Chown),
        (libc::SYS_fchown as u32, Call::Fchown),
        (libc::SYS_lchown as u32, Call::Lchown),
        (libc::SYS_fchownat as u32, Call::Fchownat),
    ];
    let stats = [
        (libc::SYS_stat as u32, Call::Stat),
        (libc::SYS_fstat as u32, Call::Fstat),
        (libc::SYS_lstat as u32, Call::Lstat),
        (libc::SYS_newfstatat as u32, Call::Fstatat),
        (libc::SYS_statx as u32, Call::Statx),
    ];
    native
        .into_iter()
        .chain(native.into_iter().map(|(nr, c)| (nr | X32_BIT, c)))
        .chain(stats.into_iter().filter(|_| stat))
        .collect()
}

/// The calls of this architecture by number (aarch64 has no `chown`,
/// `lchown`, `stat` or `lstat`: C libraries call the `at` forms).
#[cfg(target_arch = "aarch64")]
fn calls(stat: bool) -> Vec<(u32, Call)> {
    let stats = [
        (libc::SYS_fstat as u32, Call::Fstat),
        (libc::SYS_newfstatat as u32, Call::Fstatat),
        (libc::SYS_statx as u32, Call::Statx),
    ];
    [
        (libc::SYS_fchown as u32, Call::Fchown),
        (libc::SYS_fchownat as u32, Call::Fchownat),
    ]
    .into_iter()
    .chain(stats.into_iter().filter(|_| stat))
    .collect()
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn calls(_stat: bool) -> Vec<(u32, Call)> {
    Vec::new()
}

fn call_of(nr: i32) -> Option<Call> {
    calls(true)
        .into_iter()
        .find(|&(n, _)| n as i32 == nr)
        .map(|(_, c)| c)
}

/// Whether the kernel lets a notified call go on as if unfiltered
/// (`SECCOMP_USER_NOTIF_FLAG_CONTINUE`, Linux 5.5), which the stat calls
/// need for every object that has no recorded owner.
fn kernel_continues_calls() -> bool {
    // SAFETY: a zeroed utsname is valid, and filled by the call.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: a struct owned here.
    if unsafe { libc::uname(&mut uts) } != 0 {
        return false;
    }
    // SAFETY: the kernel NUL-terminates the release.
    let release = unsafe { std::ffi::CStr::from_ptr(uts.release.as_ptr()) };
    release_at_least(&release.to_string_lossy(), (5, 5))
}

/// Whether a kernel release (`6.1.0-13-amd64`) is at least `major.minor`.
fn release_at_least(release: &str, want: (u32, u32)) -> bool {
    let mut parts = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|n| n.parse::<u32>().unwrap_or(0));
    let major = parts.next().unwrap_or(0);
    let minor = parts.next().unwrap_or(0);
    (major, minor) >= want
}

/// A call's arguments, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    pub call: Call,
    /// The descriptor of `fchown` and `fstat`, or the directory of the
    /// `at` calls (`AT_FDCWD`).
    pub fd: i32,
    /// Where the path is in the caller's memory.
    pub path_addr: Option<u64>,
    pub owner: Owner,
    pub flags: i32,
    /// Where a stat call's result goes in the caller's memory.
    pub buf: u64,
    /// `statx`'s mask.
    pub mask: u32,
}

impl Request {
    pub fn decode(call: Call, args: [u64; 6]) -> Request {
        // The kernel takes ints and ids as 32-bit values.
        let int = |a: u64| a as u32 as i32;
        let id = |a: u64| Some(a as u32).filter(|&i| i != u32::MAX);
        let owner = |u: u64, g: u64| Owner {
            uid: id(u),
            gid: id(g),
        };
        let request = Request {
            call,
            fd: libc::AT_FDCWD,
            path_addr: None,
            owner: Owner::default(),
            flags: 0,
            buf: 0,
            mask: 0,
        };
        match call {
            Call::Chown | Call::Lchown => Request {
                path_addr: Some(args[0]),
                owner: owner(args[1], args[2]),
                ..request
            },
            Call::Fchown => Request {
                fd: int(args[0]),
                owner: owner(args[1], args[2]),
                ..request
            },
            Call::Fchownat => Request {
                fd: int(args[0]),
                path_addr: Some(args[1]),
                owner: owner(args[2], args[3]),
                flags: int(args[4]),
                ..request
            },
            Call::Stat | Call::Lstat => Request {
                path_addr: Some(args[0]),
                buf: args[1],
                ..request
            },
            Call::Fstat => Request {
                fd: int(args[0]),
                buf: args[1],
                ..request
            },
            Call::Fstatat => Request {
                fd: int(args[0]),
                path_addr: Some(args[1]),
                buf: args[2],
                flags: int(args[3]),
                ..request
            },
            Call::Statx => Request {
                fd: int(args[0]),
                path_addr: Some(args[1]),
                flags: int(args[2]),
                mask: args[3] as u32,
                buf: args[4],
                ..request
            },
        }
    }
}

/// Where a lookup starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Base {
    /// The root the supervisor and the script share: the path is absolute.
    Root,
    /// The `/proc` opened before `chroot`: the path starts `PID/`.
    Proc,
}

/// The object of a call, as a path to open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub base: Base,
    pub path: Vec<u8>,
    /// Whether a symlink at the end is followed.
    pub follow: bool,
}

/// Where the object of `request`, made by process `pid` with `path` read
/// from its memory, is; or the errno the call fails with.
pub fn resolve(pid: u32, request: &Request, path: Option<&[u8]>) -> Result<Target, i32> {
    let proc = |rest: String, path: &[u8]| {
        let mut p = rest.into_bytes();
        if !path.is_empty() {
            p.push(b'/');
            p.extend_from_slice(path);
        }
        p
    };
    let dir = |fd: i32| {
        if fd == libc::AT_FDCWD {
            Ok(format!("{pid}/cwd"))
        } else if fd < 0 {
            Err(libc::EBADF)
        } else {
            Ok(format!("{pid}/fd/{fd}"))
        }
    };
    let lookup = |fd: i32, path: &[u8], follow: bool| {
        if path.is_empty() {
            return Err(libc::ENOENT);
        }
        Ok(if path[0] == b'/' {
            Target {
                base: Base::Root,
                path: path.to_vec(),
                follow,
            }
        } else {
            Target {
                base: Base::Proc,
                path: proc(dir(fd)?, path),
                follow,
            }
        })
    };
    let path = path.unwrap_or_default();
    match request.call {
        Call::Chown | Call::Stat => lookup(libc::AT_FDCWD, path, true),
        Call::Lchown | Call::Lstat => lookup(libc::AT_FDCWD, path, false),
        Call::Fchown | Call::Fstat => {
            if request.fd < 0 {
                return Err(libc::EBADF);
            }
            Ok(Target {
                base: Base::Proc,
                path: dir(request.fd)?.into_bytes(),
                follow: true,
            })
        }
        Call::Fchownat | Call::Fstatat | Call::Statx => {
            let known = match request.call {
                Call::Fchownat => libc::AT_SYMLINK_NOFOLLOW | libc::AT_EMPTY_PATH,
                Call::Fstatat => {
                    libc::AT_SYMLINK_NOFOLLOW | libc::AT_EMPTY_PATH | libc::AT_NO_AUTOMOUNT
                }
                _ => {
                    libc::AT_SYMLINK_NOFOLLOW
                        | libc::AT_EMPTY_PATH
                        | libc::AT_NO_AUTOMOUNT
                        | libc::AT_STATX_SYNC_TYPE
                }
            };
            if request.flags & !known != 0 {
                return Err(libc::EINVAL);
            }
            if path.is_empty() && request.flags & libc::AT_EMPTY_PATH != 0 {
                // The descriptor's own object, a symlink included.
                return Ok(Target {
                    base: Base::Proc,
                    path: dir(request.fd)?.into_bytes(),
                    follow: true,
                });
            }
            lookup(
                request.fd,
                path,
                request.flags & libc::AT_SYMLINK_NOFOLLOW == 0,
            )
        }
    }
}

/// `PATH_MAX`, with the NUL.
const PATH_MAX: usize = 4096;

/// Reads the NUL-terminated path at `addr` in a process's memory, a page
/// at a time (the next page may not be mapped); EFAULT where it cannot be
/// read, ENAMETOOLONG without a NUL within `PATH_MAX`, as the kernel.
pub fn read_path(mem: &fs::File, addr: u64) -> Result<Vec<u8>, i32> {
    const PAGE: u64 = 4096;
    let mut path = Vec::new();
    let mut chunk = [0u8; PAGE as usize];
    let mut at = addr;
    while path.len() < PATH_MAX {
        let want = ((PAGE - at % PAGE) as usize).min(PATH_MAX - path.len());
        let n = match mem.read_at(&mut chunk[..want], at) {
            Ok(0) | Err(_) => return Err(libc::EFAULT),
            Ok(n) => n,
        };
        if let Some(nul) = chunk[..n].iter().position(|&b| b == 0) {
            path.extend_from_slice(&chunk[..nul]);
            return Ok(path);
        }
        path.extend_from_slice(&chunk[..n]);
        at += n as u64;
    }
    Err(libc::ENAMETOOLONG)
}

// ---------------------------------------------------------------------------
// The filter.

/// The BPF program: the chown calls `nrs` of `arch` go to the listener,
/// everything else is allowed.
fn program(arch: u32, nrs: &[u32]) -> Vec<libc::sock_filter> {
    let stmt = |code: u32, k: u32| libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    };
    let jeq = |k: u32, jt: usize, jf: usize| libc::sock_filter {
        code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
        jt: jt as u8,
        jf: jf as u8,
        k,
    };
    let load = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
    let n = nrs.len();
    // 0: arch, 1: jump, 2: nr, 3..3+n: jumps, 3+n: allow, 4+n: notify.
    // Jump offsets count from the next instruction.
    let mut p = vec![
        stmt(load, std::mem::offset_of!(libc::seccomp_data, arch) as u32),
        jeq(arch, 0, n + 1),
        stmt(load, std::mem::offset_of!(libc::seccomp_data, nr) as u32),
    ];
    for (k, &nr) in nrs.iter().enumerate() {
        p.push(jeq(nr, n - k, 0));
    }
    p.push(stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ALLOW));
    p.push(stmt(
        libc::BPF_RET | libc::BPF_K,
        libc::SECCOMP_RET_USER_NOTIF,
    ));
    p
}

/// Sets `no_new_privs` and installs the filter on this process; returns
/// the listener, or `None` on an architecture without one.
fn install_filter() -> io::Result<Option<OwnedFd>> {
    let Some(arch) = AUDIT_ARCH else {
        return Ok(None);
    };
    let nrs: Vec<u32> = calls(kernel_continues_calls())
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    let mut filter = program(arch, &nrs);
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_mut_ptr(),
    };
    // SAFETY: plain prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `prog` points at `filter`, both alive for the call, which
    // copies the program.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            libc::SECCOMP_FILTER_FLAG_NEW_LISTENER,
            &prog as *const libc::sock_fprog,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a new descriptor (close-on-exec).
    Ok(Some(unsafe { OwnedFd::from_raw_fd(fd as RawFd) }))
}

// ---------------------------------------------------------------------------
// The supervisor.

/// An entry of a base image whose owner the build user could not give it
/// when the base was extracted: the supervisor starts with it recorded,
/// so that the script sees it and the layer keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaseOwner {
    /// The path in the root, without a leading `/`.
    pub path: String,
    /// The inode it was extracted as: a path that `contents` replaced
    /// since is not the base's entry any more.
    pub dev: u64,
    pub ino: u64,
    pub uid: u32,
    pub gid: u32,
}

impl BaseOwner {
    /// The recorded owner, by inode.
    pub fn owner(&self) -> ((u64, u64), Owner) {
        (
            (self.dev, self.ino),
            Owner {
                uid: Some(self.uid),
                gid: Some(self.gid),
            },
        )
    }
}

/// What the supervisor needs from before `chroot`.
pub struct Setup {
    /// `/proc` as the builder sees it (`O_PATH`).
    pub proc_dir: OwnedFd,
    /// Where the record goes.
    pub report: fs::File,
    pub base_owners: Vec<BaseOwner>,
}

impl Setup {
    pub fn open(report: &Path, base_owners: Vec<BaseOwner>) -> Result<Setup> {
        let proc_dir = open_path(libc::AT_FDCWD, b"/proc", true)
            .map_err(io::Error::from_raw_os_error)
            .context("chown supervisor: opening /proc")?;
        let report = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(report)
            .with_context(|| format!("creating {}", report.display()))?;
        Ok(Setup {
            proc_dir,
            report,
            base_owners,
        })
    }
}

/// Forks; the new process installs the filter, hands its listener to
/// this one over a socket and returns, to run the shell. This process
/// becomes the supervisor, which is not under the filter (its own stat
/// calls would wait for itself): it answers the calls until the shell's
/// process exits, writes the record and exits with its status. On an
/// architecture without a filter it returns without a fork; on a kernel
/// without user notification (which is then named on standard error) it
/// only waits, and chown to another id fails as the namespace has it.
/// `status_fd` is closed in the supervisor.
pub fn fork_supervisor(setup: Setup, status_fd: RawFd) -> Result<()> {
    if AUDIT_ARCH.is_none() {
        return Ok(());
    }
    let (ours, theirs) = std::os::unix::net::UnixStream::pair()
        .context("chown supervisor: making a socket for the chown supervisor")?;
    // SAFETY: this process has one thread; both sides go on with their
    // own copies of what is here.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        bail!("chown supervisor: fork: {}", io::Error::last_os_error());
    }
    if pid == 0 {
        drop(ours);
        drop(setup);
        let listener = match install_filter() {
            Ok(listener) => listener,
            Err(e) => {
                eprintln!(
                    "stevedore: warning: chown supervisor: seccomp user notification is not available ({e}), so chown to ids other than 0 fails"
                );
                None
            }
        };
        send_fd(&theirs, listener.as_ref().map(AsRawFd::as_raw_fd))
            .context("chown supervisor: handing the seccomp listener to the supervisor")?;
        return Ok(());
    }
    drop(theirs);
    // SAFETY: the supervisor's copy of a descriptor it does not use; the
    // builder sees the pipe's end when the shell starts.
    unsafe { libc::close(status_fd) };
    let Setup {
        proc_dir,
        mut report,
        base_owners,
    } = setup;
    let result = match receive_fd(&ours) {
        Ok(Some(listener)) => Supervisor::new(listener, proc_dir, pid as u32, &base_owners)
            .and_then(|mut s| s.run())
            .map_err(|e| format!("{e:#}")),
        Ok(None) => wait_for(pid).map(|status| (Owners::new(), status)),
        Err(e) => Err(format!(
            "chown supervisor: receiving the seccomp listener: {e}"
        )),
    };
    let (owners, status) = match result {
        Ok((owners, status)) => (Ok(owners), Some(status)),
        Err(e) => {
            // SAFETY: plain kill and wait of the child this process made.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, std::ptr::null_mut(), 0);
            }
            (Err(e), None)
        }
    };
    if report
        .write_all(&report_bytes(&owners))
        .and_then(|()| report.flush())
        .is_err()
    {
        std::process::exit(1);
    }
    drop(report);
    exit_as(status)
}

/// Waits for a child; its wait status.
fn wait_for(pid: libc::pid_t) -> Result<libc::c_int, String> {
    loop {
        let mut status = 0;
        // SAFETY: waits for this process's own child.
        if unsafe { libc::waitpid(pid, &mut status, 0) } == pid {
            return Ok(status);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(format!("chown supervisor: waiting for the shell: {e}"));
        }
    }
}

/// Sends one byte over a Unix socket, with `fd` attached
/// (`SCM_RIGHTS`) when there is one.
fn send_fd(socket: &std::os::unix::net::UnixStream, fd: Option<RawFd>) -> io::Result<()> {
    let mut byte = [u8::from(fd.is_some())];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    // u64 words: aligned for a cmsghdr.
    let mut control = [0u64; 4];
    // SAFETY: a zeroed msghdr is valid; its pointers are set to buffers
    // owned here, which outlive the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if let Some(fd) = fd {
        // SAFETY: CMSG_SPACE is arithmetic; the control buffer holds one
        // header and one int, which the macros place within it.
        unsafe {
            let space = libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) as usize;
            assert!(space <= std::mem::size_of_val(&control));
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = space as _;
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as _;
            std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>(), fd);
        }
    }
    // SAFETY: a socket and a message owned here.
    if unsafe { libc::sendmsg(socket.as_raw_fd(), &msg, 0) } != 1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Receives what [`send_fd`] sent: the descriptor, or `None` when the
/// other side had none (or went away without a word).
fn receive_fd(socket: &std::os::unix::net::UnixStream) -> io::Result<Option<OwnedFd>> {
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    let mut control = [0u64; 4];
    // SAFETY: a zeroed msghdr is valid; its pointers are set to buffers
    // owned here, which outlive the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    let n = loop {
        // SAFETY: a socket and a message owned here.
        let n = unsafe { libc::recvmsg(socket.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n >= 0 {
            break n;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    };
    if n == 0 || byte[0] == 0 {
        return Ok(None);
    }
    // SAFETY: the kernel filled the control buffer; the macros walk it
    // within `msg_controllen`.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        if cmsg.is_null()
            || (*cmsg).cmsg_level != libc::SOL_SOCKET
            || (*cmsg).cmsg_type != libc::SCM_RIGHTS
        {
            return Err(io::Error::other("no descriptor came with the message"));
        }
        let fd = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>());
        Ok(Some(OwnedFd::from_raw_fd(fd)))
    }
}

/// Exits with the shell's wait status: its code, or the signal that
/// killed it.
fn exit_as(status: Option<libc::c_int>) -> ! {
    let Some(status) = status else {
        std::process::exit(1)
    };
    if libc::WIFSIGNALED(status) {
        let signal = libc::WTERMSIG(status);
        let no_core = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: plain calls; the default action ends this process.
        unsafe {
            libc::setrlimit(libc::RLIMIT_CORE, &no_core);
            libc::signal(signal, libc::SIG_DFL);
            libc::kill(libc::getpid(), signal);
        }
        std::process::exit(128 + signal);
    }
    std::process::exit(libc::WEXITSTATUS(status))
}

/// `openat(dir, path, O_PATH)`, following a last symlink or not.
fn open_path(dir: RawFd, path: &[u8], follow: bool) -> Result<OwnedFd, i32> {
    let c = CString::new(path).map_err(|_| libc::EINVAL)?;
    let mut flags = libc::O_PATH | libc::O_CLOEXEC;
    if !follow {
        flags |= libc::O_NOFOLLOW;
    }
    // SAFETY: a C string owned here.
    let fd = unsafe { libc::openat(dir, c.as_ptr(), flags) };
    if fd < 0 {
        return Err(errno());
    }
    // SAFETY: a new descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn errno() -> i32 {
    io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

fn fstat(fd: &OwnedFd) -> Result<libc::stat, i32> {
    // SAFETY: a zeroed stat is valid, and filled by the call.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: a descriptor owned here and a stat owned here.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
        return Err(errno());
    }
    Ok(st)
}

/// An inode recorded, kept open so its number is not reused while the
/// script runs.
struct Kept {
    owner: Owner,
    fd: Option<OwnedFd>,
}

struct Supervisor {
    listener: OwnedFd,
    proc_dir: OwnedFd,
    child: u32,
    /// `pidfd_open` of the child (Linux 5.3), else polled.
    pidfd: Option<OwnedFd>,
    /// Bytes for `struct seccomp_notif` and `seccomp_notif_resp` as this
    /// kernel has them (at least as `libc` has them), in 8-byte words.
    notif_words: usize,
    resp_words: usize,
    kept: BTreeMap<(u64, u64), Kept>,
    open_fds: usize,
    max_fds: usize,
    /// `/proc/PID/mem` of the processes whose stat calls were answered
    /// here, kept open: a stat-heavy command (`ls -lR`, `find`) makes
    /// thousands of calls.
    mems: BTreeMap<u32, fs::File>,
    /// How many records there were when deleted ones were last looked
    /// for ([`Supervisor::record`]).
    looked_at: usize,
}

impl Supervisor {
    fn new(
        listener: OwnedFd,
        proc_dir: OwnedFd,
        child: u32,
        base_owners: &[BaseOwner],
    ) -> Result<Supervisor> {
        let mut sizes = libc::seccomp_notif_sizes {
            seccomp_notif: 0,
            seccomp_notif_resp: 0,
            seccomp_data: 0,
        };
        // SAFETY: the call fills `sizes`.
        if unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_GET_NOTIF_SIZES,
                0,
                &mut sizes as *mut libc::seccomp_notif_sizes,
            )
        } != 0
        {
            bail!(
                "chown supervisor: reading seccomp notification sizes: {}",
                io::Error::last_os_error()
            );
        }
        let words = |kernel: u16, ours: usize| usize::from(kernel).max(ours).div_ceil(8);
        // SAFETY: plain call with the child's pid.
        let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, child as libc::pid_t, 0) };
        // SAFETY: a new descriptor, when there is one.
        let pidfd = (pidfd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(pidfd as RawFd) });
        // Room for a descriptor per recorded inode, under the hard limit.
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: the calls read and set this process's limit.
        let max_fds = unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
                limit.rlim_cur = limit.rlim_max.min(1 << 20);
                libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
                libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
                limit.rlim_cur as usize
            } else {
                1024
            }
        };
        let mut supervisor = Supervisor {
            listener,
            proc_dir,
            child,
            pidfd,
            notif_words: words(
                sizes.seccomp_notif,
                std::mem::size_of::<libc::seccomp_notif>(),
            ),
            resp_words: words(
                sizes.seccomp_notif_resp,
                std::mem::size_of::<libc::seccomp_notif_resp>(),
            ),
            kept: BTreeMap::new(),
            mems: BTreeMap::new(),
            looked_at: 1,
            open_fds: 0,
            // Headroom for the lookups themselves.
            max_fds: max_fds.saturating_sub(64),
        };
        for b in base_owners {
            let path = [b"/".as_slice(), b.path.as_bytes()].concat();
            // The root is this process's: the path is where the base put
            // it, unless `contents` replaced it.
            let Ok(fd) = open_path(libc::AT_FDCWD, &path, false) else {
                continue;
            };
            let Ok(st) = fstat(&fd) else { continue };
            if (st.st_dev, st.st_ino) == (b.dev, b.ino) {
                supervisor.record(fd, &st, b.owner().1);
            }
        }
        Ok(supervisor)
    }

    /// Answers calls until the child exits; its wait status and the
    /// owners of the inodes that still have names.
    fn run(&mut self) -> Result<(Owners, libc::c_int)> {
        loop {
            let mut fds = [
                libc::pollfd {
                    fd: self.listener.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: self.pidfd.as_ref().map_or(-1, |fd| fd.as_raw_fd()),
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            let timeout = if self.pidfd.is_some() { -1 } else { 100 };
            // SAFETY: two pollfds owned here.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, timeout) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                bail!("chown supervisor: waiting for chown calls: {e}");
            }
            if fds[0].revents & libc::POLLIN != 0 {
                self.answer_one()?;
                continue;
            }
            let mut status = 0;
            // SAFETY: waits for this process's own child.
            let waited =
                unsafe { libc::waitpid(self.child as libc::pid_t, &mut status, libc::WNOHANG) };
            if waited < 0 {
                bail!(
                    "chown supervisor: waiting for the shell: {}",
                    io::Error::last_os_error()
                );
            }
            if waited > 0 {
                return Ok((self.owners(), status));
            }
        }
    }

    /// The owners of recorded inodes that were not deleted.
    fn owners(&self) -> Owners {
        self.kept
            .iter()
            .filter(|(_, k)| k.fd.as_ref().is_none_or(linked))
            .map(|(&key, k)| (key, k.owner))
            .collect()
    }

    fn answer_one(&mut self) -> Result<()> {
        let mut notif = vec![0u64; self.notif_words];
        // SAFETY: a zeroed buffer at least as large as the kernel's struct.
        if unsafe {
            libc::ioctl(
                self.listener.as_raw_fd(),
                libc::SECCOMP_IOCTL_NOTIF_RECV,
                notif.as_mut_ptr(),
            )
        } != 0
        {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                // The caller is gone, or a signal came.
                Some(libc::ENOENT | libc::EINTR) => Ok(()),
                _ => bail!("chown supervisor: receiving a chown call: {e}"),
            };
        }
        // SAFETY: the buffer is aligned for and holds a seccomp_notif,
        // which the kernel filled.
        let notif: libc::seccomp_notif =
            unsafe { std::ptr::read(notif.as_ptr().cast::<libc::seccomp_notif>()) };
        let answer = match self.handle(&notif) {
            Some(answer) => answer,
            // No longer valid: nobody waits for an answer.
            None => return Ok(()),
        };
        let (error, flags) = match answer {
            Answer::Done(Ok(())) => (0, 0),
            Answer::Done(Err(e)) => (-e, 0),
            Answer::Continue => (0, libc::SECCOMP_USER_NOTIF_FLAG_CONTINUE as u32),
        };
        let mut resp = vec![0u64; self.resp_words];
        // SAFETY: the buffer is aligned for and holds a seccomp_notif_resp.
        unsafe {
            std::ptr::write(
                resp.as_mut_ptr().cast::<libc::seccomp_notif_resp>(),
                libc::seccomp_notif_resp {
                    id: notif.id,
                    val: 0,
                    error,
                    flags,
                },
            );
        }
        // SAFETY: the response buffer owned here.
        if unsafe {
            libc::ioctl(
                self.listener.as_raw_fd(),
                libc::SECCOMP_IOCTL_NOTIF_SEND,
                resp.as_ptr(),
            )
        } != 0
        {
            let e = io::Error::last_os_error();
            // ENOENT: the caller was killed meanwhile.
            if e.raw_os_error() != Some(libc::ENOENT) {
                bail!("chown supervisor: answering a chown call: {e}");
            }
        }
        Ok(())
    }

    fn id_valid(&self, id: u64) -> bool {
        // SAFETY: reads the id owned here.
        unsafe {
            libc::ioctl(
                self.listener.as_raw_fd(),
                libc::SECCOMP_IOCTL_NOTIF_ID_VALID,
                &id as *const u64,
            ) == 0
        }
    }

    /// The answer to one call, `None` if it is no longer valid.
    fn handle(&mut self, notif: &libc::seccomp_notif) -> Option<Answer> {
        let Some(call) = call_of(notif.data.nr) else {
            return Some(Answer::Done(Err(libc::ENOSYS)));
        };
        let request = Request::decode(call, notif.data.args);
        if call.is_stat() {
            return self.answer_stat(notif, &request);
        }
        let path = match request.path_addr {
            None => None,
            Some(addr) => {
                let read = self.with_mem(notif, |mem| read_path(mem, addr))?;
                match read {
                    Ok(p) => Some(p),
                    Err(e) => return Some(Answer::Done(Err(e))),
                }
            }
        };
        let found = self.find(notif.pid, &request, path.as_deref());
        // The descriptors named may have been another process's.
        if !self.id_valid(notif.id) {
            return None;
        }
        Some(Answer::Done(found.and_then(|(fd, st)| {
            self.clear_set_id_bits(&fd, &st)?;
            self.record(fd, &st, request.owner);
            Ok(())
        })))
    }

    /// A stat call: the kernel answers it, unless its object has a
    /// recorded owner; then the supervisor makes the same call on the
    /// object, puts the recorded owner in the result and writes that into
    /// the caller's buffer. Whatever cannot be looked up here (a bad
    /// address, a missing path, a descriptor of no file) goes to the
    /// kernel too, which gives the error.
    fn answer_stat(&mut self, notif: &libc::seccomp_notif, request: &Request) -> Option<Answer> {
        if self.kept.is_empty() {
            // Nothing recorded: every owner is as the disk has it.
            return Some(Answer::Continue);
        }
        let empty_path_allowed = request.flags & libc::AT_EMPTY_PATH != 0;
        let path = match request.path_addr {
            None => None,
            // Linux 6.11 takes NULL for "" with AT_EMPTY_PATH.
            Some(0) if empty_path_allowed => Some(Vec::new()),
            Some(addr) => {
                let read = self.with_mem(notif, |mem| read_path(mem, addr))?;
                match read {
                    Ok(p) => Some(p),
                    Err(_) => return Some(Answer::Continue),
                }
            }
        };
        let Ok(target) = resolve(notif.pid, request, path.as_deref()) else {
            return Some(Answer::Continue);
        };
        let dir = match target.base {
            Base::Root => libc::AT_FDCWD,
            Base::Proc => self.proc_dir.as_raw_fd(),
        };
        // One call to find the inode: most have no recorded owner.
        let Ok(path) = CString::new(target.path) else {
            return Some(Answer::Continue);
        };
        let nofollow = if target.follow {
            0
        } else {
            libc::AT_SYMLINK_NOFOLLOW
        };
        // SAFETY: a zeroed stat is valid, and filled by the call.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: a directory descriptor, a C string and a struct owned
        // here.
        if unsafe { libc::fstatat(dir, path.as_ptr(), &mut st, nofollow) } != 0 {
            return Some(Answer::Continue);
        }
        let Some(owner) = self.kept.get(&(st.st_dev, st.st_ino)).map(|k| k.owner) else {
            return Some(Answer::Continue);
        };
        let written = if request.call == Call::Statx {
            let sync = request.flags & libc::AT_STATX_SYNC_TYPE;
            // SAFETY: a zeroed statx is valid, and filled by the call.
            let mut stx: libc::statx = unsafe { std::mem::zeroed() };
            // SAFETY: a directory descriptor, a C string and a struct
            // owned here.
            let r =
                unsafe { libc::statx(dir, path.as_ptr(), nofollow | sync, request.mask, &mut stx) };
            // The same object, unless it was replaced meanwhile.
            if r != 0
                || (
                    stx.stx_ino,
                    libc::makedev(stx.stx_dev_major, stx.stx_dev_minor),
                ) != (st.st_ino, st.st_dev)
            {
                return Some(Answer::Continue);
            }
            stx.stx_uid = owner.uid.unwrap_or(stx.stx_uid);
            stx.stx_gid = owner.gid.unwrap_or(stx.stx_gid);
            self.with_mem(notif, |mem| write_all_at(mem, as_bytes(&stx), request.buf))?
        } else {
            let mut st = st;
            st.st_uid = owner.uid.unwrap_or(st.st_uid);
            st.st_gid = owner.gid.unwrap_or(st.st_gid);
            self.with_mem(notif, |mem| write_all_at(mem, as_bytes(&st), request.buf))?
        };
        Some(Answer::Done(written))
    }

    /// Runs `f` on the caller's `/proc/PID/mem`; `None` if the call is no
    /// longer valid. A descriptor kept from before is tried first; when
    /// `f` fails with it, its process may have executed another program
    /// or exited (and the pid been reused), so it is opened again, and
    /// `f` tried again. A fresh descriptor is the caller's only while the
    /// notification is valid, which is checked after opening. With no
    /// descriptor at all, `f` fails with EFAULT.
    fn with_mem<T>(
        &mut self,
        notif: &libc::seccomp_notif,
        f: impl Fn(&fs::File) -> Result<T, i32>,
    ) -> Option<Result<T, i32>> {
        if let Some(mem) = self.mems.get(&notif.pid)
            && let Ok(done) = f(mem)
        {
            return Some(Ok(done));
        }
        self.mems.remove(&notif.pid);
        let mem = open_proc_file(&self.proc_dir, &format!("{}/mem", notif.pid), true);
        // The pid may have been reused, and the memory another's.
        if !self.id_valid(notif.id) {
            return None;
        }
        let Ok(mem) = mem else {
            return Some(Err(libc::EFAULT));
        };
        let result = f(&mem);
        // Within the headroom left under the descriptor limit.
        if self.mems.len() >= 16 {
            self.mems.clear();
        }
        self.mems.insert(notif.pid, mem);
        Some(result)
    }

    /// The object of a call, open, and its `fstat`; or the error the call
    /// fails with.
    fn find(
        &self,
        pid: u32,
        request: &Request,
        path: Option<&[u8]>,
    ) -> Result<(OwnedFd, libc::stat), i32> {
        let target = resolve(pid, request, path)?;
        let dir = match target.base {
            Base::Root => libc::AT_FDCWD,
            Base::Proc => self.proc_dir.as_raw_fd(),
        };
        let fd = open_path(dir, &target.path, target.follow)?;
        let st = fstat(&fd)?;
        // In the kernel's order: the mount, the ids, the permission.
        // SAFETY: a zeroed statvfs is valid, and filled by the call.
        let mut vfs: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: a descriptor and a struct owned here.
        if unsafe { libc::fstatvfs(fd.as_raw_fd(), &mut vfs) } == 0
            && vfs.f_flag & libc::ST_RDONLY != 0
        {
            return Err(libc::EROFS);
        }
        let owner = request.owner;
        if owner.uid.is_some_and(|u| u >= IDS) || owner.gid.is_some_and(|g| g >= IDS) {
            return Err(libc::EINVAL);
        }
        // As the kernel's chown_ok and chgrp_ok, where only 0 is mapped:
        // the caller owns what is 0's, and may give it to anyone only if
        // its group is mapped too.
        let mapped = st.st_uid == 0 && st.st_gid == 0;
        if owner
            .uid
            .is_some_and(|u| !(mapped || (u == 0 && st.st_uid == 0)))
            || owner
                .gid
                .is_some_and(|g| !(mapped || (st.st_uid == 0 && (g == 0 || g == st.st_gid))))
        {
            return Err(libc::EPERM);
        }
        Ok((fd, st))
    }

    /// As a chown does: no setuid bit, and no setgid bit with group
    /// execute, on what is not a directory.
    fn clear_set_id_bits(&self, fd: &OwnedFd, st: &libc::stat) -> Result<(), i32> {
        let mode = st.st_mode & 0o7777;
        if st.st_mode & libc::S_IFMT != libc::S_IFREG {
            return Ok(());
        }
        let mut cleared = mode & !libc::S_ISUID;
        if mode & libc::S_IXGRP != 0 {
            cleared &= !libc::S_ISGID;
        }
        if cleared == mode {
            return Ok(());
        }
        let link = CString::new(format!("self/fd/{}", fd.as_raw_fd())).expect("no NUL");
        // SAFETY: a C string owned here; `/proc` opened before chroot.
        if unsafe { libc::fchmodat(self.proc_dir.as_raw_fd(), link.as_ptr(), cleared, 0) } != 0 {
            return Err(errno());
        }
        Ok(())
    }

    fn record(&mut self, fd: OwnedFd, st: &libc::stat, owner: Owner) {
        let key = (st.st_dev, st.st_ino);
        if let Some(k) = self.kept.get_mut(&key) {
            k.owner = k.owner.then(owner);
            return;
        }
        // Deleted inodes need no descriptor and no record. Looking costs
        // a stat of every kept inode, so it is done again only once as
        // many new records again have come.
        if self.open_fds >= self.max_fds && self.kept.len() >= 2 * self.looked_at {
            let open_fds = &mut self.open_fds;
            self.kept.retain(|_, k| match &k.fd {
                Some(fd) if !linked(fd) => {
                    *open_fds -= 1;
                    false
                }
                _ => true,
            });
            self.looked_at = self.kept.len().max(1);
        }
        let fd = (self.open_fds < self.max_fds).then_some(fd);
        self.open_fds += usize::from(fd.is_some());
        self.kept.insert(key, Kept { owner, fd });
    }
}

/// Writes all of `bytes` at `addr` in a process's memory; EFAULT where
/// it cannot.
fn write_all_at(mem: &fs::File, bytes: &[u8], addr: u64) -> Result<(), i32> {
    mem.write_all_at(bytes, addr).map_err(|_| libc::EFAULT)
}

/// How a call is answered.
enum Answer {
    /// Done here: success, or the errno.
    Done(Result<(), i32>),
    /// Made by the kernel, as if no filter had stopped it.
    Continue,
}

/// The bytes of a plain C struct (`stat`, `statx`), as the kernel writes
/// them.
fn as_bytes<T: Copy>(value: &T) -> &[u8] {
    // SAFETY: `T` is a C struct of integers, read as its bytes for its
    // size; the reference keeps it alive.
    unsafe {
        std::slice::from_raw_parts((value as *const T).cast::<u8>(), std::mem::size_of::<T>())
    }
}

/// Whether an inode still has a name.
fn linked(fd: &OwnedFd) -> bool {
    fstat(fd).map_or(true, |st| st.st_nlink > 0)
}

/// Opens `PATH` under `/proc` (`PID/mem`) for reading, and for writing
/// with `write`.
fn open_proc_file(proc_dir: &OwnedFd, path: &str, write: bool) -> io::Result<fs::File> {
    let c = CString::new(path.as_bytes()).expect("no NUL");
    let access = if write { libc::O_RDWR } else { libc::O_RDONLY };
    // SAFETY: a C string owned here.
    let fd = unsafe { libc::openat(proc_dir.as_raw_fd(), c.as_ptr(), access | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new descriptor.
    Ok(unsafe { fs::File::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chown(call: Call, fd: i32, flags: i32) -> Request {
        Request {
            call,
            fd,
            path_addr: Some(0),
            owner: Owner {
                uid: Some(1000),
                gid: None,
            },
            flags,
            buf: 0,
            mask: 0,
        }
    }

    fn proc(path: &str, follow: bool) -> Result<Target, i32> {
        Ok(Target {
            base: Base::Proc,
            path: path.as_bytes().to_vec(),
            follow,
        })
    }

    #[test]
    fn absolute_paths_are_in_the_shared_root() {
        let r = chown(Call::Chown, libc::AT_FDCWD, 0);
        assert_eq!(
            resolve(7, &r, Some(b"/home/alice")),
            Ok(Target {
                base: Base::Root,
                path: b"/home/alice".to_vec(),
                follow: true,
            })
        );
        // fchownat ignores its directory for an absolute path.
        let r = chown(Call::Fchownat, 5, libc::AT_SYMLINK_NOFOLLOW);
        assert_eq!(
            resolve(7, &r, Some(b"/bin/sh")),
            Ok(Target {
                base: Base::Root,
                path: b"/bin/sh".to_vec(),
                follow: false,
            })
        );
    }

    #[test]
    fn relative_paths_start_at_the_callers_directory() {
        assert_eq!(
            resolve(7, &chown(Call::Chown, libc::AT_FDCWD, 0), Some(b"a/b")),
            proc("7/cwd/a/b", true)
        );
        assert_eq!(
            resolve(7, &chown(Call::Lchown, libc::AT_FDCWD, 0), Some(b"link")),
            proc("7/cwd/link", false)
        );
        assert_eq!(
            resolve(
                9,
                &chown(Call::Fchownat, libc::AT_FDCWD, libc::AT_SYMLINK_NOFOLLOW),
                Some(b"x")
            ),
            proc("9/cwd/x", false)
        );
        assert_eq!(
            resolve(9, &chown(Call::Fchownat, 4, 0), Some(b"../x")),
            proc("9/fd/4/../x", true)
        );
    }

    #[test]
    fn descriptors_and_empty_paths() {
        let mut r = chown(Call::Fchown, 3, 0);
        r.path_addr = None;
        assert_eq!(resolve(7, &r, None), proc("7/fd/3", true));
        r.fd = -1;
        assert_eq!(resolve(7, &r, None), Err(libc::EBADF));
        let r = chown(Call::Fchownat, 3, libc::AT_EMPTY_PATH);
        assert_eq!(resolve(7, &r, Some(b"")), proc("7/fd/3", true));
        let r = chown(Call::Fchownat, libc::AT_FDCWD, libc::AT_EMPTY_PATH);
        assert_eq!(resolve(7, &r, Some(b"")), proc("7/cwd", true));
        // Without AT_EMPTY_PATH an empty path names nothing.
        let r = chown(Call::Fchownat, 3, 0);
        assert_eq!(resolve(7, &r, Some(b"")), Err(libc::ENOENT));
        assert_eq!(
            resolve(7, &chown(Call::Chown, libc::AT_FDCWD, 0), Some(b"")),
            Err(libc::ENOENT)
        );
        let r = chown(Call::Fchownat, -5, 0);
        assert_eq!(resolve(7, &r, Some(b"x")), Err(libc::EBADF));
        let r = chown(Call::Fchownat, 3, 0x8000_0000u32 as i32);
        assert_eq!(resolve(7, &r, Some(b"x")), Err(libc::EINVAL));
    }

    #[test]
    fn arguments_decode_with_minus_one_as_unchanged() {
        let r = Request::decode(Call::Chown, [0x1000, 1000, u64::from(u32::MAX), 0, 0, 0]);
        assert_eq!(r.path_addr, Some(0x1000));
        assert_eq!(
            r.owner,
            Owner {
                uid: Some(1000),
                gid: None
            }
        );
        // AT_FDCWD as the kernel gets it: a 32-bit -100, maybe sign-extended.
        let at_fdcwd = libc::AT_FDCWD as i64 as u64;
        let r = Request::decode(
            Call::Fchownat,
            [at_fdcwd, 0x2000, 5, 6, libc::AT_SYMLINK_NOFOLLOW as u64, 0],
        );
        assert_eq!(r.fd, libc::AT_FDCWD);
        assert_eq!(r.flags, libc::AT_SYMLINK_NOFOLLOW);
        assert_eq!(
            r.owner,
            Owner {
                uid: Some(5),
                gid: Some(6)
            }
        );
        let r = Request::decode(Call::Fchown, [3, u64::MAX, 7, 0, 0, 0]);
        assert_eq!((r.fd, r.path_addr), (3, None));
        assert_eq!(
            r.owner,
            Owner {
                uid: None,
                gid: Some(7)
            }
        );
    }

    #[test]
    fn stat_arguments_decode_to_the_buffer_and_flags() {
        let r = Request::decode(Call::Lstat, [0x1000, 0x2000, 0, 0, 0, 0]);
        assert_eq!(
            (r.fd, r.path_addr, r.buf),
            (libc::AT_FDCWD, Some(0x1000), 0x2000)
        );
        let r = Request::decode(Call::Fstat, [4, 0x3000, 0, 0, 0, 0]);
        assert_eq!((r.fd, r.path_addr, r.buf), (4, None, 0x3000));
        let at_fdcwd = libc::AT_FDCWD as i64 as u64;
        let r = Request::decode(
            Call::Fstatat,
            [at_fdcwd, 0x1000, 0x2000, libc::AT_EMPTY_PATH as u64, 0, 0],
        );
        assert_eq!(
            (r.fd, r.path_addr, r.buf, r.flags),
            (libc::AT_FDCWD, Some(0x1000), 0x2000, libc::AT_EMPTY_PATH)
        );
        let r = Request::decode(
            Call::Statx,
            [
                5,
                0x1000,
                libc::AT_SYMLINK_NOFOLLOW as u64,
                0x7ff,
                0x4000,
                0,
            ],
        );
        assert_eq!(
            (r.fd, r.flags, r.mask, r.buf),
            (5, libc::AT_SYMLINK_NOFOLLOW, 0x7ff, 0x4000)
        );
    }

    #[test]
    fn stat_calls_find_their_objects_as_chown_calls_do() {
        let stat = |call, fd, flags| Request {
            flags,
            fd,
            ..Request::decode(call, [0; 6])
        };
        assert_eq!(
            resolve(7, &stat(Call::Stat, libc::AT_FDCWD, 0), Some(b"etc")),
            proc("7/cwd/etc", true)
        );
        assert_eq!(
            resolve(7, &stat(Call::Lstat, libc::AT_FDCWD, 0), Some(b"/bin/sh")),
            Ok(Target {
                base: Base::Root,
                path: b"/bin/sh".to_vec(),
                follow: false,
            })
        );
        assert_eq!(
            resolve(7, &stat(Call::Fstat, 3, 0), None),
            proc("7/fd/3", true)
        );
        assert_eq!(
            resolve(7, &stat(Call::Fstatat, 3, libc::AT_EMPTY_PATH), Some(b"")),
            proc("7/fd/3", true)
        );
        let nofollow = libc::AT_SYMLINK_NOFOLLOW | libc::AT_STATX_SYNC_TYPE;
        assert_eq!(
            resolve(7, &stat(Call::Statx, 3, nofollow), Some(b"x")),
            proc("7/fd/3/x", false)
        );
        // A flag fstatat does not know.
        assert_eq!(
            resolve(
                7,
                &stat(Call::Fstatat, 3, libc::AT_STATX_SYNC_TYPE),
                Some(b"x")
            ),
            Err(libc::EINVAL)
        );
    }

    #[test]
    fn kernel_releases_compare_by_major_and_minor() {
        assert!(release_at_least("6.1.0-13-amd64", (5, 5)));
        assert!(release_at_least("5.5.0", (5, 5)));
        assert!(release_at_least("5.10", (5, 5)));
        assert!(!release_at_least("5.4.0-150-generic", (5, 5)));
        assert!(!release_at_least("4.19.0", (5, 5)));
        assert!(!release_at_least("", (5, 5)));
    }

    #[test]
    fn a_descriptor_crosses_the_socket() {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let file = tempfile::tempfile().unwrap();
        send_fd(&a, Some(file.as_raw_fd())).unwrap();
        let got = receive_fd(&b).unwrap().expect("a descriptor");
        let (x, y) = (fstat(&got).unwrap(), fstat(&OwnedFd::from(file)).unwrap());
        assert_eq!((x.st_dev, x.st_ino), (y.st_dev, y.st_ino));
        send_fd(&a, None).unwrap();
        assert!(receive_fd(&b).unwrap().is_none());
        drop(a);
        assert!(receive_fd(&b).unwrap().is_none());
    }

    #[test]
    fn later_calls_keep_what_they_leave_unchanged() {
        let first = Owner {
            uid: Some(1000),
            gid: Some(1000),
        };
        let chgrp = Owner {
            uid: None,
            gid: Some(50),
        };
        assert_eq!(
            first.then(chgrp),
            Owner {
                uid: Some(1000),
                gid: Some(50)
            }
        );
    }

    #[test]
    fn the_record_reads_back() {
        let mut owners = Owners::new();
        owners.insert(
            (2049, 12),
            Owner {
                uid: Some(1000),
                gid: None,
            },
        );
        owners.insert(
            (2049, 3),
            Owner {
                uid: None,
                gid: Some(0),
            },
        );
        let bytes = report_bytes(&Ok(owners.clone()));
        assert_eq!(read_report(&bytes).unwrap(), owners);
        assert_eq!(read_report(b"").unwrap(), Owners::new());
        let failed = report_bytes(&Err("chown supervisor: receiving a chown call: boom".into()));
        assert_eq!(
            format!("{:#}", read_report(&failed).unwrap_err()),
            "chown supervisor: receiving a chown call: boom"
        );
        assert!(read_report(b"{\"error\":null,\"owners\":[],\"x\":1}").is_err());
    }

    #[test]
    fn paths_are_read_from_memory_up_to_the_nul() {
        let mem = fs::File::open("/proc/self/mem").unwrap();
        let path = CString::new("/home/alice").unwrap();
        assert_eq!(
            read_path(&mem, path.as_ptr() as u64),
            Ok(b"/home/alice".to_vec())
        );
        // Across a page boundary, and too long.
        let long = CString::new(vec![b'a'; 5000]).unwrap();
        assert_eq!(
            read_path(&mem, long.as_ptr() as u64 + 900),
            Err(libc::ENAMETOOLONG)
        );
        let fits = CString::new(vec![b'b'; 4095]).unwrap();
        assert_eq!(read_path(&mem, fits.as_ptr() as u64).unwrap().len(), 4095);
        assert_eq!(read_path(&mem, 0), Err(libc::EFAULT));
    }

    #[test]
    fn the_filter_notifies_only_chown_calls_of_this_arch() {
        let p = program(0xc000_003e, &[92, 93, 94, 260]);
        assert_eq!(p.len(), 9);
        // Another arch jumps to allow; each number to notify.
        assert_eq!(2 + usize::from(p[1].jf), 7);
        assert_eq!(p[7].k, libc::SECCOMP_RET_ALLOW);
        for (i, jump) in p.iter().enumerate().take(7).skip(3) {
            assert_eq!(i + 1 + usize::from(jump.jt), 8);
        }
        assert_eq!(p[8].k, libc::SECCOMP_RET_USER_NOTIF);
    }
}
