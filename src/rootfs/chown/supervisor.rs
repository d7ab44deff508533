//! The supervisor: the process that forks off the shell under the filter,
//! answers its chown and stat calls, and leaves the record when it exits.
//!
//! Descriptors, lookups, limits and waits go through `rustix`. What stays
//! on `libc` by hand has no safe wrapper there: the seccomp notification
//! calls and ioctls, the `stat` and `statx` the supervisor makes to write
//! them into the caller's memory in the kernel's layout, `fork` (unsafe
//! whatever makes it), and the signal that `exit_as` raises again.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs;
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::fs::FileExt;
use std::path::Path;

use anyhow::{Context, Result, bail};
use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::fs::{AtFlags, CWD, Mode, Stat, StatVfsMountFlags, chmodat, fstatvfs};
use rustix::io::Errno;
use rustix::process::{
    Pid, PidfdFlags, Resource, Rlimit, Signal, WaitOptions, getrlimit, kill_process, pidfd_open,
    setrlimit, waitpid,
};

use super::fd_passing::{receive_fd, send_fd};
use super::filter::{AUDIT_ARCH, Call, call_of, install_filter};
use super::record::{BaseOwner, Owners, RecordedOwner, report_bytes};
use super::request::{
    PathStart, Request, fstat, linked, open_path, open_proc_file, read_path, resolve,
};

/// The ids a call may name, as the identity map has them.
const IDS: u32 = 65536;

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
        let proc_dir = open_path(CWD, b"/proc", true)
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
        send_fd(&theirs, listener.as_ref().map(AsFd::as_fd))
            .context("chown supervisor: handing the seccomp listener to the supervisor")?;
        return Ok(());
    }
    drop(theirs);
    let child = Pid::from_raw(pid).expect("a child's pid is positive");
    // SAFETY: the supervisor's copy of a descriptor it does not use; the
    // builder sees the pipe's end when the shell starts.
    unsafe { libc::close(status_fd) };
    let Setup {
        proc_dir,
        mut report,
        base_owners,
    } = setup;
    let result = match receive_fd(&ours) {
        Ok(Some(listener)) => Supervisor::new(listener, proc_dir, child, &base_owners)
            .and_then(|mut s| s.run())
            .map_err(|e| format!("{e:#}")),
        Ok(None) => wait_for(child).map(|status| (Owners::new(), status)),
        Err(e) => Err(format!(
            "chown supervisor: receiving the seccomp listener: {e}"
        )),
    };
    let (owners, status) = match result {
        Ok((owners, status)) => (Ok(owners), Some(status)),
        Err(e) => {
            let _ = kill_process(child, Signal::KILL);
            let _ = waitpid(Some(child), WaitOptions::empty());
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
fn wait_for(pid: Pid) -> Result<libc::c_int, String> {
    loop {
        match waitpid(Some(pid), WaitOptions::empty()) {
            Ok(Some((_, status))) => return Ok(status.as_raw()),
            Ok(None) | Err(Errno::INTR) => {}
            Err(e) => return Err(format!("chown supervisor: waiting for the shell: {e}")),
        }
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

/// An inode recorded, kept open so its number is not reused while the
/// script runs.
struct Kept {
    owner: RecordedOwner,
    fd: Option<OwnedFd>,
}

struct Supervisor {
    listener: OwnedFd,
    proc_dir: OwnedFd,
    child: Pid,
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
        child: Pid,
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
        let pidfd = pidfd_open(child, PidfdFlags::empty()).ok();
        // Room for a descriptor per recorded inode, under the hard limit
        // (`None` is unlimited).
        let hard = getrlimit(Resource::Nofile).maximum;
        let _ = setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(hard.map_or(1 << 20, |h| h.min(1 << 20))),
                maximum: hard,
            },
        );
        let max_fds = getrlimit(Resource::Nofile)
            .current
            .map_or(usize::MAX, |n| n as usize);
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
            let Ok(fd) = open_path(CWD, &path, false) else {
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
            let mut fds = vec![PollFd::new(&self.listener, PollFlags::IN)];
            fds.extend(self.pidfd.iter().map(|fd| PollFd::new(fd, PollFlags::IN)));
            // Without a pidfd, the child's exit is looked for every 100 ms.
            let every = Timespec {
                tv_sec: 0,
                tv_nsec: 100_000_000,
            };
            match poll(&mut fds, self.pidfd.is_none().then_some(&every)) {
                Ok(_) => {}
                Err(Errno::INTR) => continue,
                Err(e) => bail!("chown supervisor: waiting for chown calls: {e}"),
            }
            let called = fds[0].revents().contains(PollFlags::IN);
            drop(fds);
            if called {
                self.answer_one()?;
                continue;
            }
            match waitpid(Some(self.child), WaitOptions::NOHANG) {
                Ok(Some((_, status))) => return Ok((self.owners(), status.as_raw())),
                Ok(None) => {}
                Err(e) => bail!("chown supervisor: waiting for the shell: {e}"),
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
        let dir = self.dir(target.base).as_raw_fd();
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

    /// Where a lookup from `base` starts.
    fn dir(&self, base: PathStart) -> BorrowedFd<'_> {
        match base {
            PathStart::Root => CWD,
            PathStart::Proc => self.proc_dir.as_fd(),
        }
    }

    /// The object of a call, open, and its `fstat`; or the error the call
    /// fails with.
    fn find(
        &self,
        pid: u32,
        request: &Request,
        path: Option<&[u8]>,
    ) -> Result<(OwnedFd, Stat), i32> {
        let target = resolve(pid, request, path)?;
        let fd = open_path(self.dir(target.base), &target.path, target.follow)?;
        let st = fstat(&fd)?;
        // In the kernel's order: the mount, the ids, the permission.
        if fstatvfs(&fd).is_ok_and(|vfs| vfs.f_flag.contains(StatVfsMountFlags::RDONLY)) {
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
    fn clear_set_id_bits(&self, fd: &OwnedFd, st: &Stat) -> Result<(), i32> {
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
        // Through `/proc` opened before chroot.
        let link = format!("self/fd/{}", fd.as_raw_fd());
        chmodat(
            &self.proc_dir,
            link,
            Mode::from_raw_mode(cleared),
            AtFlags::empty(),
        )
        .map_err(|e| e.raw_os_error())
    }

    fn record(&mut self, fd: OwnedFd, st: &Stat, owner: RecordedOwner) {
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
