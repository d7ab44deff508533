//! The calls the supervisor answers, by number on this architecture, and
//! the seccomp filter that sends them to it.
//!
//! The program is written by hand on `libc`: no maintained crate installs
//! a filter that notifies a listener in this shape, and `rustix` has no
//! seccomp calls; `libc` has the BPF opcodes and structures, and the
//! constants it lacks (`AUDIT_ARCH_*`, `__X32_SYSCALL_BIT`) are here.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

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
    pub(super) fn is_stat(self) -> bool {
        matches!(
            self,
            Call::Stat | Call::Fstat | Call::Lstat | Call::Fstatat | Call::Statx
        )
    }
}

/// `AUDIT_ARCH_X86_64` (linux/audit.h: `EM_X86_64 | __AUDIT_ARCH_64BIT |
/// __AUDIT_ARCH_LE`), which `libc` does not define.
#[cfg(target_arch = "x86_64")]
pub(super) const AUDIT_ARCH: Option<u32> = Some(62 | 0x8000_0000 | 0x4000_0000);
/// `AUDIT_ARCH_AARCH64` (`EM_AARCH64 | __AUDIT_ARCH_64BIT |
/// __AUDIT_ARCH_LE`), which `libc` does not define.
#[cfg(target_arch = "aarch64")]
pub(super) const AUDIT_ARCH: Option<u32> = Some(183 | 0x8000_0000 | 0x4000_0000);
/// Other architectures get no filter: chown fails as it always has.
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
pub(super) const AUDIT_ARCH: Option<u32> = None;

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

pub(super) fn call_of(nr: i32) -> Option<Call> {
    calls(true)
        .into_iter()
        .find(|&(n, _)| n as i32 == nr)
        .map(|(_, c)| c)
}

/// Whether the kernel lets a notified call go on as if unfiltered
/// (`SECCOMP_USER_NOTIF_FLAG_CONTINUE`, Linux 5.5), which the stat calls
/// need for every object that has no recorded owner.
fn kernel_continues_calls() -> bool {
    let uts = rustix::system::uname();
    release_at_least(&uts.release().to_string_lossy(), (5, 5))
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
pub(super) fn install_filter() -> io::Result<Option<OwnedFd>> {
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
    rustix::thread::set_no_new_privs(true)?;
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

#[cfg(test)]
mod tests {
    use super::*;

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
