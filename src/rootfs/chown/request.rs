//! A call's arguments as the supervisor decodes them, and its object:
//! where the kernel would look it up, found again through `/proc`.

use std::fs;
use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::fs::FileExt;

use rustix::fs::{Mode, OFlags, Stat, openat};

use super::filter::Call;
use super::record::RecordedOwner;

/// A call's arguments, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    pub call: Call,
    /// The descriptor of `fchown` and `fstat`, or the directory of the
    /// `at` calls (`AT_FDCWD`).
    pub fd: i32,
    /// Where the path is in the caller's memory.
    pub path_addr: Option<u64>,
    pub owner: RecordedOwner,
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
        let owner = |u: u64, g: u64| RecordedOwner {
            uid: id(u),
            gid: id(g),
        };
        let request = Request {
            call,
            fd: libc::AT_FDCWD,
            path_addr: None,
            owner: RecordedOwner::default(),
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
pub enum PathStart {
    /// The root the supervisor and the script share: the path is absolute.
    Root,
    /// The `/proc` opened before `chroot`: the path starts `PID/`.
    Proc,
}

/// The object of a call, as a path to open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub base: PathStart,
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
                base: PathStart::Root,
                path: path.to_vec(),
                follow,
            }
        } else {
            Target {
                base: PathStart::Proc,
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
                base: PathStart::Proc,
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
                    base: PathStart::Proc,
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

/// `openat(dir, path, O_PATH)`, following a last symlink or not.
pub(super) fn open_path(dir: BorrowedFd<'_>, path: &[u8], follow: bool) -> Result<OwnedFd, i32> {
    let mut flags = OFlags::PATH | OFlags::CLOEXEC;
    if !follow {
        flags |= OFlags::NOFOLLOW;
    }
    openat(dir, path, flags, Mode::empty()).map_err(|e| e.raw_os_error())
}

pub(super) fn fstat(fd: &OwnedFd) -> Result<Stat, i32> {
    rustix::fs::fstat(fd).map_err(|e| e.raw_os_error())
}

/// Whether an inode still has a name.
pub(super) fn linked(fd: &OwnedFd) -> bool {
    fstat(fd).map_or(true, |st| st.st_nlink > 0)
}

/// Opens `PATH` under `/proc` (`PID/mem`) for reading, and for writing
/// with `write`.
pub(super) fn open_proc_file(proc_dir: &OwnedFd, path: &str, write: bool) -> io::Result<fs::File> {
    let access = if write { OFlags::RDWR } else { OFlags::RDONLY };
    let fd = openat(proc_dir, path, access | OFlags::CLOEXEC, Mode::empty())?;
    Ok(fs::File::from(fd))
}

#[cfg(test)]
mod tests {
    use std::ffi::CString;

    use super::*;

    fn chown(call: Call, fd: i32, flags: i32) -> Request {
        Request {
            call,
            fd,
            path_addr: Some(0),
            owner: RecordedOwner {
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
            base: PathStart::Proc,
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
                base: PathStart::Root,
                path: b"/home/alice".to_vec(),
                follow: true,
            })
        );
        // fchownat ignores its directory for an absolute path.
        let r = chown(Call::Fchownat, 5, libc::AT_SYMLINK_NOFOLLOW);
        assert_eq!(
            resolve(7, &r, Some(b"/bin/sh")),
            Ok(Target {
                base: PathStart::Root,
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
            RecordedOwner {
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
            RecordedOwner {
                uid: Some(5),
                gid: Some(6)
            }
        );
        let r = Request::decode(Call::Fchown, [3, u64::MAX, 7, 0, 0, 0]);
        assert_eq!((r.fd, r.path_addr), (3, None));
        assert_eq!(
            r.owner,
            RecordedOwner {
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
                base: PathStart::Root,
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
}
