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
//! One module per part: `record` is the record and what the builder
//! reads of it, `filter` the calls by number and the BPF program that
//! sends them here, `request` a call's arguments and its object found
//! through `/proc`, `fd_passing` the listener's way to the supervisor,
//! and `supervisor` the process that answers the calls.

mod fd_passing;
mod filter;
mod record;
mod request;
mod supervisor;

pub use record::{BaseOwner, Owners, RecordedOwner, read_report};
pub use supervisor::{Setup, fork_supervisor};
